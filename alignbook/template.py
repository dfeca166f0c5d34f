"""A new chapter: ``alignbook new NAME`` writes a template notebook with a parameters
cell, a results store and a glued figure."""

from __future__ import annotations

import os
from pathlib import Path

from alignbook.pipeline import KERNEL_NAME, BookError

__all__ = ["new_chapter_notebook"]

_TEMPLATE_CELLS: list[tuple[str, list[str], str]] = [
    ("markdown", [], """\
# {title}

What this chapter shows, in two or three sentences, and which claim of the paper it
checks. What it needs: the profile it was published with and how long it takes."""),
    ("code", ["parameters"], """\
profile = "cpu"  # set by alignbook: tiny, cpu or gpu (book/profiles.yml)
widths = [8, 16, 32, 64]  # hidden-layer widths
lr = 1.0  # learning rate
seed = 0  # random seed"""),
    ("code", [], """\
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from alignbook.glue import glue_figure, glue_number, glue_text
from alignbook.results import ResultStore

# every parameter that changes a number, i.e. all of them except `profile`
store = ResultStore("{chapter}", profile, dict(widths=widths, lr=lr, seed=seed))
glue_text("profile", profile)"""),
    ("code", [], """\
def run_width_sweep() -> pd.DataFrame:
    \"\"\"One row per (experiment, rule, width, lr, seed, epoch, metric).\"\"\"
    rng = np.random.default_rng(seed)
    rows = []
    for width in widths:
        value = width ** -0.5 * (1 + 0.05 * rng.normal())  # replace with a call into alignlib
        rows.append(dict(experiment="width_sweep", rule="backprop", width=width, lr=lr,
                         seed=seed, epoch=0, metric="relative_weight_change", value=value))
    return pd.DataFrame(rows)


sweep = store.cached("width_sweep", run_width_sweep)  # reused when these parameters ran before
sweep.head()"""),
    ("code", [], """\
slope = np.polyfit(np.log(sweep.width), np.log(sweep.value), 1)[0]
glue_number("width_sweep_slope", slope, ".2f")

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.loglog(sweep.width, sweep.value, "o-", label="backprop")
ax.set_xlabel("width $n$")
ax.set_ylabel("relative weight change")
ax.legend()
glue_figure(store, "width_sweep", fig, data=sweep)  # PNG, PDF and the plotted table, with provenance"""),
    ("markdown", [], """\
The relative weight change falls with width with a fitted slope of
{{glue:text}}`width_sweep_slope` on log-log axes ({{numref}}`fig-{chapter}-width-sweep`).

:::{{glue:figure}} width_sweep
:name: fig-{chapter}-width-sweep
:alt: Relative weight change against width, log-log axes

Relative weight change against width. {{glue:md}}`width_sweep_note`
:::"""),
    ("markdown", [], """\
## Summary

What the chapter found, in a few sentences, with the glued numbers. This page was
built with the {{glue:text}}`profile` profile."""),
]


def new_chapter_notebook(path: str | os.PathLike, chapter: str, title: str) -> Path:
    """Write a chapter notebook from the template: title cell, ``parameters``
    cell (with ``profile``) and its constraints (notebook metadata), a ResultStore, a
    cached tidy table, a glued number, a glued figure with label, alt text, caption and
    reproduce note, and a summary.
    Refuses to overwrite an existing file."""
    import nbformat

    path = Path(path)
    if path.exists():
        raise BookError(f"{path} exists; not overwriting it")
    if not chapter.isidentifier():
        raise BookError(f"chapter names must be identifiers (letters, digits, _), got {chapter!r}")
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": KERNEL_NAME, "display_name": "Python 3 (ipykernel)",
                              "language": "python"}
    nb.metadata.language_info = {"name": "python"}
    # checked before any kernel starts (alignbook.parameters.CONSTRAINTS; `alignbook params`)
    nb.metadata["alignbook"] = {"constraints": {
        "widths": ["non_empty", "positive", "unique"], "lr": ["positive"], "seed": ["non_negative"]}}
    for kind, tags, text in _TEMPLATE_CELLS:
        source = text.format(title=title, chapter=chapter)
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        if tags:
            cell.metadata.tags = list(tags)
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path
