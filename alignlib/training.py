"""Training: a compiled epoch of minibatch steps for any rule, several runs at once.

:func:`train` trains one network per (seed, learning rate) combination; all of them run
in one compiled program through ``jax.vmap`` (same data, independent initialisations,
shuffles and learning rates). Each epoch is one ``lax.scan`` over minibatches. The
history is a tidy :class:`pandas.DataFrame` with one row per run, epoch and metric.

A run whose loss becomes NaN or infinite stops updating at that step (its parameters
stay at the last finite values), is marked ``diverged`` in the history from that epoch
on, and never raises; the others carry on.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from tqdm import tqdm

from alignlib.convergence import MIN_EPOCHS, check_tolerance, has_converged
from alignlib.rules import LearningRule, LossFn, align_zero, get_rule, mse

Array = jax.Array


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns.

    ``models``: the trained networks, stacked along a leading axis (one per run, in the
    order of ``runs``); ``initial``: the networks at initialisation, stacked the same way;
    ``runs``: a DataFrame with columns ``run, seed, lr``; ``history``: tidy DataFrame with
    columns ``run, seed, lr, epoch, metric, value, diverged`` (+ any ``tags``);
    ``predicted``: with ``predict=True``, the accumulated ``dW_pred`` (parameters pytree,
    stacked like ``models``), else ``None``.
    """

    models: Any
    initial: Any
    runs: pd.DataFrame
    history: pd.DataFrame
    predicted: Any = None

    def model(self, run: int = 0):
        """The trained network of one run (unstacked)."""
        return jax.tree.map(lambda a: a[run] if eqx.is_array(a) else a, self.models)


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
    """``'sgd'`` (the paper's NTK experiments) or ``'adam'`` (standard parameterisation).

    The learning rate is a state entry (``optax.inject_hyperparams``) so that runs with
    different learning rates can share one compiled program.
    """
    optimizers = {"sgd": optax.sgd, "adam": optax.adam}
    if name not in optimizers:
        raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {name!r}")
    return optax.inject_hyperparams(optimizers[name])(learning_rate=learning_rate)


def accuracy(output: Array, target: Array) -> Array:
    """Fraction of examples whose largest output matches the target's largest entry."""
    return jnp.mean(jnp.argmax(output, -1) == jnp.argmax(target, -1))


def _split_batches(x: Array, batch_size: int, perm: Array | None = None) -> Array:
    n_batches = x.shape[0] // batch_size
    if perm is not None:
        x = x[perm]
    return x[: n_batches * batch_size].reshape((n_batches, batch_size) + x.shape[1:])


def _select(keep_new: Array, new, old):
    return jax.tree.map(lambda a, b: jnp.where(keep_new, a, b) if eqx.is_array(a) else a,
                        new, old)


def make_step(rule: LearningRule, optimizer: optax.GradientTransformation, loss_fn: LossFn,
              predict: bool = False) -> Callable:
    """One training step of ``rule``, the step every experiment runs.

    Returns ``step(model, rule_state, opt_state, x, y, initial, predicted) -> (model,
    opt_state, loss, predicted)``: the rule's gradient ``g`` on the batch ``(x, y)``, the
    optimizer's update, and the loss before the step. With ``predict=True`` (plain SGD
    built with ``optax.inject_hyperparams``, whose state holds the learning rate ``lr``)
    it also adds ``- lr * g_align_zero(W)`` to ``predicted``, a pytree shaped like the
    parameters: summed over steps this is the paper's prediction ``dW_pred`` of the
    weight change (the layerwise alignment theorem), from the same errors and with the
    feedback ``initial`` (the network at initialisation). Otherwise ``initial`` and
    ``predicted`` pass through untouched.
    """

    def step(model, rule_state, opt_state, x, y, initial=None, predicted=None):
        loss, grads = rule.gradient(model, rule_state, x, y, loss_fn)
        params = eqx.filter(model, eqx.is_inexact_array)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        if predict:
            _, g0 = align_zero.gradient(model, initial, x, y, loss_fn)
            lr = opt_state.hyperparams["learning_rate"]
            predicted = jax.tree.map(lambda p, g: p - lr * g, predicted, g0)
        return eqx.apply_updates(model, updates), new_opt_state, loss, predicted

    return step


def make_epoch(rule: LearningRule, optimizer: optax.GradientTransformation,
               loss_fn: LossFn, batch_size: int, predict: bool = False) -> Callable:
    """One epoch for one run: shuffle with ``key``, then scan :func:`make_step` over
    minibatches, skipping any step whose loss or new weights are not finite.

    Returns ``epoch(model, rule_state, opt_state, diverged, key, x, y, initial, predicted)
    -> (model, opt_state, diverged, predicted, mean_train_loss)``; ``predict`` as in
    :func:`make_step`. A run whose step was not finite is marked ``diverged`` and keeps
    its last finite state.
    """
    sgd_step = make_step(rule, optimizer, loss_fn, predict)

    def step(carry, batch):
        model, opt_state, diverged, predicted = carry
        rule_state, initial, xb, yb = batch
        new_model, new_opt_state, loss, new_predicted = sgd_step(
            model, rule_state, opt_state, xb, yb, initial, predicted)
        finite = jnp.isfinite(loss) & jnp.all(jnp.asarray(
            [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(eqx.filter(new_model, eqx.is_array))]))
        ok = finite & ~diverged
        model = _select(ok, new_model, model)
        opt_state = _select(ok, new_opt_state, opt_state)
        predicted = _select(ok, new_predicted, predicted) if predict else predicted
        return (model, opt_state, diverged | ~finite, predicted), jnp.where(ok, loss, jnp.nan)

    def epoch(model, rule_state, opt_state, diverged, key, x, y, initial, predicted):
        perm = jax.random.permutation(key, x.shape[0])
        xb, yb = _split_batches(x, batch_size, perm), _split_batches(y, batch_size, perm)

        def body(carry, batch):
            xi, yi = batch
            return step(carry, (rule_state, initial, xi, yi))

        (model, opt_state, diverged, predicted), losses = jax.lax.scan(
            body, (model, opt_state, diverged, predicted), (xb, yb))
        return model, opt_state, diverged, predicted, jnp.mean(losses)

    return epoch


def evaluation_batches(n: int, batch_size: int) -> list[tuple[int, int, int]]:
    """How :func:`train` splits ``n`` held-out examples: every example exactly once, in
    ``ceil(n / batch_size)`` batches whose sizes differ by at most one (so batch-norm
    statistics never come from a tiny remainder batch).

    Returns ``[(start, n_batches, size), ...]``: at most two groups of equal-size batches,
    the first of ``size + 1`` examples each, then those of ``size``. 297 examples with
    batch 100: three batches of 99; 293: two of 98, one of 97; 30: one of 30.
    """
    if n < 1:
        raise ValueError(f"the held-out set is empty: nothing to evaluate (n = {n})")
    if batch_size < 1:
        raise ValueError(f"eval_batch_size must be a positive integer, got {batch_size!r}")
    k = -(-n // batch_size)
    size, extra = divmod(n, k)
    groups = []
    if extra:
        groups.append((0, extra, size + 1))
    groups.append((extra * (size + 1), k - extra, size))
    return groups


def make_evaluate(loss_fn: LossFn, batch_size: int, classification: bool) -> Callable:
    """Held-out loss (and accuracy) in minibatches of ``batch_size``, with batch-norm batch
    statistics as the authors evaluate. Returns ``evaluate(model, x, y) -> dict`` of means
    over the batches; ``len(x)`` must be a multiple of ``batch_size`` (:func:`train` splits
    any held-out set that way with :func:`evaluation_batches`)."""

    def evaluate(model, x, y):
        if x.shape[0] % batch_size:
            raise ValueError(f"evaluate needs a multiple of its batch size {batch_size} "
                             f"examples, got {x.shape[0]}")
        xb, yb = _split_batches(x, batch_size), _split_batches(y, batch_size)

        def body(_, batch):
            out = model(batch[0])
            metrics = {"loss": loss_fn(out, batch[1])}
            if classification:
                metrics["accuracy"] = accuracy(out, batch[1])
            return None, metrics

        _, metrics = jax.lax.scan(body, None, (xb, yb))
        return jax.tree.map(jnp.mean, metrics)

    return evaluate


def _evaluate_all(loss_fn: LossFn, batch_size: int, classification: bool, models, x, y) -> dict:
    """Every held-out example once (:func:`evaluation_batches`); batch means weighted by
    batch size, so the result is the mean over examples. Metrics are per run."""
    total: dict = {}
    for start, n_batches, size in evaluation_batches(x.shape[0], batch_size):
        stop = start + n_batches * size
        part = _compiled_evaluate(loss_fn, size, classification)(models, x[start:stop], y[start:stop])
        for name, value in part.items():
            total[name] = total.get(name, 0.0) + value * (stop - start)
    return {name: value / x.shape[0] for name, value in total.items()}


@jax.jit
def _epoch_keys(keys: Array, epoch: int) -> Array:
    """Each run's data key for ``epoch`` (shuffling and rule randomness): ``fold_in(key,
    epoch)`` per run, compiled once (traced op by op it cost a few ms every epoch)."""
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, epoch)


@functools.lru_cache(maxsize=128)
def _compiled_epoch(rule: LearningRule, optimizer: str, loss_fn: LossFn, batch_size: int,
                    predict: bool) -> Callable:
    """The vmapped, jitted epoch, shared by every :func:`train` call with the same rule,
    optimizer, loss and batch size, so equal shapes compile once (the learning rate
    itself lives in each run's optimizer state)."""
    opt = make_optimizer(optimizer, 1.0)
    return eqx.filter_jit(eqx.filter_vmap(
        make_epoch(rule, opt, loss_fn, batch_size, predict),
        in_axes=(0, 0, 0, 0, 0, None, None, 0, 0)))


@functools.lru_cache(maxsize=128)
def _compiled_evaluate(loss_fn: LossFn, batch_size: int, classification: bool) -> Callable:
    """The vmapped, jitted evaluation, shared across rules (it does not depend on them)."""
    return eqx.filter_jit(eqx.filter_vmap(
        make_evaluate(loss_fn, batch_size, classification), in_axes=(0, None, None)))


def _count(name: str, value, low: int) -> int:
    """An integer argument (Python or NumPy) ``>= low``, as an int; a ValueError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return int(value)


def _scalar_or_list(name: str, value) -> list:
    """A scalar (Python or NumPy, or a 0-d array) as a one-item list; a sequence as a list."""
    if np.ndim(value) == 0 and not isinstance(value, (str, bytes)):
        return [value.item() if hasattr(value, "item") else value]
    try:
        return [v.item() if hasattr(v, "item") and np.ndim(v) == 0 else v for v in value]
    except TypeError:
        raise ValueError(f"{name} must be a number or a list of numbers, got {value!r}") from None


def _learning_rates(value) -> list[float]:
    lrs = _scalar_or_list("learning_rates", value)
    bad = [lr for lr in lrs if isinstance(lr, bool) or not isinstance(lr, numbers.Real)
           or not math.isfinite(lr) or lr <= 0]
    if not lrs or bad:
        raise ValueError(f"learning_rates must be positive finite numbers, got {value!r}"
                         + (f" ({bad[0]!r} is not)" if bad else " (no learning rate)"))
    return [float(lr) for lr in lrs]


def _seeds(value) -> list[int]:
    seeds = _scalar_or_list("seeds", value)
    if not seeds:
        raise ValueError("seeds must list at least one seed")
    return [_count("each seed", s, 0) for s in seeds]


def _check_finite(name: str, a) -> None:
    """ValueError naming ``name`` unless every entry of ``a`` is finite; checked a block of
    rows at a time, so a large data set needs no second copy of itself in memory."""
    xp = jnp if isinstance(a, jax.Array) else np
    per_row = max(1, math.prod(a.shape[1:]))
    step = max(1, (1 << 24) // per_row)
    n_nan = n_inf = 0
    first = None
    for start in range(0, a.shape[0], step):
        block = a[start:start + step]
        if bool(xp.all(xp.isfinite(block))):
            continue
        block = np.asarray(block)
        nan, bad = np.isnan(block), ~np.isfinite(block)
        n_nan += int(nan.sum())
        n_inf += int(bad.sum()) - int(nan.sum())
        if first is None:
            first = start + int(np.argwhere(bad)[0][0])
    if first is not None:
        what = " and ".join(w for w in (f"{n_nan} NaN" if n_nan else "",
                                          f"{n_inf} infinite" if n_inf else "") if w)
        raise ValueError(f"{name} contains {what} value(s) (the first in row {first} of "
                         f"{a.shape[0]}); train needs finite inputs and targets")


def _check_data(data) -> dict[str, Any]:
    """The four arrays of ``data``, checked: numeric, finite, one row per example in both
    ``x`` and ``y`` of each split, the same example shape in both splits. Every problem is
    a ValueError naming the array."""
    arrays = {}
    for name in ("x_train", "y_train", "x_test", "y_test"):
        if not hasattr(data, name):
            raise ValueError(f"data must have x_train, y_train, x_test and y_test (an "
                             f"alignlib.data.Dataset); {type(data).__name__} has no {name}")
        a = getattr(data, name)
        a = a if isinstance(a, jax.Array) else np.asarray(a)
        if a.ndim < 1:
            raise ValueError(f"data.{name} must have one row per example, got a scalar")
        if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise ValueError(f"data.{name} must hold numbers, got dtype {a.dtype}")
        if np.issubdtype(a.dtype, np.floating):
            _check_finite(f"data.{name}", a)
        arrays[name] = a
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"data.x_{split} has {x.shape[0]} rows but data.y_{split} has "
                             f"{y.shape[0]}: one target per example is needed")
    for kind in ("x", "y"):
        tr, te = arrays[f"{kind}_train"].shape[1:], arrays[f"{kind}_test"].shape[1:]
        if tr != te:
            raise ValueError(f"data.{kind}_train has examples of shape {tr} but data.{kind}_test "
                             f"of shape {te}")
    if arrays["x_train"].shape[0] == 0:
        raise ValueError("data.x_train is empty: nothing to train on")
    return arrays


def _stack(trees: Sequence[Any]):
    return jax.tree.map(lambda *a: jnp.stack(a) if eqx.is_array(a[0]) else a[0], *trees)


def train(make_model: Callable[[Array], Any], rule: str | LearningRule, data, *,
          epochs: int, learning_rates: float | Sequence[float] = 1.0,
          seeds: int | Sequence[int] = 0, batch_size: int = 100, optimizer: str = "sgd",
          loss_fn: LossFn = mse, classification: bool | None = None,
          eval_batch_size: int | None = None, tags: dict | None = None,
          predict: bool = False, epoch_metrics: Callable | None = None,
          convergence_tolerance: float | None = None, min_epochs: int = MIN_EPOCHS,
          eval_every: int = 1, progress: bool = True) -> TrainResult:
    """Train ``make_model(key)`` with ``rule`` for every (seed, learning rate) at once.

    ``data``: an :class:`alignlib.data.Dataset` (``x_train, y_train, x_test, y_test``).
    Metrics per epoch: ``train_loss`` (mean over the epoch's steps), ``heldout_loss`` and,
    for classification, ``heldout_accuracy``, plus ``seconds`` (wall time of the epoch for
    all runs together; epoch 1 includes compilation). Deterministic for given seeds.

    ``predict=True`` (SGD only) accumulates the paper's prediction ``dW_pred`` beside
    training (see :func:`make_epoch`). ``epoch_metrics(models, initial, predicted) ->
    {name: per-run values}`` is called on the stacked runs after every epoch (and at
    epoch 0); its metrics join the history (e.g. alignment scores per layer and epoch).

    ``convergence_tolerance=tol``: ``epochs`` becomes a maximum; training stops after the
    first epoch (from ``min_epochs`` on) at which every run has converged or diverged (:mod:`alignlib.convergence`: over the last tenth of the epochs
    the training loss changed by less than ``tol`` times the first epoch's loss).

    ``eval_every=k``: held-out metrics (and ``epoch_metrics``) only every ``k`` epochs and
    at the last epoch trained; the training loss is recorded every epoch.

    The held-out set is evaluated whole, every example once, in batches of at most
    ``eval_batch_size`` (default: ``batch_size``) of near-equal size
    (:func:`evaluation_batches`).

    Checked before anything is compiled (ValueError naming the argument or array): the
    four arrays hold finite numbers (a NaN in the data is an error, not a divergence),
    ``x`` and ``y`` of each split have the same number of rows and both splits the same
    example shape; counts are integers and learning rates positive finite numbers
    (NumPy scalars and arrays are accepted).
    """
    rule = get_rule(rule)
    seeds = _seeds(seeds)
    lrs = _learning_rates(learning_rates)
    epochs = _count("epochs", epochs, 0)
    min_epochs = _count("min_epochs", min_epochs, 0)
    arrays = _check_data(data)
    n_train, n_test = arrays["x_train"].shape[0], arrays["x_test"].shape[0]
    batch_size = _count("batch_size", batch_size, 1)
    if batch_size > n_train:
        raise ValueError(
            f"batch_size must be between 1 and the training-set size {n_train}, "
            f"got {batch_size}")
    if n_test == 0:
        raise ValueError("the held-out set is empty: train needs held-out examples to evaluate")
    eval_batch_size = batch_size if eval_batch_size is None else _count("eval_batch_size", eval_batch_size, 1)
    evaluation_batches(n_test, eval_batch_size)
    if convergence_tolerance is not None:
        convergence_tolerance = check_tolerance(convergence_tolerance)
    if isinstance(eval_every, bool) or not isinstance(eval_every, (int, np.integer)) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive integer, got {eval_every!r}")
    if predict and optimizer != "sgd":
        raise ValueError("predict=True needs optimizer='sgd': dW_pred is a sum of SGD steps")
    if classification is None:
        classification = getattr(data, "labels_train", None) is not None

    grid = list(itertools.product(seeds, lrs))
    runs = pd.DataFrame({"run": range(len(grid)), "seed": [s for s, _ in grid],
                         "lr": [lr for _, lr in grid]})
    x_train, y_train = jnp.asarray(arrays["x_train"]), jnp.asarray(arrays["y_train"])
    x_test, y_test = jnp.asarray(arrays["x_test"]), jnp.asarray(arrays["y_test"])

    models, states, opt_states, keys = [], [], [], []
    for seed, lr in grid:
        k_model, k_rule, k_data = jax.random.split(jax.random.PRNGKey(seed), 3)
        model = make_model(k_model)
        models.append(model)
        states.append(rule.init(model, x_train[:batch_size], k_rule))
        opt = make_optimizer(optimizer, lr)
        opt_states.append(opt.init(eqx.filter(model, eqx.is_inexact_array)))
        keys.append(k_data)
    model, rule_state, opt_state = _stack(models), _stack(states), _stack(opt_states)
    initial = model
    diverged = jnp.zeros(len(grid), bool)
    data_keys = jnp.stack(keys)

    predicted = (jax.tree.map(jnp.zeros_like, eqx.filter(model, eqx.is_inexact_array))
                 if predict else None)
    epoch_fn = _compiled_epoch(rule, optimizer, loss_fn, batch_size, predict)
    eval_fn = functools.partial(_evaluate_all, loss_fn, eval_batch_size, classification)

    rows: list[dict] = []
    losses: list[np.ndarray] = []  # mean training loss per epoch, one entry per run

    def record(epoch: int, metrics: dict, seconds: float | None):
        div = np.asarray(diverged)
        for name, values in metrics.items():
            for r, v in enumerate(np.asarray(values)):
                rows.append({"run": r, "epoch": epoch, "metric": name, "value": float(v),
                             "diverged": bool(div[r])})
        if seconds is not None:
            for r in range(len(grid)):
                rows.append({"run": r, "epoch": epoch, "metric": "seconds",
                             "value": seconds, "diverged": bool(div[r])})

    def extra_metrics():
        return {} if epoch_metrics is None else epoch_metrics(model, initial, predicted)

    record(0, {**{f"heldout_{k}": v for k, v in eval_fn(model, x_test, y_test).items()},
               **extra_metrics()}, None)
    bar = tqdm(range(1, epochs + 1), desc=f"{rule.name}", disable=None if progress else True, leave=False)
    for epoch in bar:
        epoch_keys = _epoch_keys(data_keys, epoch)
        start = time.perf_counter()
        model, opt_state, diverged, predicted, train_loss = epoch_fn(
            model, rule_state, opt_state, diverged, epoch_keys, x_train, y_train,
            initial if predict else None, predicted)
        train_loss.block_until_ready()
        seconds = time.perf_counter() - start
        losses.append(np.asarray(train_loss))
        if np.isfinite(losses[-1]).any():
            bar.set_postfix(train_loss=float(np.nanmean(losses[-1])))
        stop = bool(np.all(np.asarray(diverged))) or (
            convergence_tolerance is not None and epoch >= min_epochs and bool(np.all(
                has_converged(losses, convergence_tolerance) | np.asarray(diverged))))
        metrics = {"train_loss": train_loss}
        if stop or epoch == epochs or epoch % eval_every == 0:
            heldout = eval_fn(model, x_test, y_test)
            metrics.update({f"heldout_{k}": v for k, v in heldout.items()}, **extra_metrics())
        record(epoch, metrics, seconds)
        if stop:
            break

    history = pd.DataFrame(rows).merge(runs, on="run")
    history.insert(0, "rule", rule.name)
    for key, value in (tags or {}).items():
        history[key] = value
    return TrainResult(models=model, initial=initial, runs=runs, history=history,
                       predicted=predicted)
