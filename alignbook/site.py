"""Rendering the site: Jupyter Book 1.x over the executed notebooks of one profile.

:func:`render_site` copies the book's sources and the profile's executed notebooks into
a staging folder, fills the scorecard page from the chapters' ``claims.json``, copies
each figure's files (PNG, PDF, CSV, ``provenance.json``) from the results folder into
``figures/`` of the staging tree, where the figure captions link to them (Sphinx then
serves them under ``_downloads/``), hides the parameters papermill injected, vendors
MathJax so that math renders offline, and runs ``jupyter-book build`` with warnings as
errors into ``_build/<profile>/html`` (the link ``_build/html`` points at the latest).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import yaml

from alignbook.glue import FIGURE_RECORD, SITE_FIGURES
from alignbook.pipeline import Book, SiteFailed, _strip_suffix, profile_lock, results_folder
from alignbook.scorecard import fill_scorecard

__all__ = ["render_site"]

_IGNORE = shutil.ignore_patterns("results", "_build", ".ipynb_checkpoints", "__pycache__", "*.pyc",
                                 ".running-*", "*.failed.ipynb")


def _filter_toc(node: Any, drop: set[str]) -> Any:
    """Remove toc entries whose file is in ``drop`` (and parts left empty)."""
    if isinstance(node, list):
        items = [_filter_toc(x, drop) for x in node]
        return [x for x in items if x is not None]
    if isinstance(node, dict):
        if isinstance(node.get("file"), str) and _strip_suffix(node["file"]) in drop:
            return None
        out = {}
        for k, v in node.items():
            fv = _filter_toc(v, drop)
            if isinstance(v, list) and k in ("chapters", "sections", "parts") and not fv:
                if k == "chapters" and "root" not in node:
                    return None  # a part left without chapters
                continue
            out[k] = fv
        return out
    return node


def _figure_records(nb: nbformat.NotebookNode) -> list[dict]:
    """The file records of the figures an executed notebook glued
    (:func:`alignbook.glue.glue_figure`)."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            record = (out.get("metadata", {}).get("text/markdown") or {}).get(FIGURE_RECORD)
            if isinstance(record, dict) and isinstance(record.get("files"), dict):
                found.append(record)
    return found


def _safe_relative(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts


def _stage_figures(staging: Path, results: Path, chapter: str, records: list[dict]) -> list[str]:
    """Copy the files of ``records`` from ``results`` into ``staging``; returns what was
    missing (``chapter: file``)."""
    missing = []
    for record in records:
        for site_path, source in record["files"].items():
            if not (_safe_relative(site_path) and _safe_relative(source)
                    and Path(site_path).parts[0] == SITE_FIGURES):
                missing.append(f"{chapter}: {site_path} (not a path inside the site)")
                continue
            src, dst = results / source, staging / site_path
            if not src.is_file():
                missing.append(f"{chapter}: {source}")
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return missing


def _stage_notebook(executed: Path, target: Path) -> list[dict]:
    """Copy an executed notebook into the staging tree for Jupyter Book: the cell of
    parameters papermill injected gets ``hide-input`` (the reader can unfold it, as the
    chapter's own ``parameters`` cell), and papermill's record of this machine's paths
    is dropped. Returns the notebook's figure records."""
    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
    papermill = nb.metadata.get("papermill")
    if isinstance(papermill, dict):
        for key in ("input_path", "output_path", "cwd"):
            papermill.pop(key, None)
    nbformat.write(nb, target)
    return _figure_records(nb)


#: Files of the repository root the site needs besides its pages: the "How to cite" page
#: links to CITATION.cff and generates the book's BibTeX from it (alignbook.sphinx_ext).
CITATION_FILES = ("CITATION.cff",)

#: Where the site loads MathJax from when a local copy is available (relative to _static).
MATHJAX_PATH = "mathjax/tex-mml-chtml.js"
#: Staging folder copied verbatim into the site root (Sphinx ``html_extra_path``).
MATHJAX_EXTRA = "_alignbook_extra"
_MATHJAX_PARTS = ("tex-mml-chtml.js", "a11y", "ui", "input", "adaptors", "sre",
                  "output/chtml.js", "output/chtml")


def _mathjax_source() -> Path | None:
    """MathJax 3's ``es5`` folder from the ``mathjax`` package installed by
    django-static-mathjax (a plain copy of MathJax 3.2; Django is not needed)."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        es5 = Path(loc) / "static" / "mathjax" / "es5"
        if (es5 / "tex-mml-chtml.js").is_file():
            return es5
    return None


def _vendor_mathjax(staging: Path) -> bool:
    """Copy MathJax into the staging tree so the site renders math offline.
    Not under ``_static``: Jupyter Book would add every .js file found there to
    every page. Returns False when no local MathJax is installed."""
    es5 = _mathjax_source()
    if es5 is None:
        return False
    target = staging / MATHJAX_EXTRA / "_static" / Path(MATHJAX_PATH).parent
    for part in _MATHJAX_PARTS:
        src, dst = es5 / part, target / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        elif src.is_file():
            shutil.copy2(src, dst)
    return True


#: Markers in a Markdown page that :func:`render_site` replaces with the scorecard.
def render_site(book: Book, profile: str, echo=print) -> Path:
    """Render the site from ``_build/executed/<profile>`` with Jupyter Book
    (``-W --keep-going``: any Sphinx warning fails the build). Chapters with no
    executed notebook are left out of the rendered table of contents (with a
    message). Returns the HTML folder ``_build/<profile>/html``. Holds the profile's
    lock (:func:`alignbook.pipeline.profile_lock`), so that two renderings of one
    profile never share the staging folder."""
    with profile_lock(book, profile, echo):
        return _render_site(book, profile, echo)


def _render_site(book: Book, profile: str, echo=print) -> Path:
    staging = book.build_dir / "staging" / profile
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    top = sorted({Path(doc).parts[0] for doc in book.documents() if len(Path(doc).parts) > 1})
    for name in top:
        shutil.copytree(book.root / name, staging / name, ignore=_IGNORE)
    for name in CITATION_FILES:  # read by the "How to cite" page
        if (book.root / name).is_file():
            shutil.copy2(book.root / name, staging / name)
    for doc in book.documents():  # top-level pages
        if len(Path(doc).parts) == 1:
            src = book.source(doc)
            shutil.copy2(src, staging / src.name)
    missing, lost = [], []
    for chapter, nb in book.chapters().items():
        executed = book.executed_path(profile, chapter)
        target = staging / nb.relative_to(book.root)
        if executed.is_file():
            records = _stage_notebook(executed, target)
            lost += _stage_figures(staging, results_folder(book), chapter, records)
        else:
            target.unlink(missing_ok=True)
            missing.append(_strip_suffix(nb.relative_to(book.root).as_posix()))
    if lost:
        raise SiteFailed("figure files the captions link to are missing from the results folder "
                         f"{results_folder(book)} (re-run the chapters): " + "; ".join(lost[:20]))
    fill_scorecard(book, staging, profile,
                    [c for c in book.chapters() if book.executed_path(profile, c).is_file()])
    config = dict(book.config)
    if _vendor_mathjax(staging):
        sphinx_cfg = dict(config.get("sphinx") or {})
        sphinx_cfg["config"] = {**(sphinx_cfg.get("config") or {}),
                                "mathjax_path": MATHJAX_PATH,
                                "html_extra_path": [MATHJAX_EXTRA]}
        config["sphinx"] = sphinx_cfg
        config["exclude_patterns"] = list(config.get("exclude_patterns") or []) + [MATHJAX_EXTRA]
    else:
        echo("  note: MathJax is loaded from its CDN (install django-static-mathjax for an offline site)")
    (staging / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
                                         encoding="utf-8")
    toc = book.toc
    if missing:
        echo("  not executed for this profile, left out of the site: " + ", ".join(missing))
        toc = _filter_toc(toc, set(missing))
    (staging / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False), encoding="utf-8")

    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(staging), "--all", "-W", "--keep-going", "--builder", "html"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=staging)
    seconds = time.perf_counter() - t0
    log = book.build_dir / profile / "jupyter-book.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + "\n" + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                    if "WARNING" in line or "ERROR" in line or "Error" in line]
        detail = "\n".join(problems[-40:]) or (proc.stdout + proc.stderr)[-4000:]
        raise SiteFailed(f"Jupyter Book failed (warnings are errors); full log: {log}\n{detail}")
    html = book.html_dir(profile)
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(staging / "_build" / "html"), str(html))
    echo(f"  {'site':<16} {'ok':<6} {seconds:8.1f} s  -> {html}")
    _link_latest(book, profile, echo)
    return html


def _link_latest(book: Book, profile: str, echo=print) -> None:
    """Point ``_build/html`` (a symbolic link) at the site built last, so that
    ``_build/html/index.html`` always opens the latest build. Leaves a real
    ``_build/html`` folder (e.g. from a plain ``jupyter-book build``) alone."""
    link = book.build_dir / "html"
    target = Path(profile) / "html"
    try:
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            echo(f"  note: {link} is not a link made by alignbook; left as it is")
            return
        link.symlink_to(target, target_is_directory=True)
    except OSError as exc:  # e.g. no symlinks on this filesystem
        echo(f"  note: could not link {link} -> {target}: {exc}")
