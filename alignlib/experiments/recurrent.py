"""The recurrent experiment of the paper: a ReLU RNN trained on the Add task.

The network is :class:`alignlib.RNN` (NTK parameterisation, recurrence in ``lax.scan``)::

    h_t = relu(W_ih x_t + W_hh h_(t-1) / sqrt(n) + b_h),     y_t = w_ho . h_t / sqrt(n) + b_o

with a learned initial state ``h_0``, trained on :func:`alignlib.data.add_task` with
:func:`alignlib.sequence_mse` (sum over time of the batch mean of ``(y_t - target_t)^2``).
The rules (backprop through time, Align-ada, Align-zero, Align-prop, readout only) are the
library's (:mod:`alignlib.rules`); the model code is the same for all of them.

This module adds what the chapter ``book/recurrent.ipynb`` needs beyond the library:

* the authors' code, reimplemented behind explicit names so that their published numbers
  can be compared with ours. Their script differs from the experiment as described in
  five ways ("quirks"):

  - (a) wrap-around targets: ``add_task(wraparound=True)`` (in :mod:`alignlib.data`);
  - (b) their recurrent Align-ada, :data:`align_ada_authors_rnn`, which drops the
    readout's direct contribution at each time step;
  - (c) their initial state, one learned row per batch slot: :class:`SlotInitialState`;
  - (d) their recurrent Align-zero, :data:`align_zero_authors_rnn`, whose linearised
    network starts from the current, trained initial state instead of ``h_0(0)``;
  - (e) their readout-only training, :data:`readout_authors_rnn`, which also trains the
    initial state;

  :data:`SETTINGS` switches them on alone or together (``'authors_code'``);

* :func:`authors_seed_draws`, :func:`authors_seed_model` and :func:`authors_seed_run`: the
  authors' run repeated from their NumPy seed (their data, initial weights and batch
  order), which reproduces the best test losses their script printed;
* :func:`sweep`: trains every (setting, rule, width) with several seeds and returns one
  tidy table (losses per epoch, seconds per epoch, distance of the trained outputs to
  backprop's);
* :func:`constant_predictor_losses`: the two reference lines (always 0.5; the training
  mean);
* :func:`time_epochs` and :func:`timing_summary`: seconds per epoch in the authors'
  setting, test-set evaluation included (and, separately, a pass over the training set),
  extrapolated to their 200 epochs and set beside their TensorFlow times;
  :func:`epoch_flops` and :func:`matmul_gflops` turn them into an arithmetic rate;
* :func:`update_relative_errors` and :func:`updates_at_initialisation`: how far a rule's
  update is from backprop through time at initialisation, per site;
* :func:`best_losses`, :func:`summarize` (seed intervals, arithmetic or geometric),
  :func:`paired_ratios` (each rule against another from the same initial network),
  :func:`fit_slope` (a power law in width, with an interval) and :func:`markdown_table`
  for the chapter's tables and scorecard records.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Callable, Iterable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax

from alignlib._sites import AdaPair, Array, Dense, Pair, Site
from alignlib.data import Dataset, add_task, add_task_targets
from alignlib.models import RNN
from alignlib.rules import (
    LearningRule,
    LossFn,
    _align_zero_gradient,
    _frozen_copy,
    _no_state,
    _value_with_gradient_of,
    get_rule,
    sequence_mse,
)
from alignlib.statistics import power_law_fit, t_interval
from alignlib.training import make_epoch, make_evaluate, make_optimizer, train

__all__ = [
    "AUTHORS_SETTING", "AUTHORS_BEST_TEST_LOSS", "AUTHORS_CONSTANT_LOSS",
    "AUTHORS_SECONDS_200_EPOCHS", "AUTHORS_SEED", "SETTINGS", "Setting", "SlotInitialState",
    "align_ada_authors_rnn", "align_zero_authors_rnn", "readout_authors_rnn",
    "with_slot_initial_state", "make_rnn", "rule_for", "AuthorsDraws", "authors_seed_draws",
    "authors_seed_model", "authors_seed_run", "paired_ratios", "fit_slope",
    "constant_predictor_losses", "sweep", "best_losses", "summarize", "output_distances",
    "time_epochs", "timing_summary", "epoch_flops", "matmul_gflops", "update_relative_errors",
    "updates_at_initialisation", "markdown_table",
]

# ------------------------------------------------------------------ the authors' numbers

#: The authors' Add-task setting (their ``train_add.py``): 400 sequences of length 100
#: (300 train, 100 test), SGD with learning rate 0.001, batch 50, 200 epochs.
AUTHORS_SETTING = dict(n_sequences=400, length=100, n_train=300, lr=0.001, batch_size=50,
                       epochs=200)

#: The best test loss the authors' script printed (one seed, 99; 200 epochs; two decimals),
#: produced by their code, i.e. with quirks (a) to (e): ``{width: {rule: loss}}``.
AUTHORS_BEST_TEST_LOSS = {
    16: {"backprop": 1.23, "align_ada": 2.09, "align_zero": 2.21, "readout": 2.97},
    64: {"backprop": 0.67, "align_ada": 0.90, "align_zero": 0.65, "readout": 3.31},
    256: {"backprop": 0.53, "align_ada": 0.69, "align_zero": 0.80, "readout": 3.88},
    1024: {"backprop": 0.42, "align_ada": 0.50, "align_zero": 0.48, "readout": 2.95},
}

#: Test loss of always predicting 0.5, as the authors' script prints it (wrap-around data).
AUTHORS_CONSTANT_LOSS = 9.31

#: Wall-clock seconds of the authors' TensorFlow script for 200 epochs of the authors'
#: setting, per-epoch evaluation included, measured by running their script on a 2-core
#: CPU like the one this book is built on: ``{(rule, width): seconds}``.
AUTHORS_SECONDS_200_EPOCHS = {("backprop", 256): 30.0, ("backprop", 1024): 311.0,
                              ("align_ada", 256): 41.0, ("align_ada", 1024): 479.0}


# ------------------------------------------------------------------ quirk (c): slot state


class SlotInitialState(Dense):
    """The authors' initial state: one learned vector per *batch slot* (quirk (c)).

    ``weight``: ``(width, slots)``, zero at initialisation, no bias, no multiplier (the
    authors' ``init_state`` is a plain ``(batch_size, n)`` variable). Fed the RNN's constant
    input ``1`` of shape ``(batch, 1)``, it returns ``h_0`` of shape ``(batch, width)``
    whose row ``b`` is ``weight[:, b]``, i.e. ``diag(x) W^T``, linear in ``x`` and ``W``.
    The batch must have exactly ``slots`` rows (the authors evaluate in batches of 50 too).

    Build it with ``SlotInitialState(slots, width, key=..., parameterization="standard",
    bias=False, zero_init=True)`` or, simpler, :func:`with_slot_initial_state`.
    """

    def linear(self, weight: Array, x: Array) -> Array:
        slots = weight.shape[1]
        if x.shape[0] != slots:
            raise ValueError(
                f"the per-slot initial state has {slots} slots, so every batch must hold "
                f"{slots} sequences; got a batch of {x.shape[0]}")
        return (x * jnp.eye(slots, dtype=x.dtype)) @ weight.T


def with_slot_initial_state(model: RNN, slots: int) -> RNN:
    """``model`` with its learned initial state replaced by the authors' per-slot one."""
    if not isinstance(model, RNN):
        raise TypeError(f"model must be an alignlib.RNN, got {type(model).__name__}")
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ValueError(f"slots must be a positive integer, got {slots!r}")
    width = model.recurrent.weight.shape[0]
    site = SlotInitialState(slots, width, key=jax.random.PRNGKey(0),
                            parameterization="standard", bias=False, zero_init=True)
    return eqx.tree_at(lambda m: m.initial_state, model, site)


def make_rnn(width: int, *, slot_state: int | None = None) -> Callable[[Array], RNN]:
    """``key -> RNN(1, width)`` for :func:`alignlib.train`; with ``slot_state=B`` the
    initial state is the authors' per-slot one for batches of ``B`` (quirk (c))."""

    def make(key: Array) -> RNN:
        model = RNN(1, width, key=key)
        return model if slot_state is None else with_slot_initial_state(model, slot_state)

    return make


# ------------------------------------------------------------------ quirk (b): their Align-ada


class _AuthorsInitialState(eqx.Module):
    """Their ``state = init_state``, ``state_lin = stop_gradient(init_state)``: the initial
    network starts from the *current* initial state, with no gradient link here (the link
    is made by the recurrence at the first step)."""

    current: Site

    def __call__(self, x: Pair) -> Pair:
        out = self.current(lax.stop_gradient(x.current))
        return Pair(out, lax.stop_gradient(out))


class _AuthorsInput(eqx.Module):
    """Their input site: the current network computes ``W_ih x_t + b_h``; the initial
    network ``W_ih(0) x_t + b_h(0)``, with no gradient link between the two."""

    current: Site
    initial: Site

    def __call__(self, x: Pair) -> Pair:
        out = self.current(lax.stop_gradient(x.current))
        out_initial = jax.tree.map(lax.stop_gradient, self.initial)(lax.stop_gradient(x.initial))
        return Pair(out, out_initial)


class _AuthorsRecurrent(eqx.Module):
    """Their recurrence: the current state ``h_(t-1)`` enters the *initial* network's step
    ``t`` as a gradient-only term, ``W_hh(0) (h0_(t-1) + h_(t-1) - sg(h_(t-1))) / sqrt(n)``.

    So the current state (after its ReLU) receives the initial network's sensitivity of the
    loss at times ``>= t``, but nothing from the readout at its own time ``t - 1``: the
    readout reads the current state through ``stop_gradient`` and the initial state
    without a link to the current weights of that step.
    """

    current: Site
    initial: Site

    def __call__(self, h: Pair) -> Pair:
        out = self.current(lax.stop_gradient(h.current))
        routed = h.initial + h.current - lax.stop_gradient(h.current)
        out_initial = jax.tree.map(lax.stop_gradient, self.initial)(routed)
        return Pair(out, out_initial)


def _align_ada_authors_gradient(model, initial, x, y, loss_fn):
    if not isinstance(model, RNN):
        raise TypeError(
            f"align_ada_authors_rnn reproduces the authors' recurrent script and needs an "
            f"alignlib.RNN, got {type(model).__name__}")

    def surrogate(m):
        paired = eqx.tree_at(
            lambda t: (t.initial_state, t.input, t.recurrent, t.readout), m,
            replace=(_AuthorsInitialState(m.initial_state),
                     _AuthorsInput(m.input, initial.input),
                     _AuthorsRecurrent(m.recurrent, initial.recurrent),
                     AdaPair(m.readout, initial.readout)))
        out = paired(Pair(x, x))
        return loss_fn(_value_with_gradient_of(out.current, out.initial), y)

    return eqx.filter_value_and_grad(surrogate)(model)


align_ada_authors_rnn = LearningRule("align_ada_authors_rnn", _frozen_copy,
                                     _align_ada_authors_gradient)
"""The authors' recurrent Align-ada (their ``train_alignada``), a reproduction of their code,
not the rule: the current hidden state is routed into the initial network only as the
input of the *next* recurrent step, so the loss at time ``t`` reaches ``h_t`` only
through ``t + 1`` and later, never through the readout at ``t`` (quirk (b)). The readout
and its bias get the correct Align-ada update. The initial network also starts from the
current (not the initial) learned initial state, as in their script."""


# ------------------------------------------------------------------ quirk (d): their Align-zero


def _align_zero_authors_gradient(model, initial, x, y, loss_fn):
    if not isinstance(model, RNN):
        raise TypeError(
            f"align_zero_authors_rnn reproduces the authors' recurrent script and needs an "
            f"alignlib.RNN, got {type(model).__name__}")
    # their linearised network shares the learned initial-state variable with the current
    # one: it starts from the current h_0, with the initial weights everywhere else
    linearised = eqx.tree_at(lambda m: m.initial_state, initial, model.initial_state)
    return _align_zero_gradient(model, linearised, x, y, loss_fn)


align_zero_authors_rnn = LearningRule("align_zero_authors_rnn", _frozen_copy,
                                      _align_zero_authors_gradient)
"""The authors' recurrent Align-zero (their ``train_alignzero``), a reproduction of their
code, not the rule (quirk (d)): the initial (linearised) network that supplies every
update runs with the initial weights ``W(0)`` but starts from the *current*, trained
initial state ``h_0(t)``, because their script gives both networks the same initial-state
variable. The rule as defined (:data:`alignlib.align_zero`) starts it from ``h_0(0)``.
Both equal backprop through time at initialisation."""


# ------------------------------------------------------------------ quirk (e): their readout


def _readout_authors_gradient(model, state, x, y, loss_fn):
    del state
    if not isinstance(model, RNN):
        raise TypeError(
            f"readout_authors_rnn reproduces the authors' recurrent script and needs an "
            f"alignlib.RNN, got {type(model).__name__}")

    def surrogate(parts):
        return loss_fn(eqx.tree_at(lambda m: (m.readout, m.initial_state), model, parts)(x), y)

    loss, (g_readout, g_state) = eqx.filter_value_and_grad(surrogate)(
        (model.readout, model.initial_state))
    grads = jax.tree.map(jnp.zeros_like, eqx.filter(model, eqx.is_inexact_array))
    return loss, eqx.tree_at(lambda m: (m.readout, m.initial_state), grads,
                             (g_readout, g_state))


readout_authors_rnn = LearningRule("readout_authors_rnn", _no_state, _readout_authors_gradient)
"""The authors' recurrent readout-only training (their ``train_readout``), a reproduction
of their code (quirk (e)): besides the readout it also trains the learned initial state,
by backprop through time into ``h_0``. The rule as defined (:data:`alignlib.readout`)
trains the readout alone."""


# ------------------------------------------------------------------ settings


@dataclasses.dataclass(frozen=True)
class Setting:
    """One way of running the experiment: the intended one, or with some of the authors'
    quirks. ``wraparound``: quirk (a) targets; ``slot_state``: quirk (c) initial state;
    ``authors_ada``: quirk (b), ``'align_ada'`` is trained with
    :data:`align_ada_authors_rnn`; ``authors_zero``: quirk (d), ``'align_zero'`` is trained
    with :data:`align_zero_authors_rnn`; ``authors_readout``: quirk (e), ``'readout'`` is
    trained with :data:`readout_authors_rnn`."""

    name: str
    wraparound: bool = False
    slot_state: bool = False
    authors_ada: bool = False
    authors_zero: bool = False
    authors_readout: bool = False
    description: str = ""


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("intended",
            description="causal targets, one learned initial state, the rules as defined"),
    Setting("wraparound", wraparound=True,
            description="quirk (a) alone: the authors' wrap-around targets"),
    Setting("authors_ada", authors_ada=True,
            description="quirk (b) alone: the authors' recurrent Align-ada"),
    Setting("authors_code", wraparound=True, slot_state=True, authors_ada=True,
            authors_zero=True, authors_readout=True,
            description="the authors' code: quirks (a) to (e) together"),
)}


def _setting(name: str | Setting) -> Setting:
    if isinstance(name, Setting):
        return name
    try:
        return SETTINGS[name]
    except KeyError:
        raise ValueError(f"unknown setting {name!r}; valid names: {', '.join(SETTINGS)}") from None


_AUTHORS_RULES = {r.name: r for r in (align_ada_authors_rnn, align_zero_authors_rnn,
                                      readout_authors_rnn)}


def rule_for(setting: str | Setting, rule: str | LearningRule) -> LearningRule:
    """The learning rule that ``rule`` means in ``setting``: the authors' recurrent
    Align-ada, Align-zero or readout where the setting reproduces quirk (b), (d) or (e).
    A :class:`~alignlib.rules.LearningRule` object is returned as it is."""
    if isinstance(rule, LearningRule):
        return rule
    s = _setting(setting)
    if rule == "align_ada" and s.authors_ada:
        return align_ada_authors_rnn
    if rule == "align_zero" and s.authors_zero:
        return align_zero_authors_rnn
    if rule == "readout" and s.authors_readout:
        return readout_authors_rnn
    if rule in _AUTHORS_RULES:
        return _AUTHORS_RULES[rule]
    return get_rule(rule)


# ------------------------------------------------------------------ reference lines


def constant_predictor_losses(data: Dataset) -> dict[str, float]:
    """Test loss (:func:`~alignlib.sequence_mse`) of two predictors that ignore the input.

    ``'constant_0.5'``: always 0.5 (what the authors print as "random chance");
    ``'training_mean'``: at each time step, the mean training target of that step (the best
    input-independent predictor fitted on the training set).
    """
    y_train, y_test = np.asarray(data.y_train, np.float64), np.asarray(data.y_test, np.float64)
    mean = y_train.mean(axis=0, keepdims=True)
    return {"constant_0.5": float(np.sum(np.mean((y_test - 0.5) ** 2, axis=0))),
            "training_mean": float(np.sum(np.mean((y_test - mean) ** 2, axis=0)))}


# ------------------------------------------------------------------ the authors' run, from their seed

#: The NumPy seed of the authors' script. It fixes their data, their initial weights and
#: their batch order, so their published run can be repeated exactly.
AUTHORS_SEED = 99


@dataclasses.dataclass(frozen=True)
class AuthorsDraws:
    """What the authors' script draws from NumPy's legacy generator, for one width.

    ``data``: their Add task, wrap-around targets (quirk (a)), sequences ``0 .. n_train-1``
    train and the rest test, ``x`` and ``y`` of shape ``(N, T, 1)`` float32;
    ``w_ih`` ``(n,)``, ``w_hh`` ``(n, n)``, ``w_ho`` ``(n,)``: their initial weights, float64
    as drawn, in their convention ``h_t = relu(x_t w_ih + h_(t-1) @ w_hh / sqrt(n) + b_h)``
    (row vector times ``w_hh``), ``y_t = h_t . w_ho / sqrt(n) + b_o``;
    ``train_order`` ``(epochs, n_train)``: the order in which each epoch's SGD batches take
    the training sequences; ``test_order`` ``(epochs, n_test)``: the order of each epoch's
    test batches (it matters, because the initial state is one row per batch slot).
    """

    data: Dataset
    w_ih: np.ndarray
    w_hh: np.ndarray
    w_ho: np.ndarray
    train_order: np.ndarray
    test_order: np.ndarray


def authors_seed_draws(width: int, *, epochs: int = AUTHORS_SETTING["epochs"],
                       seed: int = AUTHORS_SEED,
                       n_sequences: int = AUTHORS_SETTING["n_sequences"],
                       length: int = AUTHORS_SETTING["length"],
                       n_train: int = AUTHORS_SETTING["n_train"]) -> AuthorsDraws:
    """The authors' data, initial weights and batch order, drawn the way their script draws
    them: NumPy's legacy Mersenne-Twister generator, reseeded with ``seed`` three times.

    1. seed; bits ``binomial(1, 0.5, size=(n_sequences, length))``; targets from
       ``roll`` along time with the first 2 resp. 5 *sequences* zeroed (quirk (a),
       :func:`alignlib.data.add_task_targets` with ``wraparound=True``);
    2. seed; ``w_ih = normal(size=n)``, ``w_hh = normal(size=(n, n))``,
       ``w_ho = normal(size=n)``, in that order (biases and initial state are zero);
    3. seed; then per epoch ``permutation(n_train)`` (the SGD batches, in order),
       ``permutation(n_test)`` (the test batches) and one more ``permutation(n_train)``,
       which their script uses for a pass over the training set and which is drawn here
       only to keep the stream in step.

    A private ``numpy.random.RandomState(seed)`` gives the same numbers as
    ``numpy.random.seed(seed)`` followed by the global functions, without touching the
    global generator.
    """
    for name, value in (("width", width), ("epochs", epochs), ("n_sequences", n_sequences),
                        ("length", length), ("n_train", n_train)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not n_train < n_sequences:
        raise ValueError(f"n_train must be below n_sequences={n_sequences}, got {n_train}")
    rng = np.random.RandomState(seed)
    bits = rng.binomial(1, 0.5, size=(n_sequences, length))
    targets = add_task_targets(bits, wraparound=True)
    x, y = bits.astype(np.float32)[..., None], targets[..., None]
    data = Dataset(name="add-wraparound", x_train=x[:n_train], y_train=y[:n_train],
                   x_test=x[n_train:], y_test=y[n_train:], labels_train=None,
                   labels_test=None, n_outputs=1)
    rng = np.random.RandomState(seed)
    w_ih = rng.normal(scale=1, size=width)
    w_hh = rng.normal(scale=1, size=(width, width))
    w_ho = rng.normal(scale=1, size=width)
    rng = np.random.RandomState(seed)
    train_order, test_order = [], []
    for _ in range(epochs):
        train_order.append(rng.permutation(n_train))
        test_order.append(rng.permutation(n_sequences - n_train))
        rng.permutation(n_train)
    return AuthorsDraws(data, w_ih, w_hh, w_ho, np.stack(train_order), np.stack(test_order))


def authors_seed_model(draws: AuthorsDraws, batch_size: int = AUTHORS_SETTING["batch_size"]
                       ) -> RNN:
    """The authors' initial network: :class:`alignlib.RNN` with their weights (float32)
    and their per-slot initial state for batches of ``batch_size`` (quirk (c)).

    Their ``h_(t-1) @ w_hh`` is the library's ``W_hh h_(t-1)`` with ``W_hh = w_hh^T``; their
    input weight is unscaled, as the library's NTK multiplier ``1/sqrt(fan_in)`` is 1 for
    the single input."""
    width = draws.w_ih.shape[0]
    model = make_rnn(width, slot_state=batch_size)(jax.random.PRNGKey(0))
    return eqx.tree_at(
        lambda m: (m.input.weight, m.recurrent.weight, m.readout.weight), model,
        (jnp.asarray(draws.w_ih[:, None], jnp.float32), jnp.asarray(draws.w_hh.T, jnp.float32),
         jnp.asarray(draws.w_ho[None, :], jnp.float32)))


@functools.lru_cache(maxsize=64)
def _authors_program(rule: LearningRule, batch_size: int) -> Callable:
    """All epochs of the authors' loop in one compiled program: per epoch, plain SGD over
    the batches in ``train_order``, then the mean loss of the test batches in
    ``test_order``. Returns ``(initial test loss, train_losses, test_losses)``, the last two
    with one entry per epoch."""

    def run(model, state, lr, x_train, y_train, x_test, y_test, train_order, test_order):
        def epoch(model, orders):
            train_idx, test_idx = orders

            def step(model, idx):
                loss, grads = rule.gradient(model, state, x_train[idx], y_train[idx],
                                            sequence_mse)
                return eqx.apply_updates(model, jax.tree.map(lambda g: -lr * g, grads)), loss

            model, losses = lax.scan(step, model, train_idx.reshape(-1, batch_size))

            def test_batch(_, idx):
                return None, sequence_mse(model(x_test[idx]), y_test[idx])

            _, test = lax.scan(test_batch, None, test_idx.reshape(-1, batch_size))
            return model, (jnp.mean(losses), jnp.mean(test))

        initial = jnp.mean(lax.map(
            lambda xy: sequence_mse(model(xy[0]), xy[1]),
            (x_test.reshape((-1, batch_size) + x_test.shape[1:]),
             y_test.reshape((-1, batch_size) + y_test.shape[1:]))))
        _, (train, test) = lax.scan(epoch, model, (train_order, test_order))
        return initial, train, test

    return eqx.filter_jit(run)


def authors_seed_run(width: int, rules: Sequence[str | LearningRule] = (
        "backprop", "align_ada", "align_zero", "readout"), *,
        setting: str | Setting = "authors_code", epochs: int = AUTHORS_SETTING["epochs"],
        lr: float = AUTHORS_SETTING["lr"], batch_size: int = AUTHORS_SETTING["batch_size"],
        seed: int = AUTHORS_SEED, draws: AuthorsDraws | None = None) -> pd.DataFrame:
    """The authors' recurrent run repeated from their seed: their data, initial weights and
    batch order (:func:`authors_seed_draws`), their network (:func:`authors_seed_model`),
    plain SGD, the test loss after every epoch as their script computes it (mean over the
    test batches, in that epoch's test order).

    ``rules``: names, mapped to the authors' code paths by :func:`rule_for` in ``setting``
    (default ``'authors_code'``: their Align-ada, their Align-zero, their readout), or
    :class:`~alignlib.rules.LearningRule` objects, used as they are (e.g.
    ``alignlib.align_zero`` to see what the rule as defined does from their seed).

    Returns a tidy DataFrame ``setting, rule, width, seed, lr, epoch, metric, value,
    diverged`` with metrics ``train_loss`` (mean over the epoch's SGD steps) and
    ``heldout_loss`` (epoch 0: the initial network); :func:`best_losses` gives their "best
    test loss" (the minimum over the epochs).
    """
    s = _setting(setting)
    draws = draws if draws is not None else authors_seed_draws(
        width, epochs=epochs, seed=seed)
    if draws.w_ih.shape[0] != width or len(draws.train_order) < epochs:
        raise ValueError(f"draws are for width {draws.w_ih.shape[0]} and "
                         f"{len(draws.train_order)} epochs, asked for width {width} and "
                         f"{epochs} epochs")
    d = draws.data
    if d.n_train % batch_size or d.n_test % batch_size:
        raise ValueError(f"batch_size {batch_size} must divide the {d.n_train} training and "
                         f"{d.n_test} test sequences (the per-slot initial state needs "
                         "full batches)")
    model = authors_seed_model(draws, batch_size)
    arrays = [jnp.asarray(a) for a in (d.x_train, d.y_train, d.x_test, d.y_test)]
    orders = (jnp.asarray(draws.train_order[:epochs]), jnp.asarray(draws.test_order[:epochs]))
    tables = []
    for rule in rules:
        rule = rule_for(s, rule)
        state = rule.init(model, arrays[0][:batch_size], jax.random.PRNGKey(0))
        # full float32 matrix products, as their CPU run had (no TF32 on GPUs)
        with jax.default_matmul_precision("highest"):
            initial, train_losses, test_losses = _authors_program(rule, batch_size)(
                model, state, jnp.float32(lr), *arrays, *orders)
        train_losses, test_losses = np.asarray(train_losses), np.asarray(test_losses)
        initial = float(initial)
        diverged = np.cumsum(~(np.isfinite(train_losses) & np.isfinite(test_losses))) > 0
        rows = [{"epoch": 0, "metric": "heldout_loss", "value": initial, "diverged": False}]
        for e in range(epochs):
            rows += [{"epoch": e + 1, "metric": "train_loss", "value": float(train_losses[e]),
                      "diverged": bool(diverged[e])},
                     {"epoch": e + 1, "metric": "heldout_loss", "value": float(test_losses[e]),
                      "diverged": bool(diverged[e])}]
        table = pd.DataFrame(rows)
        table.insert(0, "setting", s.name)
        table.insert(1, "rule", rule.name)
        table.insert(2, "width", width)
        table.insert(3, "seed", seed)
        table.insert(4, "lr", lr)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


# ------------------------------------------------------------------ the sweep


def _outputs(models, x: Array, batch_size: int) -> np.ndarray:
    """Outputs of stacked models on ``x`` (in batches of ``batch_size``, as the per-slot
    initial state needs): ``(runs, N, T, 1)``."""
    n = (x.shape[0] // batch_size) * batch_size
    xb = x[:n].reshape((-1, batch_size) + x.shape[1:])
    out = np.asarray(_stacked_outputs(models, xb))
    return out.reshape((out.shape[0], n) + out.shape[3:])


@eqx.filter_jit
def _stacked_outputs(models, xb: Array) -> Array:
    """``(runs, batches, batch, T, 1)`` outputs; compiled once per model structure and
    shape (module level, so every rule of a width reuses it)."""
    return eqx.filter_vmap(lambda m: jax.lax.map(m, xb))(models)


def output_distances(output: np.ndarray, reference: np.ndarray, initial: np.ndarray) -> dict:
    """Distance between two networks' outputs on the same sequences, per run.

    ``output``, ``reference``, ``initial``: ``(runs, N, T, 1)`` (a rule's trained network,
    backprop's trained network, the common initial network). Returns per-run arrays:
    ``'output_distance'``: ``sum_t mean_i (f_i,t - f^ref_i,t)^2`` (the loss's units);
    ``'relative_output_distance'``: ``||f - f_ref||_F / ||f_ref - f(0)||_F``.
    """
    # a run whose outputs are not finite (it diverged) gives NaN, without a warning
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.asarray(output, np.float64) - np.asarray(reference, np.float64)
        moved = np.asarray(reference, np.float64) - np.asarray(initial, np.float64)
        runs = diff.shape[0]
        return {"output_distance": np.mean(diff ** 2, axis=1).reshape(runs, -1).sum(axis=1),
                "relative_output_distance": np.sqrt(
                    np.sum(diff.reshape(runs, -1) ** 2, axis=1)
                    / np.sum(moved.reshape(runs, -1) ** 2, axis=1))}


def sweep(runs: Iterable[tuple[str, str, int]], *, epochs: int, lr: float,
          seeds: Sequence[int], batch_size: int = 50, n_sequences: int = 400,
          length: int = 100, n_train: int = 300, data_seed: int = 0,
          progress: bool = False) -> pd.DataFrame:
    """Train every ``(setting, rule, width)`` of ``runs`` on the Add task.

    Each triple trains one network per seed with :func:`alignlib.train` (all seeds in one
    compiled program), plain SGD at learning rate ``lr``, for ``epochs`` epochs. Networks of
    the same seed and width start from the same initial weights whatever the rule. Where a
    setting and width also trains ``'backprop'``, every other rule's trained outputs on
    the test sequences are compared with backprop's of the same seed
    (:func:`output_distances`), recorded at the last epoch.

    Returns a tidy DataFrame: ``setting, rule, width, run, seed, lr, epoch, metric, value,
    diverged``; metrics ``train_loss``, ``heldout_loss`` (epoch 0 = initialisation),
    ``seconds`` (wall time of the epoch for all seeds together; epoch 1 includes
    compilation), ``output_distance`` and ``relative_output_distance``.
    """
    runs = [(str(s), str(r), int(w)) for s, r, w in runs]
    for s, r, w in runs:
        _setting(s)
        rule_for(s, r)
        if w < 1:
            raise ValueError(f"widths must be positive, got {w}")
    seeds = list(seeds)
    datasets = {wrap: add_task(n_sequences=n_sequences, length=length, n_train=n_train,
                               seed=data_seed, wraparound=wrap) for wrap in (False, True)}
    # backprop first in every (setting, width), so the others can be compared with it
    order = sorted(runs, key=lambda t: (t[0], t[2], t[1] != "backprop"))
    reference: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    tables = []
    for setting_name, rule_name, width in order:
        setting = _setting(setting_name)
        rule = rule_for(setting, rule_name)
        data = datasets[setting.wraparound]
        result = train(make_rnn(width, slot_state=batch_size if setting.slot_state else None),
                       rule, data, epochs=epochs, learning_rates=lr, seeds=seeds,
                       batch_size=batch_size, loss_fn=sequence_mse, classification=False,
                       # the whole test set in one batch, unless the per-slot initial
                       # state needs batches of batch_size
                       eval_batch_size=batch_size if setting.slot_state else len(data.x_test),
                       tags={"setting": setting.name, "width": width}, progress=progress)
        history = result.history
        x_test = jnp.asarray(data.x_test)
        out = _outputs(result.models, x_test, batch_size)
        key = (setting.name, width)
        if rule_name == "backprop":
            reference[key] = (out, _outputs(result.initial, x_test, batch_size))
        elif key in reference:
            distances = output_distances(out, *reference[key])
            last = history.epoch.max()
            diverged = history[history.epoch == last].groupby("run").diverged.first()
            rows = [{"run": r, "epoch": last, "metric": name, "value": float(v[r]),
                     "diverged": bool(diverged.get(r, False))}
                    for name, v in distances.items() for r in range(len(v))]
            extra = pd.DataFrame(rows).merge(result.runs, on="run")
            extra.insert(0, "rule", rule.name)
            extra["setting"], extra["width"] = setting.name, width
            history = pd.concat([history, extra], ignore_index=True)
        tables.append(history)
    columns = ["setting", "rule", "width", "run", "seed", "lr", "epoch", "metric", "value",
               "diverged"]
    return pd.concat(tables, ignore_index=True)[columns]


def best_losses(history: pd.DataFrame, metric: str = "heldout_loss") -> pd.DataFrame:
    """Per run, the best (lowest) value of ``metric`` over the epochs after initialisation,
    as the authors report it (their "best test loss"). Columns: the run's identifying
    columns and ``best``."""
    keys = [c for c in ("setting", "rule", "width", "seed", "lr") if c in history]
    part = history[(history.metric == metric) & (history.epoch > 0)]
    return part.groupby(keys, as_index=False).value.min().rename(columns={"value": "best"})


def summarize(table: pd.DataFrame, value: str, by: Sequence[str],
              confidence: float = 0.95, log: bool = False) -> pd.DataFrame:
    """Mean over seeds of ``value`` per ``by`` group, with its Student-t confidence interval
    (:func:`alignlib.statistics.t_interval`): columns ``*by, mean, lo, hi, n``. With one
    seed ``lo`` and ``hi`` equal the mean (a point without an error bar).

    ``log=True``: the geometric mean and the interval of the mean of ``log(value)``,
    exponentiated (for positive quantities such as losses and their ratios, whose spread
    over seeds is multiplicative; the interval stays positive). Values that are not
    finite and positive are then left out."""

    def one(g: pd.Series) -> pd.Series:
        v = g.to_numpy(float)
        n = int((np.isfinite(v) & (v > 0)).sum() if log else np.isfinite(v).sum())
        mean, lo, hi = t_interval(v, confidence, log=log)
        if n == 1:
            lo = hi = mean
        return pd.Series({"mean": mean, "lo": lo, "hi": hi, "n": n})

    return table.groupby(list(by))[value].apply(one).unstack().reset_index()


def paired_ratios(best: pd.DataFrame, reference: str = "backprop") -> pd.DataFrame:
    """Each run's best loss over the best loss of the ``reference`` rule's run with the same
    setting, width and seed, i.e. from the same initial network. ``best``: a
    :func:`best_losses` table. Adds ``best_reference`` and ``ratio`` (NaN where the
    reference's best loss is not finite: a diverged reference gives no comparison)."""
    keys = [c for c in ("setting", "width", "seed", "lr") if c in best]
    ref = best[best.rule == reference][keys + ["best"]].rename(columns={"best": "best_reference"})
    out = best.merge(ref, on=keys)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["ratio"] = np.where(np.isfinite(out.best_reference),
                                out.best / out.best_reference, np.nan)
    return out


def fit_slope(x, y, confidence: float = 0.95) -> dict:
    """Least-squares slope of ``log y`` against ``log x`` over all (finite, positive) points,
    e.g. every seed at every width, with a Student-t interval from the fit's standard
    error (:func:`alignlib.statistics.power_law_fit`). Returns ``slope, lo, hi, n`` (NaN
    with fewer than 3 points or 2 distinct x)."""
    fit = power_law_fit(x, y, confidence)
    if fit["n"] < 3 or not np.isfinite(fit["slope"]):
        return {"slope": np.nan, "lo": np.nan, "hi": np.nan, "n": fit["n"]}
    return {"slope": fit["slope"], "lo": fit["low"], "hi": fit["high"], "n": fit["n"]}


# ------------------------------------------------------------------ timing


def time_epochs(width: int, rule: str | LearningRule, *, epochs: int, data: Dataset | None = None,
                lr: float = AUTHORS_SETTING["lr"], batch_size: int = AUTHORS_SETTING["batch_size"],
                slot_state: bool = False, seed: int = 0) -> pd.DataFrame:
    """Seconds per epoch of one network in the authors' setting, evaluation included.

    Each epoch is one pass of SGD steps over the shuffled training set
    (``alignlib.training.make_epoch``: a ``lax.scan`` over minibatches of a ``lax.scan``
    over time), then the loss on the test set (``make_evaluate``, the whole test set in one
    batch, or in batches of ``batch_size`` with the per-slot initial state). That is all
    the chapter records per epoch: its training loss is the mean over the epoch's steps.
    A full pass over the training set, which a script may also run each epoch to print the
    training loss, is timed separately after it. Every program is compiled in epoch 1,
    which therefore includes compilation; each clock stops when its results are ready.

    ``data`` defaults to the authors' Add task (:data:`AUTHORS_SETTING`). Returns a tidy
    DataFrame ``rule, width, epoch, metric, value`` with metrics

    * ``train_seconds`` (the SGD pass), ``eval_seconds`` (the test loss) and ``seconds``
      (their sum: the epoch);
    * ``train_eval_seconds`` (the extra pass over the training set) and
      ``seconds_with_train_eval`` (``seconds`` plus it);
    * ``cpu_seconds``: process CPU time of ``seconds`` (up to twice ``seconds`` when XLA
      keeps both cores of a 2-core machine busy);
    * ``load_average``: the machine's 1-minute load average when the epoch started (above
      the core count, other processes competed for the cores);
    * ``heldout_loss``.
    """
    rule = get_rule(rule) if not isinstance(rule, LearningRule) else rule
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if data is None:
        data = add_task(**{k: AUTHORS_SETTING[k] for k in ("n_sequences", "length", "n_train")})
    k_model, k_rule, k_data = jax.random.split(jax.random.PRNGKey(seed), 3)
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    model = make_rnn(width, slot_state=batch_size if slot_state else None)(k_model)
    state = rule.init(model, x_train[:batch_size], k_rule)
    optimizer = make_optimizer("sgd", lr)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    epoch_fn = eqx.filter_jit(make_epoch(rule, optimizer, sequence_mse, batch_size))

    def evaluator(n: int) -> Callable:
        return eqx.filter_jit(make_evaluate(sequence_mse, batch_size if slot_state else n,
                                            classification=False))

    evaluate_test, evaluate_train = evaluator(len(x_test)), evaluator(len(x_train))
    diverged = jnp.zeros((), bool)
    rows = []
    for epoch in range(1, epochs + 1):
        key = jax.random.fold_in(k_data, epoch)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        start, cpu = time.perf_counter(), time.process_time()
        model, opt_state, diverged, _, loss = epoch_fn(model, state, opt_state, diverged, key,
                                                       x_train, y_train, None, None)
        jax.block_until_ready((model, loss))
        mid = time.perf_counter()
        test = jax.block_until_ready(evaluate_test(model, x_test, y_test))
        end, cpu_end = time.perf_counter(), time.process_time()
        jax.block_until_ready(evaluate_train(model, x_train, y_train))
        train_eval = time.perf_counter() - end
        for name, value in (("train_seconds", mid - start), ("eval_seconds", end - mid),
                            ("seconds", end - start), ("train_eval_seconds", train_eval),
                            ("seconds_with_train_eval", end - start + train_eval),
                            ("cpu_seconds", cpu_end - cpu), ("load_average", load),
                            ("heldout_loss", float(test["loss"]))):
            rows.append({"rule": rule.name, "width": width, "epoch": epoch, "metric": name,
                         "value": float(value)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ updates at initialisation


_JITTED: dict[str, Callable] = {}


def _jitted_gradient(rule: LearningRule) -> Callable:
    """``rule.gradient`` compiled, one wrapper per rule (so repeated calls reuse it)."""
    if rule.name not in _JITTED:
        _JITTED[rule.name] = eqx.filter_jit(rule.gradient)
    return _JITTED[rule.name]


def update_relative_errors(model: RNN, rule: str | LearningRule, x: Array, y: Array,
                           loss_fn: LossFn = sequence_mse, key: Array | None = None,
                           reference=None) -> dict:
    """Relative distance of ``rule``'s pseudo-gradient from backprop through time, per site.

    ``||g_rule - g_bptt|| / ||g_bptt||`` (Frobenius, weight and bias of the site together)
    for each site of the RNN: ``'initial_state'``, ``'input'`` (``W_ih`` and ``b_h``),
    ``'recurrent'`` (``W_hh``), ``'readout'`` (``w_ho`` and ``b_o``). At initialisation
    the Align rules give 0 up to rounding; the authors' Align-ada does not.
    ``reference``: backprop's pseudo-gradient for the same model and batch, if already
    computed (else it is computed here).
    """
    rule = get_rule(rule) if not isinstance(rule, LearningRule) else rule
    key = jax.random.PRNGKey(0) if key is None else key
    state = rule.init(model, x, key)
    if reference is None:
        _, reference = _jitted_gradient(get_rule("backprop"))(model, None, x, y, loss_fn)
    g_bp = reference
    _, g = _jitted_gradient(rule)(model, state, x, y, loss_fn)
    out = {}
    for name in ("initial_state", "input", "recurrent", "readout"):
        a = [l for l in jax.tree.leaves(getattr(g, name)) if l is not None]
        b = [l for l in jax.tree.leaves(getattr(g_bp, name)) if l is not None]
        num = sum(float(jnp.sum((u - v) ** 2)) for u, v in zip(a, b))
        den = sum(float(jnp.sum(v ** 2)) for v in b)
        out[name] = float(np.sqrt(num / den)) if den > 0 else float(np.sqrt(num))
    return out


def updates_at_initialisation(width: int, data: Dataset, *, batch_size: int = 50,
                              seed: int = 0, slot_state: bool = True) -> pd.DataFrame:
    """Every Align rule's update against backprop through time, at initialisation.

    One network of ``width`` (built from ``seed``) and the first ``batch_size`` training
    sequences of ``data``. Rows for Align-ada, Align-zero and Align-prop (setting
    ``'intended'``), for the authors' Align-ada (``'authors_ada'``) and for the authors'
    Align-ada on their per-slot initial state (``'authors_code'``; only with
    ``slot_state=True``, which costs two more compilations). Columns: ``setting,
    rule, width, site, relative_error`` (see :func:`update_relative_errors`).
    """
    model = make_rnn(width)(jax.random.PRNGKey(seed))
    x, y = jnp.asarray(data.x_train[:batch_size]), jnp.asarray(data.y_train[:batch_size])
    cases = [("intended", model, r) for r in ("align_ada", "align_zero", "align_prop")]
    cases += [("authors_ada", model, "align_ada")]
    if slot_state:
        cases += [("authors_code", with_slot_initial_state(model, batch_size), "align_ada")]
    rows, references = [], {}
    for setting, m, name in cases:
        rule = rule_for(setting, name)
        structure = type(m.initial_state)
        if structure not in references:
            references[structure] = _jitted_gradient(get_rule("backprop"))(
                m, None, x, y, sequence_mse)[1]
        for site, err in update_relative_errors(m, rule, x, y,
                                                reference=references[structure]).items():
            rows.append({"setting": setting, "rule": rule.name, "width": width, "site": site,
                         "relative_error": err})
    return pd.DataFrame(rows)


def timing_summary(timing: pd.DataFrame, epochs_total: int = AUTHORS_SETTING["epochs"]
                   ) -> pd.DataFrame:
    """Per rule and width of a :func:`time_epochs` table.

    Columns: ``seconds_per_epoch`` (median over the epochs after the first: SGD pass and
    test loss), its parts ``train_seconds_per_epoch`` and ``eval_seconds_per_epoch``,
    ``cpu_seconds_per_epoch``, ``train_eval_seconds_per_epoch`` (the extra pass over the
    training set), ``first_epoch_seconds`` (compilation included), ``cores_busy`` (median
    ``cpu_seconds / seconds``), ``load_average`` (median while timing), the time for
    ``epochs_total`` epochs extrapolated as ``first + (epochs_total - 1) * median``
    without (``extrapolated_<N>_epochs_s``) and with (``..._with_train_eval_s``) the
    training-set pass, the authors' TensorFlow time where
    :data:`AUTHORS_SECONDS_200_EPOCHS` has one, and the ratios of ours to theirs (below 1:
    faster)."""
    rows = []
    for (rule, width), g in timing.groupby(["rule", "width"]):
        p = g.pivot(index="epoch", columns="metric", values="value").sort_index()
        later = p.iloc[1:] if len(p) > 1 else p
        theirs = AUTHORS_SECONDS_200_EPOCHS.get((rule, int(width))) if epochs_total == 200 else None
        row = {"rule": rule, "width": int(width), "epochs_timed": len(p)}
        for name, column in (("seconds_per_epoch", "seconds"),
                             ("train_seconds_per_epoch", "train_seconds"),
                             ("eval_seconds_per_epoch", "eval_seconds"),
                             ("cpu_seconds_per_epoch", "cpu_seconds"),
                             ("train_eval_seconds_per_epoch", "train_eval_seconds")):
            row[name] = float(later[column].median())
        row["first_epoch_seconds"] = float(p["seconds"].iloc[0])
        row["cores_busy"] = float((later["cpu_seconds"] / later["seconds"]).median())
        row["load_average"] = float(later["load_average"].median())
        for suffix, column in (("", "seconds"), ("_with_train_eval", "seconds_with_train_eval")):
            total = float(p[column].iloc[0]) + (epochs_total - 1) * float(later[column].median())
            row[f"extrapolated_{epochs_total}_epochs{suffix}_s"] = total
            row[f"ratio_to_authors{suffix}"] = np.nan if theirs is None else total / theirs
        row["authors_tf_s"] = np.nan if theirs is None else theirs
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame, formats: dict | None = None, default: str = ".3g") -> str:
    """A DataFrame as a Markdown pipe table (see :func:`alignlib.experiments.feedforward.markdown_table`);
    numbers default to 3 significant digits here."""
    from alignlib.experiments.feedforward import markdown_table as _markdown_table

    return _markdown_table(table, formats, default)

_MATMULS_PER_STEP = {"backprop": 3, "align_ada": 4, "align_zero": 4,
                     "align_ada_authors_rnn": 4}


def epoch_flops(width: int, rule: str, *, n_train: int = AUTHORS_SETTING["n_train"],
                n_test: int = AUTHORS_SETTING["n_sequences"] - AUTHORS_SETTING["n_train"],
                length: int = AUTHORS_SETTING["length"]) -> float:
    """Floating-point operations of the recurrent matrix products in one epoch of
    :func:`time_epochs` (``seconds``: the training pass, then the loss on the test set):
    ``2 n^2`` per sequence, time step and product, with :data:`_MATMULS_PER_STEP` products
    per training step and one per evaluation step. The input, readout and element-wise
    work (O(n) per step) is left out. NaN for rules not in the table."""
    per = _MATMULS_PER_STEP.get(rule)
    if per is None:
        return float("nan")
    return 2.0 * width * width * length * (per * n_train + n_test)


def matmul_gflops(width: int, rows: int = 5000, repeats: int = 20) -> float:
    """Reference rate of this machine: GFLOP per CPU second of one compiled
    ``(rows x width) @ (width x width)`` float32 product, from the fastest of ``repeats``
    runs (the least disturbed by other processes)."""
    a = jnp.ones((rows, width), jnp.float32)
    w = jnp.ones((width, width), jnp.float32)
    product = jax.jit(lambda u, v: u @ v)
    jax.block_until_ready(product(a, w))
    cpu = []
    for _ in range(repeats):
        start = time.process_time()
        jax.block_until_ready(product(a, w))
        cpu.append(time.process_time() - start)
    return 2.0 * rows * width * width / max(min(cpu), 1e-9) / 1e9
