"""Shared fixtures and helpers of the test suite.

- The helper modules next to this file are importable from every test: ``helpers``
  (``REPO``, :func:`helpers.glued`, :func:`helpers.figure_names`), ``fakedata`` (small
  files in the real data formats), ``browser_check`` and ``unrolled_rnn``.
- ``float64``: a fixture that runs a test with JAX's 64-bit floats on; ``no_execution``:
  one that fails the test if anything executes a notebook.
- ``tiny_book``: every chapter of the book executed **once per test session**, in the
  ``tiny`` profile, two at a time, into a temporary results root and build folder (never
  the reader's ``results/`` or ``_build/``), and the site rendered from them: the command
  ``alignbook build --profile tiny --jobs 2`` itself, started in a subprocess as soon as
  the tests are collected, so that it runs beside the unit tests. Every test that
  inspects an executed chapter reads it from here (:meth:`TinyBook.chapter`), so
  ``make test`` executes each chapter once; only tests that need other parameters run a
  chapter again (those are marked ``ci``: ``.ci/run`` runs them after ``make test``).
- Every process of the session shares XLA's compiled programs through
  :mod:`alignbook.xla_cache` (the user's cache folder), as the book's builds do.
- Every process of the session (the tests, the tiny build, the chapters and workers they
  start) compiles with LLVM's optimisation level 1 instead of XLA's default 3
  (:data:`TEST_XLA_FLAGS`). Compiling, not computing, is most of the suite's time. Level 1
  compiles a training step in about four fifths of the time and the small programs of eager
  operations in about a third; the programs run about as fast. The
  arithmetic stays IEEE (XLA's fast-math stays off), but a float32 number can differ from
  a default-compiled one in its last bits (the two levels may evaluate a function such as
  ``exp`` through different code): no test compares a number with one a default-compiled
  process computed to tighter than that. A level named in the user's own ``XLA_FLAGS`` is
  kept.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

#: appended to ``XLA_FLAGS`` for the whole test session (see the module docstring); set before
#: anything starts JAX's backend, and inherited by every process the tests start
TEST_XLA_FLAGS = "--xla_backend_optimization_level=1"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from helpers import REPO  # noqa: E402

from alignbook import xla_cache  # noqa: E402

# the tests, the tiny build and every chapter they start share compiled programs
xla_cache.enable()


@pytest.fixture
def float64():
    """Run the test with 64-bit floats; the previous setting is restored afterwards."""
    import jax

    with jax.enable_x64(True):
        yield


@pytest.fixture
def no_execution(monkeypatch):
    """Fail the test if anything tries to execute a notebook."""
    import papermill

    def forbidden(*args, **kwargs):
        raise AssertionError("a notebook was executed")

    monkeypatch.setattr(papermill, "execute_notebook", forbidden)


@dataclasses.dataclass(frozen=True)
class ChapterResult:
    """How one chapter of the session's tiny build ended."""

    chapter: str
    ok: bool
    notebook: Path  # the executed notebook (``<chapter>.failed.ipynb`` when it failed)
    message: str  # the build's output, for a failure


@dataclasses.dataclass(frozen=True)
class ExecutedChapter:
    """One chapter executed in the tiny profile: its executed notebook and results."""

    chapter: str
    notebook: Path
    results: Path  # the results root the run wrote to

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
    runs: dict  # chapter -> ChapterResult
    html: Path | None  # the rendered site, None when a chapter or the site failed
    site_error: str | None = None  # why the site did not render

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def log(self) -> str:
        """What the build printed."""
        return (self.root / "build.log").read_text(errors="replace")

    def chapter(self, name: str) -> ExecutedChapter:
        run = self.runs[name]
        assert run.ok, f"chapter {name!r} failed in the tiny build:\n{run.message}"
        return ExecutedChapter(name, run.notebook, self.results)


class _TinyBuild:
    """``alignbook build --profile tiny --jobs 2 --recompute`` in a subprocess, started as
    soon as the tests are collected (when any of them reads the tiny book), so that it runs
    while the unit tests do; :func:`tiny_book` waits for it."""

    process: subprocess.Popen | None = None
    root: Path | None = None

    @classmethod
    def start(cls) -> None:
        import alignbook as B
        from alignbook.results import RESULTS_ENV

        cls.root = Path(tempfile.mkdtemp(prefix="alignbook-tiny-book-"))
        env = {**os.environ, RESULTS_ENV: str(cls.root / "results"),
               B.BUILD_ENV: str(cls.root / "build"),
               # progress lines every 2 s, so the test of them sees some
               "ALIGNBOOK_PROGRESS_SECONDS": "2"}
        cls.log = cls.root / "build.log"
        with open(cls.log, "w") as out:
            cls.process = subprocess.Popen(
                [sys.executable, "-m", "alignbook.cli", "build", "--profile", "tiny", "--jobs", "2",
                 "--recompute"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)

    @classmethod
    def finish(cls) -> TinyBook:
        if cls.process is None:
            cls.start()
        cls.process.wait()
        log = cls.log.read_text(errors="replace")
        executed = cls.root / "build" / "executed" / "tiny"
        try:
            timings = json.loads((executed / "timings.json").read_text())
        except (OSError, ValueError):
            timings = {}
        runs = {}
        for chapter, t in timings.items():
            ok = bool(t.get("ok"))
            found = list((executed / "book").glob(f"{chapter}.ipynb" if ok else f"{chapter}.failed.ipynb"))
            runs[chapter] = ChapterResult(chapter, ok and bool(found),
                                          found[0] if found else executed / f"{chapter}.ipynb", log)
        html = cls.root / "build" / "tiny" / "html"
        done = cls.process.returncode == 0 and (html / "index.html").is_file()
        return TinyBook(cls.root, runs, html if done else None, None if done else log)

    @classmethod
    def stop(cls) -> None:
        if cls.process is not None and cls.process.poll() is None:
            cls.process.terminate()
            cls.process.wait(30)
        if cls.root is not None:
            shutil.rmtree(cls.root, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_book() -> TinyBook:
    """Every chapter executed once in the tiny profile and the site rendered (see the module
    docstring); never the reader's results/ or _build/."""
    return _TinyBuild.finish()


def _reads_the_tiny_book(item) -> bool:
    """Whether ``item`` needs the tiny build: it asks for it, or it is a site check and no
    built site was given (``ALIGNBOOK_SITE_HTML``)."""
    if "tiny_book" in getattr(item, "fixturenames", ()):
        return True
    return item.module.__name__ == "test_site" and not os.environ.get("ALIGNBOOK_SITE_HTML")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Start the tiny build when a selected test reads it, and run those tests last, so
    that the build runs beside every other test instead of being waited for. (Last among
    the hooks: ``-m`` and ``-k`` have removed the deselected tests by then, so a run of
    other tests never starts the build.)"""
    if any(_reads_the_tiny_book(item) for item in items):
        if not config.option.collectonly:
            _TinyBuild.start()
        items.sort(key=_reads_the_tiny_book)  # stable: the order within each part stays


def pytest_sessionfinish(session, exitstatus):
    _TinyBuild.stop()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "ci: run by .ci/run after `make test` (which leaves them out to stay within "
        "ten minutes on two cores): chapters re-run with other parameters, the gpu profile's "
        "paths on fake data files, builds killed or run twice in subprocesses, Dask clusters, "
        "the pipeline's own small books rendered by Jupyter Book, sweep tables' shapes "
        "(the chapters' tiny runs use the same sweeps), the timing benchmark's tables, the "
        "ConvNet cases of exact checks whose MLP case stays, and the authors' 200-epoch "
        "Add-task run (the cpu book's recurrent chapter repeats it)")
