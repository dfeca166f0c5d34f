"""The recurrent chapter's analysis: from the Add-task tables to its numbers, tables and
scorecard records.

The chapter (``book/recurrent.ipynb``) trains with :mod:`alignlib.experiments.recurrent`
and hands its tidy tables here:

1. :func:`init_errors` reads the check at initialisation
   (:func:`~alignlib.experiments.recurrent.updates_at_initialisation`): each rule's
   relative distance ``||g_rule - g_BPTT||_F / ||g_BPTT||_F`` to backprop through time,
   per weighted layer;
2. :func:`analyse` reduces the width sweep (:func:`~alignlib.experiments.recurrent.sweep`)
   to a frozen :class:`Analysis`: which runs converged, each run's best test loss, their
   geometric means over seeds, the paired ratios to BPTT and to readout-only training,
   and the power-law fits of the trained outputs' distance to BPTT against width;
3. :func:`reproduction` sets the authors' run, repeated from their seed
   (:func:`~alignlib.experiments.recurrent.authors_seed_run`), beside the numbers their
   script printed;
4. :func:`claims` turns the three into the chapter's scorecard records, in the order the
   page states them; the ``*_markdown`` and ``*_text`` functions give its tables and
   sentences.

Losses and their ratios spread multiplicatively over seeds, so means and intervals are
geometric: the Student-t interval of the mean of ``log v``
(:func:`alignlib.statistics.summarise` with ``log=True``).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pandas as pd

from alignlib import claims as C
from alignlib import statistics
from alignlib.convergence import convergence_table
from alignlib.experiments import recurrent as rec
from alignlib.experiments.plotting import RULE_LABELS

__all__ = ["CHAPTER", "LABELS", "FLOAT32_ROUNDING", "PRINTED_TOLERANCE", "WEIGHTED_LAYERS",
           "check_parameters", "reference_lines", "init_errors", "Analysis", "analyse", "at",
           "align_rules", "at_the_ends", "initial_losses", "runs_text", "diverged_widths_text",
           "slope_text", "convergence_markdown", "best_markdown", "reproduction",
           "reproduction_markdown", "defined_rule_text", "claims"]

CHAPTER = "recurrent"

#: How the chapter writes rule names (BPTT for backprop; the authors' code paths).
LABELS = {**RULE_LABELS, "backprop": "BPTT", "align_ada_authors_rnn": "Align-ada (their code)",
          "align_zero_authors_rnn": "Align-zero (their code)",
          "readout_authors_rnn": "readout only (their code)"}

#: An Align rule equals BPTT at initialisation when its relative distance is below this
#: (float32 rounding).
FLOAT32_ROUNDING = 1e-5

#: Largest |ours - theirs| that reproduces a number the authors printed to two decimals:
#: 0.005 from their rounding plus 1e-3 for float32 arithmetic in another library.
PRINTED_TOLERANCE = 0.005 + 1e-3

#: The RNN's weighted layers, in the order the chapter shows them.
WEIGHTED_LAYERS = ("initial_state", "input", "recurrent", "readout")


def check_parameters(rules: Sequence[str], authors_rules: Sequence[str],
                     defined_rules: Sequence[str]) -> None:
    """Refuse a width sweep whose ``rules`` do not start with ``'backprop'`` (every rule
    is compared with it), ``authors_rules`` the authors did not publish a number for, and
    ``defined_rules`` that have no authors' code path to set them beside."""
    if not rules or rules[0] != "backprop":
        raise ValueError(f"rules must start with 'backprop' (every rule is compared with it), got {rules}")
    for name, values, allowed in (("authors_rules", authors_rules, rec.AUTHORS_BEST_TEST_LOSS[16]),
                                  ("defined_rules", defined_rules, ("align_ada", "align_zero", "readout"))):
        if set(values) - set(allowed):
            raise ValueError(f"{name} must be among {sorted(allowed)}, got {values}")


def reference_lines(datasets: dict) -> pd.DataFrame:
    """The two predictors that ignore the input
    (:func:`~alignlib.experiments.recurrent.constant_predictor_losses`) on each of
    ``datasets`` (``{name: Dataset}``): columns ``targets, constant_0.5, training_mean``,
    one row per data set in the given order."""
    return pd.DataFrame([{"targets": name, **rec.constant_predictor_losses(d)}
                         for name, d in datasets.items()])


# ------------------------------------------------------------------ at initialisation


def init_errors(init: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """The check at initialisation, read three ways.

    ``init``: :func:`~alignlib.experiments.recurrent.updates_at_initialisation`'s table
    (``setting, rule, width, site, relative_error``). Returns ``(shown, worst, authors)``:
    ``shown``, the rows the figure draws (the rules as defined, setting ``'intended'``,
    then the authors' Align-ada, setting ``'authors_ada'``); ``worst``, per rule as
    defined the largest relative error over the weighted layers; ``authors``, the
    authors' Align-ada's relative error per weighted layer (``site``)."""
    ours = init[init.setting == "intended"]
    theirs = init[(init.rule == "align_ada_authors_rnn") & (init.setting == "authors_ada")]
    return (pd.concat([ours, theirs]), ours.groupby("rule").relative_error.max(),
            theirs.set_index("site").relative_error)


# ------------------------------------------------------------------ the width sweep


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What :func:`analyse` returns: the width sweep's tidy tables.

    ``rules``, ``widths``: the sweep's, in the chapter's order (``'backprop'`` first);
    ``convergence``: one row per run, ``rule, width, seed, epochs, window, loss,
    relative_change, diverged, converged, settled`` (:func:`convergence_table`;
    ``settled``: converged or diverged, i.e. the run learnt what it will);
    ``best``: per run its best test loss, ``setting, rule, width, seed, lr, best``;
    ``summary``: per ``rule, width`` the geometric mean of ``best`` over the runs with a
    finite one, ``n, n_excluded, mean, sd, ci_low, ci_high``;
    ``ratio``: the same for ``best / best of BPTT from the same initial network`` (same
    width and seed); ``versus_readout``: the same for each Align rule's
    ``best / best of readout-only training from the same network`` (empty without
    readout-only training);
    ``distances``: the rows of metric ``relative_output_distance``
    (``||f_rule - f_BPTT||_F / ||f_BPTT - f(0)||_F`` after the last epoch) whose run and
    BPTT's did not diverge; ``fits``: per rule but BPTT the power-law fit
    ``log distance = slope log width + intercept`` over every seed and width, ``rule,
    slope, intercept, low, high, n`` (:func:`alignlib.statistics.power_law_fit`).
    """

    rules: tuple[str, ...]
    widths: tuple[int, ...]
    convergence: pd.DataFrame
    best: pd.DataFrame
    summary: pd.DataFrame
    ratio: pd.DataFrame
    versus_readout: pd.DataFrame
    distances: pd.DataFrame
    fits: pd.DataFrame


def _undiverged_distances(history: pd.DataFrame, convergence: pd.DataFrame) -> pd.DataFrame:
    """The finite ``relative_output_distance`` rows, leaving out the pairs in which the
    rule's run or BPTT's (same width and seed) diverged."""
    failed = convergence.set_index(["rule", "width", "seed"]).diverged
    dist = history[(history.metric == "relative_output_distance") & np.isfinite(history.value)]
    return dist[[not (failed[(r, w, s)] or failed[("backprop", w, s)])
                 for r, w, s in zip(dist.rule, dist.width, dist.seed)]]


def analyse(history: pd.DataFrame, *, rules: Sequence[str], widths: Sequence[int],
            tolerance: float) -> Analysis:
    """Reduce a width sweep's history (:func:`~alignlib.experiments.recurrent.sweep`:
    ``setting, rule, width, run, seed, lr, epoch, metric, value, diverged``) trained with
    ``rules`` (``'backprop'`` first) at ``widths``; a run converged when its training loss
    moved by less than ``tolerance`` of its first epoch's over the last tenth of training
    (:func:`alignlib.convergence.convergence_table`)."""
    rules, widths = tuple(rules), tuple(int(w) for w in widths)
    conv = convergence_table(history, tolerance, keys=["rule", "width", "seed"])
    conv["settled"] = conv.converged | conv.diverged
    best = rec.best_losses(history)
    summary = statistics.summarise(best[np.isfinite(best.best)], "best", ["rule", "width"], log=True)
    ratio = statistics.summarise(rec.paired_ratios(best), "ratio", ["rule", "width"], log=True)
    if "readout" in rules:
        vs = rec.paired_ratios(best, reference="readout")
        versus = statistics.summarise(vs[vs.rule.isin(align_rules(rules))], "ratio",
                                      ["rule", "width"], log=True)
    else:
        versus = ratio.iloc[:0]
    dist = _undiverged_distances(history, conv)
    fits = pd.DataFrame([{"rule": rule, **statistics.power_law_fit(g.width, g.value)}
                         for rule in rules[1:] for g in [dist[dist.rule == rule]]],
                        columns=["rule", "slope", "intercept", "low", "high", "n"])
    return Analysis(rules, widths, conv, best, summary, ratio, versus, dist, fits)


def align_rules(rules: Sequence[str]) -> list[str]:
    """The Align rules among ``rules``, in their order."""
    return [r for r in rules if r.startswith("align")]


def at(table: pd.DataFrame, rule: str, width: int, column: str = "mean") -> float:
    """One entry of a summary table (:attr:`Analysis.summary`, ``ratio``,
    ``versus_readout``); NaN where no finite run exists."""
    return table.set_index(["rule", "width"])[column].get((rule, width), np.nan)


def at_the_ends(a: Analysis) -> pd.DataFrame:
    """The numbers the page quotes at the narrowest and the widest width: one row per
    ``rule, end`` (``end``: ``'narrowest'`` or ``'widest'``) with ``width``, ``best``
    (geometric mean of the best test loss), ``ratio, ratio_low, ratio_high`` (to BPTT,
    with its interval) and ``distance`` (mean relative output distance to BPTT); NaN
    where there is none."""
    dist = a.distances.groupby(["rule", "width"]).value.mean()
    rows = []
    for rule in a.rules:
        for end, width in (("widest", max(a.widths)), ("narrowest", min(a.widths))):
            rows.append({"rule": rule, "end": end, "width": width,
                         "best": at(a.summary, rule, width),
                         "ratio": at(a.ratio, rule, width),
                         "ratio_low": at(a.ratio, rule, width, "ci_low"),
                         "ratio_high": at(a.ratio, rule, width, "ci_high"),
                         "distance": dist.get((rule, width), np.nan)})
    return pd.DataFrame(rows)


def initial_losses(history: pd.DataFrame) -> pd.Series:
    """The initial networks' test loss (epoch 0) per ``width, seed``."""
    return history[(history.metric == "heldout_loss") & (history.epoch == 0)].groupby(
        ["width", "seed"]).value.first()


def runs_text(runs: pd.DataFrame, change: bool = False) -> str:
    """``"Align-ada at width 8, seed 1; ..."`` for the rows of a convergence table, with
    each run's ``relative_change`` when ``change``; ``"none"`` for no rows."""
    return "; ".join(f"{LABELS[r.rule]} at width {r.width}, seed {r.seed}"
                     + (f" ({r.relative_change:.1%})" if change else "")
                     for r in runs.itertuples()) or "none"


def diverged_widths_text(convergence: pd.DataFrame) -> str:
    """``"at widths 8, 16"``: the widths at which some run diverged, or ``"none"``."""
    widths = sorted(convergence[convergence.diverged].width.unique())
    return "at widths " + ", ".join(str(w) for w in widths) if widths else "none"


def slope_text(slope: float, low: float, high: float) -> str:
    """A power-law fit's slope with its interval, ``"-0.52 [-0.80, -0.24]"``, or ``"not
    fitted"`` (one width)."""
    if not np.isfinite(slope):
        return "not fitted"
    return f"{slope:+.2f} [{low:+.2f}, {high:+.2f}]"


def convergence_markdown(convergence: pd.DataFrame) -> str:
    """Converged runs per rule (rows) and width (columns), ``"2/3 (≤ 0.4%)"``: the count
    of converged runs and the largest ``relative_change`` over the last tenth of
    training, as a fraction of the first epoch's loss."""
    labelled = convergence.assign(rule=convergence.rule.map(LABELS))
    counts = labelled.pivot_table(index="rule", columns="width", values="converged",
                                  aggfunc=lambda v: f"{int(v.sum())}/{len(v)}")
    change = labelled.pivot_table(index="rule", columns="width", values="relative_change",
                                  aggfunc="max")
    shown = counts.astype(str) + change.map(lambda v: f" (≤ {v:.1%})")
    return rec.markdown_table(shown.reset_index().rename(
        columns=lambda c: f"width {c}" if c != "rule" else c))


def best_markdown(a: Analysis) -> str:
    """Geometric-mean best test loss, one row per width and one column per rule."""
    table = a.summary.set_index(["rule", "width"])["mean"].unstack("rule")[list(a.rules)]
    return rec.markdown_table(table.rename(columns=LABELS).reset_index(),
                              formats={"width": "d"}, default=".3f")


# ------------------------------------------------------------------ the authors' run


def reproduction(authors: pd.DataFrame, *, widths: Sequence[int], rules: Sequence[str],
                 defined_rules: Sequence[str], epochs: int) -> pd.DataFrame:
    """The authors' run repeated from their seed beside their printed numbers.

    ``authors``: :func:`~alignlib.experiments.recurrent.authors_seed_run`'s tables
    (``rule, width, epoch, metric, value``) for ``widths``, of their code path for each
    of ``rules`` and of the rules as defined for ``defined_rules``, ``epochs`` epochs.
    One row per ``width, rule``: ``printed`` (their script's best test loss,
    :data:`~alignlib.experiments.recurrent.AUTHORS_BEST_TEST_LOSS`; NaN where they
    printed none), ``ours`` (our best test loss along their code path), ``difference``
    (ours - printed), ``defined`` (the rule as defined from the same seed; NaN where not
    run) and ``compared`` (their number of epochs and a printed number: the row is
    checked).
    """
    best = (rec.best_losses(authors).set_index(["rule", "width"]).best if len(authors)
            else pd.Series(dtype=float))
    rows = []
    for width in widths:
        for rule in rules:
            theirs = rec.AUTHORS_BEST_TEST_LOSS.get(width, {}).get(rule, np.nan)
            ours = best.get((rec.rule_for("authors_code", rule).name, width), np.nan)
            rows.append({"width": width, "rule": rule, "printed": theirs, "ours": ours,
                         "difference": ours - theirs,
                         "defined": best.get((rule, width), np.nan) if rule in defined_rules else np.nan,
                         "compared": bool(epochs == rec.AUTHORS_SETTING["epochs"] and np.isfinite(theirs))})
    return pd.DataFrame(rows, columns=["width", "rule", "printed", "ours", "difference",
                                       "defined", "compared"])


def reproduction_markdown(repro: pd.DataFrame) -> str:
    """The :func:`reproduction` table as the page prints it."""
    shown = repro.drop(columns="compared").assign(rule=repro.rule.map(LABELS)).rename(columns={
        "printed": "printed by their script", "ours": "ours, their code path",
        "defined": "ours, the rule as defined"})
    return rec.markdown_table(shown, formats={
        "width": "d", "printed by their script": ".2f", "ours, their code path": ".4f",
        "difference": "+.4f", "ours, the rule as defined": ".4f"})


def defined_rule_text(repro: pd.DataFrame, rule: str) -> str:
    """``"width 16: 0.1234 against their 0.12; ..."``: the rule as defined, from the
    authors' seed, against their printed number, or ``"not run in this profile"``."""
    part = repro[(repro.rule == rule) & np.isfinite(repro.defined)]
    return "; ".join(f"width {row.width}: {row.defined:.4f} against their {row.printed:.2f}"
                     for row in part.itertuples()) or "not run in this profile"


# ------------------------------------------------------------------ scorecard records


def _interval_claim(claim: str, statement: str, quantity: str, table: pd.DataFrame,
                    rules: Sequence[str], width: int, expectation: str, threshold: float,
                    converged: bool, profile: str, figure: str) -> C.Claim:
    """A claim that each of ``rules``' geometric-mean ratios in ``table`` at ``width`` lies
    below ``threshold`` with its 95 % interval; the value is the worst (largest) rule's.
    Not tested without rules."""
    if not rules:
        return C.Claim(CHAPTER, claim, statement, quantity, None, None, None,
                       "no Align rule among this profile's rules", expectation, C.NOT_TESTED,
                       profile, figure)
    worst = max(rules, key=lambda r: at(table, r, width))
    return C.Claim(
        CHAPTER, claim, statement, quantity, at(table, worst, width),
        at(table, worst, width, "ci_low"), at(table, worst, width, "ci_high"),
        "; ".join(f"{LABELS[r]} {at(table, r, width):.2f} "
                  f"[{at(table, r, width, 'ci_low'):.2f}, {at(table, r, width, 'ci_high'):.2f}]"
                  for r in rules),
        expectation,
        C.verdict_of_intervals([(at(table, r, width, "ci_low"), at(table, r, width, "ci_high"))
                                for r in rules], threshold, above=False, converged=converged),
        profile, figure)


def claims(init: pd.DataFrame, a: Analysis, repro: pd.DataFrame, *, profile: str,
           comparable: float, authors_widths: Sequence[int], authors_epochs: int
           ) -> list[C.Claim]:
    """The chapter's scorecard records, in the page's order.

    ``init-equals-bptt``: every Align rule's relative error to BPTT at initialisation
    below :data:`FLOAT32_ROUNDING` at every weighted layer (``init``: as for
    :func:`init_errors`). At the widest width, over the seeds: ``align-comparable-to-bptt``,
    each Align rule's best test loss at most ``comparable`` times BPTT's from the same
    network; ``align-beats-readout``, below readout-only training's (not tested without
    it). ``align-approaches-bptt``: the fitted exponent of the distance to BPTT against
    width below 0 for every Align rule. ``authors-numbers-reproduced``: every compared
    row of ``repro`` (:func:`reproduction` at ``authors_widths``, ``authors_epochs``
    epochs) within
    :data:`PRINTED_TOLERANCE`. A claim on runs that had not settled is at most
    inconclusive.
    """
    out = []
    _, worst, _ = init_errors(init)
    check_width = int(init.width.max())
    out.append(C.Claim(
        CHAPTER, "init-equals-bptt",
        "At initialisation every Align rule's update equals backprop through time's, at every weighted layer",
        "largest relative distance to the BPTT update over rules and weighted layers (float32)",
        worst.max(), None, None,
        "; ".join(f"{LABELS[r]} {v:.1e}" for r, v in worst.items()) + f" (width {check_width})",
        "below 1e-5 (float32 rounding) for every Align rule",
        C.verdict_of_checks([v < FLOAT32_ROUNDING for v in worst]), profile, "fig-recurrent-init"))

    align = align_rules(a.rules)
    wide, narrow = max(a.widths), min(a.widths)
    n_seeds = a.best.seed.nunique()
    settled = a.convergence.groupby(["rule", "width"]).settled.all()
    out.append(_interval_claim(
        "align-comparable-to-bptt",
        "At the widest width the Align rules reach a test loss comparable to BPTT's",
        f"best test loss / BPTT's from the same initial network, width {wide}, geometric "
        f"mean and 95% interval over {n_seeds} seeds (worst Align rule)",
        a.ratio, align, wide, f"at most {comparable:g} for every Align rule", comparable,
        all(settled[(r, wide)] for r in align + ["backprop"]), profile, "fig-recurrent-best-loss"))

    statement = "At the widest width the Align rules beat readout-only training"
    if "readout" in a.rules:
        out.append(_interval_claim(
            "align-beats-readout", statement,
            f"best test loss / readout-only's from the same initial network, width {wide}, "
            f"geometric mean and 95% interval over {n_seeds} seeds (worst Align rule)",
            a.versus_readout, align, wide, "below 1 for every Align rule", 1.0,
            all(settled[(r, wide)] for r in align + ["readout"]), profile, "fig-recurrent-best-loss"))
    else:
        out.append(C.Claim(CHAPTER, "align-beats-readout", statement,
                           "best test loss / readout-only's", None, None, None,
                           "readout-only training is not among this profile's rules",
                           "below 1 for every Align rule", C.NOT_TESTED, profile,
                           "fig-recurrent-best-loss"))

    fits = a.fits.set_index("rule")
    fitted = [r for r in align if np.isfinite(fits.slope[r])]
    steepest = max(fitted, key=lambda r: fits.slope[r]) if fitted else None
    out.append(C.Claim(
        CHAPTER, "align-approaches-bptt",
        "The Align rules' trained networks approach BPTT's as the width grows",
        "slope of log relative output distance to BPTT against log width, with 95% interval "
        "(largest slope of the Align rules)",
        fits.slope[steepest] if steepest else None, fits.low[steepest] if steepest else None,
        fits.high[steepest] if steepest else None,
        "; ".join(f"{LABELS[r]} {slope_text(fits.slope[r], fits.low[r], fits.high[r])}"
                  for r in fitted)
        + f" (widths {narrow}-{wide})" if fitted else f"one width only ({wide})",
        "a negative slope for every Align rule",
        C.verdict_of_intervals([(fits.low[r], fits.high[r]) for r in fitted], 0.0, above=False,
                               converged=bool(a.convergence[a.convergence.rule.isin(
                                   align + ["backprop"])].settled.all())),
        profile, "fig-recurrent-distance"))

    checks = [bool(abs(d) <= PRINTED_TOLERANCE) for d in repro.difference[repro.compared]]
    max_diff = float(np.nanmax(np.abs(repro.difference))) if checks else np.nan
    widths = list(authors_widths)
    out.append(C.Claim(
        CHAPTER, "authors-numbers-reproduced",
        "The authors' printed best test losses are reproduced from their seed",
        "largest |ours - theirs| over the rules and widths repeated (their numbers have two decimals)",
        max_diff if checks else None, None, None,
        (f"{sum(checks)} of {len(checks)} within {PRINTED_TOLERANCE:g}; largest difference "
         f"{max_diff:.4f} (widths {', '.join(map(str, widths))})") if checks else
        f"not compared: {authors_epochs} epochs, widths {widths}",
        f"every difference at most {PRINTED_TOLERANCE:g}", C.verdict_of_checks(checks), profile,
        "fig-recurrent-authors"))
    return out
