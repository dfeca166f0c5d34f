"""The rendered book opened in headless Chromium.

By default this checks the site of the session's tiny-profile build (every chapter
executed once, see ``conftest.tiny_book``): the same pages, figures, math and scripts as
the cpu book, from seconds-per-chapter runs. Set ``ALIGNBOOK_SITE_HTML=/path/to/html`` to
check an already built site instead: ``.ci/run`` builds the cpu book with ``make book``
and checks ``_build/cpu/html`` this way.

Every page of ``_toc.yml`` must load without JavaScript errors or missing local
files, every ``<img>`` must have decoded (non-zero ``naturalWidth``), MathJax
(served from the site itself, so this works offline) must typeset every formula
without errors, and no display equation may be wider than the text column.

Without a browser: no page names a folder of the machine that built it (its checkout,
results folder, home or temporary folders, a ``results/<chapter>/<profile>/<hash>``
folder); every figure's caption links to its PNG, PDF, CSV and ``provenance.json``, and
every such link, like every other download link of the site, answers 200 over HTTP; the
"How to cite" page states the version of ``CITATION.cff``; figures are opaque white; no
executed chapter the site shows has a stray output (a warning, a raw value).

Needs ``/usr/bin/chromium`` (Debian package ``chromium``) and a local MathJax
(the ``django-static-mathjax`` package of the ``test`` extra). Without them this
module fails when ``CI=true`` and is skipped otherwise.
"""

from __future__ import annotations

import html as _html
import json
import os
import re
import sys
import tempfile
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import browser_check
import pytest
from helpers import REPO, stray_outputs

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
def built_site(request) -> Path:
    """The site to check: ``ALIGNBOOK_SITE_HTML``, else the session's tiny build."""
    given = os.environ.get(SITE_ENV)
    if given:
        html = Path(given)
        assert (html / "index.html").is_file(), f"{SITE_ENV}={given} holds no built site"
        return html
    book = request.getfixturevalue("tiny_book")
    failed = [c for c, r in book.runs.items() if not r.ok]
    assert book.html is not None, (f"the tiny book did not render; failed chapters: {failed}; "
                                   f"site: {book.site_error}")
    return book.html


@pytest.fixture(scope="module")
def site(chromium, built_site) -> Path:
    if not os.environ.get(SITE_ENV):
        _require(B.site._mathjax_source() is not None,
                 "no local MathJax: `pip install django-static-mathjax` (in the test extra) so "
                 "the site can typeset math offline")
    return built_site


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


@pytest.mark.parametrize("page", PAGES)
def test_no_display_equation_is_wider_than_the_text(report, page):
    assert report[page]["overflowingMath"] == [], \
        f"display equations wider than the column on {page} (break them with aligned): " \
        f"{report[page]['overflowingMath']}"


def test_chapter_pages_fold_their_parameters(report):
    """The parameters cells (the chapter's and the one papermill injected) are folded: no
    shown code cell starts with them."""
    for chapter, nb in B.Book(REPO).chapters().items():
        page = f"{nb.relative_to(REPO).with_suffix('').as_posix()}.html"
        shown = report[page]["shownInputs"]
        assert shown, f"{page} shows no code at all"
        assert not [s for s in shown if s.startswith(("profile = ", "# Parameters"))], (page, shown)


# ------------------------------------------------------------------ without a browser


def _pages(html: Path) -> list[Path]:
    """Every HTML page of the site (not the theme's static files)."""
    return sorted(p for p in html.rglob("*.html") if "_static" not in p.relative_to(html).parts)


def _builder_paths(html: Path) -> list[str]:
    """Folders of the machine that built the site, as text that must not appear on a page."""
    from alignbook.results import RESULTS_ENV

    folders = {str(REPO), str(html.resolve()), sys.prefix, tempfile.gettempdir().rstrip("/") + "/"}
    home = str(Path.home())
    if home not in ("/", ""):
        folders.add(home)
    for env in (RESULTS_ENV, B.BUILD_ENV):
        if os.environ.get(env):
            folders.add(os.environ[env])
    return sorted(f for f in folders if len(f) > 1)


#: A results folder of one chapter run: ``results/<chapter>/<profile>/<12 hex digits>``.
STORE_FOLDER = re.compile(r"results/[\w-]+/[\w-]+/[0-9a-f]{12}")


def test_no_page_names_a_folder_of_the_builder(built_site, request):
    if not os.environ.get(SITE_ENV):
        tiny = request.getfixturevalue("tiny_book")
        extra = [str(tiny.root)]
    else:
        extra = []
    folders = _builder_paths(built_site) + extra
    sources = sorted(p for p in (built_site / "_sources").rglob("*") if p.is_file()) \
        if (built_site / "_sources").is_dir() else []
    found = []
    for path in _pages(built_site) + sources:
        text = path.read_text(encoding="utf-8", errors="replace")
        for folder in folders:
            if folder in text:
                found.append(f"{path.relative_to(built_site)}: {folder}")
        for m in STORE_FOLDER.finditer(text):
            found.append(f"{path.relative_to(built_site)}: {m.group(0)}")
    assert found == [], "builder paths on the site:\n" + "\n".join(found[:30])


def test_no_page_shows_a_stray_output(built_site):
    """What the tiny build's chapters are checked for (tests/test_pages.py), checked on the
    site itself: the executed notebooks it was rendered from (``_sources``) show no
    warning, raw value or DataFrame dump, whatever the profile."""
    import nbformat

    sources = sorted((built_site / "_sources").rglob("*.ipynb"))
    assert sources, f"no executed notebooks under {built_site / '_sources'}"
    found = []
    for path in sources:
        found += [f"{path.relative_to(built_site)}: {s}" for s in stray_outputs(nbformat.read(path, as_version=4))]
    assert found == [], "outputs a reader should not see:\n" + "\n".join(found[:20])


class _Links(HTMLParser):
    """The ``<a>`` elements of a page: (href, classes, text), and its figures' ids."""

    def __init__(self):
        super().__init__()
        self.links, self._open = [], None
        self.figures = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and "href" in attrs:
            self._open = [attrs["href"], (attrs.get("class") or "").split(), ""]
        if tag == "figure" and attrs.get("id"):
            self.figures.append(attrs["id"])

    def handle_data(self, data):
        if self._open is not None:
            self._open[2] += data

    def handle_endtag(self, tag):
        if tag == "a" and self._open is not None:
            self.links.append(tuple(self._open))
            self._open = None


def _links(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _fetch(base: str, page: str, href: str) -> tuple[int, bytes]:
    """GET ``href`` of ``page`` from the site served at ``base`` (ending in ``/``)."""
    url = urllib.parse.urljoin(base + page, _html.unescape(href))
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_every_figure_links_its_files_and_each_answers_200(built_site):
    """Every figure of a chapter page carries links to its PNG, PDF, CSV and provenance in
    its caption, relative to the page; each answers 200 over HTTP with the file (the PNG
    a PNG, the CSV a table, the provenance JSON naming the git revision)."""
    chapters = B.Book(REPO).chapters()
    checked = 0
    with browser_check.serve(built_site) as base:
        for chapter, nb in chapters.items():
            page = f"{nb.relative_to(REPO).with_suffix('').as_posix()}.html"
            parsed = _links(built_site / page)
            files = [(href, text) for href, classes, text in parsed.links if "figure-file" in classes]
            assert files, f"{page}: no figure links to its files"
            kinds = {href.rsplit(".", 1)[-1] for href, _ in files}
            assert {"png", "pdf", "csv", "json"} <= kinds, (page, kinds)
            pngs = [href for href, _ in files if href.endswith(".png")]
            assert len(pngs) >= len([f for f in parsed.figures if f.startswith("fig-")]), page
            for href, text in files:
                assert not href.startswith(("/", "http:", "https:", "file:")), (page, href)
                status, body = _fetch(base, page, href)
                assert status == 200 and body, (page, href, status)
                if href.endswith(".png"):
                    assert body.startswith(b"\x89PNG"), href
                elif href.endswith(".pdf"):
                    assert body.startswith(b"%PDF"), href
                elif href.endswith(".csv"):
                    assert b"," in body.splitlines()[0], href
                elif href.endswith("provenance.json"):
                    prov = json.loads(body)
                    assert prov["chapter"] == chapter and "revision" in prov["git"], href
                checked += 1
    assert checked >= 4 * len(chapters)


def test_every_download_link_answers_200(built_site):
    """Links Sphinx made downloads (``_downloads/``), e.g. CITATION.cff on the "How to
    cite" page, answer 200 over HTTP."""
    found = 0
    with browser_check.serve(built_site) as base:
        for path in _pages(built_site):
            page = path.relative_to(built_site).as_posix()
            for href, classes, _ in _links(path).links:
                if "download" in classes or "_downloads/" in href:
                    status, body = _fetch(base, page, href)
                    assert status == 200 and body, (page, href, status)
                    found += 1
    assert found, "no download link on the site (the cite page links CITATION.cff)"


def test_the_cite_page_states_the_version_of_citation_cff(built_site):
    import yaml

    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    text = (built_site / "book" / "cite.html").read_text(encoding="utf-8")
    versions = re.findall(r'class="cff-version">([^<]*)<', text)
    assert versions and set(versions) == {str(cff["version"])}, versions
    plain = _html.unescape(re.sub(r"<[^>]+>", "", text))
    assert re.search(r"version\s*=\s*\{" + re.escape(str(cff["version"])) + r"\}", plain), \
        "the book's BibTeX does not state CITATION.cff's version"
    assert "@inproceedings{boopathy2022icml," in plain and "2106.08453" in plain
    assert "@software{alignbook," in plain and cff["title"] in plain


def test_figures_are_opaque_white(built_site):
    """Figures have a white, opaque background (legible on the dark theme) and are at most
    about 13 inches wide at 150 dpi (wider ones shrink their text below legibility)."""
    from PIL import Image

    pngs = sorted((built_site / "figures").rglob("*.png"))
    assert pngs, "no figure files in the site"
    for png in pngs:
        with Image.open(png) as im:
            rgba = im.convert("RGBA")
            assert rgba.getpixel((1, 1)) == (255, 255, 255, 255), (png.name, rgba.getpixel((1, 1)))
            assert im.width <= 13.5 * 150, (png.name, im.width)
