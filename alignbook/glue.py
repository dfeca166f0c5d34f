"""Helpers for chapters: glue numbers, text, figures and scorecard records into a page.

Used inside the notebooks (light imports):

- :func:`glue_number` glues a number, already formatted, for ``{glue:text}`` in a
  Markdown cell; :func:`glue_text` glues a string without quotes.
- :func:`glue_figure` saves a figure into a :class:`~alignbook.results.ResultStore`
  (PNG + PDF with provenance), glues the figure for a ``glue:figure`` directive and
  glues a "Reproduce this figure" note (key ``<name>_note``) for ``{glue:md}``, with
  links to the figure's PNG, PDF, data (CSV) and provenance in the site.
- :func:`glue_claim` glues a scorecard record's verdict and measurement.
- :func:`figure_note` and :func:`reproduce_command` build that note / command;
  :func:`figure_files` lists the files the note links to (copied into the site by
  :func:`alignbook.site.render_site`).
"""

from __future__ import annotations

import shlex
from typing import Any, Mapping

import yaml

from alignbook import results as _results
from alignbook.sphinx_ext import SITE_FIGURES

__all__ = ["glue_number", "glue_numbers", "glue_text", "glue_figure", "glue_claim", "figure_note",
           "figure_files", "reproduce_command", "format_value", "SITE_FIGURES", "FIGURE_RECORD"]

def format_value(value: Any) -> str:
    """A parameter value as the YAML text ``alignbook run -p NAME VALUE`` parses
    back to the same value (``[64, 256]``, ``0.001``, ``digits``, ``'true'``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=True)
    text = text.strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    elif text.endswith("..."):
        text = text[:-3].strip()
    return text


def reproduce_command(chapter: str, profile: str, params: Mapping[str, Any]) -> str:
    """The shell command that re-runs ``chapter`` with exactly ``params``:
    ``alignbook run CHAPTER --profile P -p NAME VALUE ...`` (``profile`` itself,
    if present in ``params``, is given by ``--profile``)."""
    parts = ["alignbook", "run", chapter, "--profile", profile]
    for name in sorted(params):
        if name == "profile":
            continue
        value = params[name]
        parts += ["-p", name, "''" if value == "" else shlex.quote(format_value(value))]
    return " ".join(parts)


#: ``SITE_FIGURES``: the folder (relative to the site's source root) into which the site
#: rendering (:func:`alignbook.site.render_site`) copies each figure's files from the
#: results folder, so that the caption's links are links of the site itself.
#: Key, in the glued note's ``text/markdown`` output metadata, of the figure's file
#: record: ``{"figure": name, "files": {site path: path below the results root}}``.
FIGURE_RECORD = "alignbook_figure"


def _figure_tables(store: _results.ResultStore, name: str, data: Any) -> list[str]:
    """The CSV file names of the table(s) figure ``name`` plots (see :func:`glue_figure`)."""
    if data is None:
        return sorted(f for f in store.files() if f.endswith(".csv"))
    if isinstance(data, str):
        data = [data]
    if hasattr(data, "to_csv"):  # a DataFrame: saved beside the figure
        return [store.save_table(data, f"{name}_data").name]
    names = []
    for table in data:
        if not store.has_table(table):
            raise ValueError(f"figure {name!r}: no finished table {table!r} in {store.path.name}/")
        names.append(f"{table}.csv")
    return names


def figure_files(store: _results.ResultStore, name: str,
                 tables: list[str] | None = None) -> dict[str, str]:
    """``{site path: path below the results root}`` of figure ``name``'s files: the
    PNG, the PDF, the tables it plots (``tables``: CSV file names in the store) and
    ``provenance.json``. Site paths are ``figures/<chapter>/<hash>/<file>``: paths
    of the site's source tree, never of this machine."""
    folder = store.path.relative_to(store.root).as_posix()
    site = f"{SITE_FIGURES}/{store.chapter}/{store.hash}"
    names = [f"{name}.png", f"{name}.pdf", *(tables or []), _results.PROVENANCE]
    return {f"{site}/{f}": f"{folder}/{f}" for f in dict.fromkeys(names)}


def figure_note(store: _results.ResultStore, name: str, tables: list[str] | None = None) -> str:
    """Markdown text for figure ``name``'s caption (via ``{glue:md}``): the command that
    reproduces it, and links to its PNG, PDF, data (CSV) and provenance. The links
    point into the site (``/figures/<chapter>/<hash>/...``, from the site's root),
    where the site rendering copies the files; :mod:`alignbook.sphinx_ext` makes each
    link relative to its page and ships the files with the site."""
    cmd = reproduce_command(store.chapter, store.profile, store.params)
    links = []
    for path in figure_files(store, name, tables):
        file = path.rsplit("/", 1)[1]
        if file == _results.PROVENANCE:
            text = "provenance (JSON)"
        elif file.endswith(".csv"):
            stem = file[: -len(".csv")]
            text = "data (CSV)" if stem in (name, f"{name}_data") or len(tables or []) == 1 \
                else f"data: {stem} (CSV)"
        else:
            text = file.rsplit(".", 1)[1].upper()
        links.append(f"[{text}](/{path})")
    return f"Reproduce this figure: `{cmd}`. Files: {', '.join(links)}."


class _FigureNote:
    """The glued caption note of a figure: Markdown, with the record of the figure's
    files in the output's metadata (``FIGURE_RECORD``) for the site rendering."""

    def __init__(self, text: str, record: dict):
        self.text = text
        self.record = record

    def __repr__(self) -> str:
        return self.text

    def _repr_markdown_(self):
        return self.text, {FIGURE_RECORD: self.record}


class _Formatted:
    """A value whose text form (what ``{glue:text}`` pastes) is pre-formatted."""

    def __init__(self, value: Any, text: str):
        self.value = value
        self.text = text

    # myst-nb's {glue:text} passes text/plain through ast.literal_eval to strip quotes,
    # so the plain text is the *repr* of the string: "1,500" must not become (1, 500)
    # nor "+0.43" lose its sign.
    def __repr__(self) -> str:
        return repr(self.text)

    def _repr_pretty_(self, p, cycle) -> None:  # IPython's text/plain
        p.text(repr(self.text))


def glue_number(name: str, value: Any, fmt: str | None = None, display: bool = False) -> Any:
    """Glue a number for use in a Markdown cell as ``{glue:text}`name```.

    Arguments:
        name: the glue key (unique within the notebook).
        value: the number (numpy scalars and 0-d arrays are converted).
        fmt: a format spec such as ``".3f"``, ``".1%"`` or ``".2e"``; the pasted
            text is ``format(value, fmt)``. ``None`` pastes ``repr``.
        display: also show the number in the notebook.

    Returns ``value`` (as a Python number), so it can be used inline.
    """
    from myst_nb import glue

    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    text = format(value, fmt) if fmt else repr(value)
    glue(name, _Formatted(value, text), display=display)
    return value


def glue_numbers(numbers: Mapping[str, tuple[Any, str | None]]) -> None:
    """:func:`glue_number` for each ``{name: (value, fmt)}`` of ``numbers`` (the form in
    which the experiment modules hand a page the numbers its prose quotes)."""
    for name, (value, fmt) in numbers.items():
        glue_number(name, value, fmt)


def glue_text(name: str, text: str, display: bool = False) -> str:
    """Glue a string for ``{glue:text}`name``` so that it is pasted as is (a
    plain ``glue`` of a str pastes its repr, quotes included)."""
    from myst_nb import glue

    text = str(text)
    glue(name, _Formatted(text, text), display=display)
    return text


def glue_claim(claim) -> None:
    """Glue a scorecard record (:class:`alignlib.claims.Claim`) for its page:
    ``verdict_<id>`` and ``measured_<id>`` (dashes in the id become underscores), for
    ``{glue:text}`` in the chapter's prose and summary."""
    key = claim.claim.replace("-", "_")
    glue_text(f"verdict_{key}", claim.verdict)
    glue_text(f"measured_{key}", claim.measured)


def glue_figure(
    store: _results.ResultStore,
    name: str,
    fig: Any,
    *,
    data: Any = None,
    dpi: int = 150,
    close: bool = True,
) -> None:
    """Save ``fig`` into ``store`` as ``<name>.png``/``.pdf`` and glue it.

    ``data`` is what the figure plots, offered beside it as CSV: a DataFrame (saved
    as ``<name>_data.csv``), or the name(s) of tables already saved in ``store``;
    ``None`` offers every table of the store.

    Glues two keys: ``name`` (the saved PNG itself, provenance metadata included,
    for a ``glue:figure`` directive; shown at the figure's size in inches x 100
    pixels) and ``<name>_note`` (Markdown from :func:`figure_note`, for
    ``{glue:md}`` in the caption: the command that reproduces the figure and links
    to its PNG, PDF, CSV and provenance, which the site rendering copies into the
    site). Gluing the saved file rather than the live figure means the book shows
    exactly the file in the results folder, whatever matplotlib backend the
    notebook uses. Closes the figure (unless ``close=False``) so that the notebook
    does not display it a second time. The files are ``store.path / f"{name}.png"``
    and ``.pdf``.
    """
    from IPython.display import Image
    from myst_nb import glue

    tables = _figure_tables(store, name, data)
    paths = store.save_figure(fig, name, dpi=dpi)
    width = int(round(fig.get_figwidth() * 100))
    glue(name, Image(data=paths["png"].read_bytes(), format="png", width=width), display=False)
    record = {"figure": name, "files": figure_files(store, name, tables)}
    glue(f"{name}_note", _FigureNote(figure_note(store, name, tables), record), display=False)
    if close:
        try:
            import matplotlib.pyplot as plt

            plt.close(fig)
        except Exception:  # pragma: no cover - not a pyplot figure
            pass
