"""Every ``alignbook`` command the documentation shows is a command that works.

Where commands are shown: the README, the book's Markdown pages (``book/intro.md`` among
them), the chapters' Markdown cells, and the examples in the epilog of ``alignbook
--help`` and of every subcommand's ``--help`` (nested ones too, e.g. ``alignbook data``'s
actions). In Markdown only code is read (fenced blocks and inline code spans), so prose
that names a command in passing is not taken for an example.

Each command is parsed by the real argparse parser. Then, by subcommand:

- ``run``: the chapter exists and every ``-p`` parameter resolves against the profile
  (names, types and constraints, as ``alignbook run`` checks them before running);
- ``build``: the profile and every ``--chapters`` chapter exist and every chapter's
  parameters resolve under the profile;
- ``params`` and ``claims``: cheap, so they are run (``claims`` against an empty results
  folder) and must exit 0;
- any other subcommand (``new``, ``bench``, ``doctor``, ``data``, ...): parsed only;
  a ``--profile`` or a chapter it names must exist.

Usage patterns (``alignbook run CHAPTER -p NAME VALUE``) are not examples: they are
only checked to name a real subcommand. Nothing is executed but ``params`` and
``claims``.
"""

from __future__ import annotations

import argparse
import re
import shlex

import nbformat
import pytest
from helpers import REPO, run_cli

import alignbook as B
from alignbook import cli

#: ``alignbook SUBCOMMAND ...`` in a line of code, after an optional path (``.venv/bin/``).
COMMAND = re.compile(r"(?:^|(?<=[\s`(]))(?:[\w.~-]*/)*alignbook ([a-z][\w-]*)(.*)$")
#: Placeholders and alternatives of a usage pattern.
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{1,}\b|<[^>]*>|\||\.\.\.")
#: Subcommands run by the test (cheap and side-effect free).
RUN = ("params", "claims")


def _subparsers(parser: argparse.ArgumentParser):
    """``(prog, parser)`` of every subcommand, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield sub.prog, sub
                yield from _subparsers(sub)


FENCE = re.compile(r"^(`{3,}|~{3,})([^\n]*)\n(.*?)^\1[ \t]*$", re.DOTALL | re.MULTILINE)


def _code_of_markdown(text: str) -> list[str]:
    """The code of a Markdown text: fenced code blocks' lines and inline code spans. A
    fence with a MyST directive (```` ```{admonition} ````) holds Markdown, read the same
    way."""
    lines = []
    for _, info, body in FENCE.findall(text):
        lines += _code_of_markdown(body) if info.strip().startswith("{") else body.splitlines()
    return lines + re.findall(r"`([^`\n]+)`", FENCE.sub("", text))


def documentation() -> dict[str, list[str]]:
    """``{where: lines of code}`` of every place that shows commands."""
    parser = cli._parser()
    found = {"README.md": _code_of_markdown((REPO / "README.md").read_text(encoding="utf-8")),
             "alignbook --help": (parser.epilog or "").splitlines()}
    for prog, sub in _subparsers(parser):
        found[f"{prog} --help"] = (sub.epilog or "").splitlines()
    for page in sorted((REPO / "book").glob("*.md")):
        found[f"book/{page.name}"] = _code_of_markdown(page.read_text(encoding="utf-8"))
    for nb_path in sorted((REPO / "book").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        found[f"book/{nb_path.name}"] = _code_of_markdown(
            "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))
    return found


def documented_commands() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(examples, usage patterns)``: ``(where, "alignbook ...")`` pairs."""
    examples, patterns = [], []
    for where, lines in documentation().items():
        for line in lines:
            m = COMMAND.search(line.strip())
            if not m:
                continue
            rest = m.group(2)
            if " #" in rest or rest.startswith("#"):
                rest = rest[: rest.index("#")]
            command = f"alignbook {m.group(1)}{rest}".strip()
            (patterns if PLACEHOLDER.search(rest) else examples).append((where, command))
    return list(dict.fromkeys(examples)), list(dict.fromkeys(patterns))


EXAMPLES, PATTERNS = documented_commands()
SUBCOMMANDS = {prog.split()[1] for prog, _ in _subparsers(cli._parser()) if len(prog.split()) == 2}


def test_the_docs_show_examples_from_every_source():
    wheres = {w for w, _ in EXAMPLES}
    assert {"README.md", "book/intro.md", "alignbook --help"} <= wheres, wheres
    commands = {c.split()[1] for _, c in EXAMPLES}
    assert {"run", "build", "params", "claims"} <= commands, commands


def test_the_help_epilogs_are_read():
    """Every subcommand's epilog is a source (none may show examples yet, but one that
    does is checked like the rest)."""
    wheres = set(documentation())
    for name in SUBCOMMANDS:
        assert f"alignbook {name} --help" in wheres, name


@pytest.mark.parametrize("where, line", PATTERNS, ids=[f"{w}: {c}" for w, c in PATTERNS])
def test_usage_patterns_name_real_subcommands(where, line):
    assert line.split()[1] in SUBCOMMANDS, f"{where}: {line!r} names no alignbook subcommand"


def _argv(line: str) -> list[str]:
    return shlex.split(line)[1:]


def _profiles():
    return B.load_profiles(B.Book(REPO))


def _check_names(args: argparse.Namespace, book: B.Book) -> None:
    profiles = _profiles()
    if isinstance(getattr(args, "profile", None), str):
        assert args.profile in profiles, f"unknown profile {args.profile!r}"
    chapter = getattr(args, "chapter", None)
    if chapter is not None and args.command in ("run", "params"):
        assert chapter in book.chapters(), f"unknown chapter {chapter!r}"


@pytest.mark.parametrize("where, line", EXAMPLES, ids=[f"{w}: {c}" for w, c in EXAMPLES])
def test_documented_command_parses_and_names_real_chapters_and_parameters(
        where, line, capfd, monkeypatch, tmp_path):
    parser = cli._parser()
    try:
        args = parser.parse_args(_argv(line))
    except SystemExit:
        pytest.fail(f"{where}: `{line}` does not parse: {capfd.readouterr().err.strip()}")
    book = B.Book(REPO)
    _check_names(args, book)
    if args.command == "run":
        B.resolve_parameters(book, args.chapter, args.profile, cli=[tuple(p) for p in args.parameter])
    elif args.command == "build":
        chapters = args.chapters.split(",") if args.chapters else list(book.chapters())
        unknown = [c for c in chapters if c not in book.chapters()]
        assert not unknown, f"{where}: `{line}` names unknown chapters {unknown}"
        for chapter in chapters:
            B.resolve_parameters(book, chapter, args.profile)
    elif args.command in RUN:
        monkeypatch.setenv("ALIGNBOOK_RESULTS", str(tmp_path / "results"))
        capfd.readouterr()
        rc, out, err = run_cli(capfd, *_argv(line), "--root", str(REPO))
        assert rc == 0, f"{where}: `{line}` exited {rc}: {err}"
        assert out.strip(), f"{where}: `{line}` printed nothing"


def test_the_commands_run_include_params():
    assert any(c.startswith("alignbook params") for _, c in EXAMPLES)
    assert any(c.startswith("alignbook claims") for _, c in EXAMPLES)


def test_markdown_code_extraction():
    text = ("Run `alignbook run theory -p lr 1` or\n\n```bash\n.venv/bin/alignbook params theory"
            "  # note\n```\nbut not the alignbook build in prose, nor `alignbook/glue.py`.\n")
    lines = _code_of_markdown(text)
    found = [COMMAND.search(x.strip()) for x in lines]
    assert [f"{m.group(1)}{m.group(2)}" for m in found if m] == [
        "params theory  # note", "run theory -p lr 1"]
