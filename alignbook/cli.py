"""``alignbook``: execute the book's chapters and render the site.

Usage::

    alignbook build [--profile cpu|gpu|tiny] [--chapters a,b] [--jobs N] [--recompute] [--no-site]
                    [--engine serial|local|dask] [--workers N] [--address ADDR]
    alignbook run CHAPTER [--profile cpu] [-p NAME VALUE ...] [--recompute] [--engine ...]
    alignbook plan [--profile gpu] [--chapters a,b] [--device-tflops X] [--json]
    alignbook params [CHAPTER] [--profile cpu]
    alignbook new CHAPTER [--title TITLE]
    alignbook bench [--models mlp,convnet,rnn] [--widths 256,1024 | --widths mlp=256,1024 ...]
                    [--rules backprop,align_zero,...] [--repeats 20] [--out DIR]
    alignbook doctor [--json] [--no-verify]

Run it from the book's folder (the one with ``_toc.yml``) or below it, or give
``--root``. Exit status: 0 success, 1 a chapter or the site build failed,
2 bad arguments, profiles or parameters (nothing was executed), 128 + the signal's
number when stopped by SIGINT (130) or SIGTERM (143), after stopping every process
the build started. ``alignbook doctor`` always exits 0 (2 for bad arguments): it
reports, it does not judge.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Mapping

from alignbook import data_cli
from alignbook import pipeline as _book
from alignbook.parameters import CONSTRAINTS
from alignbook import results as _results
from alignbook.glue import format_value
from alignbook.scorecard import profile_claims
from alignbook.template import new_chapter_notebook


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
                        help="sustained throughput of one device in TFLOP/s (default: measured "
                             "here with a float32 matrix product)")
    p_plan.add_argument("--step-overhead", type=float, default=None,
                        help="seconds each training step costs besides its FLOPs "
                             "(default: measured here)")
    p_plan.add_argument("--json", action="store_true", help="print the per-point table as JSON lines")

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


_BENCH_WIDTHS = {"mlp": [256, 1024], "convnet": [32, 64], "rnn": [64, 256]}


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


@contextlib.contextmanager
def _engine_env(args):
    """Carry --engine/--workers/--address to the chapters' kernels (as environment
    variables, read by the pipeline for each chapter) for the block."""
    from alignbook.sweep import Engine

    engine = args.engine or ("dask" if args.address else None)
    if engine is None:
        if args.workers is not None:
            raise _book.BookError("--workers needs --engine local or dask")
        yield
        return
    try:
        env = Engine(engine, args.workers, args.address).env()
    except ValueError as exc:
        raise _book.BookError(f"--engine {engine}: {exc}") from None
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fmt_widths(widths) -> str:
    return ",".join(str(w) for w in widths)


def _bench_widths(models: list[str], specs: list[str]) -> dict[str, list[int]]:
    widths = {m: list(_BENCH_WIDTHS.get(m, [])) for m in models}
    for spec in specs:
        target, sep, values = spec.rpartition("=")
        kinds = [target.strip()] if sep else models
        try:
            parsed = [int(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise _book.BookError(f"--widths {spec!r}: widths must be integers, e.g. 256,1024") from None
        if not parsed or any(w < 1 for w in parsed):
            raise _book.BookError(f"--widths {spec!r}: give positive integer widths, e.g. 256,1024")
        for kind in kinds:
            if kind not in widths:
                raise _book.BookError(f"--widths {spec!r}: {kind!r} is not one of --models {','.join(models)}")
            widths[kind] = parsed
    return widths


def _cmd_bench(args) -> int:
    from alignlib.experiments import performance as _performance
    from alignlib.rules import RULES

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in _performance.BENCH_MODELS]
    if not models or bad:
        raise _book.BookError(f"--models: unknown model(s) {bad or models}; choose from "
                              f"{', '.join(_performance.BENCH_MODELS)}")
    widths = _bench_widths(models, args.widths)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()] if args.rules else list(RULES)
    unknown = [r for r in rules if r not in RULES]
    if not rules or unknown:
        raise _book.BookError(f"--rules: unknown rule(s) {unknown or rules}; choose from {', '.join(RULES)}")
    if args.repeats < 1 or args.warmup < 0:
        raise _book.BookError("--repeats must be at least 1 and --warmup at least 0")
    if args.batch_size is not None and args.batch_size < 1:
        raise _book.BookError("--batch-size must be at least 1")
    root = getattr(args, "root", None)
    out = args.out if args.out is not None else (root or _results.project_root()) / "results" / "bench"

    import matplotlib

    matplotlib.use("Agg")
    t0 = time.perf_counter()
    tidy = _performance.benchmark_rules(widths, rules, batch_size=args.batch_size, warmup=args.warmup,
                                  repeats=args.repeats, progress=True)
    settings = {"models": widths, "rules": rules, "batch_size": args.batch_size,
                "warmup": args.warmup, "repeats": args.repeats}
    paths = save_benchmark(tidy, out, settings=settings)
    table = _performance.cost_table(tidy, ["median_s", "ratio_to_backprop", "flops_ratio", "dot_ops", "conv_ops"])
    import pandas as pd

    with pd.option_context("display.width", 120, "display.max_rows", 500):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"Done in {time.perf_counter() - t0:.1f} s.")
    for kind in ("csv", "png", "pdf", "json"):
        print(f"  {kind}: {paths[kind]}")
    return 0


def _print_stores(run: _book.ChapterRun, root: Path) -> None:
    if not run.stores:
        print("  (the chapter opened no ResultStore)")
        return
    for entry in run.stores:
        path = Path(entry["path"])
        try:
            shown = path.relative_to(root)
        except ValueError:
            shown = path
        files = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) \
            if path.is_dir() else []
        print(f"  results: {shown}/" + (f"  ({', '.join(files)})" if files else ""))
        if entry.get("chapter") != run.chapter:
            print(f"  note: this store is labelled chapter {entry.get('chapter')!r}, not {run.chapter!r}")


def _cmd_build(args, book: _book.Book) -> int:
    chapters = [c.strip() for c in args.chapters.split(",") if c.strip()] if args.chapters else None
    if args.jobs < 1:
        raise _book.BookError("--jobs must be at least 1")
    t0 = time.perf_counter()
    with _engine_env(args):
        runs, html = _book.build(book, profile=args.profile, chapters=chapters, jobs=args.jobs,
                                 recompute=args.recompute, site=args.site)
    print(f"Done in {time.perf_counter() - t0:.1f} s.")
    print(f"Executed notebooks: {book.build_dir / 'executed' / args.profile}")
    if html is not None:
        print(f"Site: {html / 'index.html'}")
    return 0


def _cmd_run(args, book: _book.Book) -> int:
    with _engine_env(args):
        run = _book.run_chapter(book, args.chapter, profile=args.profile,
                                overrides=[tuple(p) for p in args.parameter], recompute=args.recompute)
    print(f"Executed notebook: {run.output}")
    _print_stores(run, book.root)
    return 0


def _cmd_claims(args, book: _book.Book) -> int:
    from alignlib import claims as _claims

    profiles = _book.load_profiles(book)
    if args.profile not in profiles:
        raise _book.BookError(f"unknown profile {args.profile!r}; defined: {', '.join(profiles)}")
    found = profile_claims(book, args.profile)
    if args.json:
        import dataclasses

        print(json.dumps([dataclasses.asdict(c) for c in found], indent=2))
        return 0
    if not found:
        print(f"No claims recorded for profile {args.profile!r} yet: run "
              f"`alignbook build --profile {args.profile}` first.")
        return 0
    width = max(len(f"{c.chapter}/{c.claim}") for c in found)
    for c in found:
        print(f"{c.chapter + '/' + c.claim:<{width}}  {c.verdict:<27} {c.quantity}: {c.measured}")
    counts = {v: sum(c.verdict == v for c in found) for v in _claims.VERDICTS}
    print(f"{len(found)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n))
    return 0


def _cmd_params(args, book: _book.Book) -> int:
    profiles = _book.load_profiles(book)
    if args.profile not in profiles:
        raise _book.BookError(f"unknown profile {args.profile!r}; defined: {', '.join(profiles)}")
    chapters = [args.chapter] if args.chapter else list(book.chapters())
    if args.chapter:
        book.notebook(args.chapter)
    used: set[str] = set()
    for chapter in chapters:
        values = _book.resolve_parameters(book, chapter, args.profile, profiles)
        constraints = book.constraints(chapter)
        print(f"{chapter}  ({book.notebook(chapter).relative_to(book.root)})")
        for p in book.parameters(chapter).values():
            default = format_value(p.default) if p.literal else p.default
            line = f"  {p.name:<20} {p.type or 'any':<6} default {default}"
            if p.name != "profile" and p.name in values and (not p.literal or values[p.name] != p.default):
                line += f"   [{args.profile}: {format_value(values[p.name])}]"
            if p.help:
                line += f"   # {p.help}"
            print(line)
            if constraints.get(p.name):
                print(f"  {'':<20} must be: {', '.join(c.describe() for c in constraints[p.name])}")
                used.update(c.name for c in constraints[p.name])
    if used:
        print("Constraints (checked before anything runs):")
        for name, meaning in CONSTRAINTS.items():
            if name in used:
                print(f"  {name:<13} {meaning}")
    return 0


def _cmd_plan(args, book: _book.Book) -> int:
    from alignbook import plan as _plan

    chapters = [c.strip() for c in args.chapters.split(",") if c.strip()] if args.chapters else None
    result = _plan.plan(book, args.profile, chapters=chapters, device_tflops=args.device_tflops,
                        step_overhead=args.step_overhead)
    if args.json:
        for row in result.points.to_dict("records"):
            print(json.dumps(row, default=str))
        return 0
    print(result.report())
    return 0


def _cmd_new(args, book: _book.Book) -> int:
    title = args.title or args.chapter.replace("_", " ").capitalize()
    path = new_chapter_notebook(book.root / args.folder / f"{args.chapter}.ipynb", args.chapter, title)
    entry = (Path(args.folder) / args.chapter).as_posix()
    print(f"Wrote {path}")
    print(f"Add it to _toc.yml:  - file: {entry}")
    print(f"then run it:         alignbook run {args.chapter} --profile tiny")
    return 0


#: The profile ``alignbook doctor`` checks, and what it needs besides data: an accelerator.
DOCTOR_PROFILE = "gpu"
_DOCTOR_PACKAGES = ("jax", "jaxlib", "equinox", "optax", "jax-cuda12-plugin", "jax-cuda13-plugin")
_DOCTOR_ENV = ("JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE",
               "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_ALLOCATOR", "XLA_FLAGS",
               "JAX_ENABLE_X64", "ALIGNBOOK_DATA", "XDG_CACHE_HOME")


def _doctor_jax() -> dict[str, Any]:
    """JAX's backend, devices (memory where ``memory_stats()`` reports it) and x64 flag."""
    if "jax" not in sys.modules:
        # started in this process: do not take 75% of a GPU that a running build may use
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import jax

        devices = jax.devices()
        backend = jax.default_backend()
        x64 = bool(jax.config.jax_enable_x64)
    except Exception as exc:  # a broken install or a plugin failing to initialise
        return {"backend": None, "devices": [], "x64": None, "error": f"{type(exc).__name__}: {exc}"}
    found = []
    for d in devices:
        entry: dict[str, Any] = {"id": d.id, "platform": d.platform, "kind": d.device_kind}
        try:
            stats = d.memory_stats() or {}
        except Exception:  # not every backend implements it
            stats = {}
        for key, name in (("bytes_limit", "memory_limit_bytes"), ("bytes_in_use", "memory_in_use_bytes")):
            if key in stats:
                entry[name] = int(stats[key])
        found.append(entry)
    return {"backend": backend, "devices": found, "x64": x64, "error": None}


def _doctor_datasets(root: Path | None) -> tuple[list[tuple[str, str | None]], str | None]:
    """The ``(data set, data_dir or None)`` pairs that the doctor profile's chapters read
    (their ``dataset`` / ``datasets`` / ``data_dir`` parameters), and a note when the book
    or the profile cannot be read (then every data set with files is listed)."""
    from alignlib import data as _ds

    try:
        book = _book.Book(root if root is not None else _results.project_root())
        profiles = _book.load_profiles(book)
        if DOCTOR_PROFILE not in profiles:
            raise _book.BookError(f"book/profiles.yml has no {DOCTOR_PROFILE!r} profile")
        pairs = data_cli.profile_datasets(book, DOCTOR_PROFILE, profiles)
        return [(name, data_dir) for name, data_dir in pairs if name in _ds.DATASETS], None
    except _book.BookError as exc:
        return [(name, None) for name in _ds.DATASETS], \
            f"{exc}; listing every data set read from files instead"


def _fetch_hint(name: str, missing: list[str], data_dir: str | None) -> str:
    """How to get the ``missing`` files of data set ``name``."""
    from alignlib import data as _ds

    command = _ds.download_command(name, _ds.cache_folder(name, data_dir))
    if not _ds.DATASETS[name].public_download:
        return (f"{_ds.DATASETS[name].note} Put {' and '.join(missing)} (from "
                f"{_ds.DATASETS[name].base_url}) in {_ds.cache_folder(name, data_dir)}; "
                f"`{command}` says how.")
    return command


def doctor_report(root: Path | None = None, *, verify: bool = True) -> dict[str, Any]:
    """What ``alignbook doctor`` prints, as a dict (``--json`` prints exactly this)."""
    import platform

    from alignlib import data as _ds

    environment = {k: os.environ[k] for k in _DOCTOR_ENV if k in os.environ}  # as given
    jax_info = _doctor_jax()
    pairs, note = _doctor_datasets(root)
    data = []
    for name, data_dir in pairs:
        checks = _ds.check_files(name, cache_dir=data_dir, verify=verify)
        bad = [c.filename for c in checks if not c.ok]
        data.append({
            "name": name, "title": _ds.DATASETS[name].title,
            "folder": str(_ds.cache_folder(name, data_dir)), "ok": not bad,
            "files": [{"filename": c.filename, "path": str(c.path), "status": c.status,
                       "detail": c.detail} for c in checks],
            "fetch": _fetch_hint(name, bad, data_dir) if bad else None,
        })
    accelerators = [d for d in jax_info["devices"] if d["platform"] != "cpu"]
    plugins = [p for p in ("jax-cuda12-plugin", "jax-cuda13-plugin") if _results._version(p)]
    reasons = []
    if not accelerators:
        why = (f"JAX failed to start ({jax_info['error']})" if jax_info["error"]
               else f"JAX's backend is {jax_info['backend']}")
        if plugins and not jax_info["error"]:
            why += f", and {' and '.join(plugins)} is installed but did not load (see JAX's warning)"
        elif not plugins:
            why += ", and no CUDA plugin is installed (pip install -e \".[gpu]\")"
        reasons.append(f"No GPU or TPU: {why}.")
    missing = [d["name"] for d in data if not d["ok"]]
    if missing:
        reasons.append(f"Data missing or bad: {', '.join(missing)} (see above).")
    if reasons:
        summary = f"{DOCTOR_PROFILE} profile: cannot run here. " + " ".join(reasons)
    else:
        kinds = sorted({d["kind"] for d in accelerators})
        summary = (f"{DOCTOR_PROFILE} profile: can run here ({len(accelerators)} x {', '.join(kinds)}; "
                   f"every data file present{'' if verify else ', checksums not checked'}).")
    return {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "packages": {p: _results._version(p) for p in _DOCTOR_PACKAGES},
        "jax": jax_info,
        "environment": environment,
        # the folder that holds one folder per data set (cache_folder's own rule)
        "data": {"root": str(_ds.cache_folder("kmnist").parent), "verified": verify, "note": note,
                 "datasets": data},
        DOCTOR_PROFILE + "_profile": {"can_run": not reasons, "accelerator": bool(accelerators),
                                      "missing_data": missing, "reasons": reasons,
                                      "summary": summary},
    }


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _cmd_doctor(args) -> int:
    report = doctor_report(getattr(args, "root", None), verify=args.verify)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    jax_info, data = report["jax"], report["data"]
    print(f"Python      {report['python']['version']}  ({report['python']['executable']})")
    print("Packages    " + ", ".join(f"{p} {v}" for p, v in report["packages"].items()
                                     if v or p in ("jax", "jaxlib", "equinox", "optax")))
    if jax_info["error"]:
        print(f"JAX         failed to start: {jax_info['error']}")
    else:
        print(f"Backend     {jax_info['backend']}")
        for d in jax_info["devices"]:
            memory = ""
            if "memory_limit_bytes" in d:
                memory = f", memory for JAX {_gib(d['memory_limit_bytes'])}"
                if "memory_in_use_bytes" in d:
                    memory += f" ({_gib(d['memory_in_use_bytes'])} in use)"
            print(f"Device {d['id']:<4} {d['platform']}: {d['kind']}{memory}")
        print(f"64-bit      {'on' if jax_info['x64'] else 'off'} (jax_enable_x64; "
              "the theory chapter turns it on for itself)")
    env = report["environment"]
    print("Environment " + ("  ".join(f"{k}={v}" for k, v in env.items()) if env else
                            "none set of " + ", ".join(_DOCTOR_ENV)))
    print(f"Data cache  {data['root']}" + ("" if data["verified"] else "  (checksums not checked)"))
    if data["note"]:
        print(f"  note: {data['note']}")
    print(f"Data the {DOCTOR_PROFILE} profile reads:")
    for d in data["datasets"]:
        print(f"  {d['name']} ({d['title']}): {'present' if d['ok'] else 'NOT READY'}  in {d['folder']}")
        for f in d["files"]:
            print(f"    {f['filename']:<32} {f['status']}" + (f"  ({f['detail']})" if f["detail"] else ""))
        if d["fetch"]:
            print(f"    to fetch: {d['fetch']}")
    print(report[DOCTOR_PROFILE + "_profile"]["summary"])
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with contextlib.suppress(AttributeError, ValueError):  # a log file sees each line at once
        sys.stdout.reconfigure(line_buffering=True)
    if args.command == "doctor":  # needs no book folder (reads one if there is one)
        return _cmd_doctor(args)
    if args.command == "data":  # needs no book folder (reads one if there is one)
        return data_cli.main(args)
    if args.command == "bench":  # needs no book folder
        try:
            return _cmd_bench(args)
        except _book.BookError as exc:
            print(f"alignbook: error: {exc}", file=sys.stderr)
            return 2
    try:
        book = _book.Book(args.root if args.root is not None else _results.project_root())
        handler = {"build": _cmd_build, "run": _cmd_run, "params": _cmd_params,
                   "new": _cmd_new, "claims": _cmd_claims, "plan": _cmd_plan}[args.command]
        return handler(args, book)
    except (_book.ChapterFailed, _book.SiteFailed) as exc:
        print(f"alignbook: {exc}", file=sys.stderr)
        return 1
    except _book.BookError as exc:
        print(f"alignbook: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM; the build's processes are stopped
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"alignbook: {exc or 'interrupted'}", file=sys.stderr)
        return 128 + int(signum)




def save_benchmark(tidy, out: str | Path, *, name: str = "rule_cost",
                   settings: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write the benchmark into folder ``out``: ``<name>.csv`` (the tidy table),
    ``<name>.png`` / ``.pdf`` (:func:`alignlib.experiments.performance.plot_rule_costs`) and ``<name>.json`` (settings,
    package versions, device, git revision), each file written atomically."""
    import matplotlib.pyplot as plt

    from alignlib.experiments import performance as _performance

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{name}.csv", "png": out / f"{name}.png",
             "pdf": out / f"{name}.pdf", "json": out / f"{name}.json"}
    with _results._atomic_path(paths["csv"]) as tmp:
        tidy.to_csv(tmp, index=False)
    fig = _performance.plot_rule_costs(tidy)
    for kind in ("png", "pdf"):
        with _results._atomic_path(paths[kind]) as tmp:
            fig.savefig(tmp, format=kind, dpi=150, bbox_inches="tight")
    plt.close(fig)
    meta = {"settings": _results._jsonable(dict(settings or {})),
            "packages": _results._package_versions(), "device": _results._device_info(),
            "git": _results._git_info(_results.project_root()), "timestamp": _results._now(),
            "files": {k: p.name for k, p in paths.items() if k != "json"}}
    with _results._atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return paths


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
