"""Tests for alignlib.alignment.layers, alignlib.experiments.layer_alignment and
layer_alignment_analysis: exact conv scores from tap Grams, layer scores of trained
networks, the shuffled control, the probe estimator, the width sweep, the chapter's
analysis and claims on hand-built sweep tables, the gpu profile's data path (fake KMNIST /
CIFAR-10 files) and the alignment chapter itself."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from fakedata import fake_cifar10, fake_kmnist
from helpers import REPO

import alignlib as al
from alignlib import claims
from alignlib.alignment import alignment_score, conv_gram, layers
from alignlib.experiments import layer_alignment as la
from alignlib.experiments import layer_alignment_analysis as laa
from alignlib.data import load_digits


def stacked(model):
    return jax.tree.map(lambda a: a[None] if eqx.is_array(a) else a, model)


def slice_runs(tree, runs):
    return jax.tree.map(lambda a: a[runs] if eqx.is_array(a) else a, tree)


@pytest.fixture(scope="module")
def digits():
    return load_digits(n_train=200)


# ---------------------------------------------------------------------------------------
# Exact scores against the brute-force basis method of alignlib.alignment
# ---------------------------------------------------------------------------------------


CONV_CASES = [  # (H, W, k, stride, padding, c_in, c_out)
    (5, 5, 3, 1, "SAME", 2, 3),
    (8, 8, 3, 2, "SAME", 3, 2),
    (7, 6, 3, 2, "SAME", 2, 2),
    (6, 7, 3, 1, "VALID", 2, 4),
    (4, 4, 3, 2, "SAME", 5, 3),
    (5, 6, 2, 1, "SAME", 2, 2),
    (9, 9, 3, 3, "SAME", 1, 4),
]


@pytest.mark.parametrize("form", ["taps", "pairs"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_score_from_tap_counts_is_exact(case, form):
    H, W, k, s, pad, ci, co = case
    rng = np.random.default_rng(hash(case) % 2**32)
    a = rng.standard_normal((k, k, ci, co))
    b = a + 0.7 * rng.standard_normal((k, k, ci, co)) * np.exp(-np.arange(co))
    geo = layers.LayerGeometry("conv", "conv", a.shape, (H, W, ci), s, pad)
    with jax.enable_x64(True):
        expected = alignment_score(a, b, input_shape=(H, W, ci), stride=s, padding=pad)
        got = float(layers.exact_alignments([jnp.asarray(a)], jnp.asarray(b), geo, conv_form=form)[0])
        # the three Frobenius sums themselves, against the explicit Gram matrices
        from alignlib.alignment import gram

        ga = np.asarray(gram(a, input_shape=(H, W, ci), stride=s, padding=pad))
        gb = np.asarray(gram(b, input_shape=(H, W, ci), stride=s, padding=pad))
        sums = np.asarray(layers.gram_inner_products(jnp.asarray(a), jnp.asarray(b), geo,
                                                 conv_form=form))
    assert got == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(sums, [np.sum(ga * gb), np.sum(ga * ga), np.sum(gb * gb)],
                               rtol=1e-10)


def test_conv_form_choice_prefers_the_cheaper_exact_evaluation():
    stride1 = layers.conv_tap_counts((8, 8), (3, 3), 1)
    stride2 = layers.conv_tap_counts((8, 8), (3, 3), 2)
    assert stride1.shape == (9, 9, 9, 9)
    # stride 2 uses only the tap pairs whose offset is even: 5 per axis, 25 of 81
    assert len(conv_gram._conv_form(stride2, 64, 64, 2, force="pairs").pair_i) == 25
    assert conv_gram._conv_form(stride2, 256, 256, 2).name == "pairs"
    assert conv_gram._conv_form(stride1, 256, 256, 2).name == "taps"
    assert conv_gram._conv_form(stride1, 1, 256, 2).name == "taps"  # a first layer: c_in = 1
    with pytest.raises(ValueError, match="stride"):
        layers.conv_tap_counts((8, 8), (3, 3), 0)
    with pytest.raises(ValueError, match="padding"):
        layers.conv_tap_counts((8, 8), (3, 3), 1, "FULL")


@pytest.mark.parametrize("shape", [(7, 20), (20, 7)])
def test_dense_score_matches_alignment_score_and_is_nan_for_zero_updates(shape):
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shape)
    b = a + rng.standard_normal(shape)
    geo = layers.LayerGeometry("dense 1", "dense", shape, (shape[1],), 1, "SAME")
    with jax.enable_x64(True):
        got = float(layers.exact_alignment(jnp.asarray(a), jnp.asarray(b), geo))
        assert got == pytest.approx(alignment_score(a, b), abs=1e-12)
        assert float(layers.exact_alignment(3.0 * jnp.asarray(a), jnp.asarray(a), geo)) == pytest.approx(1.0)
    assert np.isnan(float(layers.exact_alignment(jnp.zeros(shape), jnp.asarray(b, jnp.float32), geo)))


def test_random_dense_updates_score_about_m_over_m_plus_d_plus_1():
    rng = np.random.default_rng(2)
    for m, d in [(200, 20), (30, 30), (10, 100)]:
        geo = layers.LayerGeometry("dense", "dense", (m, d), (d,), 1, "SAME")
        scores = [float(layers.exact_alignment(jnp.asarray(rng.standard_normal((m, d)), jnp.float32),
                                           jnp.asarray(rng.standard_normal((m, d)), jnp.float32), geo))
                  for _ in range(40)]
        assert np.mean(scores) == pytest.approx(layers.random_update_score(m, d), abs=0.02)
    assert layers.random_update_score(1024, 64) == pytest.approx(1024 / 1089)
    with pytest.raises(ValueError, match="`d`"):
        layers.random_update_score(3, 0)


# ---------------------------------------------------------------------------------------
# Networks and geometry
# ---------------------------------------------------------------------------------------


def test_layer_geometry_of_the_paper_networks():
    key = jax.random.PRNGKey(0)
    mlp = la.make_network("mlp", (8, 8, 1), 16, 10, key=key, depth=2)
    geo = layers.layer_geometry(mlp)
    assert [g.name for g in geo] == ["dense 1", "dense 2", "readout"]
    assert [g.input_shape for g in geo] == [(64,), (16,), (16,)]
    kmnist = la.make_network("convnet", (28, 28, 1), 4, 10, key=key, strides=(1, 2, 2))
    geo = layers.layer_geometry(stacked(kmnist))  # stacked networks work too
    assert [g.name for g in geo] == ["conv 1", "conv 2", "conv 3", "readout"]
    assert [g.input_shape for g in geo] == [(28, 28, 1), (28, 28, 4), (14, 14, 4), (4,)]
    assert [g.stride for g in geo] == [1, 2, 2, 1]
    cifar = la.make_network("convnet", (32, 32, 3), 4, 10, key=key,
                            strides=la.PAPER_CONV_STRIDES["cifar10"])
    shapes = [g.input_shape[:2] for g in layers.layer_geometry(cifar)[:-1]]
    assert shapes == [(32, 32)] * 4 + [(16, 16)] * 2 + [(8, 8)]
    with pytest.raises(ValueError, match="model"):
        la.make_network("resnet", (8, 8, 1), 4, 10, key=key)
    with pytest.raises(ValueError, match="MLP or ConvNet"):
        layers.layer_geometry(al.RNN(2, 4, key=key))


@pytest.mark.slow
def test_exact_scores_on_the_cifar_geometry_match_the_basis_method():
    """Every layer of the 7-layer CIFAR-10 ConvNet (32x32 inputs, strides 1,1,1,2,1,2,1)."""
    net = la.make_network("convnet", (32, 32, 3), 3, 10, key=jax.random.PRNGKey(1),
                          strides=la.PAPER_CONV_STRIDES["cifar10"])
    other = la.make_network("convnet", (32, 32, 3), 3, 10, key=jax.random.PRNGKey(2),
                            strides=la.PAPER_CONV_STRIDES["cifar10"])
    for geo, s, t in zip(layers.layer_geometry(net), al.weighted_layers(net), al.weighted_layers(other)):
        a, b = s.weight, s.weight + 0.5 * t.weight
        expected = alignment_score(a, b, input_shape=geo.input_shape if geo.kind == "conv" else None,
                                   stride=geo.stride)
        assert float(layers.exact_alignment(a, b, geo)) == pytest.approx(expected, abs=2e-5), geo.name


# ---------------------------------------------------------------------------------------
# Scores of trained networks
# ---------------------------------------------------------------------------------------


# the ConvNet case (20 s, mostly compiling) runs in .ci/run
@pytest.mark.parametrize("model", ["mlp", pytest.param("convnet", marks=[pytest.mark.slow,
                                                                         pytest.mark.ci])])
def test_one_full_batch_step_from_init_aligns_exactly(model):
    """After one full-batch step, W(1) - W(0) = -lr g_backprop(W0) = -lr g_align_zero(W0)."""
    data = load_digits(n_train=50)
    seeds = [0, 1]
    result = al.train(lambda k: la.make_network(model, (8, 8, 1), 16, 10, key=k), "backprop",
                      data, epochs=1, learning_rates=5.0, seeds=seeds, batch_size=50,
                      predict=True, epoch_metrics=layers.alignment_epoch_metrics(seeds),
                      progress=False)
    scores = layers.layer_alignment(result.models, result.initial, result.predicted, seeds=seeds)
    n_layers = 3 if model == "mlp" else 4
    assert scores.shape == (2, n_layers)
    np.testing.assert_allclose(scores, 1.0, atol=1e-5)
    h = result.history
    epoch1 = h[(h.epoch == 1) & h.metric.str.startswith("alignment@")]
    assert len(epoch1) == 2 * n_layers and np.allclose(epoch1.value, 1.0, atol=1e-5)
    dist = h[(h.epoch == 1) & h.metric.str.startswith("prediction_distance@")].value
    assert (dist < 1e-4).all()
    assert h[(h.epoch == 0) & h.metric.str.startswith("alignment@")].value.isna().all()
    probe = layers.layer_alignment(result.models, result.initial, result.predicted, method="probe",
                               n_batches=3, batch_size=50)
    np.testing.assert_allclose(probe, 1.0, atol=1e-4)


@pytest.fixture(scope="module")
def trained_wide(digits):
    """A width-256 MLP trained for 4 epochs with SGD at lr 5, two seeds."""
    seeds = [3, 4]
    return al.train(lambda k: la.make_network("mlp", (8, 8, 1), 256, 10, key=k), "backprop",
                    digits, epochs=4, learning_rates=5.0, seeds=seeds, predict=True,
                    progress=False), seeds


def test_shuffled_control_is_far_below_the_alignment_of_a_trained_wide_layer(trained_wide):
    result, seeds = trained_wide
    exact = layers.layer_alignment(result.models, result.initial, result.predicted, seeds=seeds)
    control = layers.layer_alignment(result.models, result.initial, result.predicted, seeds=seeds,
                                 control=True)
    assert exact.shape == control.shape == (2, 3)
    assert (exact > 0.95).all()
    assert (control < 0.35).all()
    assert (exact - control > 0.6).all()
    # the control of a run depends only on its seed, not on its position in the stack
    alone = layers.layer_alignment(*slice_runs((result.models, result.initial, result.predicted),
                                           slice(1, 2)), seeds=seeds[1:], control=True)
    np.testing.assert_allclose(alone[0], control[1], rtol=1e-6)


def test_probe_estimator_agrees_with_the_exact_score(trained_wide):
    result, seeds = trained_wide
    sub = slice_runs((result.models, result.initial, result.predicted), slice(0, 1))
    for control in (False, True):
        exact = layers.layer_alignment(*sub, seeds=seeds[:1], control=control)
        probe = layers.layer_alignment(*sub, seeds=seeds[:1], control=control, method="probe",
                                   n_batches=20, key=jax.random.PRNGKey(7))
        np.testing.assert_allclose(probe, exact, atol=0.02)


def test_shuffled_control_is_a_permutation_of_the_trained_weights(trained_wide):
    result, seeds = trained_wide
    w = al.weighted_layers(result.models)[1].weight
    w0 = al.weighted_layers(result.initial)[1].weight
    (perms,) = layers.shuffle_permutations(seeds, [w[0].size])[:1]
    control = np.asarray(layers._controls(w, w0, perms))
    for r in range(2):
        np.testing.assert_allclose(np.sort((control[r] + np.asarray(w0[r])).ravel()),
                                   np.sort(np.asarray(w[r]).ravel()), atol=1e-5)
    again = layers.shuffle_permutations(seeds, [w[0].size])[0]
    np.testing.assert_array_equal(again, perms)
    assert not np.array_equal(perms[0], perms[1])


def test_layer_alignment_rejects_bad_arguments(trained_wide):
    result, seeds = trained_wide
    args = (result.models, result.initial, result.predicted)
    with pytest.raises(ValueError, match="`method`"):
        layers.layer_alignment(*args, method="monte-carlo")
    with pytest.raises(ValueError, match="stacked"):
        layers.layer_alignment(result.model(0), result.initial, result.predicted)
    with pytest.raises(ValueError, match="predict=True"):
        layers.layer_alignment(result.models, result.initial, None)
    with pytest.raises(ValueError, match="one seed per run"):
        layers.layer_alignment(*args, seeds=[0])
    with pytest.raises(ValueError, match="n_batches"):
        layers.layer_alignment(*args, method="probe", n_batches=0)
    other = slice_runs(la.make_network("mlp", (8, 8, 1), 32, 10, key=jax.random.PRNGKey(0)),
                       slice(None))
    with pytest.raises(ValueError, match="shapes"):
        layers.layer_alignment(result.models, stacked(other), result.predicted)


# ---------------------------------------------------------------------------------------
# The width sweep
# ---------------------------------------------------------------------------------------


COLUMNS = ["experiment", "dataset", "model", "rule", "width", "lr", "seed", "epoch", "layer",
           "layer_name", "kind", "n_out", "n_in", "metric", "value", "diverged"]


@pytest.mark.ci
@pytest.mark.slow
def test_width_sweep_table_is_tidy_and_complete():
    data = load_digits(n_train=100)
    table = la.alignment_width_sweep("convnet", data, [2, 4, 6], epochs=3, seeds=[0, 1],
                                     probe_batches=2, probe_widths=[2])
    assert list(table.columns) == COLUMNS
    per_layer = table[table.layer > 0]
    alignment = per_layer[per_layer.metric == "alignment"]
    epochs = alignment.groupby("width").epoch.apply(lambda e: sorted(set(e)))
    assert epochs[2] == epochs[6] == [0, 1, 2, 3]  # narrowest and widest: every epoch
    assert epochs[4] == [3]  # the others: the last epoch only
    assert alignment[alignment.epoch > 0].value.between(0, 1).all()
    assert alignment[alignment.epoch == 0].value.isna().all()
    probes = per_layer[per_layer.metric == "alignment_probe"]
    assert set(probes.width) == {2} and set(probes.seed) == {0} and set(probes.epoch) == {3}
    assert set(per_layer.metric) == {*layers.EPOCH_METRICS, "alignment_probe", "alignment_shuffled_probe"}
    assert set(per_layer.layer_name) == {"conv 1", "conv 2", "conv 3", "readout"}
    rows = per_layer[(per_layer.width == 6) & (per_layer.layer == 2)]
    assert set(rows.n_in) == {6} and set(rows.n_out) == {6} and set(rows.kind) == {"conv"}
    network = table[table.layer == 0]
    assert {"heldout_accuracy", "train_loss", "sweep_seconds", "train_examples"} <= set(network.metric)
    assert set(network[network.metric == "train_examples"].value) == {100}
    summary = laa.width_summary(table)
    assert set(summary.n_seeds) == {2, 1}  # probe scores come from the first seed only
    pairs = laa.probe_pairs(table)
    assert len(pairs) == 2 * 4 and set(pairs["update"]) == {"trained", "shuffled"}
    assert pairs.difference.abs().max() < 0.2
    for fig in (laa.plot_width_sweep(summary, input_dims={("digits", "mlp"): 64}),
                laa.plot_epochs(table), laa.plot_probe_vs_exact(pairs)):
        assert fig.axes and all(ax.get_xlabel() for ax in fig.axes)
    with pytest.raises(ValueError, match="`model`"):
        la.alignment_width_sweep("rnn", data, [2], epochs=1)
    with pytest.raises(ValueError, match="probe_runs"):
        la.alignment_width_sweep("mlp", data, [2], epochs=1, seeds=[0], probe_runs=2)


# ---------------------------------------------------------------------------------------
# The chapter's analysis and claims, on hand-built sweep tables (no training)
# ---------------------------------------------------------------------------------------


def _layer(model: str, layer: int, n_layers: int, width: int) -> dict:
    """Name, kind and sizes of one layer of a hand-built sweep (8x8 digits: 64 inputs)."""
    if layer == 0:
        return dict(layer_name="network", kind="", n_out=0, n_in=0)
    if layer == n_layers:
        return dict(layer_name="readout", kind="dense", n_out=10, n_in=width)
    if model == "mlp":
        return dict(layer_name=f"dense {layer}", kind="dense", n_out=width,
                    n_in=64 if layer == 1 else width)
    return dict(layer_name=f"conv {layer}", kind="conv", n_out=width, n_in=1 if layer == 1 else width)


def toy_sweep(scores: dict, *, model: str = "mlp", dataset: str = "digits", seeds=(0, 1),
              first: float | None = None, diverged_seed: int | None = None) -> pd.DataFrame:
    """A sweep table in the columns of the real one. ``scores``: ``{width: [(alignment,
    shuffled) per layer]}`` at the last epoch (3); seed ``s`` adds ``0.01 * (2 s - 1)``.
    ``first``: every layer's alignment after epoch 1 (then every width has a curve);
    ``diverged_seed``: one more seed whose run diverged (scores 0)."""
    rows = []

    def add(width, seed, epoch, layer, n_layers, metric, value, diverged=False):
        rows.append(dict(experiment="width_sweep", dataset=dataset, model=model, rule="backprop",
                         width=width, lr=5.0, seed=seed, epoch=epoch, layer=layer,
                         **_layer(model, layer, n_layers, width), metric=metric, value=value,
                         diverged=diverged))

    for width, per_layer in scores.items():
        for seed in [*seeds, *([] if diverged_seed is None else [diverged_seed])]:
            bad = seed == diverged_seed
            jitter = 0.01 * (2 * seed - 1)
            for layer, (align, shuffled) in enumerate(per_layer, start=1):
                for metric, value in (("alignment", align + jitter),
                                      ("alignment_shuffled", shuffled + jitter),
                                      ("relative_change", 1.0 / width)):
                    add(width, seed, 3, layer, len(per_layer), metric, 0.0 if bad else value, bad)
                if first is not None:
                    add(width, seed, 1, layer, len(per_layer), "alignment", first + jitter, bad)
            for metric, value in (("train_examples", 200), ("sweep_seconds", 2.0)):
                add(width, seed, 3, 0, len(per_layer), metric, value, bad)
    return pd.DataFrame(rows, columns=COLUMNS)


RISING = {16: [(0.5, 0.2), (0.6, 0.1)], 64: [(0.97, 0.2), (0.99, 0.1)]}


def test_analysis_summarises_the_last_epoch_over_seeds_without_diverged_runs():
    a = laa.analyse(toy_sweep(RISING, first=0.99, diverged_seed=2))
    row = a.summary[(a.summary.width == 16) & (a.summary.layer == 1)
                    & (a.summary.metric == "alignment")].iloc[0]
    assert (row["mean"], row["min"], row["max"], row.n_seeds) == pytest.approx((0.5, 0.49, 0.51, 2))
    assert set(a.summary.layer_name) == {"dense 1", "readout"}
    assert set(a.network.layer) == {0} and set(a.network.epoch) == {3}
    assert set(a.network.metric) == {"train_examples", "sweep_seconds"}
    assert a.pairs.empty


def test_claims_of_a_sweep_that_aligns_as_it_widens():
    a = laa.analyse(toy_sweep(RISING))
    rises, control, probe = laa.claims(a, profile="cpu", n_probes=1000)
    assert [c.claim for c in (rises, control, probe)] == ["alignment-rises", "alignment-control-low",
                                                          "probe-agrees"]
    assert rises.verdict == claims.HOLDS
    assert rises.measured == ("lowest layer: digits MLP 0.500 at width 16, 0.970 at 64; "
                              "2 of 2 layers rise to at least 0.95")
    assert (rises.value, rises.low, rises.high) == pytest.approx((0.97, 0.96, 0.98))
    assert control.verdict == claims.HOLDS
    assert control.measured == "digits MLP at most 0.200 (dense 1); 2 of 2 layers at most 0.3"
    assert (control.value, control.low, control.high) == pytest.approx((0.2, 0.19, 0.21))
    assert {c.figure for c in (rises, control)} == {"fig-alignment-alignment-vs-width"}
    # stricter thresholds: one layer of two passes
    strict = laa.claims(a, profile="cpu", n_probes=1000, aligned=0.98, control_low=0.15)
    assert [c.verdict for c in strict[:2]] == [claims.HOLDS_IN_PART, claims.HOLDS_IN_PART]
    assert strict[0].expectation.endswith("at least 0.98")
    # without probe scores the probe claim is not tested
    assert probe.verdict == claims.NOT_TESTED and probe.value is None
    assert probe.measured.startswith("not measured") and "(1000 probes each)" in probe.quantity


def test_a_single_width_cannot_rise():
    a = laa.analyse(toy_sweep({64: RISING[64]}))
    rises = laa.claims(a, profile="tiny", n_probes=200)[0]
    assert rises.verdict == claims.NOT_TESTED
    assert rises.measured == "not measured (every sweep has a single width)"


def test_claims_list_the_sweeps_in_the_sweep_order_mlp_first():
    table = pd.concat([toy_sweep(RISING, dataset="kmnist", model="convnet"),
                       toy_sweep(RISING, dataset="kmnist"), toy_sweep(RISING, dataset="cifar10")],
                      ignore_index=True)
    control = laa.claims(laa.analyse(table), profile="gpu", n_probes=10000)[1]
    assert control.measured == ("kmnist MLP at most 0.200 (dense 1); kmnist ConvNet at most 0.200 "
                                "(conv 1); cifar10 MLP at most 0.200 (dense 1); 6 of 6 layers at most 0.3")


def test_probe_pairs_numbers_and_claim():
    table = toy_sweep(RISING)
    probes = table[(table.width == 16) & (table.seed == 0)
                   & table.metric.isin(["alignment", "alignment_shuffled"])]
    probes = probes.assign(metric=probes.metric + "_probe", value=probes.value + [0.03, -0.01] * 2)
    a = laa.analyse(pd.concat([table, probes], ignore_index=True))
    assert len(a.pairs) == 4 and set(a.pairs["update"]) == {"trained", "shuffled"}
    np.testing.assert_allclose(sorted(a.pairs.difference), [-0.01, -0.01, 0.03, 0.03])
    numbers = laa.probe_numbers(a.pairs)
    assert numbers["probe_n_pairs"] == (4, "d") and numbers["probe_n_dense"] == (4, "d")
    assert numbers["probe_max_diff"][0] == pytest.approx(0.03)
    assert numbers["probe_mean_diff"][0] == pytest.approx(0.02)
    assert numbers["probe_n_conv"] == (0, "d") and np.isnan(numbers["probe_max_diff_conv"][0])
    probe = laa.claims(a, profile="cpu", n_probes=1000)[2]
    assert probe.verdict == claims.HOLDS and probe.value == pytest.approx(0.03)
    assert probe.measured == "0.030 over 4 pairs (mean 0.020)"
    assert probe.figure == "fig-alignment-probe-vs-exact"
    assert laa.claims(a, profile="cpu", n_probes=1000, probe_agrees=0.02)[2].verdict == claims.HOLDS_IN_PART


def test_widest_table_shows_seed_means_and_ranges():
    text = laa.widest_table(laa.analyse(toy_sweep(RISING)).summary)
    header, rule, *rows = text.splitlines()
    assert header.startswith("| data | model | width | layer | alignment score | shuffled control |")
    assert len(rows) == 2  # the widest width only, one row per layer
    assert rows[0].startswith("| digits | MLP | 64 | dense 1 | 0.970 [0.960, 0.980] | 0.200 [0.190, 0.210] |")
    one_seed = laa.widest_table(laa.analyse(toy_sweep(RISING, seeds=(1,))).summary)
    assert "| digits | MLP | 64 | dense 1 | 0.980 | 0.210 |" in one_seed


def test_the_numbers_the_page_quotes():
    table = toy_sweep(RISING, first=0.99)
    a = laa.analyse(table)
    assert laa.sweep_numbers(a.network, "digits", epochs=6) == {
        "n_train_main": (200, "d"), "steps_main": (12, "d"), "compute_seconds": (4.0, ".0f")}
    width = laa.width_numbers(a.summary, "digits")
    assert width["mlp_narrowest"] == (16, ".0f") and width["mlp_widest"] == (64, ".0f")
    assert width["mlp_align_widest_min"] == (pytest.approx(0.97), ".3f")
    assert width["mlp_shuffled_first_widest"] == (pytest.approx(0.2), ".3f")
    assert width["mlp_change_widest_max"] == (pytest.approx(1 / 64), ".4f")
    assert width["random_layer1_widest"] == (pytest.approx(layers.random_update_score(64, 64)), ".2f")
    assert width["conv1_taps"] == (0, "d") and np.isnan(width["conv_widest"][0])  # no ConvNet
    assert laa.mlp_input_dims(a.summary) == {("digits", "mlp"): 64}
    epoch = laa.epoch_numbers(table, "digits")
    assert epoch["mlp_narrow_first_min"] == (pytest.approx(0.99), ".3f")
    assert epoch["mlp_narrow_last_min"] == (pytest.approx(0.5), ".3f")
    assert epoch["mlp_wide_last_min"] == (pytest.approx(0.97), ".3f")
    assert np.isnan(epoch["conv_wide_last_min"][0])


# ---------------------------------------------------------------------------------------
# The gpu profile's code path, on fake KMNIST / CIFAR-10 files
# ---------------------------------------------------------------------------------------


def gpu_profile() -> dict:
    profiles = yaml.safe_load((REPO / "book" / "profiles.yml").read_text())["profiles"]
    return profiles["gpu"]["chapters"]["alignment"]


def test_gpu_profile_names_the_papers_settings():
    p = gpu_profile()
    assert p["datasets"] == ["kmnist", "cifar10"] and p["n_train"] == 0
    assert p["conv_widths"] == [8, 16, 32, 64, 128, 256, 512] and p["probe_batches"] == 100
    from alignbook import notebook_parameters

    defaults = {k: v.default for k, v in notebook_parameters(REPO / "book" / "alignment.ipynb").items()}
    assert defaults["lr"] == 5.0  # the paper's alignment runs
    assert defaults["epochs"]["kmnist"] == 100 and defaults["epochs"]["cifar10"] == 150
    assert defaults["profile"] == "cpu" and defaults["datasets"] == ["digits"]
    assert max(defaults["mlp_widths"]) >= 256 and max(defaults["conv_widths"]) >= 256
    assert la.PAPER_CONV_STRIDES["kmnist"] == (1, 2, 2)
    assert la.PAPER_CONV_STRIDES["cifar10"] == (1, 1, 1, 2, 1, 2, 1)


@pytest.mark.ci
@pytest.mark.slow
def test_gpu_path_on_fake_kmnist_and_cifar10_files(tmp_path):
    p = gpu_profile()
    sums_k = fake_kmnist(tmp_path / "kmnist", 160)
    sums_c = fake_cifar10(tmp_path / "cifar", 30)  # 150 training records
    table = la.alignment_experiments(
        p["datasets"], n_train=p["n_train"], epochs={"kmnist": 1, "cifar10": 1}, lr=5.0,
        seeds=[0], mlp_widths=[4], mlp_depth=2, conv_widths=[2, 3], probe_widths=[2],
        probe_batches=1,
        loader_kwargs={"kmnist": dict(cache_dir=tmp_path / "kmnist", checksums=sums_k, holdout=60),
                       "cifar10": dict(cache_dir=tmp_path / "cifar", checksums=sums_c, holdout=50)})
    assert set(zip(table.dataset, table.model)) == {("kmnist", "mlp"), ("kmnist", "convnet"),
                                                    ("cifar10", "mlp"), ("cifar10", "convnet")}
    last = la.final_epoch(table)
    scores = last[last.metric.isin(["alignment", "alignment_shuffled", "alignment_probe"])]
    bad = scores[~scores.value.between(0, 1 + 1e-6)]
    assert bad.empty, bad[["dataset", "model", "width", "layer", "metric", "value"]]
    conv = last[(last.model == "convnet") & (last.metric == "alignment")]
    assert conv[conv.dataset == "kmnist"].layer.max() == 4  # 3 convolutions + readout
    assert conv[conv.dataset == "cifar10"].layer.max() == 8  # 7 convolutions + readout
    mlp1 = last[(last.model == "mlp") & (last.layer == 1)]
    assert set(mlp1[mlp1.dataset == "kmnist"].n_in) == {784}
    assert set(mlp1[mlp1.dataset == "cifar10"].n_in) == {3072}
    examples = last[last.metric == "train_examples"]
    assert set(examples[examples.dataset == "kmnist"].value) == {100}
    assert set(examples[examples.dataset == "cifar10"].value) == {100}
    with pytest.raises(ValueError, match="strides"):
        la.alignment_experiments(["imagenet32"], n_train=0, epochs={"imagenet32": 1}, lr=5.0,
                                 seeds=[0], mlp_widths=[], mlp_depth=2, conv_widths=[2],
                                 probe_widths=[], probe_batches=1)
    with pytest.raises(ValueError, match="epochs"):
        la.alignment_experiments(["digits"], n_train=100, epochs={}, lr=5.0, seeds=[0],
                                 mlp_widths=[2], mlp_depth=1, conv_widths=[], probe_widths=[],
                                 probe_batches=1)


# ---------------------------------------------------------------------------------------
# The chapter
# ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_chapter_runs_in_tiny_profile_and_glues_every_number(tiny_book):
    executed = tiny_book.chapter("alignment")
    values = executed.glued()
    assert values["profile"] == "tiny"
    nb = nbformat.read(REPO / "book" / "alignment.ipynb", as_version=4)
    import re

    used = {k for c in nb.cells if c.cell_type == "markdown"
            for k in re.findall(r"\{glue:(?:text|md)\}`([^`]+)`", c.source)}
    used |= {k for c in nb.cells if c.cell_type == "markdown"
             for k in re.findall(r":::\{glue:figure\} (\S+)", c.source)}
    assert used <= set(values), used - set(values)
    store = executed.folder
    files = {p.name for p in store.iterdir()}
    assert {"alignment_sweep.csv", "alignment_vs_width.png", "alignment_vs_epoch.png",
            "probe_vs_exact.png", "alignment_probe_pairs.csv"} <= files
    assert float(values["probe_max_diff"]) < 0.2
    # the chapter's claims: the library's verdict words, glued as recorded, figures of the page
    found = executed.claims()
    assert set(found) == {"alignment-rises", "alignment-control-low", "probe-agrees"}
    names = {n for c in nb.cells if c.cell_type == "markdown" for n in re.findall(r":name: (\S+)", c.source)}
    for c in found.values():
        assert c.verdict in claims.VERDICTS and c.figure in names, c
        assert values[f"verdict_{c.claim.replace('-', '_')}"] == c.verdict
    # the tiny profile trains one width per network: nothing can rise with width
    assert found["alignment-rises"].verdict == claims.NOT_TESTED
    assert found["alignment-control-low"].verdict != claims.NOT_TESTED
    assert f"{found['probe-agrees'].value:.3f}" == values["probe_max_diff"]
    within = pd.read_csv(store / "alignment_probe_pairs.csv").difference.abs() <= float(values["probe_agrees"])
    assert found["probe-agrees"].verdict == (claims.HOLDS if within.all() else claims.HOLDS_IN_PART
                                             if within.any() else claims.DOES_NOT_HOLD)
