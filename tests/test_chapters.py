"""Every chapter of the book executes through papermill on its own, in the ``tiny``
profile (seconds per chapter), with its parameters cell."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignlib import book as B

REPO = Path(__file__).resolve().parents[1]
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
def test_chapter_runs_in_tiny_profile(chapter, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNBOOK_RESULTS", str(tmp_path / "results"))
    run = B.run_chapter(B.Book(REPO), chapter, "tiny", recompute=True, echo=lambda *a: None)
    assert run.ok
