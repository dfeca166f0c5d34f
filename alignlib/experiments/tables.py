"""The chapters' tables as text: Markdown pipe tables and ``mean [low, high]`` intervals,
for ``{glue:md}`` and ``{glue:text}`` in the book's pages."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

__all__ = ["markdown_table", "format_ci"]


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
