"""The recurrent chapter's figures, drawn from the tidy tables of
:mod:`alignlib.experiments.recurrent_analysis`.

Each function returns ``(figure, data)``: a matplotlib figure and the tidy table it
plots, which the chapter saves beside it. Rules keep the book's colours
(:func:`alignlib.experiments.plotting.rule_palette`) and the chapter's names
(:data:`~alignlib.experiments.recurrent_analysis.LABELS`).
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from alignlib.convergence import window
from alignlib.experiments import recurrent as rec
from alignlib.experiments.plotting import RULE_LABELS, rule_palette
from alignlib.experiments.recurrent_analysis import LABELS, WEIGHTED_LAYERS, Analysis, init_errors

__all__ = ["init_updates", "training_curves", "best_loss", "distance_to_bptt", "authors_run"]

PALETTE = rule_palette(list(RULE_LABELS))
LAYER_NAMES = {"initial_state": "initial state $h_0$", "input": "input $W_{ih}, b_h$",
               "recurrent": "recurrence $W_{hh}$", "readout": "readout $w_{ho}, b_o$"}


def init_updates(init: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    """Bars, on a log scale, of each rule's relative error to BPTT at initialisation per
    weighted layer (the rules as defined, then the authors' Align-ada, hatched), with
    float32 rounding dotted. ``init``: ``setting, rule, width, site, relative_error``
    (:func:`~alignlib.experiments.recurrent.updates_at_initialisation`); exact zeros are
    drawn at 1e-9."""
    shown, _, _ = init_errors(init)
    sites = list(WEIGHTED_LAYERS)
    fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
    bar = 0.8 / shown.rule.nunique()
    for i, (rule, g) in enumerate(shown.groupby("rule", sort=False)):
        g = g.set_index("site").loc[sites]
        ax.bar(np.arange(len(sites)) + (i - (shown.rule.nunique() - 1) / 2) * bar,
               g.relative_error.clip(lower=1e-9), bar, label=LABELS[rule],
               color=PALETTE.get(rule, (0.3, 0.3, 0.3)), hatch="//" if "authors" in rule else None)
    ax.axhline(1e-5, color="k", ls=":", lw=1, label="$10^{-5}$ (float32 rounding)")
    ax.set_yscale("log")
    ax.set_xticks(range(len(sites)), [LAYER_NAMES[s] for s in sites])
    ax.set(ylabel="relative error to BPTT",
           title=f"updates at initialisation, width {int(init.width.max())}")
    ax.legend()
    return fig, shown


def training_curves(history: pd.DataFrame, a: Analysis, *, epochs: int,
                    reference_loss: float) -> tuple[plt.Figure, pd.DataFrame]:
    """Test (solid, median over seeds, band from best to worst seed) and training loss
    (dotted, median) against epoch, one panel per width of ``a``; a cross at a diverged
    run's last finite test loss; ``reference_loss`` (predicting the training mean per
    step) dashed; the last tenth of the ``epochs``, over which convergence is judged,
    shaded. ``history``: the sweep's tidy table; the data are its finite
    ``heldout_loss`` and ``train_loss`` rows after initialisation, of runs that had not
    diverged at that epoch."""
    widths = list(a.widths)
    ncols = min(len(widths), 3)
    nrows = -(-len(widths) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.4 * nrows), sharey=True,
                             layout="constrained", squeeze=False)
    curves = history[history.metric.isin(["heldout_loss", "train_loss"]) & (history.epoch > 0)]
    curves = curves[np.isfinite(curves.value) & ~curves.diverged]
    diverged = a.convergence.set_index(["rule", "width", "seed"]).diverged
    for ax, width in zip(axes.flat, widths):
        for rule in a.rules:
            for metric, ls in (("heldout_loss", "-"), ("train_loss", ":")):
                g = curves[(curves.width == width) & (curves.rule == rule) & (curves.metric == metric)]
                stats = g.groupby("epoch").value.agg(["median", "min", "max"])
                ax.plot(stats.index, stats["median"], ls, color=PALETTE[rule], lw=1.3,
                        label=LABELS[rule] if metric == "heldout_loss" else None)
                if metric == "heldout_loss":
                    ax.fill_between(stats.index, stats["min"], stats["max"], color=PALETTE[rule],
                                    alpha=0.15, lw=0)
            for seed, g in curves[(curves.width == width) & (curves.rule == rule)
                                  & (curves.metric == "heldout_loss")].groupby("seed"):
                if diverged[(rule, width, seed)]:
                    ax.plot(g.epoch.iloc[-1], g.value.iloc[-1], "x", color=PALETTE[rule], ms=8, mew=2)
        ax.axhline(reference_loss, color="k", ls="--", lw=0.8)
        ax.axvspan(epochs - window(epochs), epochs, color="0.9", zorder=0)
        ax.set_yscale("log")
        ax.set(xlabel="epoch", title=f"width {width}")
    for ax in axes.flat[len(widths):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss (solid: test, dotted: training)")
    axes[0][0].legend()
    return fig, curves


def best_loss(a: Analysis, refs: pd.DataFrame, *, comparable: float,
              epochs: int) -> tuple[plt.Figure, pd.DataFrame]:
    """Left: geometric-mean best test loss with its 95 % interval against width
    (:attr:`Analysis.summary`), with the first row of ``refs``
    (:func:`~alignlib.experiments.recurrent_analysis.reference_lines`) as reference
    lines. Right: each rule's best loss over BPTT's from the same network
    (:attr:`Analysis.ratio`), with the ``comparable`` bound. Data: both tables with a
    ``panel`` column."""
    rules = list(a.rules)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    offsets = dict(zip(rules, np.linspace(-0.12, 0.12, len(rules))))
    for ax, table, shown_rules in ((axes[0], a.summary, rules), (axes[1], a.ratio, rules[1:])):
        for rule in shown_rules:
            g = table[table.rule == rule].sort_values("width")
            xs = g.width * 2 ** offsets[rule]
            ax.errorbar(xs, g["mean"], yerr=[g["mean"] - g.ci_low, g.ci_high - g["mean"]], fmt="o-",
                        ms=4, capsize=3, color=PALETTE[rule], label=LABELS[rule])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    axes[0].axhline(refs["constant_0.5"][0], color="k", ls="--", lw=1, label="always 0.5")
    axes[0].axhline(refs.training_mean[0], color="k", ls=":", lw=1, label="training mean per step")
    axes[0].set(xlabel="width $n$ (hidden units)", ylabel="best test loss (sum over time steps)",
                title="best test loss")
    axes[0].legend(ncol=2, loc="lower left")
    axes[1].axhline(1.0, color=PALETTE["backprop"], lw=1, label="BPTT")
    axes[1].axhline(comparable, color="k", ls=":", lw=1, label=f"{comparable:g} × BPTT")
    axes[1].set(xlabel="width $n$ (hidden units)", ylabel="best test loss / BPTT's (same seed)",
                title="relative to BPTT from the same initial network")
    axes[1].legend(loc="lower left")
    fig.suptitle(f"Add task, {epochs} epochs; geometric mean and 95% interval over "
                 f"{a.best.seed.nunique()} seeds")
    data = pd.concat([a.summary.assign(panel="best test loss"),
                      a.ratio.assign(panel="relative to BPTT")], ignore_index=True)
    return fig, data


def distance_to_bptt(a: Analysis) -> tuple[plt.Figure, pd.DataFrame]:
    """Log-log: each rule's relative output distance to BPTT against width
    (:attr:`Analysis.distances`; dots per seed, circles the mean), with the dashed power
    law of :attr:`Analysis.fits` through the geometric centre of the points, its slope
    in the legend."""
    dist = a.distances
    fits = a.fits.set_index("rule")
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for rule in a.rules[1:]:
        g = dist[dist.rule == rule]
        slope = fits.slope[rule]
        m = g.groupby("width").value.mean()
        label = LABELS[rule] + (f" (slope {slope:+.2f})" if np.isfinite(slope) else "")
        ax.plot(g.width, g.value, ".", color=PALETTE[rule], alpha=0.5)
        ax.plot(m.index, m.values, "o-", color=PALETTE[rule], label=label)
        if np.isfinite(slope):
            xs = np.geomspace(m.index.min(), m.index.max(), 20)
            ref = np.exp(np.mean(np.log(g.value)) - slope * np.mean(np.log(g.width)))
            ax.plot(xs, ref * xs ** slope, "--", color=PALETTE[rule], lw=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(xlabel="width $n$ (hidden units)",
           ylabel=r"$\|f_{rule} - f_{BPTT}\|_F \;/\; \|f_{BPTT} - f(0)\|_F$",
           title="distance of the trained outputs to BPTT's (test sequences)")
    ax.legend()
    return fig, dist


def authors_run(authors: pd.DataFrame, *, widths: Sequence[int], rules: Sequence[str],
                defined_rules: Sequence[str], epochs: int) -> tuple[plt.Figure, pd.DataFrame]:
    """The authors' run repeated from their seed: test loss against epoch, one panel per
    width; solid their code path for each of ``rules``, dashed the rule as defined for
    ``defined_rules``, a marker at each best epoch and a triangle at the right edge for
    the best test loss their script printed. ``authors``:
    :func:`~alignlib.experiments.recurrent.authors_seed_run`'s tables (``rule, width,
    epoch, metric, value``); a placeholder panel without ``widths``."""
    if not widths:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "not run in this profile", ha="center")
        return fig, authors
    fig, axes = plt.subplots(1, len(widths), figsize=(min(5.2 * len(widths), 13), 3.8),
                             sharey=True, layout="constrained", squeeze=False)
    test = authors[(authors.metric == "heldout_loss") & (authors.epoch > 0)]
    for ax, width in zip(axes[0], widths):
        for rule in rules:
            colour = PALETTE[rule]
            for name, ls in ((rec.rule_for("authors_code", rule).name, "-"),
                             (rule if rule in defined_rules else None, "--")):
                g = test[(test.width == width) & (test.rule == name)]
                if name is None or g.empty:
                    continue
                ax.plot(g.epoch, g.value, ls, color=colour, lw=1.2,
                        label=LABELS[name] if ls == "-" else f"{LABELS[rule]} (as defined)")
                i = g.value.idxmin()
                ax.plot(g.epoch[i], g.value[i], "o" if ls == "-" else "s", color=colour, ms=4,
                        mfc="none" if ls == "--" else colour)
            theirs = rec.AUTHORS_BEST_TEST_LOSS.get(width, {}).get(rule)
            if theirs is not None:
                ax.plot([epochs], [theirs], marker=">", color=colour, ms=9, ls="none", clip_on=False)
        ax.set_yscale("log")
        ax.set(xlabel="epoch", title=f"their seed, width {width}")
    axes[0][0].set_ylabel("test loss (their test batches)")
    axes[0][0].legend()
    return fig, authors
