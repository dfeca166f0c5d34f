"""The rules chapter: learning rules against width, with settings chosen by measurement.

1. :func:`learning_rate_plan` measures, at every width, the top eigenvalue of the
   empirical NTK at initialisation and the stable bound ``lr_max = B K / lambda_max``
   (:mod:`alignlib.stability`), and lays the learning-rate grid out as fractions of it,
   so the grid reaches the bound at every width and one fraction gives a *common*
   learning rate that every rule shares at that width.
2. The sweep itself is :func:`alignlib.experiments.feedforward.width_sweep` with a convergence
   tolerance: each (rule, width) trains until all its runs have converged.
3. :func:`analyse` reduces the sweep: best-lr and common-lr accuracies with intervals,
   paired gaps to backprop, the slope of the gap against ``log2(width)`` with its
   interval, and which runs converged.
4. :func:`claims` turns that into scorecard records.
5. The rest of the page: the learning-rate sweep (:func:`lr_sweep_summary`), the standard
   parameterisation trained with Adam (:func:`analyse_adam`), learning curves
   (:func:`curves`) and times per epoch; the ``figure_*`` functions draw the page's figures
   and the ``*_table`` functions write its Markdown tables.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from alignlib import claims as C
from alignlib.convergence import convergence_table
from alignlib.experiments import feedforward as ff
from alignlib.experiments import points as P
from alignlib.experiments.plotting import (RULE_LABELS, chance_line, dodge, interval_errorbars,
                                           log_axis, rule_palette)
from alignlib.experiments.tables import format_ci, markdown_table, rule_grid
from alignlib.statistics import linear_fit

__all__ = ["ALIGN_RULES", "FEEDBACK_RULES", "learning_rate_plan", "lrs_by_width", "sweep", "Analysis",
           "analyse", "claims", "bounds", "bounds_table", "figure_width_sweep", "accuracy_table",
           "learning_rate_table", "widest_accuracies", "slope_texts", "convergence_report", "curves",
           "figure_curves", "lr_sweep_summary", "figure_learning_rates", "first_divergence_text",
           "AdamAnalysis", "analyse_adam", "adam_results_text", "timing_table", "time_ratios"]

ALIGN_RULES = ("align_zero", "align_ada", "align_prop")
FEEDBACK_RULES = ("fa", "dfa")
#: The Align rules whose claims the chapter checks (Align-prop is shown, not claimed).
CLAIMED_ALIGN_RULES = ("align_zero", "align_ada")


def learning_rate_plan(data, widths: Sequence[int], *, fractions: Sequence[float],
                       common_fraction: float, lrs: Sequence[float] = (),
                       wide_fractions: Sequence[float] = (), wide_from: int = 0,
                       sweep_widths: Sequence[int] = (), sweep_fractions: Sequence[float] = (),
                       **network) -> pd.DataFrame:
    """One row per (width, lr) to train: columns ``width, ntk_top_eigenvalue, lr_bound,
    lr, fraction, common, in_width_sweep, in_lr_sweep``.

    ``fractions`` of each width's bound make its grid (``wide_fractions`` instead from
    width ``wide_from`` on, where runs are expensive); ``common_fraction`` (one of them)
    is the learning rate shared by every rule. Explicit ``lrs`` replace the fractions
    (the authors' grid for their ConvNets); the common one is then their median.
    ``sweep_widths`` also train ``sweep_fractions`` of their bound (the learning-rate
    sweep). ``network``: ``arch, depth, strides, bias_multiplier, batch_size`` for
    :func:`alignlib.experiments.feedforward.stable_lr_at_init`.
    """
    fractions = ff._lr_list("lr_fractions", fractions)
    if not lrs and common_fraction not in fractions:
        raise ValueError(f"common_fraction {common_fraction} must be one of lr_fractions {fractions}")
    if wide_fractions and common_fraction not in wide_fractions and not lrs:
        raise ValueError(f"common_fraction {common_fraction} must be one of wide_lr_fractions "
                         f"{list(wide_fractions)}")
    rows = []
    for width in ff._int_list("widths", sorted(set(widths) | set(sweep_widths))):
        measured = ff.stable_lr_at_init(data, width=width, **network)
        grid: dict[float, dict] = {}
        if width in widths:
            if lrs:
                chosen = ff._lr_list("lrs", lrs)
                common = float(np.median(chosen))
                for lr in chosen:
                    grid[lr] = {"fraction": lr / measured["lr_bound"], "common": lr == common}
            else:
                use = wide_fractions if (wide_fractions and wide_from and width >= wide_from) else fractions
                for f in use:
                    (lr,) = ff.lr_grid(measured["lr_bound"], [f])
                    grid[lr] = {"fraction": f, "common": f == common_fraction}
            for entry in grid.values():
                entry["in_width_sweep"] = True
        if width in sweep_widths:
            for f in sweep_fractions:
                (lr,) = ff.lr_grid(measured["lr_bound"], [f])
                grid.setdefault(lr, {"fraction": f, "common": False, "in_width_sweep": False})
                grid[lr]["in_lr_sweep"] = True
        for lr, entry in sorted(grid.items()):
            rows.append({"width": width, **measured, "lr": lr, "fraction": entry["fraction"],
                         "common": entry["common"], "in_width_sweep": entry["in_width_sweep"],
                         "in_lr_sweep": entry.get("in_lr_sweep", False)})
    return pd.DataFrame(rows)


def lrs_by_width(plan: pd.DataFrame) -> dict[int, list[float]]:
    """``{width: [learning rates]}`` of a :func:`learning_rate_plan`."""
    return {int(w): sorted(g.lr.astype(float).tolist()) for w, g in plan.groupby("width")}


def sweep(data, plan: pd.DataFrame, *, rules: Sequence[str], wide_rules: Sequence[str] = (),
          wide_from: int = 0, points_only: bool = False, **kwargs) -> pd.DataFrame:
    """Train every width of ``plan`` at its learning rates (:func:`ff.width_sweep`):
    ``rules`` below width ``wide_from``, ``wide_rules`` (default: ``rules``) from it on,
    where one run costs most. ``kwargs`` go to :func:`ff.width_sweep` (``seeds,
    epochs, convergence_tolerance, arch, depth, ...``). The points of both groups run
    together (:mod:`alignlib.experiments.points`); ``points_only`` returns them instead."""
    by_width = lrs_by_width(plan)
    wide = [w for w in by_width if wide_from and w >= wide_from]
    groups = [([w for w in by_width if w not in wide], list(rules)), (wide, list(wide_rules or rules))]
    sweeps = [ff.width_sweep(data, widths=ws, rules=rs, lrs=[1.0],
                             lrs_by_width={w: by_width[w] for w in ws}, experiment="ntk_sgd",
                             points_only=P.STAGES, **kwargs)
              for ws, rs in groups if ws and rs]
    if points_only:
        return P.list_points(sweeps)
    return pd.concat(P.run_sweeps(sweeps, "ntk_sgd"), ignore_index=True)


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What :func:`analyse` returns (all tidy tables).

    ``convergence``: one row per run (:func:`alignlib.convergence.convergence_table`);
    ``best`` / ``common``: per (rule, width) the mean held-out accuracy over seeds with
    its interval, at the rule's best learning rate / at the common one, plus
    ``converged`` (fraction of the point's runs that converged); ``gaps`` /
    ``common_gaps``: each rule minus backprop, paired by seed (:func:`ff.gap_to_reference`);
    ``slopes``: per rule, the slope of the common-lr gap (points) against ``log2(width)``
    with its interval (NaN where fewer than 3 points); ``versus``: at the widest width
    where FA or DFA trained, each Align rule minus FA and DFA at their best learning
    rates, paired by seed.
    """

    convergence: pd.DataFrame
    best: pd.DataFrame
    common: pd.DataFrame
    gaps: pd.DataFrame
    common_gaps: pd.DataFrame
    slopes: pd.DataFrame
    versus: pd.DataFrame


def _with_convergence(summary: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    share = final.groupby(["rule", "width", "lr"]).converged.mean().rename("converged").reset_index()
    return summary.merge(share, on=["rule", "width", "lr"], how="left")


def analyse(runs: pd.DataFrame, plan: pd.DataFrame, tolerance: float) -> Analysis:
    """Reduce a width sweep trained on ``plan``'s learning rates (only the rows with
    ``in_width_sweep``)."""
    grid = plan[plan.in_width_sweep]
    keep = runs.merge(grid[["width", "lr"]], on=["width", "lr"])
    conv = convergence_table(keep, tolerance, keys=[c for c in ff.RUN_KEYS if c in keep.columns])
    final = ff.final_values(keep).merge(
        conv[["rule", "width", "lr", "seed", "converged"]], on=["rule", "width", "lr", "seed"])
    best = _with_convergence(ff.best_lr(keep, ["rule", "width"]), final)
    common_rows = keep.merge(grid[grid.common][["width", "lr"]], on=["width", "lr"])
    common = _with_convergence(ff.summarise(common_rows, ["rule", "width", "lr"]), final)
    gaps = ff.gap_to_reference(keep, "backprop", ["width"])
    common_gaps = ff.gap_to_reference(common_rows, "backprop", ["width"])

    slopes = []
    cfinal = ff.final_values(common_rows)
    ref = cfinal[cfinal.rule == "backprop"][["width", "seed", "value", "diverged"]]
    for rule in sorted(set(cfinal.rule) - {"backprop"}):
        pairs = cfinal[cfinal.rule == rule].merge(ref, on=["width", "seed"], suffixes=("", "_ref"))
        pairs = pairs[~pairs.diverged & ~pairs.diverged_ref]
        try:
            slope, low, high = linear_fit(np.log2(pairs.width), 100 * (pairs.value - pairs.value_ref))
        except ValueError:
            slope = low = high = float("nan")
        slopes.append({"rule": rule, "slope": slope, "ci_low": low, "ci_high": high,
                       "n": len(pairs), "widths": pairs.width.nunique()})
    slopes = pd.DataFrame(slopes, columns=["rule", "slope", "ci_low", "ci_high", "n", "widths"])

    with_feedback = keep[keep.rule.isin(FEEDBACK_RULES)]
    widest = keep[keep.width == (with_feedback.width.max() if len(with_feedback) else keep.width.max())]
    versus = []
    for fb in FEEDBACK_RULES:
        if fb in set(widest.rule):
            vs = ff.gap_to_reference(widest, fb, ["width"])
            versus.append(vs[vs.rule.isin(ALIGN_RULES)].assign(versus=fb))
    versus = pd.concat(versus, ignore_index=True) if versus else pd.DataFrame(
        columns=["width", "rule", "versus", "gap", "ci_low", "ci_high"])
    return Analysis(conv, best, common, gaps, common_gaps, slopes, versus)


def _ci(mean, low, high, fmt="+.1f", scale=100.0, unit=" points") -> str:
    return format_ci(mean, low, high, fmt, scale, unit)


def _converged(a: Analysis, rules: Sequence[str], width: int | None = None) -> bool:
    best = a.best if width is None else a.best[a.best.width == width]
    part = best[best.rule.isin(["backprop", *rules])]
    return bool(len(part)) and bool((part.converged.fillna(0) == 1).all())


def claims(a: Analysis, *, profile: str, few_points: float, width_figure: str) -> list[C.Claim]:
    """The chapter's scorecard records: Align rules within ``few_points`` of backprop at
    the widest width; Align rules beat FA and DFA there; the gap to backprop shrinks with
    width (slope of the common-lr gap against log2 width)."""
    chapter = "rules"
    widest = int(a.best.width.max())
    align = [r for r in CLAIMED_ALIGN_RULES if r in set(a.best.rule)]
    out = []

    g = a.gaps[(a.gaps.width == widest) & a.gaps.rule.isin(align)].set_index("rule")
    intervals = [(100 * g.ci_low[r], 100 * g.ci_high[r]) for r in align if r in g.index]
    worst = g.gap.idxmin() if len(g) else None
    out.append(C.Claim(
        chapter, "align-within-few-points",
        "In wide networks the Align rules reach backprop's held-out accuracy (within a few points)",
        f"Align rule minus backprop at width {widest}, best learning rates (points)",
        None if worst is None else 100 * g.gap[worst], None if worst is None else 100 * g.ci_low[worst],
        None if worst is None else 100 * g.ci_high[worst],
        "; ".join(f"{r}: {_ci(g.gap[r], g.ci_low[r], g.ci_high[r])}" for r in align if r in g.index) or "–",
        f"every Align rule above -{few_points:g} points, with its 95 % interval",
        C.verdict_of_intervals(intervals, -few_points, converged=_converged(a, align, widest)),
        profile, width_figure))

    v = a.versus[a.versus.rule.isin(align)]
    vs_width = int(v.width.max()) if len(v) else widest
    weakest = v.loc[v.gap.idxmin()] if len(v) else None
    out.append(C.Claim(
        chapter, "align-beats-feedback-alignment",
        "The Align rules beat feedback alignment (FA) and direct feedback alignment (DFA)",
        f"Align rule minus FA / DFA at width {vs_width}, best learning rates (points)",
        None if weakest is None else 100 * weakest.gap, None if weakest is None else 100 * weakest.ci_low,
        None if weakest is None else 100 * weakest.ci_high,
        "; ".join(f"{r} vs {fb}: {_ci(gp, lo, hi)}" for r, fb, gp, lo, hi in
                  zip(v.rule, v.versus, v.gap, v.ci_low, v.ci_high)) or "–",
        "every difference above 0 with its 95 % interval",
        C.verdict_of_intervals(list(zip(v.ci_low, v.ci_high)), 0.0,
                               converged=_converged(a, [*align, *FEEDBACK_RULES], vs_width)),
        profile, width_figure))

    s = a.slopes[a.slopes.rule.isin(align)].set_index("rule")
    fitted = s[np.isfinite(s.slope)]
    if len(fitted) < len(align) or not len(align):
        verdict, value, low, high, text = C.NOT_TESTED, None, None, None, "not enough widths for a slope"
    else:
        verdict = C.verdict_of_intervals(list(zip(fitted.ci_low, fitted.ci_high)), 0.0,
                                         converged=_converged(a, align))
        r = fitted.slope.idxmin()
        value, low, high = fitted.slope[r], fitted.ci_low[r], fitted.ci_high[r]
        text = "; ".join(f"{q}: {format_ci(fitted.slope[q], fitted.ci_low[q], fitted.ci_high[q], '+.2f')}"
                         " points per doubling" for q in fitted.index)
    out.append(C.Claim(
        chapter, "gap-shrinks-with-width",
        "The Align rules' gap to backprop shrinks as the width grows",
        "slope of (Align rule minus backprop) at the common learning rate against log2(width)",
        value, low, high, text, "slope above 0 (the deficit closes) with its 95 % interval",
        verdict, profile, width_figure))
    return out


# --------------------------------------------------------------------------- the page


def _label(rule: str) -> str:
    return RULE_LABELS.get(rule, rule)


def _width_grid(table: pd.DataFrame, cells, rules: Sequence[str]) -> str:
    return rule_grid(table, cells, column="width", header="width {}", order=rules, labels=RULE_LABELS)


def bounds(plan: pd.DataFrame) -> pd.DataFrame:
    """One row per width of a :func:`learning_rate_plan`: ``width, ntk_top_eigenvalue,
    lr_bound`` (and the plan's other columns of its first row)."""
    return plan.groupby("width").first().reset_index()


def bounds_table(plan: pd.DataFrame) -> str:
    """Per width: the top NTK eigenvalue, the bound ``B K / lambda_max`` and the learning
    rates of the width sweep (the common one in bold), as Markdown."""
    b = bounds(plan)
    grid = plan[plan.in_width_sweep].groupby("width").apply(
        lambda g: ", ".join(f"**{lr:g}**" if c else f"{lr:g}" for lr, c in zip(g.lr, g.common)),
        include_groups=False)
    shown = pd.DataFrame({"width": b.width, "λ_max of the NTK": b.ntk_top_eigenvalue,
                          "bound B K / λ_max": b.lr_bound,
                          "learning rates (common in bold)": b.width.map(grid).fillna("–")})
    return markdown_table(shown, {"width": "d", "λ_max of the NTK": ".1f", "bound B K / λ_max": ".1f"})


def _held_out_error(s: pd.DataFrame) -> tuple:
    """``1 - accuracy`` of a summary and its interval, flipped, for a log axis (a bound
    reaching past accuracy 1 is cut at an error of 0.001)."""
    return 1 - s["mean"], np.maximum(1 - s.ci_high, 1e-3), 1 - s.ci_low


def figure_width_sweep(a: Analysis, *, rules: Sequence[str], few_points: float,
                       common_fraction: float, chance: float) -> plt.Figure:
    """Held-out error against width at the best learning rates (top left) and at the common
    one (top right), and the common-lr gap to backprop in points with the band of
    ``few_points`` below zero shaded (bottom left); the fourth place holds the legend.
    ``chance``: the accuracy of guessing."""
    palette = rule_palette(rules)
    widths = sorted(a.best.width.unique())
    fig, grid = plt.subplots(2, 2, figsize=(10, 7.6), layout="constrained")
    axes = [grid[0][0], grid[0][1], grid[1][0]]
    for i, rule in enumerate(rules):
        kw = dict(color=palette[rule], label=_label(rule))
        for ax, table in zip(axes, (a.best, a.common)):
            s = table[table.rule == rule].sort_values("width")
            interval_errorbars(ax, s.width * dodge(i, len(rules)), *_held_out_error(s), **kw)
        g = a.common_gaps[a.common_gaps.rule == rule].sort_values("width")
        if len(g):
            interval_errorbars(axes[2], g.width * dodge(i, len(rules)), 100 * g.gap, 100 * g.ci_low,
                               100 * g.ci_high, **kw)
    for ax in axes:
        log_axis(ax, widths, base=2, fmt="{}", label="width $n$")
    for ax in axes[:2]:
        ax.set_yscale("log")
        ax.set_ylim(top=1)
        chance_line(ax, 1 - chance)
    axes[0].set(ylabel="held-out error (1 − accuracy)", title="best learning rate per point")
    axes[1].set(ylabel="held-out error (1 − accuracy)", title=f"common learning rate ({common_fraction:g} × bound)")
    gap_means = 100 * a.common_gaps.gap.dropna()
    axes[2].set_ylim(min(-2 * few_points, gap_means.min() - 3) if len(gap_means) else -2 * few_points,
                     max(2.0, gap_means.max() + 2) if len(gap_means) else 2.0)
    axes[2].axhline(0, color="black", lw=0.8)
    axes[2].axhspan(-few_points, 0, color="grey", alpha=0.15, lw=0)
    axes[2].set(ylabel="accuracy minus backprop's (points)", title="gap to backprop, common lr, paired")
    grid[1][1].axis("off")
    grid[1][1].legend(*axes[0].get_legend_handles_labels(), loc="center")
    return fig


def accuracy_table(summary: pd.DataFrame, rules: Sequence[str]) -> str:
    """Held-out accuracy ``mean [low, high]`` per rule and width of ``Analysis.best`` or
    ``Analysis.common``; † where some run had not converged."""
    cells = [format_ci(m, lo, hi, ".3f") + ("" if c == 1 else " †") for m, lo, hi, c in
             zip(summary["mean"], summary.ci_low, summary.ci_high, summary.converged.fillna(0))]
    return _width_grid(summary, cells, rules)


def learning_rate_table(best: pd.DataFrame, rules: Sequence[str]) -> str:
    """The best learning rate of each rule and width."""
    return _width_grid(best, [f"{lr:g}" for lr in best.lr], rules)


def widest_accuracies(a: Analysis, rules: Sequence[str]) -> dict[str, str]:
    """``{rule: "mean [low, high]"}``: held-out accuracy at the widest width and the rule's
    best learning rate (``"–"`` for a rule not trained there)."""
    at = a.best[a.best.width == a.best.width.max()].set_index("rule")
    return {r: "–" if r not in at.index else format_ci(at.loc[r, "mean"], at.loc[r, "ci_low"], at.loc[r, "ci_high"])
            for r in rules}


def slope_texts(a: Analysis, rules: Sequence[str]) -> dict[str, str]:
    """``{rule: "slope [low, high]"}``: the common-lr gap to backprop per doubling of the
    width, in points (``"–"`` where no slope was fitted)."""
    s = a.slopes.set_index("rule")
    return {r: "–" if r not in s.index or not np.isfinite(s.slope[r]) else
            format_ci(s.slope[r], s.ci_low[r], s.ci_high[r], "+.2f") for r in rules}


def convergence_report(a: Analysis) -> dict[str, str]:
    """The width sweep's runs that did not converge (``unconverged``), that diverged
    (``diverged_runs``), and the epochs trained per width (``epochs_used``), as text."""
    conv = a.convergence

    def runs(part):
        return ", ".join(sorted({f"{_label(r)} at width {w}, lr {lr:g}"
                                 for r, w, lr in zip(part.rule, part.width, part.lr)})) or "none"

    used = conv.groupby("width").epochs.agg(["min", "max"])
    return {"unconverged": runs(conv[~conv.converged & ~conv.diverged]),
            "diverged_runs": runs(conv[conv.diverged]),
            "epochs_used": ", ".join(f"width {w}: {lo}" + ("" if lo == hi else f"–{hi}")
                                     for w, (lo, hi) in used.iterrows())}


def curves(runs: pd.DataFrame, a: Analysis) -> pd.DataFrame:
    """Mean over seeds of ``train_loss`` and ``heldout_accuracy`` per (metric, rule, width,
    epoch), each rule at its best learning rate; diverged runs left out."""
    chosen = a.best[["rule", "width", "lr"]]
    rows = runs[runs.metric.isin(["train_loss", "heldout_accuracy"])].merge(chosen, on=["rule", "width", "lr"])
    rows = rows[~rows.diverged.astype(bool)]
    return rows.groupby(["metric", "rule", "width", "epoch"]).value.mean().reset_index()


def figure_curves(curves: pd.DataFrame, *, widths: Sequence[int], rules: Sequence[str],
                  chance: float) -> plt.Figure:
    """Training loss (top, log axis) and held-out accuracy (bottom) against epoch at each
    of ``widths`` (columns), one line per rule (:func:`curves`)."""
    palette = rule_palette(rules)
    fig, axes = plt.subplots(2, len(widths), figsize=(10, 7.4), layout="constrained", sharex="col",
                             squeeze=False)
    for col, w in enumerate(widths):
        for row, metric in enumerate(["train_loss", "heldout_accuracy"]):
            ax = axes[row][col]
            for rule in rules:
                c = curves[(curves.metric == metric) & (curves.rule == rule) & (curves.width == w)]
                ax.plot(c.epoch, c.value, color=palette[rule], label=_label(rule))
            if metric == "train_loss":
                ax.set_yscale("log")
            ax.set(ylabel="training loss" if metric == "train_loss" else "held-out accuracy",
                   title=f"width {w}, best learning rate per rule" if row == 0 else None)
        axes[1][col].set_xlabel("epoch")
    chance_line(axes[1][0], chance)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4))
    return fig


def lr_sweep_summary(runs: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """:func:`ff.summarise` per (rule, width, lr) of the plan's learning-rate sweep, with each
    rate's ``fraction`` of the width's bound."""
    sweep = plan[plan.in_lr_sweep][["width", "lr", "fraction"]]
    return ff.summarise(runs.merge(sweep, on=["width", "lr"]), ["rule", "width", "lr"]) \
        .merge(sweep, on=["width", "lr"])


def figure_learning_rates(summary: pd.DataFrame, *, x: str, rules: Sequence[str],
                          widths: Sequence[int], chance: float, xlabel: str, title: str,
                          ticks: Sequence[float] | None = None) -> plt.Figure:
    """Held-out accuracy against a learning rate (column ``x`` of a summary per (rule,
    width, lr)), one panel per width (``title.format(width)``), one line per rule with its
    interval; crosses at zero mark rates at which a seed diverged. ``ticks``: the rates to
    label on a decimal log axis; without them the axis is in powers of 2 of the bound,
    marked by a dashed line at 1."""
    palette = rule_palette(rules)
    fig, axes = plt.subplots(1, len(widths), figsize=(5.5 * len(widths) + 1.5, 4),
                             layout="constrained", squeeze=False, sharey=True)
    for ax, w in zip(axes[0], widths):
        part = summary[summary.width == w]
        for i, rule in enumerate(rules):
            s = part[part.rule == rule].sort_values(x)
            ok, bad = s[s.n_diverged == 0], s[s.n_diverged > 0]
            interval_errorbars(ax, ok[x] * dodge(i, len(rules)), ok["mean"], ok.ci_low, ok.ci_high,
                               color=palette[rule], label=_label(rule))
            ax.plot(bad[x] * dodge(i, len(rules)), np.zeros(len(bad)), "x", color=palette[rule], ms=7)
        if ticks is None:
            ax.set_xscale("log", base=2)
            ax.axvline(1, color="black", lw=0.8, ls="--")
        else:
            log_axis(ax, ticks)
        chance_line(ax, chance)
        ax.set(xlabel=xlabel, title=title.format(w), ylim=(-0.03, 1.0))
    axes[0][0].set_ylabel("held-out accuracy")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right center")
    return fig


def first_divergence_text(summary: pd.DataFrame, rules: Sequence[str], widths: Sequence[int]) -> str:
    """Per width, the smallest fraction of the bound at which some seed of each rule
    diverged (:func:`lr_sweep_summary`)."""
    first = summary[summary.n_diverged > 0].groupby(["width", "rule"]).fraction.min()
    return "; ".join(f"width {w}: " + (", ".join(f"{_label(r)} {first[(w, r)]:g}" for r in rules
                                                  if (w, r) in first) or "none diverged")
                     for w in widths)


@dataclasses.dataclass(frozen=True)
class AdamAnalysis:
    """The Adam runs reduced: ``summary`` per (rule, width, lr) (:func:`ff.summarise`),
    ``best`` per (rule, width) (:func:`ff.best_lr`), ``convergence`` per run."""

    summary: pd.DataFrame
    best: pd.DataFrame
    convergence: pd.DataFrame


def analyse_adam(runs: pd.DataFrame, tolerance: float) -> AdamAnalysis:
    """Reduce the standard-parameterisation runs trained with Adam."""
    return AdamAnalysis(ff.summarise(runs, ["rule", "width", "lr"]), ff.best_lr(runs, ["rule", "width"]),
                        convergence_table(runs, tolerance, keys=["rule", "width", "lr", "seed"]))


def adam_results_text(adam: AdamAnalysis, rules: Sequence[str], width: int) -> str:
    """Each rule's held-out accuracy at ``width`` and its best Adam learning rate."""
    b = adam.best[adam.best.width == width].set_index("rule")
    return "; ".join(f"{_label(r)} {format_ci(b.loc[r, 'mean'], b.loc[r, 'ci_low'], b.loc[r, 'ci_high'])} "
                     f"(lr {b.loc[r, 'lr']:g})" for r in rules if r in b.index)


def timing_table(timing: pd.DataFrame, rules: Sequence[str]) -> str:
    """Seconds per epoch and network (:func:`ff.epoch_seconds` by rule and width) with the
    ratio to backprop at the same width, as Markdown."""
    ratios = timing.get("ratio_to_reference", np.nan * timing.seconds_per_run)
    cells = [f"{1000 * s:.2g} ms (×{r:.2f})" if np.isfinite(r) else f"{1000 * s:.2g} ms"
             for s, r in zip(timing.seconds_per_run, ratios)]
    return _width_grid(timing, cells, rules)


def time_ratios(timing: pd.DataFrame, width: int, rules: Sequence[str]) -> dict[str, str]:
    """``{rule: "×1.93"}``: time per epoch relative to backprop at ``width``."""
    at = timing[timing.width == width].set_index("rule")
    return {r: "–" if r not in at.index or "ratio_to_reference" not in at
            else f"×{at.loc[r, 'ratio_to_reference']:.2f}" for r in rules}
