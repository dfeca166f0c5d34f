"""Every chapter of the book executes through papermill on its own, in the ``tiny``
profile (seconds per chapter), with its parameters cell."""

from __future__ import annotations

import pytest
from helpers import REPO

import alignbook as B

CHAPTERS = sorted(B.Book(REPO).chapters())


def test_every_chapter_has_one_parameters_cell_and_no_outputs():
    import nbformat

    assert "theory" in CHAPTERS
    for chapter in CHAPTERS:
        nb = nbformat.read(B.Book(REPO).notebook(chapter), as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{chapter}: {len(tagged)} cells tagged 'parameters'"
        assert tagged[0].source.startswith('profile = "cpu"'), chapter
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs, f"{chapter}: committed with outputs"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_in_tiny_profile(chapter, tiny_book):
    """Every chapter ran (once, in the session's tiny build) and wrote its results folder."""
    executed = tiny_book.chapter(chapter)
    assert executed.notebook.is_file()
    assert (executed.folder / "provenance.json").is_file()


@pytest.mark.slow
def test_the_tiny_site_renders_from_the_executed_chapters(tiny_book):
    assert tiny_book.html is not None, tiny_book.site_error
    assert (tiny_book.html / "index.html").is_file()
    for chapter in CHAPTERS:
        assert list(tiny_book.html.rglob(f"{chapter}.html")), chapter
