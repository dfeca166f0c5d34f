"""The commands that work on a book folder: ``build``, ``run``, ``params``, ``new``,
``claims`` and ``plan``.

Each ``_cmd_*`` takes the parsed arguments and the :class:`alignbook.pipeline.Book`,
prints what it did and returns the exit status; errors are raised as
:class:`alignbook.pipeline.BookError` (status 2, see :func:`alignbook.cli.main`).
:func:`_engine_env` carries ``--engine``/``--workers``/``--address`` to the chapters'
kernels.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from alignbook import pipeline as _book
from alignbook.glue import format_value
from alignbook.parameters import CONSTRAINTS
from alignbook.scorecard import profile_claims
from alignbook.template import new_chapter_notebook


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
                        step_overhead=args.step_overhead, results=args.results)
    if args.save:
        options = [("--profile", args.profile), ("--chapters", args.chapters),
                   ("--device-tflops", args.device_tflops),
                   ("--step-overhead", args.step_overhead), ("--results", args.results),
                   ("--save", args.save)]
        command = " ".join(["alignbook plan"] + [f"{flag} {value}" for flag, value in options
                                                 if value is not None])
        for path in _plan.save_plan(result, book, args.save, command=command).values():
            print(f"Wrote {path}", file=sys.stderr, flush=True)
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
