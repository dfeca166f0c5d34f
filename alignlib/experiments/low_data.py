"""The low-data chapter: accuracy against training-set size, with settings chosen by
measurement.

1. :func:`stability` measures the stable SGD bound ``lr_max = B K / lambda_max`` at
   initialisation for each training-set size (:mod:`alignlib.stability`), and
   :func:`training_plan` adds the epochs and SGD steps each size trains
   (:func:`authors_batch_size`, :func:`epochs_for_size`).
2. :func:`sweep` trains every rule at one width on nested training sets ``load(n)``
   (:func:`alignlib.experiments.feedforward.width_sweep` per size), each (rule, size) until
   its runs have converged.
3. :func:`analyse` reduces the sweep to an :class:`Analysis` of tidy tables: which runs
   converged, each point's best converged learning rate, the Align rules' margins over
   backprop and over FA / DFA (paired by seed), and the same at one common learning rate.
4. :func:`margin_grows_claim` and :func:`beats_feedback_claim` turn that into scorecard
   records; the ``figure_*`` functions draw the page's figures and the ``*_table``
   functions write its Markdown tables.

A *margin* is a rule's held-out accuracy minus a reference rule's, at the same training-set
size and seed (so from the same initial network), each rule at its chosen learning rate:

    margin(rule, n) = mean over seeds s of [acc(rule, n, s) - acc(reference, n, s)]

with a 95 % Student-t interval over seeds; the claim that the margin over backprop grows
as the data shrink is judged on ``margin(rule, n_small) - margin(rule, n_large)``, paired
by seed as well.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from alignlib import claims as C
from alignlib.convergence import convergence_table, window
from alignlib.data import Dataset
from alignlib.experiments import feedforward as ff
from alignlib.experiments import points as P
from alignlib.experiments.plotting import (RULE_LABELS, chance_line, dodge, interval_errorbars,
                                           log_axis, rule_palette)
from alignlib.experiments.rules_vs_width import ALIGN_RULES, FEEDBACK_RULES
from alignlib.experiments.tables import format_ci, join_words, markdown_table, rule_grid
from alignlib.statistics import t_interval
from alignlib.validation import integers

__all__ = ["EVALUATIONS", "authors_batch_size", "epochs_for_size", "sweep", "stability",
           "training_plan", "plan_table", "Analysis", "analyse", "stored_tables", "margin_grows_claim",
           "beats_feedback_claim", "claims", "late_change_text", "common_lr_reason",
           "figure_accuracy", "figure_curves", "figure_feedback", "figure_common",
           "accuracy_table", "margin_table", "feedback_table", "runs_converged_table"]

#: Columns that identify one point of the sweep at one learning rate.
POINT = ["rule", "n_train", "lr"]

#: :func:`sweep` evaluates the held-out set about this many times per run at most (a
#: 45-image set trains up to 1,000 one-step epochs; evaluating after each would cost more
#: than training).
EVALUATIONS = 100


def _label(rule: str) -> str:
    return RULE_LABELS.get(rule, rule)


# --------------------------------------------------------------------------- the plan


def authors_batch_size(n_train: int, batch_size: int = 100) -> int:
    """The authors' batch size for a training set of ``n_train`` examples.

    Their low-data script uses ``batch_size`` if it divides ``n_train``, ``n_train``
    itself if smaller (one full batch), else ``gcd(batch_size, n_train)``, so that every
    epoch visits every example: 45 -> 45, 150 -> 50, 450 -> 50, 1500 -> 100.
    """
    n_train = integers("n_train", [n_train])[0]
    batch_size = integers("batch_size", [batch_size])[0]
    if batch_size > n_train:
        return n_train
    if n_train % batch_size:
        return math.gcd(batch_size, n_train)
    return batch_size


def epochs_for_size(n_train: int, epochs: int, min_steps: int = 0, batch_size: int = 100) -> int:
    """Epochs for a training set of ``n_train`` examples: ``epochs``, or more if that many
    epochs would give fewer than ``min_steps`` SGD steps with the authors' batch size
    (:func:`authors_batch_size`). ``min_steps=0`` keeps the authors' rule (the same
    number of epochs for every size, so the smallest sets get the fewest steps)."""
    epochs = integers("epochs", [epochs])[0]
    min_steps = integers("min_steps", [min_steps], low=0)[0]
    steps_per_epoch = n_train // authors_batch_size(n_train, batch_size)
    return max(epochs, -(-min_steps // steps_per_epoch))


def stability(full: Dataset, sizes: Sequence[int], **network) -> pd.DataFrame:
    """The stable learning rate of each training-set size, measured at initialisation:
    columns ``n_train, batch_size, ntk_top_eigenvalue, lr_bound``
    (:func:`alignlib.experiments.feedforward.stable_lr_at_init`, ``lr_bound = B K /
    lambda_max``). The training sets are nested prefixes of ``full``, so every size with
    the same batch size has the same first batch: one measurement per batch size.
    ``network``: ``arch, width, depth, strides, bias_multiplier``."""
    batches = {n: authors_batch_size(n) for n in sizes}
    bounds = {b: ff.stable_lr_at_init(full, batch_size=b, **network)
              for b in sorted(set(batches.values()))}
    return pd.DataFrame([{"n_train": n, "batch_size": b, **bounds[b]} for n, b in batches.items()])


def training_plan(stability: pd.DataFrame, epochs: int, min_steps: int) -> pd.DataFrame:
    """:func:`stability` with the ``epochs`` each size trains at most
    (:func:`epochs_for_size`) and its ``steps = epochs x (n_train // batch_size)``."""
    plan = stability.assign(epochs=[epochs_for_size(n, epochs, min_steps) for n in stability.n_train])
    plan["steps"] = plan.epochs * (plan.n_train // plan.batch_size)
    return plan


def plan_table(plan: pd.DataFrame) -> str:
    """:func:`training_plan` as a Markdown table for the page."""
    names = {"n_train": "training images", "batch_size": "batch", "ntk_top_eigenvalue": "NTK λ_max",
             "lr_bound": "lr_max = BK/λ_max", "epochs": "epochs", "steps": "SGD steps"}
    return markdown_table(plan[list(names)].rename(columns=names), formats={
        "training images": ",d", "batch": "d", "NTK λ_max": ".3g", "lr_max = BK/λ_max": ".3g",
        "epochs": "d", "SGD steps": ",d"})


def sweep(load: Callable[[int], Dataset], sizes: Sequence[int], *, width: int, epochs: int,
          min_steps: int = 0, batch_size: int = 100, experiment: str = "low_data",
          points_only: bool = False, **kwargs) -> pd.DataFrame:
    """Accuracy against training-set size: :func:`ff.width_sweep` at one ``width`` for each
    training set ``load(n)``, ``n`` in ``sizes``.

    Each size uses the authors' batch size (:func:`authors_batch_size`) and
    :func:`epochs_for_size` epochs: the authors train every size for the same number of
    epochs (``min_steps=0``); ``min_steps`` gives small sets more epochs so that every
    run takes at least that many SGD steps. The ``n_train`` and ``batch_size`` columns
    record the size and batch; the number of epochs is the largest ``epoch`` of a run.
    Held-out metrics are recorded about :data:`EVALUATIONS` times per run (every epoch for
    sizes trained 100 epochs or fewer), and always at a run's last epoch.
    ``kwargs`` go to :func:`ff.width_sweep` (``arch``, ``rules``, ``lrs``, ``seeds``, ...).
    The sizes' points run together (:mod:`alignlib.experiments.points`); ``points_only``
    returns them instead.
    """
    sizes = integers("sizes", sizes)
    sweeps = []
    for n in sizes:
        data = load(n)
        if data.n_train != n:
            raise ValueError(f"load({n}) returned {data.n_train} training examples, expected {n}")
        n_epochs = epochs_for_size(n, epochs, min_steps, batch_size)
        kwargs.setdefault("eval_every", 1)
        sweeps.append(ff.width_sweep(
            data, widths=[width], batch_size=authors_batch_size(n, batch_size), epochs=n_epochs,
            experiment=experiment, points_only=P.STAGES,
            **{**kwargs, "eval_every": max(kwargs["eval_every"], n_epochs // EVALUATIONS)}))
    if points_only:
        return P.list_points(sweeps)
    return pd.concat(P.run_sweeps(sweeps, experiment), ignore_index=True)


# --------------------------------------------------------------------------- analysis


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What :func:`analyse` returns: the sweep's rules (in the page's order), sizes and
    width, and tidy tables.

    ``convergence``: one row per run (:func:`alignlib.convergence.convergence_table`);
    ``per_lr``: per (rule, n_train, lr) the ``runs``, how many ``converged`` and
    ``diverged``, ``settled`` (all converged) and ``eligible`` (settled, or no learning
    rate of the point settled: the rates that compete for "best");
    ``best``: per (rule, n_train) the summary row of the best eligible learning rate
    (:func:`ff.best_lr`) with ``runs, converged, settled`` and ``late_change`` (mean
    held-out accuracy at the last epoch minus a tenth of training earlier);
    ``margins``: each rule minus backprop per size, paired by seed
    (:func:`ff.gap_to_reference`: ``gap, ci_low, ci_high`` as fractions) with ``settled``
    (both rules' runs converged); ``feedback_gaps``: the same for each Align rule minus FA
    and DFA (column ``reference``); ``growth``: per Align rule the margin over backprop
    at the smallest size minus at the largest, paired by seed (``change, ci_low,
    ci_high``); ``common_lr``: the largest learning rate at which no run diverged
    (``common_is_safe``), else the smallest; ``at_common``, ``margins_common``,
    ``feedback_common``, ``growth_common``: the same at that rate (``at_common`` is
    :func:`ff.summarise` per point).
    """

    rules: tuple
    sizes: tuple
    width: int
    convergence: pd.DataFrame
    per_lr: pd.DataFrame
    best: pd.DataFrame
    margins: pd.DataFrame
    feedback_gaps: pd.DataFrame
    growth: pd.DataFrame
    common_lr: float
    common_is_safe: bool
    at_common: pd.DataFrame
    margins_common: pd.DataFrame
    feedback_common: pd.DataFrame
    growth_common: pd.DataFrame

    @property
    def align(self) -> list[str]:
        """The Align rules of the sweep."""
        return [r for r in ALIGN_RULES if r in self.rules]

    @property
    def feedback(self) -> list[str]:
        """FA and DFA, where the sweep trained them."""
        return [r for r in FEEDBACK_RULES if r in self.rules]

    @property
    def n_small(self) -> int:
        return min(self.sizes)

    @property
    def n_large(self) -> int:
        return max(self.sizes)


def _with_convergence(table: pd.DataFrame, per_lr: pd.DataFrame) -> pd.DataFrame:
    """Add each point's convergence (its runs at its learning rate) to a best / gap table."""
    out = table.merge(per_lr[[*POINT, "runs", "converged"]], on=POINT, how="left")
    out["settled"] = out.converged == out.runs
    return out


def _margins_to(reference: str, table: pd.DataFrame, per_lr: pd.DataFrame) -> pd.DataFrame:
    """Each rule's accuracy minus ``reference``'s, paired by seed, at each size; settled only
    if both rules' runs converged."""
    gaps = ff.gap_to_reference(table, reference, ["n_train"])
    mine = _with_convergence(gaps, per_lr)
    ref = _with_convergence(gaps.drop(columns="lr").rename(columns={"reference_lr": "lr"})
                            .assign(rule=reference), per_lr)
    return gaps.assign(settled=mine.settled.to_numpy() & ref.settled.to_numpy())


def _feedback_gaps(table: pd.DataFrame, per_lr: pd.DataFrame, align, feedback) -> pd.DataFrame:
    """Each Align rule minus FA and DFA (column ``reference``), as :func:`_margins_to`."""
    gaps = pd.concat([_margins_to(ref, table, per_lr).assign(reference=ref) for ref in feedback],
                     ignore_index=True) if feedback else pd.DataFrame(
        columns=["n_train", "rule", "reference", "gap", "ci_low", "ci_high", "settled"])
    return gaps[gaps.rule.isin(align)]


def _late_change(runs: pd.DataFrame, pick: pd.DataFrame) -> np.ndarray:
    """Per point of ``pick``: mean held-out accuracy at the last epoch minus a tenth of
    training earlier (held-out accuracy is recorded sparsely on long runs: the last record
    a tenth earlier)."""
    acc = runs[runs.metric == "heldout_accuracy"]
    out = []
    for rule, n, lr in zip(pick.rule, pick.n_train, pick.lr):
        curve = acc[(acc.rule == rule) & (acc.n_train == n) & np.isclose(acc.lr, lr)].groupby("epoch").value.mean()
        last = int(curve.index.max()) if len(curve) else 0
        earlier = curve[curve.index <= last - window(last)]
        out.append(curve.loc[last] - earlier.iloc[-1] if last > 0 and len(earlier) else np.nan)
    return np.asarray(out, float)


def _by_seed(runs: pd.DataFrame, pick: pd.DataFrame, rule: str, n: int) -> pd.Series:
    """Final held-out accuracy of ``rule`` at size ``n`` and its chosen learning rate, by seed."""
    lr = pick[(pick.rule == rule) & (pick.n_train == n)].lr
    if lr.empty or not np.isfinite(lr.iloc[0]):
        return pd.Series(dtype=float)
    final = ff.final_values(runs[(runs.rule == rule) & (runs.n_train == n)])
    final = final[np.isclose(final.lr, lr.iloc[0]) & ~final.diverged.astype(bool)]
    return final.set_index("seed").value


def _growth(runs: pd.DataFrame, pick: pd.DataFrame, align, sizes) -> pd.DataFrame:
    """Per Align rule: margin over backprop at the smallest size minus at the largest,
    paired by seed (same seed: same initial network at every size), with its interval."""
    rows = []
    for r in align:
        parts = [_by_seed(runs, pick, r, n) - _by_seed(runs, pick, "backprop", n)
                 for n in (min(sizes), max(sizes))]
        change, low, high = t_interval((parts[0] - parts[1]).dropna().to_numpy())
        rows.append({"rule": r, "change": change, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["rule", "change", "ci_low", "ci_high"])


def analyse(runs: pd.DataFrame, tolerance: float, rules: Sequence[str] | None = None) -> Analysis:
    """Reduce a :func:`sweep` (``rules``: their order on the page, default the sweep's).

    A point (rule, size) competes for "best" among its learning rates at which every seed
    converged (``tolerance``: :func:`alignlib.convergence.convergence_table`), or among all
    of them where none did. The common learning rate is the largest of the grid at which
    no run of any rule diverged.
    """
    rules = tuple(rules or dict.fromkeys(runs.rule))
    sizes = tuple(int(n) for n in sorted(runs.n_train.unique()))
    align = [r for r in ALIGN_RULES if r in rules]
    feedback = [r for r in FEEDBACK_RULES if r in rules]
    conv = convergence_table(runs, tolerance, keys=[*POINT, "seed"])
    per_lr = conv.groupby(POINT).agg(runs=("converged", "size"), converged=("converged", "sum"),
                                     diverged=("diverged", "sum")).reset_index()
    per_lr["settled"] = per_lr.converged == per_lr.runs
    per_lr["eligible"] = per_lr.settled | ~per_lr.groupby(["rule", "n_train"]).settled.transform("any")
    pool = runs.merge(per_lr.loc[per_lr.eligible, POINT], on=POINT)

    best = _with_convergence(ff.best_lr(pool, ["rule", "n_train"]), per_lr)
    best["late_change"] = _late_change(runs, best)
    has_backprop = "backprop" in rules
    margins = _margins_to("backprop", pool, per_lr) if has_backprop else pd.DataFrame(
        columns=["n_train", "rule", "gap", "ci_low", "ci_high", "settled"])
    growing = has_backprop and len(sizes) > 1

    diverged_at = per_lr.groupby("lr").diverged.sum()
    lrs = sorted(per_lr.lr.unique())
    safe = [lr for lr in lrs if diverged_at.get(lr, 0) == 0]
    common_lr = float(max(safe) if safe else min(lrs))
    common = ff.select_lrs(runs, [common_lr])
    at_common = _with_convergence(ff.summarise(common, POINT), per_lr)
    return Analysis(
        rules=rules, sizes=sizes, width=int(runs.width.iloc[0]), convergence=conv, per_lr=per_lr,
        best=best, margins=margins, feedback_gaps=_feedback_gaps(pool, per_lr, align, feedback),
        growth=_growth(runs, best, align if growing else [], sizes),
        common_lr=common_lr, common_is_safe=bool(safe), at_common=at_common,
        margins_common=_margins_to("backprop", common, per_lr) if has_backprop else margins.iloc[:0],
        feedback_common=_feedback_gaps(common, per_lr, align, feedback),
        growth_common=_growth(common, at_common, align if growing else [], sizes))


def stored_tables(a: Analysis) -> dict[str, pd.DataFrame]:
    """``{file name: table}``: the tables the page stores beside its figures."""
    return {"convergence": a.convergence, "best": a.best, "margins": a.margins,
            "feedback_gaps": a.feedback_gaps, "common": a.at_common,
            "margins_common": a.margins_common, "feedback_gaps_common": a.feedback_common}


def late_change_text(a: Analysis) -> str:
    """How much the best points' held-out accuracy still moved over the last tenth of
    training: the median absolute change and the largest one, in points."""
    late = a.best.dropna(subset=["late_change"])
    if not len(late):
        return "–"
    worst = late.loc[late.late_change.abs().idxmax()]
    return (f"{100 * late.late_change.abs().median():.1f} points (median; largest "
            f"{100 * worst.late_change:+.1f}, {_label(worst.rule)} with {int(worst.n_train):,} images)")


def common_lr_reason(a: Analysis) -> str:
    """Why the common learning rate is the one it is."""
    return ("the largest rate of the grid at which no run of any rule diverged" if a.common_is_safe
            else "every rate of the grid had a diverged run, so the smallest one is used")


# --------------------------------------------------------------------------- claims


def _points(mean, low, high, fmt: str = "+.1f") -> str:
    return format_ci(mean, low, high, fmt, 100)


def margin_grows_claim(a: Analysis, *, profile: str, common: bool = False,
                       figure: str | None = None) -> C.Claim:
    """"The Align rules' margin over backprop grows as training data shrink": each Align
    rule's :attr:`Analysis.growth` (``common``: at the common learning rate) must lie above
    zero. Runs that had not converged at the smallest or largest size make a failing check
    inconclusive."""
    growth, pick, gaps = ((a.growth_common, a.at_common, a.margins_common) if common
                          else (a.growth, a.best, a.margins))
    n_small, n_large = a.n_small, a.n_large
    involved = pick[pick.rule.isin(["backprop", *a.align]) & pick.n_train.isin([n_small, n_large])]
    converged = bool(involved.settled.all())
    verdict = C.verdict_of_intervals(list(zip(growth.ci_low, growth.ci_high)), 0.0, converged=converged)

    def margin(r, n):
        row = gaps[(gaps.rule == r) & (gaps.n_train == n)]
        return "–" if row.empty else _points(row.gap.iloc[0], row.ci_low.iloc[0], row.ci_high.iloc[0])

    measured = join_words([
        f"{_label(g.rule)}: margin {margin(g.rule, n_small)} points with {n_small:,} images, "
        f"{margin(g.rule, n_large)} with {n_large:,}; change {_points(g.change, g.ci_low, g.ci_high)} points"
        for g in growth.itertuples()]) if len(growth) else \
        "not measured (needs backprop, an Align rule and two sizes)"
    if len(growth) and not converged:
        measured += " (some runs behind these numbers had not converged)"
    weakest = min(zip(growth.change, growth.ci_low, growth.ci_high), key=lambda v: v[0]) \
        if len(growth) else (None, None, None)
    what = f"every rule at learning rate {a.common_lr:g}" if common else "each rule at its best learning rate"
    return C.Claim(
        chapter="low_data", claim="align-margin-grows-as-data-shrink" + ("-common-lr" if common else ""),
        statement=f"The Align rules' margin over backprop grows as training data shrink ({what})",
        quantity=f"margin over backprop with {n_small:,} images minus with {n_large:,} "
                 "(held-out accuracy, points; weakest Align rule), paired by seed",
        value=None if weakest[0] is None else 100 * weakest[0],
        low=None if weakest[1] is None else 100 * weakest[1],
        high=None if weakest[2] is None else 100 * weakest[2],
        measured=measured, expectation="above zero for every Align rule",
        verdict=verdict, profile=profile,
        figure=figure or ("fig-low-data-common" if common else "fig-low-data"))


def beats_feedback_claim(a: Analysis, *, profile: str, common: bool = False,
                         figure: str | None = None) -> C.Claim:
    """"The Align rules beat FA and DFA at every training-set size": every difference in
    :attr:`Analysis.feedback_gaps` (``common``: ``feedback_common``) must lie above zero."""
    gaps = a.feedback_common if common else a.feedback_gaps
    converged = bool(gaps.settled.all())
    verdict = C.verdict_of_intervals(list(zip(gaps.ci_low, gaps.ci_high)), 0.0, converged=converged) \
        if a.align and a.feedback else C.NOT_TESTED
    if np.isfinite(gaps.gap.astype(float)).any():
        w = gaps.loc[gaps.gap.astype(float).idxmin()]
        above, below = int((gaps.ci_low > 0).sum()), int((gaps.ci_high < 0).sum())
        measured = (f"{above} of {len(gaps)} comparisons (Align rule, FA or DFA, size) lie above zero, "
                    f"{below} below; the smallest difference is {_label(w.rule)} minus {_label(w.reference)} "
                    f"with {int(w.n_train):,} images, {_points(w.gap, w.ci_low, w.ci_high)} points")
        if not converged:
            measured += " (some runs behind these numbers had not converged)"
        value = (100 * w.gap, 100 * w.ci_low, 100 * w.ci_high)
    else:
        measured, value = "not measured (needs an Align rule and FA or DFA)", (None, None, None)
    what = f"every rule at learning rate {a.common_lr:g}" if common else "each rule at its best learning rate"
    return C.Claim(
        chapter="low_data", claim="align-beats-fa-dfa-every-size" + ("-common-lr" if common else ""),
        statement=f"The Align rules beat FA and DFA at every training-set size ({what})",
        quantity="Align accuracy minus FA / DFA accuracy (held-out, points; smallest over rules "
                 "and sizes), paired by seed",
        value=value[0], low=value[1], high=value[2], measured=measured,
        expectation="above zero for every Align rule, FA and DFA, at every size",
        verdict=verdict, profile=profile,
        figure=figure or ("fig-low-data-common" if common else "fig-low-data-feedback"))


def claims(a: Analysis, *, profile: str) -> list[C.Claim]:
    """The chapter's four records, in the page's order: both claims at the best learning
    rates, then both at the common one."""
    return [margin_grows_claim(a, profile=profile), beats_feedback_claim(a, profile=profile),
            margin_grows_claim(a, profile=profile, common=True),
            beats_feedback_claim(a, profile=profile, common=True)]


# --------------------------------------------------------------------------- figures


def _size_axis(ax, a: Analysis) -> None:
    log_axis(ax, a.sizes, fmt="{:,}", label="training images")


def _accuracy_panels(axes, a: Analysis, acc: pd.DataFrame, gaps: pd.DataFrame, title: str,
                     chance: float) -> None:
    """Held-out accuracy (``axes[0]``) and margin over backprop in points (``axes[1]``)
    against size, one line per rule; open markers where a point's runs had not all
    converged."""
    palette = rule_palette(a.rules)
    k = len(a.rules)
    for i, rule in enumerate(a.rules):
        b = acc[acc.rule == rule].sort_values("n_train")
        interval_errorbars(axes[0], b.n_train * dodge(i, k), b["mean"], b.ci_low, b.ci_high,
                           settled=b.settled, color=palette[rule], label=_label(rule))
        g = gaps[gaps.rule == rule].sort_values("n_train")
        if len(g):
            interval_errorbars(axes[1], g.n_train * dodge(i, k), 100 * g.gap, 100 * g.ci_low,
                               100 * g.ci_high, settled=g.settled, color=palette[rule])
    for ax in axes:
        _size_axis(ax, a)
    chance_line(axes[0], chance, label="chance")
    axes[0].set(ylabel="held-out accuracy (last epoch)", title=title)
    axes[1].axhline(0, color="black", lw=0.8)
    axes[1].set(ylabel="accuracy minus backprop's (points)", title="margin over backprop, paired by seed")


def _feedback_panel(ax, a: Analysis, gaps: pd.DataFrame, title: str) -> None:
    """Each Align rule minus FA (solid) and DFA (dashed) in points against size."""
    palette = rule_palette(a.rules)
    pairs = [(r, ref, ls) for r in a.align for ref, ls in zip(a.feedback, ["-", "--"])]
    for i, (r, ref, ls) in enumerate(pairs):
        g = gaps[(gaps.rule == r) & (gaps.reference == ref)].sort_values("n_train")
        interval_errorbars(ax, g.n_train * dodge(i, len(pairs)), 100 * g.gap, 100 * g.ci_low,
                           100 * g.ci_high, settled=g.settled, color=palette[r], ls=ls,
                           label=f"{_label(r)} minus {_label(ref)}")
    ax.axhline(0, color="black", lw=0.8)
    _size_axis(ax, a)
    ax.set(ylabel="accuracy difference (points)", title=title)
    ax.legend()


def figure_accuracy(a: Analysis, *, chance: float) -> plt.Figure:
    """Held-out accuracy at each point's best converged learning rate (left) and the margin
    over backprop (right) against training-set size; ``chance``: the accuracy of guessing."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), layout="constrained")
    _accuracy_panels(axes, a, a.best, a.margins,
                     f"width {a.width}, best converged learning rate per point", chance)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4))
    return fig


def figure_feedback(a: Analysis) -> plt.Figure:
    """Each Align rule minus FA and DFA at the best learning rates, against size."""
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    _feedback_panel(ax, a, a.feedback_gaps, "Align rule minus FA / DFA, best learning rates")
    return fig


def figure_common(a: Analysis, *, chance: float) -> plt.Figure:
    """Every rule at the common learning rate: accuracy, margin over backprop, and the Align
    rules minus FA / DFA (the fourth place holds the legend)."""
    fig, grid = plt.subplots(2, 2, figsize=(10, 7.6), layout="constrained")
    axes = [grid[0][0], grid[0][1], grid[1][0]]
    _accuracy_panels(axes[:2], a, a.at_common, a.margins_common,
                     f"width {a.width}, every rule at lr {a.common_lr:g}", chance)
    _feedback_panel(axes[2], a, a.feedback_common, "Align rule minus FA / DFA")
    grid[1][1].axis("off")
    grid[1][1].legend(*axes[0].get_legend_handles_labels(), loc="center")
    return fig


def figure_curves(runs: pd.DataFrame, a: Analysis) -> plt.Figure:
    """Learning curves (held-out accuracy, training loss) of every rule at its best learning
    rate on the smallest (top) and largest (bottom) training set: mean over seeds, the band
    spanning the seeds."""
    palette = rule_palette(a.rules)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), layout="constrained", squeeze=False)
    for row, n in enumerate(dict.fromkeys([a.n_small, a.n_large])):
        for rule in a.rules:
            pick = a.best[(a.best.rule == rule) & (a.best.n_train == n)]
            if pick.empty or not np.isfinite(pick.lr.iloc[0]):
                continue
            lr = pick.lr.iloc[0]
            sub = runs[(runs.rule == rule) & (runs.n_train == n) & np.isclose(runs.lr, lr)]
            for col, metric in enumerate(["heldout_accuracy", "train_loss"]):
                c = sub[sub.metric == metric].groupby("epoch").value.agg(["mean", "min", "max"])
                ax = axes[row, col]
                ax.plot(c.index, c["mean"], color=palette[rule], label=f"{_label(rule)} (lr {lr:g})")
                ax.fill_between(c.index, c["min"], c["max"], color=palette[rule], alpha=0.2, lw=0)
        axes[row, 0].set(ylabel="held-out accuracy", title=f"{n:,} training images")
        axes[row, 1].set(ylabel="training loss", yscale="log", title=f"{n:,} training images")
        axes[row, 0].legend()
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    return fig


# --------------------------------------------------------------------------- tables


def _flag(text: str, settled: bool) -> str:
    return text if settled else text + " *"


def _size_grid(table: pd.DataFrame, cells, order) -> str:
    return rule_grid(table, cells, column="n_train", header="{:,} images", order=order,
                     labels=RULE_LABELS)


def accuracy_table(a: Analysis, *, common: bool = False) -> str:
    """Held-out accuracy ``mean [low, high]`` per rule and size, at each point's best
    learning rate (shown) or at the common one; ``*`` where not every run converged."""
    t = a.at_common if common else a.best
    cells = [_flag(format_ci(m, lo, hi, ".3f") + ("" if common else f" (lr {lr:g})"), s)
             if np.isfinite(m) else "diverged"
             for m, lo, hi, lr, s in zip(t["mean"], t.ci_low, t.ci_high, t.lr, t.settled)]
    return _size_grid(t, cells, a.rules)


def _gap_cells(t: pd.DataFrame) -> list[str]:
    return [_flag(_points(g, lo, hi), s) for g, lo, hi, s in zip(t.gap, t.ci_low, t.ci_high, t.settled)]


def margin_table(a: Analysis, *, common: bool = False) -> str:
    """Margin over backprop in points, ``mean [low, high]`` per rule and size."""
    t = a.margins_common if common else a.margins
    return _size_grid(t, _gap_cells(t), [r for r in a.rules if r != "backprop"])


def feedback_table(a: Analysis) -> str:
    """Each Align rule minus FA / DFA in points, per size, at the best learning rates."""
    t = a.feedback_gaps
    pairs = t.assign(rule=[f"{_label(r)} minus {_label(f)}" for r, f in zip(t.rule, t.reference)])
    order = list(dict.fromkeys(f"{_label(r)} minus {_label(f)}" for r in a.align for f in a.feedback))
    return _size_grid(pairs, _gap_cells(t), order)


def runs_converged_table(a: Analysis) -> str:
    """Runs converged out of runs trained per rule and learning rate, over all sizes and
    seeds (and how many diverged)."""
    per_rule = a.per_lr.groupby(["rule", "lr"]).agg(
        runs=("runs", "sum"), converged=("converged", "sum"), diverged=("diverged", "sum")).reset_index()
    cells = [f"{c} / {n}" + (f" ({d} diverged)" if d else "")
             for c, n, d in zip(per_rule.converged, per_rule.runs, per_rule.diverged)]
    return rule_grid(per_rule, cells, column="lr", header="lr {:g}", order=a.rules, labels=RULE_LABELS)
