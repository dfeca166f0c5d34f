"""A tiny Sphinx extension, listed in ``_config.yml`` under ``sphinx.extra_extensions``."""

from __future__ import annotations

import os
from typing import Any


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


def setup(app) -> dict[str, Any]:
    """Sphinx entry point: small fixes to the rendered pages."""
    app.connect("html-page-context", _dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
