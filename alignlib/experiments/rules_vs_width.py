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
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pandas as pd

from alignlib import claims as C
from alignlib.convergence import convergence_table
from alignlib.experiments import feedforward as ff
from alignlib.experiments import points as P
from alignlib.statistics import linear_fit

__all__ = ["ALIGN_RULES", "FEEDBACK_RULES", "learning_rate_plan", "lrs_by_width", "sweep", "Analysis",
           "analyse", "claims"]

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
    return ff.format_ci(mean, low, high, fmt, scale, unit)


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
        text = "; ".join(f"{q}: {ff.format_ci(fitted.slope[q], fitted.ci_low[q], fitted.ci_high[q], '+.2f')}"
                         " points per doubling" for q in fitted.index)
    out.append(C.Claim(
        chapter, "gap-shrinks-with-width",
        "The Align rules' gap to backprop shrinks as the width grows",
        "slope of (Align rule minus backprop) at the common learning rate against log2(width)",
        value, low, high, text, "slope above 0 (the deficit closes) with its 95 % interval",
        verdict, profile, width_figure))
    return out
