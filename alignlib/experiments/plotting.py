"""Plotting helpers shared by the chapters (seaborn / matplotlib).

Figures are labelled and legible on the page and in print: one idea per panel, axes with
units, and power-law fits drawn where a chapter quotes a slope. The book shows a figure
of width ``w`` inches at ``100 w`` pixels, shrunk to the text column (about 700 pixels
wide), so a 10-inch figure appears at two thirds of its size: :func:`set_style` sets
fonts that stay legible there, and a white figure that reads on the site's light and
dark themes alike.
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


#: Font sizes (points) of the book's figures: legible when a 10-inch figure is shown in the
#: text column (about 12 pixels for tick labels and legends; a figure wider than about 12
#: inches shrinks them below 10 pixels).
FONT_SIZES = {"font.size": 14, "axes.titlesize": 14, "axes.labelsize": 14,
              "xtick.labelsize": 13, "ytick.labelsize": 13, "legend.fontsize": 12.5,
              "legend.title_fontsize": 13, "figure.titlesize": 15}


def set_style() -> None:
    """The book's figure style: seaborn's white grid, :data:`FONT_SIZES`, lines and
    markers to match, and an opaque white background (figure and axes), so that a
    figure reads the same on the site's dark theme and in print. Legends take their
    size from here; chapters need not set font sizes."""
    sns.set_theme(context="notebook", style="whitegrid", rc={
        "figure.dpi": 100, "savefig.bbox": "tight", "savefig.pad_inches": 0.08,
        **FONT_SIZES,
        "lines.linewidth": 1.8, "lines.markersize": 6,
        "figure.facecolor": "white", "axes.facecolor": "white",
        "savefig.facecolor": "white", "savefig.edgecolor": "white", "savefig.transparent": False,
        "legend.framealpha": 0.9})


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


def dodge(i: int, k: int, step: float = 0.06) -> float:
    """Multiplicative x-offset of the ``i``-th of ``k`` series on a log axis, so that their
    error bars at the same x do not overlap: ``2 ** (step * (i - (k - 1) / 2))``."""
    return 2 ** (step * (i - (k - 1) / 2))


def interval_errorbars(ax: plt.Axes, x, mean, low, high, *, settled=None, **kw) -> None:
    """Means at ``x`` with error bars from ``low`` to ``high`` (a NaN bound draws no bar),
    joined by a line; ``kw`` go to :meth:`~matplotlib.axes.Axes.errorbar` (``color``,
    ``label``, ``ls``). With ``settled`` (one boolean per point) a point's marker is filled
    where its runs converged and open where they had not; without it every marker is
    filled."""
    x, mean, low, high = (np.asarray(v, float) for v in (x, mean, low, high))
    yerr = np.maximum(np.nan_to_num([mean - low, high - mean]), 0)
    if settled is None:
        ax.errorbar(x, mean, yerr=yerr, marker="o", capsize=3, **kw)
        return
    ax.errorbar(x, mean, yerr=yerr, capsize=3, **kw)
    settled = np.asarray(settled, bool)
    ax.plot(x[settled], mean[settled], "o", color=kw.get("color"))
    ax.plot(x[~settled], mean[~settled], "o", mfc="white", color=kw.get("color"))


def log_axis(ax: plt.Axes, ticks: Sequence[float], *, base: float = 10, fmt: str = "{:g}",
             label: str | None = None) -> None:
    """A logarithmic x axis with ticks at the values a sweep trained (``fmt`` formats
    their labels, e.g. ``"{:,}"`` for sizes) and no minor ticks."""
    ax.set_xscale("log", base=base)
    ax.set_xticks(list(ticks), [fmt.format(t) for t in ticks])
    ax.minorticks_off()
    if label is not None:
        ax.set_xlabel(label)


def chance_line(ax: plt.Axes, level: float, **kw) -> None:
    """A dotted grey line at the accuracy (or error) of guessing, ``level`` (``kw``: e.g. a
    ``label`` for the legend)."""
    ax.axhline(level, color="grey", ls=":", lw=1, **kw)
