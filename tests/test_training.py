"""Training loop: determinism, seeds and learning rates through vmap, divergence handling,
tidy history, and every rule lowering the loss on digits."""

import numpy as np
import pandas as pd
import pytest

import alignlib as al
from alignlib.data import add_task, load_digits


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def small_mlp(key):
    return al.MLP((8, 8, 1), 32, 2, 10, key=key)


def test_history_is_tidy_and_deterministic(digits):
    kw = dict(epochs=2, learning_rates=[1.0, 2.0], seeds=[0, 1], progress=False,
              tags={"width": 32})
    a = al.train(small_mlp, "align_ada", digits, **kw)
    b = al.train(small_mlp, "align_ada", digits, **kw)
    h = a.history
    assert set(h.columns) >= {"rule", "run", "seed", "lr", "epoch", "metric", "value",
                              "diverged", "width"}
    assert len(a.runs) == 4
    assert set(h.metric) == {"train_loss", "heldout_loss", "heldout_accuracy", "seconds"}
    # one row per run, epoch and metric
    assert not h.duplicated(["run", "epoch", "metric"]).any()
    pd.testing.assert_series_equal(
        h[h.metric != "seconds"].value.reset_index(drop=True),
        b.history[b.history.metric != "seconds"].value.reset_index(drop=True))
    # runs differ by seed and by learning rate
    final = h[(h.epoch == 2) & (h.metric == "train_loss")].set_index("run").value
    assert final.nunique() == 4


def test_vmapped_runs_equal_separate_runs(digits):
    together = al.train(small_mlp, "backprop", digits, epochs=2, seeds=[0, 3],
                        learning_rates=2.0, progress=False)
    alone = al.train(small_mlp, "backprop", digits, epochs=2, seeds=3, learning_rates=2.0,
                     progress=False)
    a = together.history.query("seed == 3 and metric == 'heldout_loss'").value.to_numpy()
    b = alone.history.query("metric == 'heldout_loss'").value.to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5)
    w_together = together.model(1).readout.weight
    np.testing.assert_allclose(np.asarray(w_together), np.asarray(alone.model(0).readout.weight),
                               rtol=1e-4, atol=1e-6)


def test_divergence_is_recorded_not_raised(digits):
    res = al.train(small_mlp, "backprop", digits, epochs=3, learning_rates=[1.0, 1e6],
                   progress=False)
    h = res.history
    last = h[h.epoch == h.epoch.max()].groupby("lr").diverged.all()
    assert not last[1.0] and last[1e6]
    # the diverged run kept finite parameters
    assert np.all(np.isfinite(np.asarray(res.model(1).readout.weight)))
    assert np.isfinite(h.query("lr == 1.0 and metric == 'train_loss'").value).all()


def test_bad_training_arguments(digits):
    with pytest.raises(ValueError, match="learning_rates"):
        al.train(small_mlp, "backprop", digits, epochs=1, learning_rates=-1.0, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        al.train(small_mlp, "backprop", digits, epochs=1, batch_size=10**6, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        al.train(small_mlp, "backprop", digits, epochs=1, optimizer="rmsprop", progress=False)
    with pytest.raises(ValueError, match="unknown learning rule"):
        al.train(small_mlp, "backprob", digits, epochs=1, progress=False)


def test_adam_with_standard_parameterisation(digits):
    res = al.train(lambda k: al.MLP((8, 8, 1), 32, 2, 10, key=k, parameterization="standard"),
                   "align_zero", digits, epochs=3, learning_rates=1e-3, optimizer="adam",
                   progress=False)
    loss = res.history.query("metric == 'train_loss'").value.to_numpy()
    assert loss[-1] < loss[0]


@pytest.mark.slow
@pytest.mark.parametrize("rule", list(al.RULES))
def test_every_rule_lowers_the_training_loss_on_digits(digits, rule):
    """300 SGD steps (20 epochs x 15 batches), MLP width 512 with bias multiplier 0.1 (the
    benchmark MLP), lr 20: a quarter of its stable bound, so the Align rules must reach
    backprop-like accuracy on all 297 held-out digits."""
    res = al.train(lambda k: al.MLP((8, 8, 1), 512, 2, 10, key=k, bias_multiplier=0.1), rule,
                   digits, epochs=20, learning_rates=20.0, progress=False)
    h = res.history
    initial = h.query("epoch == 0 and metric == 'heldout_loss'").value.item()
    final = h.query("epoch == 20 and metric == 'heldout_loss'").value.item()
    acc = h.query("epoch == 20 and metric == 'heldout_accuracy'").value.item()
    print(f"{rule}: held-out loss {initial:.4f} -> {final:.4f}, accuracy {acc:.3f}")
    assert final < 0.9 * initial
    if rule in ("backprop", "align_zero", "align_ada", "align_prop"):
        assert acc > 0.9


def test_rnn_trains_on_add_task():
    data = add_task(n_sequences=60, length=20, n_train=40)
    res = al.train(lambda k: al.RNN(1, 64, key=k), "align_ada", data, epochs=5,
                   learning_rates=1e-3, batch_size=10, loss_fn=al.sequence_mse, progress=False)
    h = res.history
    assert "heldout_accuracy" not in set(h.metric)
    loss = h.query("metric == 'heldout_loss'").value.to_numpy()
    assert loss[-1] < loss[0]


def test_predicted_weight_change_accumulates_align_zero_steps(digits):
    """One SGD step from W(0): the prediction equals the actual change exactly; over many
    steps it differs (finite width), and epoch_metrics sees both every epoch."""
    from alignlib.data import Dataset

    small = Dataset(name="digits-100", x_train=digits.x_train[:100], y_train=digits.y_train[:100],
                    x_test=digits.x_test, y_test=digits.y_test,
                    labels_train=digits.labels_train[:100], labels_test=digits.labels_test,
                    n_outputs=10)
    seen = []

    def metrics(models, initial, predicted):
        change = models.layers[0].weight - initial.layers[0].weight
        err = (np.linalg.norm(np.asarray(change - predicted.layers[0].weight), axis=(1, 2))
               / np.maximum(np.linalg.norm(np.asarray(change), axis=(1, 2)), 1e-30))
        seen.append(err)
        return {"prediction_error_layer1": err}

    one = al.train(small_mlp, "backprop", small, epochs=1, batch_size=100, learning_rates=2.0,
                   seeds=[0, 1], predict=True, epoch_metrics=metrics, progress=False)
    assert np.all(seen[-1] < 1e-4)  # float32: (W0 + dW) - W0 rounds at ~1e-6 relative
    assert "prediction_error_layer1" in set(one.history.metric)
    many = al.train(small_mlp, "backprop", small, epochs=5, batch_size=20, learning_rates=2.0,
                    predict=True, progress=False)
    dw = many.models.layers[0].weight - many.initial.layers[0].weight
    rel = float(np.linalg.norm(dw - many.predicted.layers[0].weight) / np.linalg.norm(dw))
    assert 1e-4 < rel < 1.0
    with pytest.raises(ValueError, match="predict"):
        al.train(small_mlp, "backprop", small, epochs=1, optimizer="adam", predict=True,
                 learning_rates=1e-3, progress=False)
