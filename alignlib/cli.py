"""``alignbook``: execute the book's chapters and render the site.

Usage::

    alignbook build [--profile cpu|gpu|tiny] [--chapters a,b] [--jobs N] [--recompute] [--no-site]
    alignbook run CHAPTER [--profile cpu] [-p NAME VALUE ...] [--recompute]
    alignbook params [CHAPTER] [--profile cpu]
    alignbook new CHAPTER [--title TITLE]

Run it from the book's folder (the one with ``_toc.yml``) or below it, or give
``--root``. Exit status: 0 success, 1 a chapter or the site build failed,
2 bad arguments, profiles or parameters (nothing was executed).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

from alignlib import book as _book
from alignlib import results as _results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignbook",
        description="Execute the chapters of the alignbook companion and render the site.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            Examples:
              alignbook build --profile tiny
              alignbook build --profile gpu --chapters alignment,rules
              alignbook run alignment --profile cpu -p widths "[64, 256]" -p lr 5.0
              alignbook params alignment --profile gpu

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

    p_run = sub.add_parser("run", parents=[common], help="execute one chapter, with parameter overrides")
    p_run.add_argument("chapter")
    p_run.add_argument("--profile", default="cpu", help="profile from book/profiles.yml (default: cpu)")
    p_run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="override a parameter; VALUE is YAML, e.g. -p widths \"[64, 256]\" -p lr 0.5")
    p_run.add_argument("--recompute", action="store_true",
                       help="recompute cached tables instead of reusing finished ones")

    p_new = sub.add_parser("new", parents=[common], help="write a new chapter notebook from the template")
    p_new.add_argument("chapter", help="chapter name (file stem), e.g. alignment")
    p_new.add_argument("--title", default=None, help="the chapter's title")
    p_new.add_argument("--folder", default="book", help="folder for the notebook (default: book)")

    p_params = sub.add_parser("params", parents=[common], help="list chapters, their parameters and a profile's values")
    p_params.add_argument("chapter", nargs="?", default=None)
    p_params.add_argument("--profile", default="cpu")
    return parser


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
    runs, html = _book.build(book, profile=args.profile, chapters=chapters, jobs=args.jobs,
                             recompute=args.recompute, site=args.site)
    print(f"Done in {time.perf_counter() - t0:.1f} s.")
    print(f"Executed notebooks: {book.build_dir / 'executed' / args.profile}")
    if html is not None:
        print(f"Site: {html / 'index.html'}")
    return 0


def _cmd_run(args, book: _book.Book) -> int:
    run = _book.run_chapter(book, args.chapter, profile=args.profile,
                            overrides=[tuple(p) for p in args.parameter], recompute=args.recompute)
    print(f"Executed notebook: {run.output}")
    _print_stores(run, book.root)
    return 0


def _cmd_params(args, book: _book.Book) -> int:
    profiles = _book.load_profiles(book)
    if args.profile not in profiles:
        raise _book.BookError(f"unknown profile {args.profile!r}; defined: {', '.join(profiles)}")
    chapters = [args.chapter] if args.chapter else list(book.chapters())
    if args.chapter:
        book.notebook(args.chapter)
    for chapter in chapters:
        values = _book.resolve_parameters(book, chapter, args.profile, profiles)
        print(f"{chapter}  ({book.notebook(chapter).relative_to(book.root)})")
        for p in book.parameters(chapter).values():
            default = _book.format_value(p.default) if p.literal else p.default
            line = f"  {p.name:<20} {p.type or 'any':<6} default {default}"
            if p.name != "profile" and p.name in values and (not p.literal or values[p.name] != p.default):
                line += f"   [{args.profile}: {_book.format_value(values[p.name])}]"
            if p.help:
                line += f"   # {p.help}"
            print(line)
    return 0


def _cmd_new(args, book: _book.Book) -> int:
    title = args.title or args.chapter.replace("_", " ").capitalize()
    path = _book.new_chapter_notebook(book.root / args.folder / f"{args.chapter}.ipynb", args.chapter, title)
    entry = (Path(args.folder) / args.chapter).as_posix()
    print(f"Wrote {path}")
    print(f"Add it to _toc.yml:  - file: {entry}")
    print(f"then run it:         alignbook run {args.chapter} --profile tiny")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        book = _book.Book(args.root if args.root is not None else _results.project_root())
        handler = {"build": _cmd_build, "run": _cmd_run, "params": _cmd_params,
                   "new": _cmd_new}[args.command]
        return handler(args, book)
    except (_book.ChapterFailed, _book.SiteFailed) as exc:
        print(f"alignbook: {exc}", file=sys.stderr)
        return 1
    except _book.BookError as exc:
        print(f"alignbook: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
