"""The theory chapter's analysis, claims and page numbers on synthetic width sweeps (no
training): a quantity that falls like a known power of the width gives that slope and the
verdict the scorecard's words say; one that does not fall is not called a success."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from alignlib import claims as C
from alignlib.experiments import theory
from alignlib.experiments import theory_figures as figures

WIDTHS = (64, 256, 1024, 2048)
RULES = ("align_zero", "align_ada", "align_prop", "fa", "dfa", "readout")
#: A few per cent of scatter from width to width, as one seed per width gives.
SCATTER = {64: 1.03, 256: 0.97, 1024: 1.02, 2048: 0.99}


def power(p, scale=1.0, scatter=False):
    """``scale * w^p``, times :data:`SCATTER` with ``scatter``."""
    return lambda w: scale * float(w) ** p * (SCATTER[w] if scatter else 1.0)


def sweep_tables(widths=WIDTHS, depth=2, *, layer1=power(-0.5), hidden=power(-1.0),
                 readout=power(-0.5), ntk=power(-0.5), prediction=power(-0.5, 3.0),
                 alignment=lambda w: 1 - 2 / np.sqrt(w), control=lambda w: 0.1,
                 analytic=power(-0.5, 2.0), distance=power(-0.5, 5.0)):
    """``layers``, ``network`` and ``trajectories`` tables shaped as the sweep writes them
    (:func:`theory.width_sweep`, :func:`theory.trajectory_distances`), each quantity a
    given function of the width."""
    layer_rows, net_rows, traj_rows = [], [], []
    for w in widths:
        for layer in range(1, depth + 2):
            change = layer1 if layer == 1 else readout if layer == depth + 1 else hidden
            for metric, f in [("relative_change_fro", change), ("relative_change_op", power(-0.5)),
                              ("prediction_distance", prediction), ("alignment", alignment),
                              ("alignment_shuffled", control)]:
                layer_rows.append({"width": w, "layer": layer, "metric": metric, "value": f(w)})
        for metric, f in [("ntk_change", ntk), ("ntk_vs_analytic", analytic),
                          ("layer1_gram_vs_analytic", analytic), ("error_sum_vs_analytic", analytic),
                          ("final_loss", lambda w: 0.01), ("initial_loss", lambda w: 0.5)]:
            net_rows.append({"width": w, "metric": metric, "value": f(w)})
        for rule in sorted(RULES):
            for reference in ("backprop", "readout"):
                if reference != rule:
                    traj_rows.append({"width": w, "rule": rule, "reference": reference,
                                      "value": distance(w)})
    return pd.DataFrame(layer_rows), pd.DataFrame(net_rows), pd.DataFrame(traj_rows)


def verdicts(tables, **kw):
    found = theory.claims(theory.analyse(*tables), profile="cpu", **kw)
    return {c.claim: c for c in found}


def test_power_law_slopes_of_a_quantity_falling_like_the_inverse_square_root():
    table = pd.DataFrame({"width": np.repeat(WIDTHS, 2), "series": "a",
                          "value": [v for w in WIDTHS for v in (0.9 * w ** -0.5, 1.1 * w ** -0.5)]})
    fit = theory.power_law_slopes(table, ["series"]).iloc[0]
    # the mean over the rows of a width is fitted: exactly w^-1/2
    assert fit.slope == pytest.approx(-0.5) and fit.n == len(WIDTHS)
    assert fit.low == pytest.approx(-0.5) and fit.high == pytest.approx(-0.5)
    two = theory.power_law_slopes(table[table.width <= 256], ["series"]).iloc[0]
    assert two.slope == pytest.approx(-0.5) and np.isnan(two.low) and two.n == 2


def test_every_claim_holds_when_the_sweep_follows_the_theory():
    found = verdicts(sweep_tables())
    assert list(found) == ["lazy-first-layer", "lazy-readout", "lazy-hidden-layer", "lazy-ntk",
                           "layerwise-distance", "layerwise-alignment", "layerwise-control",
                           "layer1-gram", "ntk-analytic", "align-follows-backprop",
                           "feedback-like-readout"]
    assert {c.verdict for c in found.values()} == {C.HOLDS}, {k: c.verdict for k, c in found.items()}
    assert found["lazy-first-layer"].value == pytest.approx(-0.5)
    assert found["lazy-hidden-layer"].value == pytest.approx(-1.0)
    assert found["lazy-first-layer"].measured == "-0.50 [-0.50, -0.50]"
    assert found["align-follows-backprop"].measured.startswith("Align-zero to backprop -0.50")
    assert found["layerwise-distance"].quantity.endswith("; the slowest")
    assert all(c.figure in theory.FIGURES.values() for c in found.values())


def test_a_deviation_that_does_not_fall_is_not_called_lazy():
    found = verdicts(sweep_tables(layer1=power(0.0, 0.02, scatter=True),
                                  prediction=power(0.2, scatter=True)))
    first = found["lazy-first-layer"]
    assert abs(first.value) < 0.02 and first.low < first.value < first.high
    assert first.verdict == C.DOES_NOT_HOLD  # the whole interval of |slope + 1/2| above 0.2
    assert found["layerwise-distance"].verdict == C.DOES_NOT_HOLD  # rises in every layer
    assert found["lazy-readout"].verdict == C.HOLDS
    # the same scatter around n^-1/2 is shown
    assert verdicts(sweep_tables(layer1=power(-0.5, scatter=True)))["lazy-first-layer"].verdict == C.HOLDS


def test_a_power_law_with_the_wrong_exponent_does_not_hold_and_a_wide_interval_is_undecided():
    # the hidden-to-hidden layer falling like n^-1/2 instead of n^-1
    assert verdicts(sweep_tables(hidden=power(-0.5)))["lazy-hidden-layer"].verdict == C.DOES_NOT_HOLD
    # an NTK change that scatters around n^-1/2: the interval crosses the tolerance band
    scatter = {64: 1.0, 256: 1.0, 1024: 0.05, 2048: 0.2}
    c = verdicts(sweep_tables(ntk=lambda w: scatter[w] * w ** -0.5))["lazy-ntk"]
    assert c.low < -0.5 - theory.SLOPE_TOLERANCE and c.verdict == C.INCONCLUSIVE


def test_alignment_and_control_are_judged_at_the_ends_of_the_sweep():
    found = verdicts(sweep_tables(alignment=lambda w: 0.9, control=lambda w: 0.5))
    assert found["layerwise-alignment"].verdict == C.DOES_NOT_HOLD  # not higher, below 0.95
    assert found["layerwise-control"].verdict == C.DOES_NOT_HOLD
    assert found["layerwise-control"].value == pytest.approx(0.5)
    assert found["layerwise-alignment"].measured.startswith("layer 1 0.900 at width 64, 0.900 at 2048")
    looser = verdicts(sweep_tables(control=lambda w: 0.5), control_low=0.6)
    assert looser["layerwise-control"].verdict == C.HOLDS


def test_two_widths_fit_no_slope_but_compare_the_alignment():
    found = verdicts(sweep_tables(widths=(64, 2048)))
    for claim, c in found.items():
        if claim in ("layerwise-alignment", "layerwise-control"):
            assert c.verdict == C.HOLDS
        else:
            assert c.verdict == C.NOT_TESTED and c.value is None
            assert c.measured == "not enough points (2 widths; a slope with an interval needs 3)"
    one = verdicts(sweep_tables(widths=(2048,)))
    assert one["layerwise-alignment"].verdict == C.NOT_TESTED
    assert one["lazy-ntk"].measured.startswith("not enough points (1 width;")


def test_claims_without_the_layers_or_rules_they_need_are_not_measured():
    layers, network, traj = sweep_tables(depth=1)
    found = verdicts((layers, network, traj[~traj.rule.isin(["fa", "dfa"])]))
    assert found["lazy-hidden-layer"].verdict == C.NOT_TESTED
    assert found["lazy-hidden-layer"].measured == "not measured (no hidden-to-hidden layer)"
    assert found["feedback-like-readout"].measured.startswith("not measured (needs FA or DFA")
    assert found["lazy-first-layer"].verdict == C.HOLDS


def test_the_page_quotes_the_slopes_and_values_the_claims_record():
    a = theory.analyse(*sweep_tables())
    found = {c.claim: c for c in theory.claims(a, profile="cpu")}
    lazy = figures.lazy_training_numbers(a)
    assert format(lazy["slope_fro_layer1"][0], lazy["slope_fro_layer1"][1]) == \
        f"{found['lazy-first-layer'].value:+.2f}"
    assert lazy["slope_fro_hidden"][0] == pytest.approx(-1.0)
    assert lazy["change_layer1_widest"][0] == pytest.approx(2048 ** -0.5)
    layerwise = figures.layerwise_numbers(a)
    assert {k.rsplit("_", 1)[1] for k in layerwise} == {"layer1", "layer2", "readout"}
    assert layerwise["align_narrowest_layer1"][0] == pytest.approx(1 - 2 / 8)
    inf = figures.infinite_width_numbers(a)
    assert inf["slope_gram"][0] == pytest.approx(found["layer1-gram"].value)
    dist = figures.trajectory_numbers(a)
    assert dist["dist_fa_readout_widest"][0] == pytest.approx(5 * 2048 ** -0.5)
    assert len(dist) == 2 * 11  # every (rule, reference) pair at both ends
    table = figures.losses_markdown(a, steps=150)
    assert table.splitlines()[0] == "| width n | training loss at initialisation | after 150 steps |"
    assert table.splitlines()[2] == "| 64 | 0.5000 | 0.0100 |"


def test_the_figures_plot_the_analysis_tables():
    a = theory.analyse(*sweep_tables())
    expected = {figures.lazy_training: 4 * 3 * 2 + 4, figures.layerwise_theorem: 4 * 3 * 3,
                figures.infinite_width: 4 * 3, figures.trajectories: 4 * 8}
    for draw, rows in expected.items():
        fig, data = draw(a)
        try:
            assert len(data) == rows, draw.__name__
            assert {"width", "value"} <= set(data.columns)
        finally:
            plt.close(fig)
