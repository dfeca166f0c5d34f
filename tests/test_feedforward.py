"""Tests for alignlib.experiments.feedforward: the sweeps behind the rules, low-data and ImageNet
chapters, their statistics, the rules chapter's analysis and claims on hand-made tables
(alignlib.experiments.rules_vs_width), and the gpu profiles' data paths on small fake files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from fakedata import fake_imagenet32, fake_kmnist
from helpers import REPO, figure_names, glued

import alignbook as B
from alignbook.scorecard import collect_claims
from alignlib.experiments import feedforward as ff
from alignlib.experiments import rules_vs_width as rv
from alignlib import claims
from alignlib.data import load_digits, with_target_offset

T_975_2 = 4.302652729911275  # Student-t quantile t_{0.975} with 2 degrees of freedom


# --------------------------------------------------------------------------- hand-made tables


def final_table(rows):
    """rows: (rule, width, lr, seed, value[, diverged])."""
    out = []
    for r in rows:
        rule, width, lr, seed, value = r[:5]
        out.append(dict(rule=rule, width=width, lr=lr, seed=seed, epoch=3, metric="heldout_accuracy",
                        value=value, diverged=bool(r[5]) if len(r) > 5 else False))
    return pd.DataFrame(out)


def test_summarise_leaves_diverged_runs_out_and_brackets_the_mean():
    table = final_table([("bp", 8, 1.0, s, v) for s, v in enumerate([0.6, 0.7, 0.8])]
                        + [("bp", 8, 5.0, 0, 0.9), ("bp", 8, 5.0, 1, 0.1, True), ("bp", 8, 5.0, 2, 0.8)])
    s = ff.summarise(table, ["rule", "width", "lr"]).set_index("lr")
    assert list(s.columns) == ["rule", "width", "n", "n_diverged", "mean", "sd", "ci_low", "ci_high"]
    assert s.loc[1.0, "mean"] == pytest.approx(0.7) and s.loc[1.0, "n"] == 3
    assert s.loc[1.0, "ci_low"] < s.loc[1.0, "mean"] < s.loc[1.0, "ci_high"]
    assert s.loc[1.0, "ci_high"] - 0.7 == pytest.approx(T_975_2 * 0.1 / math.sqrt(3))
    assert s.loc[5.0, "n"] == 2 and s.loc[5.0, "n_diverged"] == 1
    assert s.loc[5.0, "mean"] == pytest.approx(0.85)  # the diverged 0.1 is not averaged in


def test_final_values_takes_each_runs_last_epoch():
    rows = []
    for epoch, v in enumerate([0.1, 0.5, 0.7]):
        rows.append(dict(rule="a", lr=1.0, seed=0, epoch=epoch, metric="heldout_accuracy", value=v, diverged=False))
    # a call that stopped early (every run diverged): its last epoch is 1
    for epoch, v in enumerate([0.1, 0.2]):
        rows.append(dict(rule="a", lr=9.0, seed=0, epoch=epoch, metric="heldout_accuracy", value=v,
                         diverged=epoch == 1))
    rows.append(dict(rule="a", lr=1.0, seed=0, epoch=2, metric="train_loss", value=3.0, diverged=False))
    final = ff.final_values(pd.DataFrame(rows)).set_index("lr")
    assert final.loc[1.0, "value"] == 0.7 and final.loc[1.0, "epoch"] == 2
    assert final.loc[9.0, "value"] == 0.2 and bool(final.loc[9.0, "diverged"])
    with pytest.raises(ValueError, match="no rows with metric 'accuracy'"):
        ff.final_values(pd.DataFrame(rows), "accuracy")


def test_best_lr_picks_the_best_mean_among_finite_learning_rates():
    table = final_table(
        # width 8: lr 2 has the best mean; lr 5 is higher for two seeds but one diverged
        [("bp", 8, 1.0, s, v) for s, v in enumerate([0.50, 0.52, 0.54])]
        + [("bp", 8, 2.0, s, v) for s, v in enumerate([0.60, 0.61, 0.62])]
        + [("bp", 8, 5.0, 0, 0.9), ("bp", 8, 5.0, 1, 0.9), ("bp", 8, 5.0, 2, 0.9, True)]
        # width 16: a tie between lr 1 and lr 2 goes to the smaller learning rate
        + [("bp", 16, 1.0, s, 0.7) for s in range(3)] + [("bp", 16, 2.0, s, 0.7) for s in range(3)]
        # another rule, every learning rate diverged somewhere
        + [("fa", 8, 1.0, 0, 0.3, True), ("fa", 8, 1.0, 1, 0.2)])
    before = table.copy()
    best = ff.best_lr(table, ["rule", "width"]).set_index(["rule", "width"])
    assert best.loc[("bp", 8), "lr"] == 2.0 and best.loc[("bp", 8), "mean"] == pytest.approx(0.61)
    assert best.loc[("bp", 8), "n_lrs"] == 3
    assert best.loc[("bp", 16), "lr"] == 1.0
    assert math.isnan(best.loc[("fa", 8), "lr"]) and math.isnan(best.loc[("fa", 8), "mean"])
    pd.testing.assert_frame_equal(table, before)  # every learning rate stays in the data
    # the same answer from a summary table
    summary = ff.summarise(table, ["rule", "width", "lr"])
    assert ff.best_lr(summary, ["rule", "width"]).lr.tolist()[:2] == [2.0, 1.0]
    with pytest.raises(ValueError, match="must not contain 'lr'"):
        ff.best_lr(table, ["rule", "lr"])
    with pytest.raises(ValueError, match="column"):
        ff.best_lr(table.drop(columns="rule"), ["rule", "width"])


def test_gap_to_reference_pairs_seeds_at_each_rules_best_lr():
    table = final_table(
        [("backprop", 8, 1.0, s, v) for s, v in enumerate([0.80, 0.70, 0.90])]
        + [("backprop", 8, 5.0, s, v) for s, v in enumerate([0.10, 0.10, 0.10])]
        + [("align_ada", 8, 5.0, s, v) for s, v in enumerate([0.78, 0.66, 0.89])]
        + [("align_ada", 8, 1.0, s, v) for s, v in enumerate([0.50, 0.50, 0.50])])
    gaps = ff.gap_to_reference(table, "backprop", ["width"])
    assert len(gaps) == 1
    g = gaps.iloc[0]
    assert g.rule == "align_ada" and g.lr == 5.0 and g.reference_lr == 1.0
    diffs = np.array([-0.02, -0.04, -0.01])
    assert g.gap == pytest.approx(diffs.mean())
    half = T_975_2 * diffs.std(ddof=1) / math.sqrt(3)
    assert (g.ci_low, g.ci_high) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    # paired: much narrower than an unpaired interval of the two accuracies
    assert g.ci_high - g.ci_low < 0.1
    with pytest.raises(ValueError, match="reference rule 'dfa'"):
        ff.gap_to_reference(table, "dfa")


def test_epoch_seconds_skips_the_compiling_epoch():
    rows = []
    for rule, per_epoch in (("backprop", [9.0, 1.0, 1.2, 1.1]), ("align_zero", [8.0, 2.0, 2.4, 2.2])):
        for epoch, s in enumerate(per_epoch, start=1):
            for seed in range(2):
                for lr in (1.0, 2.0):
                    rows.append(dict(rule=rule, width=8, lr=lr, seed=seed, epoch=epoch, metric="seconds",
                                     value=s, diverged=False, runs_in_call=4))
    t = ff.epoch_seconds(pd.DataFrame(rows)).set_index("rule")
    assert t.loc["backprop", "seconds_per_epoch"] == pytest.approx(1.1)
    assert t.loc["backprop", "seconds_per_run"] == pytest.approx(1.1 / 4)
    assert t.loc["align_zero", "ratio_to_reference"] == pytest.approx(2.2 / 1.1)
    one_epoch = pd.DataFrame(rows).query("epoch == 1")
    with pytest.raises(ValueError, match="at least 2 epochs"):
        ff.epoch_seconds(one_epoch)


def test_conv_feature_sizes_for_same_padding():
    assert ff.conv_feature_sizes(224, [4, 2, 1, 2, 1, 2, 1]) == [56, 28, 28, 14, 14, 7, 7]
    assert ff.conv_feature_sizes(32, [1, 2, 1, 2, 1, 2, 1]) == [32, 16, 16, 8, 8, 4, 4]


def test_format_and_markdown_helpers():
    assert ff.format_ci(0.8734, 0.85, 0.9) == "0.873 [0.850, 0.900]"
    assert ff.format_ci(-0.021, -0.03, -0.01, "+.1f", 100) == "-2.1 [-3.0, -1.0]"
    assert ff.format_ci(float("nan"), 0, 1) == "–"
    md = ff.markdown_table(pd.DataFrame({"rule": ["a"], "width": [8], "acc": [0.51234]}),
                              formats={"width": "d"})
    assert md.splitlines() == ["| rule | width | acc |", "|---|---|---|", "| a | 8 | 0.512 |"]
    t = final_table([("a", 8, 0.05, 0, 1.0), ("a", 8, 0.1, 0, 1.0), ("a", 8, 5.0, 0, 1.0)])
    assert ff.select_lrs(t, [0.1, 5]).lr.tolist() == [0.1, 5.0]


# --------------------------------------------------------------------------- the rules chapter's analysis

WIDTHS = (16, 64, 256)
NOISE = {16: np.array([-0.01, 0.0, 0.01]), 64: np.array([0.005, -0.005, 0.0]), 256: np.array([0.0, 0.004, -0.004])}


def width_sweep_table(gaps, *, still_learning=(), epochs=20):
    """A width sweep without training, one learning rate per width (the common one, 10):
    backprop's held-out accuracy is 0.9 + seed noise; ``gaps[rule]`` lists the rule's
    accuracy minus backprop's (points) at each of :data:`WIDTHS`. The training loss settles
    after 5 epochs, or keeps falling for the (rule, width) in ``still_learning``."""
    rows = []
    for rule, points in {"backprop": [0.0] * len(WIDTHS), **gaps}.items():
        for width, gap in zip(WIDTHS, points):
            noise = NOISE[width] if rule == "backprop" else NOISE[width][::-1] / 2
            for seed, acc in enumerate(0.9 + gap / 100 + noise):
                falling = (rule, width) in still_learning
                for epoch in range(epochs + 1):
                    key = dict(rule=rule, width=width, lr=10.0, seed=seed, epoch=epoch, diverged=False)
                    rows.append({**key, "metric": "heldout_accuracy", "value": acc})
                    if epoch:
                        loss = 1.0 - (0.04 if falling else 0.1) * min(epoch, 20 if falling else 5)
                        rows.append({**key, "metric": "train_loss", "value": loss})
    plan = pd.DataFrame({"width": WIDTHS, "ntk_top_eigenvalue": 50.0, "lr_bound": 20.0, "lr": 10.0,
                         "fraction": 0.5, "common": True, "in_width_sweep": True, "in_lr_sweep": False})
    return pd.DataFrame(rows), plan


def rules_verdicts(gaps, **kwargs):
    runs, plan = width_sweep_table(gaps, **kwargs)
    a = rv.analyse(runs, plan, 0.01)
    return a, {c.claim: c for c in rv.claims(a, profile="tiny", few_points=3.0, width_figure="fig")}


def test_align_gaps_that_close_with_width_make_every_rules_claim_hold():
    a, found = rules_verdicts({"align_zero": [-6, -3, -1], "align_ada": [-5, -2, -0.5],
                               "fa": [-10, -10, -10], "dfa": [-12, -12, -12]})
    assert {k: c.verdict for k, c in found.items()} == {
        "align-within-few-points": claims.HOLDS, "align-beats-feedback-alignment": claims.HOLDS,
        "gap-shrinks-with-width": claims.HOLDS}
    slopes = a.slopes.set_index("rule").slope
    assert slopes["align_zero"] == pytest.approx(1.25)  # 5 points over 4 doublings of the width
    assert found["align-within-few-points"].value == pytest.approx(-1.0, abs=0.2)
    assert rv.widest_accuracies(a, ["backprop", "readout"]) == {"backprop": "0.900 [0.890, 0.910]",
                                                                "readout": "–"}
    assert rv.slope_texts(a, ["align_zero"])["align_zero"].startswith("+1.25 [")
    assert rv.convergence_report(a) == {"unconverged": "none", "diverged_runs": "none",
                                        "epochs_used": "width 16: 20, width 64: 20, width 256: 20"}
    table = rv.accuracy_table(a.best, ["backprop", "align_zero"]).splitlines()
    assert table[0] == "| rule | width 16 | width 64 | width 256 |"
    assert table[3].startswith("| Align-zero | 0.840 [") and "†" not in "".join(table)


def test_a_gap_that_widens_with_width_does_not_hold():
    _, found = rules_verdicts({"align_zero": [-1, -4, -8], "align_ada": [-1, -4, -8]})
    assert found["gap-shrinks-with-width"].verdict == claims.DOES_NOT_HOLD
    assert found["align-within-few-points"].verdict == claims.DOES_NOT_HOLD
    assert found["align-beats-feedback-alignment"].verdict == claims.NOT_TESTED


def test_runs_still_learning_make_a_failing_rules_claim_inconclusive():
    a, found = rules_verdicts({"align_zero": [-1, -4, -8], "align_ada": [-1, -4, -8]},
                              still_learning={("align_ada", 256)})
    assert found["align-within-few-points"].verdict == claims.INCONCLUSIVE
    assert found["gap-shrinks-with-width"].verdict == claims.INCONCLUSIVE
    assert "Align-ada at width 256, lr 10" in rv.convergence_report(a)["unconverged"]
    assert "†" in rv.accuracy_table(a.best, ["align_ada"])


def test_rules_page_tables_of_learning_rates_and_times():
    runs, plan = width_sweep_table({"align_zero": [-1, -1, -1]})
    assert rv.bounds_table(plan).splitlines()[2] == "| 16 | 50.0 | 20.0 | **10** |"
    summary = ff.summarise(runs, ["rule", "width", "lr"]).assign(fraction=0.5)
    summary.loc[(summary.rule == "align_zero") & (summary.width == 16), "n_diverged"] = 1
    assert rv.first_divergence_text(summary, ["backprop", "align_zero"], [16, 64]) == \
        "width 16: Align-zero 0.5; width 64: none diverged"
    timing = pd.DataFrame({"rule": ["backprop", "align_zero"], "width": 16, "seconds_per_run": [0.01, 0.02],
                           "ratio_to_reference": [1.0, 2.0]})
    assert rv.timing_table(timing, ["backprop", "align_zero"]).splitlines()[3] == "| Align-zero | 20 ms (×2.00) |"
    assert rv.time_ratios(timing, 16, ["align_zero", "fa"]) == {"align_zero": "×2.00", "fa": "–"}


# --------------------------------------------------------------------------- argument errors


@pytest.fixture(scope="module")
def small_digits():
    return load_digits(n_train=200)


@pytest.mark.parametrize("kwargs, message", [
    (dict(rules=["backprop", "nope"]), "unknown learning rule 'nope'"),
    (dict(arch="resnet"), "`arch` must be one of"),
    (dict(widths=[8, 0]), "`widths` must hold integers >= 1"),
    (dict(widths=[8, 8]), "`widths` has repeated entries"),
    (dict(lrs=[1.0, -2.0]), "`lrs` must hold positive"),
    (dict(lrs=[]), "`lrs` must list at least one"),
    (dict(seeds=[]), "`seeds` must list at least one"),
    (dict(epochs=0), "`epochs` must hold integers >= 1"),
    (dict(lrs_by_width={64: [1.0]}), "names widths \\[64\\] that are not in `widths`"),
    (dict(batch_size=500), "exceeds the 200 training examples"),
])
def test_width_sweep_rejects_bad_arguments_before_training(small_digits, kwargs, message):
    args = dict(arch="mlp", widths=[8], rules=["backprop"], lrs=[1.0], seeds=[0], epochs=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ff.width_sweep(small_digits, **args)


def test_data_and_model_errors():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        ff.load_benchmark_data("mnist")
    with pytest.raises(ValueError, match="needs images"):
        ff.model_factory("convnet", (64,), 10, 8)
    with pytest.raises(ValueError, match="parameterization"):
        ff.model_factory("mlp", (64,), 10, 8, parameterization="mup")


# --------------------------------------------------------------------------- sweeps that run


@pytest.mark.ci  # the chapters' tiny runs in `make test` use the same sweep
def test_tiny_width_sweep_shapes_and_shared_initialisation(small_digits):
    table = ff.width_sweep(small_digits, arch="mlp", widths=[8, 16], rules=["backprop", "align_zero"],
                              lrs=[1.0, 5.0], lrs_by_width={16: [0.5, 1.0, 5.0]}, seeds=[0, 1],
                              epochs=2)
    assert list(table.columns)[:10] == list(ff.RUN_KEYS)
    assert set(table.metric) == {"train_loss", "heldout_loss", "heldout_accuracy", "seconds"}
    runs = table.groupby(["rule", "width"]).apply(lambda g: g[["lr", "seed"]].drop_duplicates().shape[0])
    assert runs.to_dict() == {("align_zero", 8): 4, ("align_zero", 16): 6, ("backprop", 8): 4,
                              ("backprop", 16): 6}
    assert (table[table.width == 16].runs_in_call == 6).all()
    acc = table[table.metric == "heldout_accuracy"]
    assert len(acc) == (4 + 6) * 2 * 3  # runs x rules x epochs 0..2
    # epoch 0: the same seed gives the same initial network for every rule and lr
    e0 = acc[acc.epoch == 0].groupby(["width", "seed"]).value
    assert (e0.max() - e0.min()).max() == 0
    # all 200 training examples, all 297 held-out ones, in the default float32
    assert (table.n_train == 200).all() and (table.dataset == "digits").all()
    # backprop and Align-zero take identical first steps: after one epoch they are close
    best = ff.best_lr(table, ["rule", "width"])
    assert set(best.columns) >= {"rule", "width", "lr", "mean", "ci_low", "ci_high", "n_lrs"}
    assert ff.lr_sweep(small_digits, arch="mlp", widths=[8], rules=["readout"], lrs=[1.0],
                          seeds=[0], epochs=1).experiment.unique().tolist() == ["lr_sweep"]


def test_adam_in_the_standard_parameterisation_runs():
    table = ff.width_sweep(load_digits(), arch="mlp", widths=[32], rules=["align_ada"], lrs=[0.01],
                              seeds=[0], epochs=2, optimizer="adam", parameterization="standard")
    assert set(table.optimizer) == {"adam"} and set(table.parameterization) == {"standard"}
    acc = ff.final_values(table).value.iloc[0]
    assert acc > 0.3  # well above chance (0.1) and the initial 0.11 after 30 Adam steps


def test_synthetic_stand_in_has_the_imagenet_shape():
    data = ff.synthetic_dataset((32, 32, 3), 1000, n_train=20, n_test=10, target_offset=0.0)
    assert data.x_train.shape == (20, 32, 32, 3) and data.x_train.dtype == np.float32
    assert data.y_train.shape == (20, 1000) and data.n_outputs == 1000
    assert np.allclose(data.y_train.sum(axis=1), 1.0)  # plain one-hot
    assert 0 <= data.x_train.min() and data.x_train.max() <= 1
    shifted = with_target_offset(data, 0.1)
    assert np.allclose(shifted.y_train.max(axis=1), 0.9) and np.allclose(shifted.y_train.min(axis=1), -0.1)


# --------------------------------------------------------------------------- gpu profiles on fake files


def gpu_profile(chapter: str) -> dict:
    profiles = yaml.safe_load((REPO / "book" / "profiles.yml").read_text())["profiles"]
    defaults = {name: p.default for name, p in B.notebook_parameters(REPO / "book" / f"{chapter}.ipynb").items()}
    return {**defaults, **(profiles["gpu"]["chapters"].get(chapter) or {})}


@pytest.mark.ci
@pytest.mark.slow
def test_rules_gpu_profile_path_on_fake_kmnist_files(tmp_path):
    p = gpu_profile("rules")
    assert p["dataset"] == "kmnist" and p["arch"] == "convnet"
    sums = fake_kmnist(tmp_path / "kmnist", 260)
    data = ff.load_benchmark_data(p["dataset"], cache_dir=tmp_path / "kmnist", checksums=sums,
                                     holdout=60)
    assert data.x_train.shape == (200, 28, 28, 1) and data.n_test == 60
    table = ff.width_sweep(data, arch=p["arch"], widths=[2], rules=p["rules"][:1], lrs=p["lrs"][:2],
                              seeds=p["seeds"][:2], epochs=2, strides=p["strides"],
                              seeds_per_call=p["seeds_per_call"] or None)
    assert table.runs_in_call.max() == 2 * min(p["seeds_per_call"] or 2, 2)
    assert np.isfinite(ff.final_values(table, "train_loss").value).all()
    adam = ff.width_sweep(data, arch=p["arch"], widths=[2], rules=["align_zero"], lrs=p["adam_lrs"][:1],
                             seeds=[0], epochs=1, strides=p["strides"], optimizer="adam",
                             parameterization="standard")
    assert len(ff.final_values(adam)) == 1


@pytest.mark.ci
@pytest.mark.slow
def test_imagenet_gpu_profile_path_on_fake_imagenet32_files(tmp_path):
    p = gpu_profile("imagenet")
    assert p["dataset"] == "imagenet32" and p["width"] == 512 and p["target_offset"] == 0
    sums = fake_imagenet32(tmp_path / "imnet", per_batch=12, n_val=20)
    data = ff.load_benchmark_data(p["dataset"], n_train=100, cache_dir=tmp_path / "imnet",
                                     checksums=sums, target_offset=p["target_offset"])
    assert data.x_train.shape == (100, 32, 32, 3) and data.n_test == 20 and data.n_outputs == 1000
    assert np.allclose(data.y_train.sum(axis=1), 1.0)
    table = ff.width_sweep(data, arch="convnet", widths=[2], rules=p["rules"][:1], lrs=p["lrs"],
                              seeds=p["seeds"], epochs=1, strides=p["strides"], batch_size=20)
    assert np.isfinite(ff.final_values(table, "train_loss").value).all()


# --------------------------------------------------------------------------- the chapters


@pytest.mark.slow
def test_rules_chapter_runs_in_tiny_profile_and_records_its_claims(tiny_book):
    values, found = run_for_claims("rules", tiny_book)
    assert set(found) == {"align-within-few-points", "align-beats-feedback-alignment",
                          "gap-shrinks-with-width"}
    assert values["profile"] == "tiny"
    for key in ["acc_backprop_widest", "bounds_table", "width_sweep", "lr_sweep", "adam", "curves",
                "timing_table", "n_converged"]:
        assert key in values, key
    # two epochs at most in the tiny profile: nothing converges, so nothing is called false
    assert all(c.verdict != claims.DOES_NOT_HOLD for c in found.values())


# --------------------------------------------------------------------------- the chapters' claims


def run_for_claims(chapter, tiny_book, tmp_path=None, monkeypatch=None, overrides=()):
    """``chapter`` in the tiny profile (the session's run, or a new one with
    ``overrides``); its glued values and its claims, whose verdicts must be the library's
    words, glued as the page shows them, and whose figures must be figures of the chapter."""
    if overrides:
        monkeypatch.setenv("ALIGNBOOK_RESULTS", str(tmp_path / "results"))
        monkeypatch.setenv(B.BUILD_ENV, str(tmp_path / "build"))
        run = B.run_chapter(B.Book(REPO), chapter, "tiny", overrides, recompute=True, echo=lambda *a: None)
        assert run.ok, run.failure_message()
        values = glued(run.output)
        found = collect_claims("tiny", tmp_path / "results", [chapter])
    else:
        executed = tiny_book.chapter(chapter)
        values = executed.glued()
        found = list(executed.claims().values())
    assert found, f"{chapter} recorded no claims"
    names = figure_names(chapter)
    for c in found:
        assert c.chapter == chapter and c.profile == "tiny"
        assert c.verdict in claims.VERDICTS
        assert values[f"verdict_{c.claim.replace('-', '_')}"] == c.verdict, c.claim
        assert values[f"measured_{c.claim.replace('-', '_')}"] == c.measured, c.claim
        assert c.figure in names, (c.claim, c.figure, names)
        assert "nan" not in c.measured.lower(), c
    return values, {c.claim: c for c in found}


THEORY_SLOPE_CLAIMS = {"lazy-first-layer", "lazy-readout", "lazy-hidden-layer", "lazy-ntk",
                       "layerwise-distance", "layer1-gram", "ntk-analytic",
                       "align-follows-backprop", "feedback-like-readout"}


@pytest.mark.slow
def test_theory_chapter_with_two_widths_fits_no_slope(tiny_book):
    _, found = run_for_claims("theory", tiny_book)
    assert set(found) == THEORY_SLOPE_CLAIMS | {"layerwise-alignment", "layerwise-control"}
    for name in THEORY_SLOPE_CLAIMS:  # the tiny profile has two widths
        assert found[name].verdict == claims.NOT_TESTED, found[name]
        assert "not enough points" in found[name].measured and found[name].value is None
    # a claim that compares two widths is judged
    assert found["layerwise-alignment"].verdict != claims.NOT_TESTED


@pytest.mark.ci
@pytest.mark.slow
def test_theory_chapter_judges_slopes_from_three_widths(tiny_book, tmp_path, monkeypatch):
    values, found = run_for_claims("theory", tiny_book, tmp_path, monkeypatch, [("widths", "[16, 32, 64]")])
    for name in THEORY_SLOPE_CLAIMS:
        c = found[name]
        assert c.verdict != claims.NOT_TESTED, c
        assert c.low <= c.value <= c.high, c
    # the record's slope is the slope the page quotes
    assert f"{found['lazy-first-layer'].value:+.2f}" == values["slope_fro_layer1"]
    assert f"{found['lazy-ntk'].value:+.2f}" == values["slope_ntk"]
    assert f"{found['layer1-gram'].value:+.2f}" == values["slope_gram"]


@pytest.mark.slow
def test_imagenet_smoke_test_does_not_judge_the_claims(tiny_book):
    values, found = run_for_claims("imagenet", tiny_book)
    assert values["smoke_ok"] == "finished with finite losses"
    assert "numbers mean nothing" in values["kind"]
    assert set(found) == {"align-close-to-backprop", "align-beats-feedback"}
    assert all(c.verdict == claims.NOT_TESTED and c.value is None for c in found.values())


@pytest.mark.ci
@pytest.mark.slow
def test_imagenet_chapter_judges_the_claims_on_imagenet32_files(tiny_book, tmp_path, monkeypatch):
    fake_imagenet32(tmp_path / "imnet", per_batch=12, n_val=20)
    _, found = run_for_claims("imagenet", tiny_book, tmp_path, monkeypatch, [
        ("dataset", "imagenet32"), ("data_dir", str(tmp_path / "imnet")),
        ("rules", "[backprop, align_zero, fa]"), ("seeds", "[0, 1]")])
    for c in found.values():
        assert c.verdict != claims.NOT_TESTED, c
        assert c.value is not None and c.low <= c.value <= c.high, c
        if "had not converged" in c.measured:  # then a failing check is inconclusive
            assert c.verdict in (claims.HOLDS, claims.INCONCLUSIVE), c
