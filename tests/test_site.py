"""The real book, built with the default ``cpu`` profile, opened in headless Chromium.

This is the build readers get from ``make book``; CI runs it through ``make test``.
``ALIGNBOOK_SITE_PROFILE=tiny`` builds the seconds-per-chapter profile instead (for a
quick local check of the site machinery).

Every page of ``_toc.yml`` must load without JavaScript errors or missing local
files, every ``<img>`` must have decoded (non-zero ``naturalWidth``), and MathJax
(served from the site itself, so this works offline) must typeset every formula
without errors.

Set ``ALIGNBOOK_SITE_HTML=/path/to/html`` to check an already built site instead
of building one (``alignbook build --profile cpu`` writes ``_build/cpu/html``).

Needs ``/usr/bin/chromium`` (Debian package ``chromium``) and a local MathJax
(the ``django-static-mathjax`` package of the ``test`` extra). Without them this
module fails when ``CI=true`` and is skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignlib import book as B

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser_check  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SITE_ENV = "ALIGNBOOK_SITE_HTML"
PROFILE = os.environ.get("ALIGNBOOK_SITE_PROFILE", "cpu")
PAGES = [f"{doc}.html" for doc in B.Book(REPO).documents()]

# The first test builds the whole cpu-profile book (about 10-12 minutes on two cores),
# beyond the suite's default 600 s per test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def _require(ok: bool, why: str) -> None:
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why} (required when CI=true)", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = browser_check.find_chromium()
    _require(path is not None,
             "headless Chromium not found: install it with `apt-get install -y chromium` "
             "(or point ALIGNBOOK_CHROMIUM at a Chrome/Chromium binary)")
    return path


@pytest.fixture(scope="module")
def site(chromium, tmp_path_factory) -> Path:
    given = os.environ.get(SITE_ENV)
    if given:
        html = Path(given)
        assert (html / "index.html").is_file(), f"{SITE_ENV}={given} holds no built site"
        return html
    _require(B._mathjax_source() is not None,
             "no local MathJax: `pip install django-static-mathjax` (in the test extra) so the "
             "site can typeset math offline")
    results = tmp_path_factory.mktemp("results")
    build = tmp_path_factory.mktemp("build")  # never the reader's _build/ (make book's)
    proc = subprocess.run(
        [sys.executable, "-m", "alignlib.cli", "build", "--profile", PROFILE, "--jobs", "2"],  # as make book
        cwd=REPO, env={**os.environ, "ALIGNBOOK_RESULTS": str(results), B.BUILD_ENV: str(build)},
        capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, (
        f"alignbook build --profile {PROFILE} failed:\n{proc.stdout}\n{proc.stderr}")
    print(proc.stdout)
    return build / PROFILE / "html"


@pytest.fixture(scope="module")
def report(site, chromium) -> dict:
    missing = [p for p in PAGES if not (site / p).is_file()]
    assert not missing, f"pages of _toc.yml missing from the site: {missing}"
    return browser_check.check_site(site, PAGES)


def test_index_redirects_to_the_intro(site):
    assert 'url=book/intro.html' in (site / "index.html").read_text()


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_cleanly(report, page):
    r = report[page]
    assert r.get("loaded") and not r.get("error"), r
    assert r["h1"], f"{page} has no heading"
    assert r["exceptions"] == [], f"JavaScript errors on {page}: {r['exceptions']}"
    assert r["failedRequests"] == [], f"missing files on {page}: {r['failedRequests']}"


@pytest.mark.parametrize("page", PAGES)
def test_every_image_decodes(report, page):
    broken = [img["src"] for img in report[page]["images"] if img["naturalWidth"] <= 0]
    assert broken == [], f"images that did not load on {page}: {broken}"


@pytest.mark.parametrize("page", PAGES)
def test_math_typesets_without_errors(report, page):
    r = report[page]
    if r["mathElements"] == 0:
        return
    assert r["mathjax"] == "typeset", r["mathjax"]
    assert r["mjxContainers"] >= r["mathElements"], (r["mjxContainers"], r["mathElements"])
    assert r["mjxErrors"] == [], f"MathJax errors on {page}: {r['mjxErrors']}"


def test_derivation_equations_render_offline(report):
    r = report["book/derivation.html"]
    assert r["mjxContainers"] >= 20, r["mjxContainers"]
    assert "/_static/mathjax/" in (r["mathjaxScript"] or ""), r["mathjaxScript"]


def test_notebook_chapters_show_their_figures(report, site):
    for chapter, nb in B.Book(REPO).chapters().items():
        page = f"{nb.relative_to(REPO).with_suffix('').as_posix()}.html"
        figures = [img for img in report[page]["images"] if "/_images/" in img["src"]]
        for img in figures:
            assert img["naturalWidth"] > 0, (chapter, img)
