"""Shared fixtures and helpers of the test suite.

- The helper modules next to this file are importable from every test: ``helpers``
  (``REPO``, :func:`helpers.glued`, :func:`helpers.figure_names`), ``fakedata`` (small
  files in the real data formats), ``browser_check`` and ``unrolled_rnn``.
- ``float64``: a fixture that runs a test with JAX's 64-bit floats on.
- ``tiny_book``: every chapter of the book executed **once per test session**, in the
  ``tiny`` profile, two at a time, into a temporary results root and build folder (never
  the reader's ``results/`` or ``_build/``), and the site rendered from them, exactly as
  ``alignbook build --profile tiny --jobs 2`` does. Every test that inspects an executed
  chapter reads it from here (:meth:`TinyBook.chapter`), so ``make test`` executes each
  chapter once; only tests that need other parameters run a chapter again.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from helpers import REPO  # noqa: E402


@pytest.fixture
def float64():
    """Run the test with 64-bit floats; the previous setting is restored afterwards."""
    import jax

    with jax.enable_x64(True):
        yield


@dataclasses.dataclass(frozen=True)
class ExecutedChapter:
    """One chapter executed in the tiny profile: its run, executed notebook and results."""

    chapter: str
    run: object  # alignbook.ChapterRun
    results: Path  # the results root the run wrote to

    @property
    def notebook(self) -> Path:
        return self.run.output

    @property
    def folder(self) -> Path:
        """The chapter's results folder: ``results/<chapter>/tiny/<hash>``."""
        folders = [p for p in (self.results / self.chapter / "tiny").iterdir()
                   if p.is_dir() and (p / "provenance.json").is_file()]
        assert len(folders) == 1, folders
        return folders[0]

    def glued(self) -> dict[str, str]:
        """``{glue name: text}`` as the page pastes it."""
        from helpers import glued

        return glued(self.notebook)

    def claims(self) -> dict:
        """``{claim id: Claim}`` the chapter recorded."""
        from alignbook.scorecard import collect_claims

        return {c.claim: c for c in collect_claims("tiny", self.results, [self.chapter])}


@dataclasses.dataclass(frozen=True)
class TinyBook:
    root: Path
    runs: dict  # chapter -> alignbook.ChapterRun
    html: Path | None  # the rendered site, None when a chapter or the site failed
    site_error: str | None = None  # why the site did not render

    @property
    def results(self) -> Path:
        return self.root / "results"

    def chapter(self, name: str) -> ExecutedChapter:
        run = self.runs[name]
        assert run.ok, run.failure_message()
        return ExecutedChapter(name, run, self.results)


@pytest.fixture(scope="session")
def tiny_book(tmp_path_factory) -> TinyBook:
    import alignbook as B
    from alignbook.results import RESULTS_ENV

    root = tmp_path_factory.mktemp("tiny_book")
    saved = dict(os.environ)
    os.environ[RESULTS_ENV] = str(root / "results")
    os.environ[B.BUILD_ENV] = str(root / "build")
    try:
        book = B.Book(REPO)
        html, site_error = None, None
        try:
            runs, _ = B.build(book, "tiny", jobs=2, recompute=True, site=False, echo=lambda *a: None)
        except B.ChapterFailed as exc:
            runs = exc.runs
        else:
            try:
                html = B.render_site(book, "tiny", echo=lambda *a: None)
            except B.SiteFailed as exc:
                site_error = str(exc)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return TinyBook(root, {r.chapter: r for r in runs}, html, site_error)
