"""The ImageNet chapter: the paper's largest test, a 7-layer ConvNet on ImageNet 32x32, or
random images of the same shape as a smoke test.

1. :func:`load_data`: the downsampled ImageNet 32x32 release, or the synthetic stand-in
   (random images, random labels among 1,000 classes: numbers mean nothing).
2. The sweep is :func:`alignlib.experiments.feedforward.width_sweep` at one width
   (``arch="convnet"``, ``experiment="imagenet"``).
3. :func:`analyse` reduces it to an :class:`Analysis` of tidy tables: each rule's best
   learning rate, its accuracy curve, whether its runs converged, the paired gaps of the
   Align rules to backprop and to FA / DFA, and the time per epoch.
4. :func:`setting_texts` and :func:`result_texts` are the page's descriptive text,
   :func:`plot_accuracy` its figure and :func:`claims` its scorecard records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from alignlib import claims as C
from alignlib.convergence import DEFAULT_TOLERANCE, convergence_table
from alignlib.data import Dataset
from alignlib.experiments import feedforward as ff
from alignlib.experiments.plotting import RULE_LABELS, rule_palette
from alignlib.experiments.tables import format_ci

__all__ = ["SMOKE_DATASET", "ALIGN_RULES", "FEEDBACK_RULES", "load_data", "Analysis", "analyse",
           "gaps_in_points", "setting_texts", "result_texts", "plot_accuracy", "claims"]

#: The ``dataset`` parameter of the smoke test (random images of ImageNet's shape).
SMOKE_DATASET = "synthetic"
#: The Align rules whose claims the chapter checks, and the rules they must beat.
ALIGN_RULES = ("align_zero", "align_ada")
FEEDBACK_RULES = ("fa", "dfa")
#: The figure the claims point to (its ``:name:`` on the page).
FIGURE = "fig-imagenet"
#: Side, channels and classes of ImageNet 32x32.
SIDE, CHANNELS, CLASSES = 32, 3, 1000

_GAP_COLUMNS = ["rule", "gap", "ci_low", "ci_high"]


def _label(rule: str) -> str:
    return RULE_LABELS.get(rule, rule)


def _and_list(items: Sequence) -> str:
    """``"1, 2, 1 and 2"``."""
    return ", ".join(map(str, items[:-1])) + f" and {items[-1]}"


def load_data(dataset: str, *, n_train: int, n_test: int, data_dir: str = "",
              target_offset: float = 0.0) -> Dataset:
    """``"imagenet32"``: ImageNet 32x32 from ``data_dir`` (empty: the data cache), its
    first ``n_train`` training images (0: all) and the 50,000 validation images;
    ``"synthetic"``: ``n_train`` / ``n_test`` random 32x32x3 images with random labels
    among 1,000 classes. Targets are ``one_hot - target_offset``."""
    if dataset == SMOKE_DATASET:
        return ff.synthetic_dataset((SIDE, SIDE, CHANNELS), CLASSES, n_train=n_train,
                                    n_test=n_test, seed=0, name="synthetic ImageNet stand-in",
                                    target_offset=target_offset)
    if dataset == "imagenet32":
        return ff.load_benchmark_data("imagenet32", n_train=n_train or None,
                                      cache_dir=data_dir or None, target_offset=target_offset)
    raise ValueError(f"dataset must be 'synthetic' or 'imagenet32', got {dataset!r}")


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What :func:`analyse` returns (all tidy tables).

    ``best``: per rule, its best learning rate and the mean held-out accuracy over seeds
    with its interval (:func:`ff.best_lr`: ``rule, lr, n, n_diverged, mean, sd, ci_low,
    ci_high, n_lrs``); ``curves``: the sweep's ``heldout_accuracy`` rows at each rule's
    best learning rate (one per run and epoch); ``losses``: each run's final training
    loss (:func:`ff.final_values`); ``convergence``: one row per run at a best learning
    rate (:func:`alignlib.convergence.convergence_table`, column ``converged``);
    ``close`` / ``beats``: :func:`gaps_in_points` of the Align rules to backprop / to FA
    and DFA; ``timing``: :func:`ff.epoch_seconds` per rule (empty with fewer than 2
    epochs).
    """

    best: pd.DataFrame
    curves: pd.DataFrame
    losses: pd.DataFrame
    convergence: pd.DataFrame
    close: pd.DataFrame
    beats: pd.DataFrame
    timing: pd.DataFrame


def gaps_in_points(runs: pd.DataFrame, reference: str, rules: Sequence[str]) -> pd.DataFrame:
    """Held-out accuracy of each of ``rules`` minus ``reference``'s, in percentage points,
    paired by seed, each rule at its best learning rate (:func:`ff.gap_to_reference`).

    Columns ``width, rule, lr, reference_lr, n, mean, reference_mean, gap, ci_low,
    ci_high, reference``, one row per rule of ``rules`` in that order (NaN gap where a rule
    diverged at every learning rate); only ``rule, gap, ci_low, ci_high`` and no rows if
    ``reference`` was not trained or ``rules`` is empty.
    """
    if reference not in set(runs.rule) or not rules:
        return pd.DataFrame(columns=_GAP_COLUMNS)
    g = ff.gap_to_reference(runs, reference)
    g = g.set_index("rule").reindex(list(rules)).rename_axis("rule").reset_index()
    g[["gap", "ci_low", "ci_high"]] *= 100
    return g.assign(reference=reference)


def analyse(runs: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE) -> Analysis:
    """Reduce the chapter's sweep (a :func:`ff.width_sweep` table at one width); a run
    converged when its training loss settled within ``tolerance``."""
    best = ff.best_lr(runs, ["rule"])
    curves = runs[runs.metric == "heldout_accuracy"].merge(best[["rule", "lr"]], on=["rule", "lr"])
    convergence = convergence_table(runs, tolerance).merge(best[["rule", "lr"]], on=["rule", "lr"])
    trained = set(best.rule)
    align = [r for r in ALIGN_RULES if r in trained]
    feedback = [r for r in FEEDBACK_RULES if r in trained]
    close = gaps_in_points(runs, "backprop", align)
    beats = pd.concat([gaps_in_points(runs, f, align) for f in feedback]
                      or [gaps_in_points(runs, "", [])], ignore_index=True)
    if ((runs.metric == "seconds") & (runs.epoch >= 2)).any():
        timing = ff.epoch_seconds(runs, ["rule"])
    else:  # epoch 1 includes compilation: nothing to time
        timing = pd.DataFrame(columns=["rule", "runs_in_call", "seconds_per_epoch",
                                       "seconds_per_run", "ratio_to_reference"])
    return Analysis(best, curves, ff.final_values(runs, "train_loss"), convergence, close,
                    beats, timing)


# --------------------------------------------------------------------------------------
# The page's text and figure
# --------------------------------------------------------------------------------------


def setting_texts(data: Dataset, *, width: int, strides: Sequence[int], epochs: int,
                  lrs: Sequence[float], seeds: Sequence[int], smoke: bool) -> dict[str, str]:
    """The set-up as the page states it: ``strides_text``, ``maps_text`` (the feature-map
    sides of a 32x32 input, :func:`ff.conv_feature_sizes`), ``setting`` (data, network,
    training) and ``kind`` (smoke test or ImageNet)."""
    return {
        "strides_text": _and_list(list(strides)),
        "maps_text": _and_list(ff.conv_feature_sizes(SIDE, strides)),
        "setting": f"{data.name}: {data.n_train:,} training / {data.n_test:,} held-out images "
                   f"of 32×32×3, 1,000 classes, {len(strides)} convolutions of width {width}, "
                   f"{epochs} epoch{'s' if epochs != 1 else ''}, lr {' or '.join(f'{v:g}' for v in lrs)}, "
                   f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}",
        "kind": "smoke test on random images (numbers mean nothing)" if smoke else "ImageNet 32×32",
    }


def result_texts(a: Analysis, rules: Sequence[str]) -> dict[str, str]:
    """What the run did, as the page states it: ``smoke_ok`` (every final training loss
    finite and no run diverged, or not), ``smoke_rules`` (the rules trained, in the order
    of ``rules``), ``acc_<rule>`` (best-lr held-out accuracy in % with its interval, for
    every rule of :data:`~alignlib.experiments.plotting.RULE_LABELS`; "–" if not
    trained) and ``timing_text`` (seconds per epoch of each rule)."""
    ok = bool(np.all(np.isfinite(a.losses.value))) and not bool(a.losses.diverged.any())
    out = {"smoke_ok": "finished with finite losses" if ok else "produced a non-finite loss",
           "smoke_rules": ", ".join(_label(r) for r in sorted(set(a.best.rule), key=list(rules).index))}
    b = a.best.set_index("rule")
    for rule in RULE_LABELS:
        out[f"acc_{rule}"] = ("–" if rule not in b.index else format_ci(
            b.loc[rule, "mean"], b.loc[rule, "ci_low"], b.loc[rule, "ci_high"], ".1f", 100, " %"))
    t = a.timing.set_index("rule")
    out["timing_text"] = (", ".join(f"{_label(r)} {t.loc[r, 'seconds_per_epoch']:.3g} s"
                                    for r in rules if r in t.index)
                          if len(t) else "not measured (needs at least 2 epochs)")
    return out


def plot_accuracy(curves: pd.DataFrame, rules: Sequence[str], *, n_classes: int, smoke: bool):
    """The figure: top-1 held-out accuracy (%) against epoch, one line per rule at its best
    learning rate (seed mean of ``curves``: :attr:`Analysis.curves`), chance ``100 /
    n_classes`` dotted; the title says when it is the smoke test."""
    import matplotlib.pyplot as plt

    palette = rule_palette(list(RULE_LABELS))
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    for rule in rules:
        c = curves[curves.rule == rule].groupby("epoch").value.mean()
        ax.plot(c.index, 100 * c.values, marker="o", color=palette[rule], label=_label(rule))
    ax.axhline(100 / n_classes, color="grey", ls=":", lw=1, label="chance")
    ax.set(xlabel="epoch", ylabel="top-1 accuracy (%)",
           title="SMOKE TEST: random images, numbers mean nothing" if smoke else "ImageNet 32×32")
    ax.legend()
    return fig


# --------------------------------------------------------------------------------------
# Scorecard records
# --------------------------------------------------------------------------------------


def _bounds(g: pd.DataFrame) -> list[tuple[float, float]]:
    """Each gap's 95 % interval; with one seed the gap itself; a diverged rule fails."""
    return [(lo, hi) if np.isfinite(lo) and np.isfinite(hi) else (gap, gap) if np.isfinite(gap)
            else (-np.inf, -np.inf) for gap, lo, hi in zip(g.gap, g.ci_low, g.ci_high)]


def _show(g: pd.DataFrame) -> str:
    return ", ".join(f"{_label(r.rule)} − {_label(r.reference)} = "
                     + format_ci(r.gap, r.ci_low, r.ci_high, "+.1f", 1, " points")
                     for r in g.itertuples())


#: The chapter's claims: id, statement, quantity, expectation (``{few}``: few_points), the
#: Analysis table that measures it, its threshold (``None``: minus few_points), and what a
#: profile must train to test it.
_CLAIMS = [
    ("align-close-to-backprop",
     "On ImageNet the Align rules come within a few points of backprop's accuracy",
     "held-out top-1 accuracy of the Align rule minus backprop's, in points (the worst "
     "Align rule; 95 % interval over seeds, none with one seed)",
     "every Align rule at least −{few:g} points", "close", None,
     "needs backprop and an Align rule in `rules`"),
    ("align-beats-feedback",
     "On ImageNet the Align rules reach a higher accuracy than FA and DFA",
     "held-out top-1 accuracy of the Align rule minus FA's or DFA's, in points (the "
     "smallest difference; 95 % interval over seeds, none with one seed)",
     "every Align rule above FA and DFA (difference > 0)", "beats", 0.0,
     "needs an Align rule and FA or DFA in `rules`"),
]


def claims(a: Analysis, *, profile: str, few_points: float, smoke: bool) -> list[C.Claim]:
    """The chapter's scorecard records: every Align rule within ``few_points`` of backprop
    (``align-close-to-backprop``) and above FA and DFA (``align-beats-feedback``), by
    their paired gaps' intervals (:func:`alignlib.claims.verdict_of_intervals`; with one
    seed the gap itself). Runs that had not converged make a failing check inconclusive.
    The smoke test judges nothing (``not tested``)."""
    converged = bool(a.convergence.converged.all())
    unconverged = ("" if converged else f"; {int((~a.convergence.converged).sum())} of "
                   f"{len(a.convergence)} runs had not converged")
    out = []
    for claim, statement, quantity, expectation, table, threshold, missing in _CLAIMS:
        table = getattr(a, table)
        threshold = -few_points if threshold is None else threshold
        worst = None
        if smoke:
            verdict, measured = C.NOT_TESTED, "smoke test on random images: nothing to compare"
        elif table.empty:
            verdict, measured = C.NOT_TESTED, f"not measured ({missing})"
        else:
            worst = table.loc[table.gap.fillna(-np.inf).idxmin()]
            verdict = C.verdict_of_intervals(_bounds(table), threshold, converged=converged)
            measured = _show(table) + unconverged
        out.append(C.Claim(
            chapter="imagenet", claim=claim, statement=statement, quantity=quantity,
            value=None if worst is None else worst.gap, low=None if worst is None else worst.ci_low,
            high=None if worst is None else worst.ci_high, measured=measured,
            expectation=expectation.format(few=few_points), verdict=verdict, profile=profile,
            figure=FIGURE))
    return out
