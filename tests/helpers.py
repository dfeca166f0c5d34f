"""What several test modules need: the repository root, what an executed chapter glued,
and the figure labels of a chapter's page."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]


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


def figure_names(chapter: str) -> set[str]:
    """The ``:name:`` labels of the figures on ``chapter``'s page."""
    nb = nbformat.read(REPO / "book" / f"{chapter}.ipynb", as_version=4)
    return {n for c in nb.cells if c.cell_type == "markdown"
            for n in re.findall(r":name: (\S+)", c.source)}
