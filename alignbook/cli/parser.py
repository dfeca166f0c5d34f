"""The ``alignbook`` command line's arguments: every subcommand and its options.

:func:`_parser` builds the whole parser (``--root`` accepted before or after the
command; the ``data`` subcommands come from :mod:`alignbook.data_cli`);
:func:`_add_engine_options` gives ``build`` and ``run`` their ``--engine``,
``--workers`` and ``--address``. Nothing here runs a command (see
:func:`alignbook.cli.main`).
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from alignbook import data_cli
from alignbook.cli.bench import _BENCH_WIDTHS, _fmt_widths


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignbook",
        description="Execute the chapters of the alignbook companion and render the site.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            Examples:
              alignbook build --profile tiny
              alignbook build --profile gpu --chapters alignment,rules
              alignbook build --profile gpu --engine local
              alignbook plan --profile gpu --device-tflops 50
              alignbook run alignment --profile cpu -p mlp_widths "[64, 256]" -p lr 5.0
              alignbook params alignment --profile gpu
              alignbook claims --profile cpu
              alignbook doctor

            Executed notebooks go to _build/executed/<profile>/, single runs to
            _build/runs/<profile>/, the site to _build/<profile>/html/ (the link
            _build/html points to the latest build) and results to
            results/<chapter>/<profile>/<hash>/ (or $ALIGNBOOK_RESULTS)."""),
    )
    parser.add_argument("--root", type=Path, default=None,
                        help="the book folder (default: nearest folder with _toc.yml above the working directory)")
    # --root is accepted before or after the command
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p_build = sub.add_parser("build", parents=[common], help="execute every chapter with a profile, then render the site")
    p_build.add_argument("--profile", default="cpu", help="profile from book/profiles.yml (default: cpu)")
    p_build.add_argument("--chapters", default=None,
                         help="comma-separated chapters to execute (default: all notebook chapters in _toc.yml); "
                              "others reuse an earlier execution with this profile if there is one")
    p_build.add_argument("--jobs", "-j", type=int, default=1, help="chapters executed at once (default: 1)")
    p_build.add_argument("--recompute", action="store_true",
                         help="recompute cached tables instead of reusing finished ones")
    p_build.add_argument("--no-site", dest="site", action="store_false", help="execute only; do not render")
    _add_engine_options(p_build)

    p_run = sub.add_parser("run", parents=[common], help="execute one chapter, with parameter overrides")
    p_run.add_argument("chapter")
    p_run.add_argument("--profile", default="cpu", help="profile from book/profiles.yml (default: cpu)")
    p_run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="override a parameter; VALUE is YAML, e.g. -p widths \"[64, 256]\" -p lr 0.5")
    p_run.add_argument("--recompute", action="store_true",
                       help="recompute cached tables instead of reusing finished ones")
    _add_engine_options(p_run)

    p_plan = sub.add_parser(
        "plan", parents=[common], help="what a profile's sweeps cost: points, steps, FLOPs, time",
        description="List, per chapter of a profile, the sweep points its chapters train (without "
                    "training them), their SGD steps, the FLOPs XLA's cost analysis gives for each "
                    "compiled step, and the time they take at --device-tflops, with the total. "
                    "Needs no data files (data sets are stood in for by their shapes).")
    p_plan.add_argument("--profile", default="gpu", help="profile from book/profiles.yml (default: gpu)")
    p_plan.add_argument("--chapters", default=None,
                        help="comma-separated chapters (default: every chapter with a sweep)")
    p_plan.add_argument("--device-tflops", type=float, default=None,
                        help="sustained throughput of one device in TFLOP/s, for a plan of "
                             "another device (default: every step is run and timed here)")
    p_plan.add_argument("--step-overhead", type=float, default=None,
                        help="seconds each training step costs besides its FLOPs "
                             "(default: measured here)")
    p_plan.add_argument("--results", default=None, metavar="DIR",
                        help="results folder whose stored sweep points are priced at the epochs "
                             "they trained and left out of what is still to run (default: "
                             "$ALIGNBOOK_RESULTS or <book>/results)")
    p_plan.add_argument("--json", action="store_true", help="print the per-point table as JSON lines")
    p_plan.add_argument("--save", default=None, metavar="CSV",
                        help="also write the plan: chapters to CSV, points and other work beside "
                             "it, and its provenance (.json), e.g. book/data/plan_gpu.csv")

    p_new = sub.add_parser("new", parents=[common], help="write a new chapter notebook from the template")
    p_new.add_argument("chapter", help="chapter name (file stem), e.g. alignment")
    p_new.add_argument("--title", default=None, help="the chapter's title")
    p_new.add_argument("--folder", default="book", help="folder for the notebook (default: book)")

    p_params = sub.add_parser("params", parents=[common], help="list chapters, their parameters and a profile's values")
    p_params.add_argument("chapter", nargs="?", default=None)
    p_params.add_argument("--profile", default="cpu")

    p_claims = sub.add_parser(
        "claims", parents=[common], help="the scorecard: every checked claim of every chapter with its verdict",
        description="Print the claims that the chapters checked with a profile (from the claims.json "
                    "in each chapter's results folder), with their verdicts.")
    p_claims.add_argument("--profile", default="cpu", help="profile from book/profiles.yml (default: cpu)")
    p_claims.add_argument("--json", action="store_true", help="print JSON (one object per claim)")

    p_bench = sub.add_parser(
        "bench", parents=[common], help="time one compiled training step of every rule against backprop",
        description="Time one compiled SGD step of each learning rule relative to backprop on the "
                    "same model, batch and device; write the tidy table (CSV), a figure and the "
                    "settings to --out.")
    p_bench.add_argument("--models", default="mlp,convnet,rnn",
                         help="comma-separated model kinds: mlp, convnet, rnn (default: all three)")
    p_bench.add_argument("--widths", action="append", default=[], metavar="[MODEL=]W1,W2",
                         help="widths for every model (256,1024) or for one (mlp=256,1024); may repeat. "
                              f"Defaults: {', '.join(f'{k}={_fmt_widths(v)}' for k, v in _BENCH_WIDTHS.items())}")
    p_bench.add_argument("--rules", default=None,
                         help="comma-separated rules (default: all; backprop is always timed)")
    p_bench.add_argument("--batch-size", type=int, default=None,
                         help="batch size (default: 100 for mlp and convnet, 50 for rnn)")
    p_bench.add_argument("--repeats", type=int, default=20, help="timed steps per rule (default: 20)")
    p_bench.add_argument("--warmup", type=int, default=3, help="untimed steps per rule first (default: 3)")
    p_bench.add_argument("--out", type=Path, default=None,
                         help="output folder (default: results/bench in the book folder)")

    p_doctor = sub.add_parser(
        "doctor", parents=[common], help="what this machine offers: Python, JAX, devices, data; "
                                         "whether the gpu profile can run here",
        description="Print the Python and package versions, JAX's backend and devices (with "
                    "their memory where JAX reports it), whether 64-bit floats are on, the "
                    "data cache folder and, for every data set the gpu profile reads, whether "
                    "its files are there and match their published checksums; the last line "
                    "says whether the gpu profile can run here or what is missing. Changes "
                    "nothing; exit status 0.")
    p_doctor.add_argument("--json", action="store_true", help="print one JSON object instead")
    p_doctor.add_argument("--no-verify", dest="verify", action="store_false",
                          help="only check that the data files exist (skip their checksums)")
    data_cli.add_parser(sub, common)
    return parser


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    from alignbook.sweep import CHAPTER_ENGINES

    parser.add_argument("--engine", choices=CHAPTER_ENGINES, default=None,
                        help="where the chapters' sweep points run: serial (in the chapter's kernel), "
                             "local (a Dask cluster here: one worker per GPU, or --workers CPU "
                             "processes), dask (the scheduler at --address, or --workers local "
                             "processes); default: the profile's engine key, else serial")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes of the local or dask engine")
    parser.add_argument("--address", default=None,
                        help="a running Dask scheduler, e.g. tcp://host:8786 (implies --engine dask)")
