"""A tiny Sphinx extension, listed in ``_config.yml`` under ``sphinx.extra_extensions``.

- Drops a script that sphinx-thebe registers twice (:func:`_dedupe_scripts`).
- Serves each figure's files with the site: the figure notes of
  :func:`alignbook.glue.figure_note` link to ``/figures/<chapter>/<hash>/<file>``, paths
  of the site's source tree (where :func:`alignbook.site.render_site` copies them from
  the results folder). Each such link becomes a link relative to its page, a missing
  file is a warning (an error in the book's ``-W`` build), and the ``figures/`` folder is
  copied into the HTML output (:func:`_figure_links`, :func:`_copy_figures`).
- ``{cff}`field``` pastes a field of the book's ``CITATION.cff`` (``version``,
  ``title``, ...), so that the "How to cite" page quotes the version the file states
  rather than a copy of it.
- The ``bibtex-entry`` directive shows a BibTeX entry as a code block: ``book`` builds
  the book's own entry from ``CITATION.cff`` (:func:`book_bibtex`); any other argument
  is the key of an entry of the book's ``bibtex_bibfiles``, shown as written there.

``CITATION.cff`` is read from the configuration folder (the staging copy
:func:`alignbook.site.render_site` builds holds one), else from the source folder.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

CITATION_FILE = "CITATION.cff"
#: The site's folder of figure files: the figure notes link into it (alignbook.glue).
SITE_FIGURES = "figures"


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated inline ``<script>`` blocks. sphinx-thebe 0.3 registers its
    configuration script (``const THEBE_JS_URL = ...``) after the builder has
    started, so Sphinx 7 emits it twice and the browser raises "Identifier
    'THEBE_JS_URL' has already been declared" on every page."""
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, kept = set(), []
    for js in scripts:
        attributes = getattr(js, "attributes", {}) or {}
        key = (os.fspath(getattr(js, "filename", None) or ""),
               tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    context["script_files"] = kept


# ------------------------------------------------------------------ figure files


def _figure_links(app, doctree, docname) -> None:
    """Turn each link to ``/figures/...`` into a link relative to the page, checking
    that the file is in the site's sources."""
    from docutils import nodes
    from sphinx.util import logging
    from sphinx.util.osutil import relative_uri

    if app.builder.format != "html":
        return
    prefix = f"/{SITE_FIGURES}/"
    for node in doctree.findall(nodes.reference):
        uri = node.get("refuri", "")
        if not uri.startswith(prefix):
            continue
        target = uri[1:]
        if ".." in Path(target).parts or not (Path(app.srcdir) / target).is_file():
            logging.getLogger(__name__).warning(
                f"figure file {target} is not in the site's sources (linked from {docname})",
                location=node)
            continue
        node["refuri"] = relative_uri(app.builder.get_target_uri(docname), target)
        node["internal"] = True
        node["classes"].append("figure-file")


def _copy_figures(app, exception) -> None:
    """Copy the site's ``figures/`` folder into the HTML output."""
    if exception is not None or app.builder.format != "html":
        return
    source = Path(app.srcdir) / SITE_FIGURES
    if source.is_dir():
        shutil.copytree(source, Path(app.outdir) / SITE_FIGURES, dirs_exist_ok=True)


# ----------------------------------------------------------------- citation


def read_citation(folder: str | os.PathLike) -> dict[str, Any]:
    """``CITATION.cff`` of ``folder`` as a dict (``FileNotFoundError`` if absent)."""
    import yaml

    data = yaml.safe_load((Path(folder) / CITATION_FILE).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{CITATION_FILE} is not a YAML mapping")
    return data


def _bibtex_name(person: Mapping[str, Any]) -> str:
    """One CFF person or entity as a BibTeX name: ``Family, Given`` or ``{Entity}``."""
    if person.get("family-names"):
        given = person.get("given-names")
        return f"{person['family-names']}, {given}" if given else str(person["family-names"])
    return "{" + str(person.get("name", "")).strip() + "}"


def book_bibtex(cff: Mapping[str, Any], key: str = "alignbook") -> str:
    """A BibTeX ``@software`` entry for the book, from its ``CITATION.cff`` (title,
    authors, version, license, repository, release date when there is one)."""
    fields: list[tuple[str, str]] = [
        ("title", "{" + str(cff["title"]) + "}"),
        ("author", " and ".join(_bibtex_name(a) for a in cff.get("authors", []))),
        ("version", str(cff["version"])),
    ]
    released = str(cff.get("date-released") or "")
    if released:
        fields.append(("year", released[:4]))
    if cff.get("license"):
        fields.append(("license", str(cff["license"])))
    url = cff.get("repository-code") or cff.get("url")
    if url:
        fields.append(("url", str(url)))
    for ident in cff.get("identifiers") or []:
        if ident.get("type") == "doi":
            fields.append(("doi", str(ident["value"])))
    width = max(len(name) for name, _ in fields)
    body = ",\n".join(f"  {name:<{width}} = {{{value}}}" for name, value in fields)
    return f"@software{{{key},\n{body}\n}}"


def bib_entry(text: str, key: str) -> str:
    """The entry ``key`` of BibTeX ``text``, exactly as written (braces balanced)."""
    match = re.search(r"@\w+\s*\{\s*" + re.escape(key) + r"\s*,", text)
    if not match:
        raise KeyError(key)
    depth, start = 0, match.start()
    for i in range(text.index("{", start), len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i + 1]
    raise ValueError(f"unbalanced braces in the BibTeX entry {key!r}")


def cff_text(value: Any) -> str:
    """A ``CITATION.cff`` value as prose: people and entities by name (``A, B and C``)."""
    if isinstance(value, list):
        names = [cff_text(v) for v in value]
        return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]
    if isinstance(value, Mapping):
        if value.get("family-names"):
            return " ".join(str(value[k]) for k in ("given-names", "family-names") if value.get(k))
        return str(value.get("name", ""))
    return str(value)


def _citation(env) -> dict[str, Any]:
    for folder in (env.app.confdir, env.app.srcdir):
        if (Path(folder) / CITATION_FILE).is_file():
            env.note_dependency(str(Path(folder) / CITATION_FILE))
            return read_citation(folder)
    raise FileNotFoundError(f"no {CITATION_FILE} in {env.app.confdir} or {env.app.srcdir}")


def _cff_role(name, rawtext, text, lineno, inliner, options=None, content=()):
    """``{cff}`field```: the value of a top-level field of ``CITATION.cff``."""
    from docutils import nodes

    env = inliner.document.settings.env
    try:
        value = _citation(env)[text.strip()]
    except (FileNotFoundError, KeyError, ValueError) as exc:
        msg = inliner.reporter.error(f"{{cff}}`{text}`: {exc}", line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    return [nodes.inline(rawtext, cff_text(value), classes=["cff-" + text.strip()])], []


def _bibtex_directive():
    from docutils import nodes
    from sphinx.util.docutils import SphinxDirective

    class BibtexEntry(SphinxDirective):
        """``bibtex-entry KEY``: the BibTeX of the book (``book``) or of a bibliography
        entry, as a code block a reader can copy."""

        required_arguments = 1

        def run(self):
            key = self.arguments[0]
            try:
                if key == "book":
                    text = book_bibtex(_citation(self.env))
                else:
                    text = None
                    for bib in getattr(self.config, "bibtex_bibfiles", None) or []:
                        path = Path(self.env.srcdir) / bib
                        self.env.note_dependency(str(path))
                        try:
                            text = bib_entry(path.read_text(encoding="utf-8"), key)
                            break
                        except KeyError:
                            continue
                    if text is None:
                        raise KeyError(f"no entry {key!r} in the bibliography files")
            except (FileNotFoundError, KeyError, ValueError) as exc:
                return [self.state.document.reporter.error(f"bibtex-entry {key}: {exc}",
                                                           line=self.lineno)]
            block = nodes.literal_block(text, text, language="bibtex")
            block["classes"].append("bibtex-entry")
            return [block]

    return BibtexEntry


def setup(app) -> dict[str, Any]:
    """Sphinx entry point: small fixes to the rendered pages, the figure files, and the
    citation role and directive."""
    app.connect("html-page-context", _dedupe_scripts)
    app.connect("doctree-resolved", _figure_links)
    app.connect("build-finished", _copy_figures)
    app.add_role("cff", _cff_role)
    app.add_directive("bibtex-entry", _bibtex_directive())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
