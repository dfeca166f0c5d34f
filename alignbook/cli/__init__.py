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

The command's code is split by concept: :mod:`~alignbook.cli.parser` (the arguments),
:mod:`~alignbook.cli.book_commands` (build, run, params, new, claims, plan),
:mod:`~alignbook.cli.bench` and :mod:`~alignbook.cli.doctor`; ``alignbook data`` is
:mod:`alignbook.data_cli`. :func:`main` (the console script) dispatches to them.
"""

from __future__ import annotations

import contextlib
import signal
import sys

from alignbook import data_cli
from alignbook import pipeline as _book
from alignbook import results as _results
from alignbook.cli.bench import _bench_widths as _bench_widths  # tests check the parsing
from alignbook.cli.bench import _cmd_bench, save_benchmark
from alignbook.cli.book_commands import (
    _cmd_build,
    _cmd_claims,
    _cmd_new,
    _cmd_params,
    _cmd_plan,
    _cmd_run,
)
from alignbook.cli.doctor import DOCTOR_PROFILE, _cmd_doctor, doctor_report
from alignbook.cli.parser import _parser

__all__ = ["main", "doctor_report", "save_benchmark", "DOCTOR_PROFILE"]


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
