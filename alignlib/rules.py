"""The learning rules of the paper, one mechanism for every architecture.

A rule is a pair of pure functions, in the style of an optax transformation:

* ``init(model, x, key) -> state``: what the rule keeps besides the model (the frozen
  initial network for the Align rules, fixed random feedback weights for FA and DFA);
* ``gradient(model, state, x, y, loss_fn) -> (loss, pseudo_gradient)``: the loss of the
  current network on the batch and a pseudo-gradient pytree shaped like
  ``eqx.filter(model, eqx.is_inexact_array)``, which any optax optimizer consumes.

All rules use the current network's error. In the notation of the paper, for a site
(weighted layer) ``l`` with input ``x^(l-1)`` and sensitivity ``delta^l``:

=============  ==========================================  ========================
rule           sensitivity ``delta^l``                     layer input
=============  ==========================================  ========================
backprop       current network, backward through W(t)      current ``x(t)``
align_zero     initial network (values and W(0))           initial ``x0``
align_ada      initial network (values and W(0))           current ``x(t)``
align_prop     current activations, backward through W(0)  current ``x(t)``
fa             current activations, backward through B     current ``x(t)``
dfa            ``B^l e`` delivered at the layer's output     current ``x(t)``
readout        readout only (true gradient), rest zero      current ``x(t)``
=============  ==========================================  ========================

At initialisation (``W(t) = W(0)``) backprop, Align-zero, Align-ada and Align-prop
coincide exactly.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from alignlib.layers import AlignAdaLayer, Array, Feedback, CurrentAndInitial, WeightedLayer

LossFn = Callable[[Array, Array], Array]


class LearningRule(NamedTuple):
    """A learning rule: ``init`` builds its state, ``gradient`` its pseudo-gradient."""

    name: str
    init: Callable[[Any, Array, Array], Any]
    gradient: Callable[[Any, Any, Array, Array, LossFn], tuple[Array, Any]]


# ------------------------------------------------------------------ losses


def mse(output: Array, target: Array) -> Array:
    """The authors' loss: mean over batch and outputs of ``(f - y)^2``."""
    return jnp.mean(jnp.square(output - target))


def sequence_mse(output: Array, target: Array) -> Array:
    """Add-task loss: sum over time of the batch mean of ``(y_t - target_t)^2``.

    ``output``, ``target``: ``(batch, T, n_outputs)``.
    """
    return jnp.sum(jnp.mean(jnp.square(output - target), axis=0))


# ------------------------------------------------------------------ helpers


def weighted_layers(model) -> tuple[WeightedLayer, ...]:
    """The model's weighted layers in forward order."""
    return model.weighted_layers()


def _wrap_weighted_layers(model, wrap: Callable[[int, WeightedLayer], Any]):
    """Replace every site ``s`` (index ``i`` in forward order) by ``wrap(i, s)``."""
    originals = weighted_layers(model)
    return eqx.tree_at(lambda m: m.weighted_layers(), model,
                       replace=[wrap(i, s) for i, s in enumerate(originals)])


def _params(model):
    return eqx.filter(model, eqx.is_inexact_array)


def _no_state(model, x, key):
    del model, x, key
    return None


def _frozen_copy(model, x, key):
    """State of the Align rules: the initial network W(0), kept fixed."""
    del x, key
    return jax.tree.map(lambda a: jnp.array(a, copy=True) if eqx.is_array(a) else a, model)


def _value_with_gradient_of(value: Array, carrier: Array) -> Array:
    """Equal to ``value``; its derivative is that of ``carrier``."""
    return lax.stop_gradient(value) + carrier - lax.stop_gradient(carrier)


# ------------------------------------------------------------------ the rules


def _backprop_gradient(model, state, x, y, loss_fn):
    del state
    return eqx.filter_value_and_grad(lambda m: loss_fn(m(x), y))(model)


def _align_zero_gradient(model, initial, x, y, loss_fn):
    # J0(x)^T dLoss/df: the initial network's gradient, driven by the current error.
    output = model(x)

    def surrogate(m0):
        return loss_fn(_value_with_gradient_of(output, m0(x)), y)

    return eqx.filter_value_and_grad(surrogate)(initial)


def _align_ada_gradient(model, initial, x, y, loss_fn):
    # Initial network's sensitivities meet the current network's layer inputs.
    def surrogate(m):
        paired = eqx.tree_at(lambda t: t.weighted_layers(), m,
                             replace=[AlignAdaLayer(c, i) for c, i in zip(weighted_layers(m), weighted_layers(initial))])
        out = paired(CurrentAndInitial(x, x))
        return loss_fn(_value_with_gradient_of(out.current, out.initial), y)

    return eqx.filter_value_and_grad(surrogate)(model)


def _feedback_gradient(model, feedback_weights, x, y, loss_fn):
    # Backprop through current activations, with other weights in the backward pass.
    def surrogate(m):
        wrapped = _wrap_weighted_layers(m, lambda i, s: Feedback(s, feedback_weights[i], "weights"))
        return loss_fn(wrapped(x), y)

    return eqx.filter_value_and_grad(surrogate)(model)


def _align_prop_gradient(model, initial, x, y, loss_fn):
    return _feedback_gradient(model, [s.weight for s in weighted_layers(initial)], x, y, loss_fn)


def _rule_key(key: Array, tag: str) -> Array:
    """Decorrelate a rule's random draws from a model built with the same key: the
    feedback weights must be independent of the forward weights even then."""
    return jax.random.fold_in(key, sum(ord(c) << (8 * i) for i, c in enumerate(tag)))


def _fa_init(model, x, key):
    """Fixed random feedback weights, drawn like the forward weights but independently."""
    del x
    keys = jax.random.split(_rule_key(key, "fa"), len(weighted_layers(model)))
    return tuple(s.init_std * jax.random.normal(k, s.weight.shape, s.weight.dtype)
                 for k, s in zip(keys, weighted_layers(model)))


def _site_input_shapes(model, x) -> list[tuple[int, ...]]:
    """Shape of every site's input on a batch like ``x`` (traced abstractly, no compute)."""
    shapes: list[tuple[int, ...]] = []

    class _Record(eqx.Module):
        site: WeightedLayer

        def __call__(self, v):
            shapes.append(tuple(v.shape))
            return self.site(v)

    recorder = _wrap_weighted_layers(model, lambda i, s: _Record(s))
    jax.eval_shape(lambda m, v: m(v), recorder, x)
    return shapes


def _dfa_init(model, x, key):
    """One fixed matrix B per site fed by a hidden layer, entries N(0, 1/size).

    ``B``: ``(features, n_outputs)``, ``features`` being the size of one example's input to
    the site (for the RNN readout, of one time step), i.e. of the hidden layer's output.
    Sites fed by data or by the recurrence get ``None`` (their input receives nothing).
    """
    n_out = weighted_layers(model)[-1].weight.shape[0]
    out_shape = jax.eval_shape(lambda m, v: m(v), model, x).shape
    lead = len(out_shape) - 1  # batch axes of the output: (batch,) or (batch, T)
    keys = jax.random.split(_rule_key(key, "dfa"), len(weighted_layers(model)))
    matrices = []
    for k, s, shape in zip(keys, weighted_layers(model), _site_input_shapes(model, x)):
        if not s.hidden_input:
            matrices.append(None)
            continue
        features = 1
        for dim in shape[lead:]:
            features *= dim
        matrices.append(jax.random.normal(k, (features, n_out)) / jnp.sqrt(features))
    return tuple(matrices)


def _dfa_gradient(model, feedback_matrices, x, y, loss_fn):
    output = model(x)
    error = jax.grad(lambda f: loss_fn(f, y))(output)  # dLoss/df of the current network

    def wrap(i, s):
        b = feedback_matrices[i]
        if b is None:
            return Feedback(s, None, "cut")
        return Feedback(s, (b, lax.stop_gradient(error)), "direct")

    def surrogate(m):
        return loss_fn(_wrap_weighted_layers(m, wrap)(x), y)

    return eqx.filter_value_and_grad(surrogate)(model)


def _readout_gradient(model, state, x, y, loss_fn):
    del state

    def surrogate(readout):
        return loss_fn(eqx.tree_at(lambda m: m.readout, model, readout)(x), y)

    loss, g_readout = eqx.filter_value_and_grad(surrogate)(model.readout)
    grads = jax.tree.map(jnp.zeros_like, _params(model))
    return loss, eqx.tree_at(lambda m: m.readout, grads, g_readout)


backprop = LearningRule("backprop", _no_state, _backprop_gradient)
align_zero = LearningRule("align_zero", _frozen_copy, _align_zero_gradient)
align_ada = LearningRule("align_ada", _frozen_copy, _align_ada_gradient)
align_prop = LearningRule("align_prop", _frozen_copy, _align_prop_gradient)
fa = LearningRule("fa", _fa_init, _feedback_gradient)
dfa = LearningRule("dfa", _dfa_init, _dfa_gradient)
readout = LearningRule("readout", _no_state, _readout_gradient)

RULES: dict[str, LearningRule] = {
    r.name: r for r in (backprop, align_zero, align_ada, align_prop, fa, dfa, readout)}


def get_rule(name: str | LearningRule) -> LearningRule:
    """Look a rule up by name (``'backprop'``, ``'align_ada'``, ...)."""
    if isinstance(name, LearningRule):
        return name
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(
            f"unknown learning rule {name!r}; valid names: {', '.join(RULES)}") from None
