"""What an executed chapter glued, read the way the book reads it."""

from __future__ import annotations

from pathlib import Path

import nbformat


def glued(nb_path: Path) -> dict[str, str]:
    """``{glue name: text}`` of an executed notebook: the text ``{glue:text}`` pastes
    (myst-nb's own reading of each papermill record)."""
    from myst_nb.core.variables import format_plain_text

    nb = nbformat.read(nb_path, as_version=4)
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "application/papermill.record/text/plain" in data:
                out[o["metadata"]["scrapbook"]["name"]] = format_plain_text(
                    data["application/papermill.record/text/plain"], "")
    return out
