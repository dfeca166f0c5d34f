"""Every ``alignbook run`` and ``alignbook build`` command the documentation shows (README,
book pages, chapter text, the command's own help) names real chapters and parameters,
with values that pass the up-front checks. Nothing is executed."""

from __future__ import annotations

import re
import shlex

import nbformat
import pytest
from helpers import REPO

import alignbook as B
from alignbook import cli

COMMAND = re.compile(r"alignbook (run|build) ([^`\n]*)")


def documented_commands() -> list[tuple[str, str]]:
    """``(where, command line after 'alignbook')`` for every example in the docs."""
    texts = {"README.md": (REPO / "README.md").read_text(encoding="utf-8"),
             "alignbook --help": cli._parser().format_help()}
    for page in sorted((REPO / "book").glob("*.md")):
        texts[page.name] = page.read_text(encoding="utf-8")
    for nb_path in sorted((REPO / "book").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        texts[nb_path.name] = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    found = []
    for where, text in texts.items():
        for m in COMMAND.finditer(text):
            line = m.group(0).split("#")[0].strip()
            if "CHAPTER" in line or "NAME" in line or "{" in line:
                continue  # a usage pattern, not an example
            found.append((where, line))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_examples():
    assert any(c.startswith("alignbook run") for _, c in COMMANDS)
    assert any(c.startswith("alignbook build") for _, c in COMMANDS)


@pytest.mark.parametrize("where, line", COMMANDS, ids=[f"{w}: {c}" for w, c in COMMANDS])
def test_documented_command_names_real_chapters_and_parameters(where, line):
    args = cli._parser().parse_args(shlex.split(line)[1:])
    book = B.Book(REPO)
    if args.command == "run":
        pairs = [tuple(p) for p in args.parameter]
        B.resolve_parameters(book, args.chapter, args.profile, cli=pairs)
    else:
        chapters = args.chapters.split(",") if args.chapters else list(book.chapters())
        for chapter in chapters:
            B.resolve_parameters(book, chapter, args.profile)
