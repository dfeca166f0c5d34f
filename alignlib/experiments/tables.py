"""The chapters' tables as text: Markdown pipe tables, ``mean [low, high]`` intervals and
rule-by-setting grids, for ``{glue:md}`` and ``{glue:text}`` in the book's pages."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["markdown_table", "format_ci", "format_range", "join_words", "rule_grid"]


def markdown_table(table: pd.DataFrame, formats: Mapping[str, str] | None = None,
                   default: str = ".3f") -> str:
    """A DataFrame as a Markdown pipe table for ``{glue:md}``; ``formats`` maps a column
    to a format spec for its numbers (``default`` for other float columns). NaN prints as
    an en dash."""
    formats = dict(formats or {})

    def cell(column, value) -> str:
        if isinstance(value, (float, np.floating)):
            if not np.isfinite(value):
                return "–"
            spec = formats.get(column, default)
            return format(int(round(value)) if spec.endswith("d") else float(value), spec)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and column in formats:
            return format(int(value), formats[column])
        return str(value)

    columns = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] * len(columns)) + "|"]
    values = [table[c].tolist() for c in table.columns]
    for i in range(len(table)):
        lines.append("| " + " | ".join(cell(c, v[i]) for c, v in zip(table.columns, values)) + " |")
    return "\n".join(lines)


def format_ci(mean: float, low: float, high: float, fmt: str = ".3f", scale: float = 1.0,
              unit: str = "") -> str:
    """``"0.873 [0.850, 0.896]"``: a mean and its interval as text (``scale`` multiplies
    all three, e.g. 100 for percentage points; NaN bounds are left out; NaN mean gives
    ``"–"``)."""
    if mean is None or not np.isfinite(mean):
        return "–"
    text = format(mean * scale, fmt) + unit
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        text += f" [{format(low * scale, fmt)}, {format(high * scale, fmt)}]"
    return text


def format_range(low: float, high: float, fmt: str = "g") -> str:
    """``"20–80"``: the range of a quantity over a sweep, both ends formatted with ``fmt``."""
    return f"{format(low, fmt)}–{format(high, fmt)}"


def join_words(items: Iterable[str], last: str = "and", empty: str = "none") -> str:
    """``"a, b and c"`` (``last`` joins the last two; ``empty`` if there are no items)."""
    items = list(items)
    if len(items) < 2:
        return items[0] if items else empty
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def rule_grid(table: pd.DataFrame, cells: Sequence[str], *, column: str, header: str,
              order: Sequence[str], labels: Mapping[str, str] | None = None) -> str:
    """A Markdown grid with one row per learning rule and one column per value of
    ``column`` (a width, a training-set size, a learning rate).

    ``table`` has a ``rule`` column and ``column``; ``cells`` holds the text of each of its
    rows (e.g. ``"0.873 [0.850, 0.896]"``). Rows follow ``order`` (a rule missing from the
    table gets a row of en dashes) and are named by ``labels`` (default: the rule names);
    columns are headed ``header.format(value)`` (e.g. ``"width {}"``, ``"{:,} images"``).
    """
    grid = (table.assign(cell=list(cells)).pivot(index="rule", columns=column, values="cell")
            .reindex(list(order)))
    grid.index = [(labels or {}).get(r, r) for r in grid.index]
    grid.columns = [header.format(v) for v in grid.columns]
    return markdown_table(grid.rename_axis("rule").reset_index().fillna("–"))
