"""The authors' Add-task code, reimplemented behind explicit names.

The recurrent experiment trains :class:`alignlib.RNN` on :func:`alignlib.data.add_task`
with :func:`alignlib.sequence_mse`. The authors' script differs from the experiment as
the paper describes it in five ways ("quirks"); each is reproduced here so that their
published numbers can be compared with ours:

- (a) wrap-around targets: ``add_task(wraparound=True)`` (in :mod:`alignlib.data`);
- (b) their recurrent Align-ada, :data:`align_ada_authors_rnn`, which drops the readout's
  direct contribution at each time step;
- (c) their initial state, one learned row per batch slot: :class:`SlotInitialState`;
- (d) their recurrent Align-zero, :data:`align_zero_authors_rnn`, whose linearised
  network starts from the current, trained initial state instead of ``h_0(0)``;
- (e) their readout-only training, :data:`readout_authors_rnn`, which also trains the
  initial state.

:data:`SETTINGS` switches them on alone or together (``'authors_code'``) and
:func:`rule_for` names the rule each setting trains. :func:`authors_seed_draws`,
:func:`authors_seed_model` and :func:`authors_seed_run` repeat the authors' run from
their NumPy seed (their data, initial weights and batch order), which reproduces the
best test losses their script printed (:data:`AUTHORS_BEST_TEST_LOSS`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax

from alignlib.layers import AlignAdaLayer, Array, Dense, CurrentAndInitial, WeightedLayer
from alignlib.data import Dataset, add_task_targets
from alignlib.models import RNN
from alignlib.rules import (
    LearningRule,
    _align_zero_gradient,
    _frozen_copy,
    _no_state,
    _value_with_gradient_of,
    get_rule,
    sequence_mse,
)

__all__ = [
    "AUTHORS_SETTING", "AUTHORS_BEST_TEST_LOSS", "AUTHORS_CONSTANT_LOSS",
    "AUTHORS_SECONDS_200_EPOCHS", "AUTHORS_SEED", "SETTINGS", "Setting", "SlotInitialState",
    "align_ada_authors_rnn", "align_zero_authors_rnn", "readout_authors_rnn",
    "with_slot_initial_state", "make_rnn", "rule_for", "get_setting", "AuthorsDraws",
    "authors_seed_draws",
    "authors_seed_model", "authors_seed_run",
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

    current: WeightedLayer

    def __call__(self, x: CurrentAndInitial) -> CurrentAndInitial:
        out = self.current(lax.stop_gradient(x.current))
        return CurrentAndInitial(out, lax.stop_gradient(out))


class _AuthorsInput(eqx.Module):
    """Their input site: the current network computes ``W_ih x_t + b_h``; the initial
    network ``W_ih(0) x_t + b_h(0)``, with no gradient link between the two."""

    current: WeightedLayer
    initial: WeightedLayer

    def __call__(self, x: CurrentAndInitial) -> CurrentAndInitial:
        out = self.current(lax.stop_gradient(x.current))
        out_initial = jax.tree.map(lax.stop_gradient, self.initial)(lax.stop_gradient(x.initial))
        return CurrentAndInitial(out, out_initial)


class _AuthorsRecurrent(eqx.Module):
    """Their recurrence: the current state ``h_(t-1)`` enters the *initial* network's step
    ``t`` as a gradient-only term, ``W_hh(0) (h0_(t-1) + h_(t-1) - sg(h_(t-1))) / sqrt(n)``.

    So the current state (after its ReLU) receives the initial network's sensitivity of the
    loss at times ``>= t``, but nothing from the readout at its own time ``t - 1``: the
    readout reads the current state through ``stop_gradient`` and the initial state
    without a link to the current weights of that step.
    """

    current: WeightedLayer
    initial: WeightedLayer

    def __call__(self, h: CurrentAndInitial) -> CurrentAndInitial:
        out = self.current(lax.stop_gradient(h.current))
        routed = h.initial + h.current - lax.stop_gradient(h.current)
        out_initial = jax.tree.map(lax.stop_gradient, self.initial)(routed)
        return CurrentAndInitial(out, out_initial)


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
                     AlignAdaLayer(m.readout, initial.readout)))
        out = paired(CurrentAndInitial(x, x))
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


def get_setting(name: str | Setting) -> Setting:
    """The :class:`Setting` called ``name`` in :data:`SETTINGS` (a Setting passes through)."""
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
    s = get_setting(setting)
    if rule == "align_ada" and s.authors_ada:
        return align_ada_authors_rnn
    if rule == "align_zero" and s.authors_zero:
        return align_zero_authors_rnn
    if rule == "readout" and s.authors_readout:
        return readout_authors_rnn
    if rule in _AUTHORS_RULES:
        return _AUTHORS_RULES[rule]
    return get_rule(rule)


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
    s = get_setting(setting)
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
