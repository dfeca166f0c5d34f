"""Plotting helpers shared by the chapters (seaborn / matplotlib).

Figures are small, labelled and legible in print: one idea per panel, axes with units,
and power-law fits drawn where a chapter quotes a slope.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from alignlib.statistics import power_law_fit  # noqa: E402

RULE_LABELS = {
    "backprop": "backprop",
    "align_zero": "Align-zero",
    "align_ada": "Align-ada",
    "align_prop": "Align-prop",
    "fa": "FA",
    "dfa": "DFA",
    "readout": "readout only",
}
"""How rule names are written in figures."""


def set_style() -> None:
    """The book's figure style."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1,
                  rc={"figure.dpi": 100, "savefig.bbox": "tight"})


def rule_palette(rules: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per rule, so every chapter draws a rule in the same colour."""
    colours = sns.color_palette("colorblind", len(RULE_LABELS))
    fixed = dict(zip(RULE_LABELS, colours))
    return {r: fixed.get(r, (0.3, 0.3, 0.3)) for r in rules}


def loglog_with_fits(ax: plt.Axes, table: pd.DataFrame, *, x: str, y: str, hue: str,
                     labels: dict | None = None, palette: dict | None = None,
                     fit: bool = True, marker: str = "o", linestyle: str = "-") -> dict:
    """Draw ``y`` against ``x`` on log-log axes, one line per ``hue`` value, with dashed
    power-law fits; the legend shows each fitted slope. Returns {hue value: slope}."""
    slopes = {}
    groups = list(table.groupby(hue, sort=False))
    colours = palette or dict(zip([g for g, _ in groups],
                                  sns.color_palette("colorblind", len(groups))))
    for value, group in groups:
        group = group.groupby(x, as_index=False)[y].mean().sort_values(x)
        label = (labels or {}).get(value, str(value))
        colour = colours.get(value)
        if fit:
            fit = power_law_fit(group[x], group[y])
            slope, intercept = fit["slope"], fit["intercept"]
            slopes[value] = slope
            xs = np.geomspace(group[x].min(), group[x].max(), 50)
            ax.plot(xs, np.exp(intercept) * xs ** slope, "--", color=colour, lw=1, alpha=0.7)
            label = f"{label} (slope {slope:+.2f})"
        ax.plot(group[x], group[y], marker=marker, linestyle=linestyle, color=colour,
                label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    return slopes
