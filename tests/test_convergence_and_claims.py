"""Whole held-out evaluation, the convergence criterion, the stable learning-rate bound,
the bias multiplier's NTK, and the claims vocabulary / scorecard."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import alignlib as al
from alignbook.cli import main as cli_main
from alignbook.results import ResultStore
from alignbook.scorecard import collect_claims, save_claims
from alignlib import claims as C
from alignlib import kernels
from alignlib.convergence import (
    convergence_table,
    has_converged,
    relative_change,
    window,
)
from alignlib.data import Dataset, load_digits
from alignlib.stability import ntk_top_eigenvalue, stable_learning_rate
from alignlib.experiments.theory import mlp_ntk
from alignlib.training import evaluation_batches

# ----------------------------------------------------------------- held-out evaluation


@pytest.mark.parametrize("n, b, expected", [
    (297, 100, [(0, 3, 99)]), (293, 100, [(0, 2, 98), (196, 1, 97)]),
    (30, 100, [(0, 1, 30)]), (5000, 100, [(0, 50, 100)]), (101, 50, [(0, 2, 34), (68, 1, 33)])])
def test_evaluation_batches_cover_every_example_once(n, b, expected):
    groups = evaluation_batches(n, b)
    assert groups == expected
    covered = [i for start, k, size in groups for i in range(start, start + k * size)]
    assert covered == list(range(n))
    assert max(size for _, _, size in groups) <= b


def test_evaluation_batches_reject_empty_and_bad_batch():
    with pytest.raises(ValueError, match="empty"):
        evaluation_batches(0, 100)
    with pytest.raises(ValueError, match="eval_batch_size"):
        evaluation_batches(10, 0)


def test_train_scores_every_heldout_example_once():
    """297 held-out digits with batch 100: the epoch-0 accuracy and loss are those of all
    297 examples (the old default scored 200)."""
    data = load_digits()
    assert data.n_test % 100 != 0
    make = lambda k: al.MLP((8, 8, 1), 32, 1, 10, key=k)
    res = al.train(make, "backprop", data, epochs=0, progress=False)
    model = make(jax.random.split(jax.random.PRNGKey(0), 3)[0])
    out = model(jnp.asarray(data.x_test))
    expected_acc = float(np.mean(np.argmax(out, -1) == data.labels_test))
    expected_loss = float(jnp.mean((out - data.y_test) ** 2))
    h = res.history.set_index("metric").value
    assert h["heldout_accuracy"] == pytest.approx(expected_acc, abs=1e-6)
    assert h["heldout_loss"] == pytest.approx(expected_loss, rel=1e-5)
    first_200 = float(np.mean(np.argmax(out[:200], -1) == data.labels_test[:200]))
    assert first_200 != pytest.approx(expected_acc, abs=1e-6)  # the test can tell them apart


def test_train_refuses_an_empty_heldout_set():
    d = load_digits()
    empty = Dataset(name="d", x_train=d.x_train, y_train=d.y_train, x_test=d.x_test[:0],
                    y_test=d.y_test[:0], labels_train=d.labels_train, labels_test=d.labels_test[:0],
                    n_outputs=10)
    with pytest.raises(ValueError, match="held-out set is empty"):
        al.train(lambda k: al.MLP((8, 8, 1), 8, 1, 10, key=k), "backprop", empty, epochs=1,
                 progress=False)


# ----------------------------------------------------------------- convergence


def test_relative_change_over_last_tenth():
    t = np.arange(1, 101, dtype=float)
    losses = np.stack([t ** -0.3, t ** -1.0], axis=1)
    assert window(100) == 10 and window(5) == 1 and window(11) == 2
    change = relative_change(losses)
    # measured against the first epoch's loss, L(1) = 1 here
    np.testing.assert_allclose(change, [90 ** -0.3 - 100 ** -0.3, 1 / 90 - 1 / 100])
    np.testing.assert_array_equal(has_converged(losses, 0.005), [False, True])
    np.testing.assert_array_equal(has_converged(losses, 0.005, diverged=[False, True]),
                                  [False, False])
    # scale-free in the loss's units
    np.testing.assert_allclose(relative_change(7.0 * losses), change)
    assert np.isnan(relative_change(losses[:1])).all()
    with pytest.raises(ValueError, match="tolerance"):
        has_converged(losses, 0.0)


def test_train_stops_when_every_run_converged_and_table_agrees():
    data = load_digits()
    make = lambda k: al.MLP((8, 8, 1), 64, 1, 10, key=k, bias_multiplier=0.1)
    full = al.train(make, "backprop", data, epochs=80, learning_rates=[20.0, 40.0], progress=False)
    tol = 0.01
    early = al.train(make, "backprop", data, epochs=80, learning_rates=[20.0, 40.0], progress=False,
                     convergence_tolerance=tol)
    last = int(early.history.epoch.max())
    assert 10 < last < 80
    table = convergence_table(early.history, tol, keys=["run", "lr", "seed"])
    assert table.converged.all() and (table.epochs == last).all()
    # deterministic: the early-stopped history is a prefix of the full one
    cols = ["run", "epoch", "metric"]
    a = early.history[early.history.metric != "seconds"].set_index(cols).value
    b = full.history[full.history.metric != "seconds"].set_index(cols).value.loc[a.index]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy())
    # one epoch earlier the criterion had not held for every run
    before = full.history[full.history.epoch <= last - 1]
    assert not convergence_table(before, tol, keys=["run", "lr", "seed"]).converged.all()


# ----------------------------------------------------------------- stability bound, beta


def test_power_iteration_finds_the_top_eigenvalue_of_the_full_ntk():
    with jax.enable_x64(True):
        model = al.MLP(5, 24, 2, 3, key=jax.random.PRNGKey(1), bias_multiplier=0.5)
        x = jax.random.uniform(jax.random.PRNGKey(2), (7, 5), jnp.float64)
        import equinox as eqx

        flat, unravel = jax.flatten_util.ravel_pytree(eqx.filter(model, eqx.is_inexact_array))
        rest = eqx.filter(model, eqx.is_inexact_array, inverse=True)
        f = lambda v: eqx.combine(unravel(v), rest)(x).reshape(-1)
        J = jax.jacobian(f)(flat)
        exact = float(np.linalg.eigvalsh(np.asarray(J @ J.T))[-1])
        assert ntk_top_eigenvalue(model, x, iterations=300) == pytest.approx(exact, rel=1e-6)
        assert stable_learning_rate(model, x, iterations=300) == pytest.approx(7 * 3 / exact, rel=1e-6)
    with pytest.raises(ValueError, match="iterations"):
        ntk_top_eigenvalue(model, x, iterations=0)


@pytest.mark.ci  # 20 s, mostly compiling; the MLP's power iteration is checked here
def test_power_iteration_passes_the_convnets_custom_vjp_convolution():
    """The ConvNet's convolution has a custom VJP, which forward mode cannot differentiate;
    the bound must still match the full Jacobian's J J^T."""
    import equinox as eqx

    with jax.enable_x64(True):
        m = al.ConvNet((8, 8, 1), 4, 3, key=jax.random.PRNGKey(0))
        x = jax.random.uniform(jax.random.PRNGKey(1), (6, 8, 8, 1), jnp.float64)
        flat, unravel = jax.flatten_util.ravel_pytree(eqx.filter(m, eqx.is_inexact_array))
        rest = eqx.filter(m, eqx.is_inexact_array, inverse=True)
        J = jax.jacrev(lambda v: eqx.combine(unravel(v), rest)(x).reshape(-1))(flat)
        exact = float(np.linalg.eigvalsh(np.asarray(J @ J.T))[-1])
        assert ntk_top_eigenvalue(m, x, iterations=300) == pytest.approx(exact, rel=1e-4)


def test_the_bound_is_align_zeros_stability_edge_and_backprops_lazy_edge():
    """Align-zero moves the outputs with the frozen initial kernel, so SGD on it is stable
    below B K / lambda_max and diverges just above (1.2 x). Backprop survives 1.5 x: its
    kernel shrinks in the first steps (the "catapult" of a network leaving the lazy
    regime), so above the bound it trains, but no longer lazily."""
    data = load_digits()
    make = lambda k: al.MLP((8, 8, 1), 512, 2, 10, key=k, bias_multiplier=0.1)
    model = make(jax.random.split(jax.random.PRNGKey(0), 3)[0])
    bound = stable_learning_rate(model, data.x_train[:100])
    zero = al.train(make, "align_zero", data, epochs=2, learning_rates=[0.8 * bound, 1.2 * bound],
                    progress=False)
    assert zero.history.groupby("lr").diverged.max().tolist() == [False, True]
    bp = al.train(make, "backprop", data, epochs=2, learning_rates=[1.5 * bound], progress=False)
    assert not bp.history.diverged.any()


@pytest.mark.parametrize("beta", [0.0, 0.1, 1.0])
def test_bias_multiplier_enters_the_ntk_with_beta_squared(beta):
    """The empirical NTK of the MLP with bias multiplier beta approaches the analytic
    kernel with bias term beta**2, like n^-1/2."""
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.PRNGKey(0), (6, 4), jnp.float64)
        theory = np.asarray(kernels.ntk(x, 3, bias_in_ntk=beta ** 2))
        errors = []
        for width in (256, 4096):
            err = []
            for seed in range(3):
                m = al.MLP(4, width, 2, 1, key=jax.random.PRNGKey(seed), bias_multiplier=beta)
                emp = np.asarray(mlp_ntk(m, x))
                err.append(np.linalg.norm(emp - theory) / np.linalg.norm(theory))
            errors.append(np.sqrt(np.mean(np.square(err))))
        slope = math.log(errors[1] / errors[0]) / math.log(16)
        assert errors[1] < 0.06
        assert -0.75 < slope < -0.3
        # a wrong bias term does not agree
        wrong = np.asarray(kernels.ntk(x, 3, bias_in_ntk=beta ** 2 + 0.5))
        assert np.linalg.norm(emp - wrong) / np.linalg.norm(wrong) > 5 * errors[1]


def test_zero_bias_multiplier_makes_biases_inert_and_bad_values_raise():
    data = load_digits()
    res = al.train(lambda k: al.MLP((8, 8, 1), 16, 2, 10, key=k, bias_multiplier=0.0), "backprop",
                   data, epochs=1, learning_rates=5.0, progress=False)
    trained = res.model(0)
    for layer in trained.weighted_layers():
        assert float(jnp.max(jnp.abs(layer.bias))) == 0.0
    for bad in (-1.0, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match="bias_multiplier"):
            al.MLP(4, 8, 1, 1, key=jax.random.PRNGKey(0), bias_multiplier=bad)


# ----------------------------------------------------------------- claims


def _claim(**kw):
    base = dict(chapter="rules", claim="c1", statement="s", quantity="q", value=1.0, low=0.5,
                high=1.5, measured="1.0 [0.5, 1.5]", expectation="e", verdict=C.HOLDS,
                profile="tiny", figure="fig-x")
    base.update(kw)
    return C.Claim(**base)


def test_verdict_vocabulary_and_checks():
    assert C.VERDICTS == (C.HOLDS, C.HOLDS_IN_PART, C.DOES_NOT_HOLD, C.INCONCLUSIVE, C.NOT_TESTED)
    assert set(C.VERDICT_MEANINGS) == set(C.VERDICTS)
    assert C.verdict_of_checks([True, True]) == C.HOLDS
    assert C.verdict_of_checks([True, False]) == C.HOLDS_IN_PART
    assert C.verdict_of_checks([False, False]) == C.DOES_NOT_HOLD
    assert C.verdict_of_checks([False], converged=False) == C.INCONCLUSIVE
    assert C.verdict_of_checks([True, False], converged=False) == C.INCONCLUSIVE
    assert C.verdict_of_checks([True], converged=False) == C.HOLDS
    assert C.verdict_of_checks([]) == C.NOT_TESTED
    with pytest.raises(ValueError, match="verdict"):
        _claim(verdict="kind of")
    with pytest.raises(ValueError, match="statement"):
        _claim(statement="")
    assert _claim(value=float("nan")).value is None


def test_claims_are_saved_with_provenance_and_newest_wins(tmp_path):
    old = ResultStore("rules", "tiny", {"a": 1}, root=tmp_path)
    new = ResultStore("rules", "tiny", {"a": 2}, root=tmp_path)
    other = ResultStore("theory", "tiny", {"a": 1}, root=tmp_path)
    save_claims(old, [_claim(claim="old")])
    save_claims(other, [_claim(chapter="theory", claim="t", verdict=C.NOT_TESTED)])
    save_claims(new, [_claim(claim="new", verdict=C.DOES_NOT_HOLD)])
    assert new.is_complete("claims.json")
    found = collect_claims("tiny", tmp_path, chapters=["theory", "rules"])
    assert [(c.chapter, c.claim) for c in found] == [("theory", "t"), ("rules", "new")]
    assert collect_claims("cpu", tmp_path) == []
    md = C.scorecard_markdown(found)
    assert "{ref}`figure <fig-x>`" in md and f"**{C.DOES_NOT_HOLD}**" in md
    with pytest.raises(ValueError, match="unique"):
        save_claims(old, [_claim(), _claim()])
    with pytest.raises(ValueError, match="store"):
        save_claims(old, [_claim(chapter="theory")])
    table = C.claims_table(found)
    assert list(table.claim) == ["t", "new"]


def test_cli_claims_prints_table_and_json(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("ALIGNBOOK_RESULTS", str(tmp_path))
    store = ResultStore("rules", "tiny", {"a": 1}, root=tmp_path)
    save_claims(store, [_claim(claim="close", verdict=C.HOLDS_IN_PART)])
    assert cli_main(["claims", "--profile", "tiny", "--root", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "rules/close" in out and C.HOLDS_IN_PART in out
    assert cli_main(["claims", "--profile", "tiny", "--json", "--root", str(repo)]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records[0]["verdict"] == C.HOLDS_IN_PART and records[0]["figure"] == "fig-x"
    assert cli_main(["claims", "--profile", "nosuch", "--root", str(repo)]) == 2


def test_verdict_of_intervals_never_decides_on_an_interval_that_straddles():
    v = C.verdict_of_intervals
    assert v([(0.1, 0.5), (0.2, 0.3)], 0.0) == C.HOLDS
    assert v([(0.1, 0.5), (-0.4, 0.3)], 0.0) == C.INCONCLUSIVE
    assert v([(0.1, 0.5), (-0.4, -0.1)], 0.0) == C.HOLDS_IN_PART
    assert v([(-0.4, -0.1), (-0.3, 0.2)], 0.0) == C.DOES_NOT_HOLD
    assert v([(-0.4, -0.1)], 0.0, converged=False) == C.INCONCLUSIVE
    assert v([(0.1, 0.5)], 0.0, converged=False) == C.HOLDS
    assert v([(-5.0, -4.0)], -3.0, above=False) == C.HOLDS
    assert v([(float("nan"), float("nan"))], 0.0) == C.INCONCLUSIVE
    assert v([], 0.0) == C.NOT_TESTED


def test_width_sweep_trains_every_rule_at_least_as_long_as_the_first():
    """Align-zero's loss flattens earlier than backprop's; with early stopping it must still
    train as many epochs as backprop did at that width."""
    from alignlib.experiments import feedforward as ff

    data = load_digits()
    table = ff.width_sweep(data, arch="mlp", widths=[64], rules=["backprop", "readout"],
                              lrs=[20.0], seeds=[0], epochs=120, bias_multiplier=0.1,
                              convergence_tolerance=0.01)
    last = table.groupby("rule").epoch.max()
    alone = al.train(ff.model_factory("mlp", (8, 8, 1), 10, 64, bias_multiplier=0.1), "readout",
                     data, epochs=120, learning_rates=20.0, convergence_tolerance=0.01,
                     eval_batch_size=99, progress=False)
    assert last["readout"] >= last["backprop"] > 10
    assert int(alone.history.epoch.max()) < last["backprop"]  # alone it would have stopped earlier


def test_eval_every_records_heldout_sparsely_but_always_at_the_last_epoch():
    data = load_digits()
    make = lambda k: al.MLP((8, 8, 1), 16, 1, 10, key=k, bias_multiplier=0.1)
    every = al.train(make, "backprop", data, epochs=7, learning_rates=10.0, progress=False)
    sparse = al.train(make, "backprop", data, epochs=7, learning_rates=10.0, eval_every=3,
                      progress=False)
    epochs = lambda r, m: sorted(r.history[r.history.metric == m].epoch)
    assert epochs(sparse, "heldout_accuracy") == [0, 3, 6, 7]
    assert epochs(sparse, "train_loss") == list(range(1, 8))
    a = every.history.set_index(["epoch", "metric"]).value
    b = sparse.history.set_index(["epoch", "metric"]).value
    assert b[(7, "heldout_accuracy")] == a[(7, "heldout_accuracy")]  # same training either way
    with pytest.raises(ValueError, match="eval_every"):
        al.train(make, "backprop", data, epochs=1, eval_every=0, progress=False)
