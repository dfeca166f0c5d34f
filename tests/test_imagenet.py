"""Tests for alignlib.experiments.imagenet: the ImageNet chapter's data choice, analysis,
text, figure and claims, on hand-built sweep tables (no training). The chapter itself runs
in the tiny build (tests/test_feedforward.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alignlib import claims
from alignlib.experiments import imagenet as inet

#: Final held-out accuracy per rule and seed (three seeds), at the only learning rate.
ACCURACY = {"backprop": [0.30, 0.32, 0.34], "align_zero": [0.285, 0.31, 0.335],
            "align_ada": [0.29, 0.32, 0.335], "fa": [0.20, 0.21, 0.22], "dfa": [0.15, 0.16, 0.17]}


def toy_runs(accuracy=ACCURACY, *, epochs: int = 3, losses=(1.0, 0.5, 0.5), lr: float = 5.0,
             extra_lr: dict | None = None) -> pd.DataFrame:
    """A :func:`ff.width_sweep` table: per rule and seed, ``heldout_accuracy`` rising
    linearly to its final value in ``accuracy``, ``train_loss`` per epoch from ``losses``
    and 2 s per epoch (``runs_in_call`` 3). ``extra_lr``: ``{rule: (lr, final accuracies)}``
    of a second learning rate."""
    rows = []
    runs = [(rule, lr, values) for rule, values in accuracy.items()]
    runs += [(rule, other, values) for rule, (other, values) in (extra_lr or {}).items()]
    for rule, rate, values in runs:
        for seed, final in enumerate(values):
            for epoch in range(epochs + 1):
                metrics = {"heldout_accuracy": final * epoch / epochs}
                if epoch:
                    metrics.update(train_loss=losses[epoch - 1], seconds=2.0)
                for metric, value in metrics.items():
                    rows.append(dict(experiment="imagenet", dataset="toy", arch="convnet",
                                     optimizer="sgd", parameterization="ntk", n_train=100,
                                     rule=rule, width=4, lr=rate, seed=seed, epoch=epoch,
                                     metric=metric, value=value, diverged=False, batch_size=100,
                                     runs_in_call=3))
    return pd.DataFrame(rows)


def test_load_data_gives_the_synthetic_stand_in_or_refuses():
    data = inet.load_data("synthetic", n_train=8, n_test=4)
    assert data.x_train.shape == (8, 32, 32, 3) and data.n_outputs == 1000
    assert data.name == "synthetic ImageNet stand-in"
    with pytest.raises(ValueError, match="synthetic' or 'imagenet32"):
        inet.load_data("cifar10", n_train=8, n_test=4)


def test_analysis_of_a_sweep():
    runs = toy_runs(extra_lr={"backprop": (1.0, [0.1, 0.1, 0.1])})
    a = inet.analyse(runs)
    best = a.best.set_index("rule")
    assert best.loc["backprop", "lr"] == 5.0 and best.loc["backprop", "n_lrs"] == 2
    assert best.loc["align_zero", "mean"] == pytest.approx(0.31)
    assert set(a.curves.lr) == {5.0} and set(a.curves.metric) == {"heldout_accuracy"}
    assert len(a.curves) == 5 * 3 * 4  # rules x seeds x epochs 0..3, best learning rates only
    assert len(a.convergence) == 15 and a.convergence.converged.all()
    assert list(a.close.rule) == ["align_zero", "align_ada"]
    np.testing.assert_allclose(a.close.gap, [-1.0, -0.5])  # points, paired by seed
    assert set(a.close.reference) == {"backprop"}
    assert list(zip(a.beats.rule, a.beats.reference)) == [
        ("align_zero", "fa"), ("align_ada", "fa"), ("align_zero", "dfa"), ("align_ada", "dfa")]
    np.testing.assert_allclose(a.beats.gap, [10.0, 10.5, 15.0, 15.5])
    assert set(a.timing.rule) == set(ACCURACY) and (a.timing.seconds_per_epoch == 2.0).all()
    assert inet.analyse(toy_runs(epochs=1, losses=(1.0,))).timing.empty  # epoch 1 compiles


def test_claims_hold_when_the_align_rules_are_close_and_ahead():
    close, beats = inet.claims(inet.analyse(toy_runs()), profile="gpu", few_points=3.0, smoke=False)
    assert (close.claim, beats.claim) == ("align-close-to-backprop", "align-beats-feedback")
    assert close.verdict == beats.verdict == claims.HOLDS
    assert close.value == pytest.approx(-1.0) and close.low < close.value < close.high
    assert close.measured == ("Align-zero − backprop = -1.0 points [-2.2, +0.2], "
                              "Align-ada − backprop = -0.5 points [-1.7, +0.7]")
    assert close.expectation == "every Align rule at least −3 points"
    assert beats.value == pytest.approx(10.0)
    assert {close.figure, beats.figure} == {"fig-imagenet"}
    # an interval that straddles the threshold decides nothing
    close, _ = inet.claims(inet.analyse(toy_runs()), profile="gpu", few_points=0.5, smoke=False)
    assert close.verdict == claims.INCONCLUSIVE


def test_claims_are_not_tested_in_the_smoke_test_or_without_the_rules():
    a = inet.analyse(toy_runs())
    for c in inet.claims(a, profile="cpu", few_points=3.0, smoke=True):
        assert c.verdict == claims.NOT_TESTED and c.value is None
        assert c.measured == "smoke test on random images: nothing to compare"
    no_feedback = {r: v for r, v in ACCURACY.items() if r not in ("fa", "dfa")}
    close, beats = inet.claims(inet.analyse(toy_runs(no_feedback)), profile="gpu", few_points=3.0,
                               smoke=False)
    assert close.verdict == claims.HOLDS
    assert beats.verdict == claims.NOT_TESTED
    assert beats.measured == "not measured (needs an Align rule and FA or DFA in `rules`)"


def test_one_seed_judges_the_gap_itself_and_only_on_converged_runs():
    one_seed = {r: v[:1] for r, v in ACCURACY.items()}
    close, beats = inet.claims(inet.analyse(toy_runs(one_seed)), profile="gpu", few_points=3.0,
                               smoke=False)
    assert close.verdict == beats.verdict == claims.HOLDS
    assert close.low is None and close.high is None and close.value == pytest.approx(-1.5)
    assert close.measured == "Align-zero − backprop = -1.5 points, Align-ada − backprop = -1.0 points"
    # both gaps below -0.5 points: false on settled runs, undecided on unsettled ones
    close, _ = inet.claims(inet.analyse(toy_runs(one_seed)), profile="gpu", few_points=0.5,
                           smoke=False)
    assert close.verdict == claims.DOES_NOT_HOLD
    unsettled = inet.analyse(toy_runs(one_seed, losses=(1.0, 0.8, 0.6)))
    close, _ = inet.claims(unsettled, profile="gpu", few_points=0.5, smoke=False)
    assert close.verdict == claims.INCONCLUSIVE
    assert close.measured.endswith("; 5 of 5 runs had not converged")


def test_the_page_text():
    data = inet.load_data("synthetic", n_train=8, n_test=4)
    texts = inet.setting_texts(data, width=4, strides=[1, 2, 1, 2, 1, 2, 1], epochs=1, lrs=[5.0],
                               seeds=[0], smoke=True)
    assert texts["strides_text"] == "1, 2, 1, 2, 1, 2 and 1"
    assert texts["maps_text"] == "32, 16, 16, 8, 8, 4 and 4"
    assert texts["setting"] == ("synthetic ImageNet stand-in: 8 training / 4 held-out images of "
                                "32×32×3, 1,000 classes, 7 convolutions of width 4, 1 epoch, "
                                "lr 5, 1 seed")
    assert "numbers mean nothing" in texts["kind"]
    assert inet.setting_texts(data, width=4, strides=[1, 2], epochs=2, lrs=[5.0, 1.0], seeds=[0, 1],
                              smoke=False)["kind"] == "ImageNet 32×32"
    rules = ["backprop", "align_ada", "align_zero", "dfa", "fa"]
    result = inet.result_texts(inet.analyse(toy_runs()), rules)
    assert result["smoke_ok"] == "finished with finite losses"
    assert result["smoke_rules"] == "backprop, Align-ada, Align-zero, DFA, FA"
    assert result["acc_backprop"] == "32.0 % [27.0, 37.0]"
    assert result["acc_readout"] == "–"
    assert result["timing_text"] == "backprop 2 s, Align-ada 2 s, Align-zero 2 s, DFA 2 s, FA 2 s"
    short = inet.result_texts(inet.analyse(toy_runs(epochs=1, losses=(np.nan,))), rules)
    assert short["smoke_ok"] == "produced a non-finite loss"
    assert short["timing_text"] == "not measured (needs at least 2 epochs)"


def test_the_figure_draws_one_line_per_rule_and_chance():
    a = inet.analyse(toy_runs())
    fig = inet.plot_accuracy(a.curves, list(ACCURACY), n_classes=1000, smoke=True)
    (ax,) = fig.axes
    assert len(ax.lines) == len(ACCURACY) + 1 and ax.get_title().startswith("SMOKE TEST")
    assert ax.lines[0].get_ydata()[-1] == pytest.approx(32.0)
