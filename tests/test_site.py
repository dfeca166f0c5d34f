"""The rendered book opened in headless Chromium.

By default this checks the site of the session's tiny-profile build (every chapter
executed once, see ``conftest.tiny_book``): the same pages, figures, math and scripts as
the cpu book, from seconds-per-chapter runs. Set ``ALIGNBOOK_SITE_HTML=/path/to/html`` to
check an already built site instead: ``.ci/run`` builds the cpu book with ``make book``
and checks ``_build/cpu/html`` this way.

Every page of ``_toc.yml`` must load without JavaScript errors or missing local
files, every ``<img>`` must have decoded (non-zero ``naturalWidth``), and MathJax
(served from the site itself, so this works offline) must typeset every formula
without errors.

Needs ``/usr/bin/chromium`` (Debian package ``chromium``) and a local MathJax
(the ``django-static-mathjax`` package of the ``test`` extra). Without them this
module fails when ``CI=true`` and is skipped otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import browser_check
import pytest
from helpers import REPO

import alignbook as B

SITE_ENV = "ALIGNBOOK_SITE_HTML"
PAGES = [f"{doc}.html" for doc in B.Book(REPO).documents()]

pytestmark = pytest.mark.slow


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
def site(chromium, request) -> Path:
    given = os.environ.get(SITE_ENV)
    if given:
        html = Path(given)
        assert (html / "index.html").is_file(), f"{SITE_ENV}={given} holds no built site"
        return html
    _require(B.site._mathjax_source() is not None,
             "no local MathJax: `pip install django-static-mathjax` (in the test extra) so the "
             "site can typeset math offline")
    book = request.getfixturevalue("tiny_book")
    failed = [c for c, r in book.runs.items() if not r.ok]
    assert book.html is not None, (f"the tiny book did not render; failed chapters: {failed}; "
                                   f"site: {book.site_error}")
    return book.html


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
