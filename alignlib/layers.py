"""Weighted layers, and the two streams (current and initial network) that flow between them.

Every learnable parameter of an alignlib model lives in a :class:`WeightedLayer`: a layer
whose output is ``post(linear(weight, x) + bias)``, where ``linear`` is linear in both the
weight and the input (a dense product, :class:`Dense`, or a convolution, :class:`Conv`,
with the NTK multiplier folded in) and ``post`` is either the identity or the authors'
batch normalisation.

The learning rules of the paper differ only in what they do at weighted layers:

* which weights carry the error backwards through the layer (the forward weights for
  backprop, the initial weights for Align-prop, fixed random ones for FA, none for DFA:
  :class:`Feedback`),
* and which network's activations and sensitivities meet in the weight update
  (Align-zero and Align-ada run the initial network beside the current one:
  :class:`AlignAdaLayer`).

So a rule is a way of *wrapping weighted layers*; the model code is written once and
never knows which rule trains it. Between weighted layers the model applies
parameter-free glue (ReLU, flattening, pooling, a scan over time); that glue is written
with :func:`each` so that it also acts on :class:`CurrentAndInitial` activations, which
is how Align-ada runs the current and the initial network in lockstep.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any, Callable, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from alignlib.validation import number, positive_integer

Array = jax.Array
Parameterization = Literal["ntk", "standard"]

BATCH_NORM_EPS = 1e-6
"""Variance epsilon of the authors' batch normalisation."""


class CurrentAndInitial(NamedTuple):
    """Activations of the current network and of the frozen initial network, side by side.

    Used by Align-ada: the current stream supplies each layer's input, the initial stream
    supplies the sensitivities (values and backward pass of the initial network).
    """

    current: Any
    initial: Any


def each(fn: Callable[..., Array], *xs: Any) -> Any:
    """Apply parameter-free glue ``fn`` to a plain activation or to each stream of a CurrentAndInitial."""
    return jax.tree.map(fn, *xs)


def first_stream(x: Any) -> Array:
    """The array of a plain activation, or the current stream of a CurrentAndInitial (for shape checks)."""
    return jax.tree.leaves(x)[0]


def relu(x: Any) -> Any:
    return each(jax.nn.relu, x)


def batch_norm(h: Array) -> Array:
    """The authors' batch norm: batch statistics over axis 0 only, no scale or shift.

    ``tf.nn.moments(x, [0])`` in their scripts: every position and channel is normalised
    with its own mean and variance over the batch, at training and at evaluation time.
    ``h``: ``(batch, ...)``.
    """
    mean = jnp.mean(h, axis=0, keepdims=True)
    var = jnp.mean(jnp.square(h - mean), axis=0, keepdims=True)
    return (h - mean) * lax.rsqrt(var + BATCH_NORM_EPS)


def _init_weight(key: Array, shape: tuple[int, ...], fan_in: int, parameterization: str,
                 zero: bool) -> tuple[Array, float, float]:
    """Draw a weight; return (weight, forward multiplier, init standard deviation)."""
    if parameterization == "ntk":
        multiplier, std = 1.0 / math.sqrt(fan_in), 1.0
    elif parameterization == "standard":
        multiplier, std = 1.0, 1.0 / math.sqrt(fan_in)
    else:
        raise ValueError(
            f"parameterization must be 'ntk' or 'standard', got {parameterization!r}")
    if zero:
        return jnp.zeros(shape), multiplier, 0.0
    return std * jax.random.normal(key, shape), multiplier, std


def check_size(name: str, value) -> int:
    """A layer size, stride or count as a Python int (:func:`alignlib.validation.positive_integer`)."""
    return positive_integer(name, value)


def check_bias_multiplier(value) -> float:
    """``beta`` as a float; a clear error unless it is a finite number >= 0."""
    return number("bias_multiplier", value, low=0)


def _lax_conv_same(x: Array, w: Array, stride: int) -> Array:
    return lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_same(x: Array, w: Array, stride: int) -> Array:
    """'SAME' convolution, ``x``: ``(batch, H, W, c_in)``, ``w``: ``(k_h, k_w, c_in, c_out)``
    (HWIO) -> ``(batch, ceil(H/s), ceil(W/s), c_out)``; XLA's convolution, with a weight
    gradient that XLA:CPU runs fast.

    On CPU the weight gradient is computed as ``k_h * k_w`` matrix products, one per tap:

        dW[i, j] = sum over batch and output positions p of  x_pad[s p + (i, j)]^T g[p] .

    XLA:CPU compiles the weight-gradient convolution inside a ``lax.scan`` body (every
    training epoch here is one) into a slow generic loop: on 2 CPU cores one epoch of a
    width-128 ConvNet on the digits took 36 CPU-seconds with it and 2.4 with the tap
    products (jax-ml/jax#12868 reports the same slowdown). On other backends the gradient
    is XLA's own. Values and gradients are the same either way, up to float rounding
    (``tests/test_models.py`` checks every rule).
    """
    return _lax_conv_same(x, w, stride)


def _conv_same_fwd(x, w, stride):
    return conv_same(x, w, stride), (x, w)


def _conv_same_bwd(stride, residuals, g):
    x, w = residuals
    (dx,) = jax.vjp(lambda v: _lax_conv_same(v, w, stride), x)[1](g)
    if jax.default_backend() != "cpu":
        (dw,) = jax.vjp(lambda v: _lax_conv_same(x, v, stride), w)[1](g)
        return dx, dw
    kh, kw = w.shape[:2]
    h_out, w_out = g.shape[1:3]
    pads = lax.padtype_to_pads(x.shape[1:3], (kh, kw), (stride, stride), "SAME")
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    taps = [jnp.einsum("bhwc,bhwo->co",
                       xp[:, i:i + (h_out - 1) * stride + 1:stride,
                          j:j + (w_out - 1) * stride + 1:stride, :], g)
            for i in range(kh) for j in range(kw)]
    return dx, jnp.stack(taps).reshape(w.shape)


conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


class WeightedLayer(eqx.Module):
    """A weighted layer: ``post(linear(weight, x) + beta * bias)``.

    Subclasses define :meth:`linear` (linear in ``weight`` and in ``x``, multiplier
    included) and optionally :meth:`post`. Static fields:

    * ``init_std``: standard deviation the weight was drawn with (FA draws its feedback
      weights from the same distribution);
    * ``hidden_input``: whether this site's input is the output of a hidden layer, which
      is where direct feedback alignment delivers the error;
    * ``bias_multiplier``: ``beta``, the forward multiplier of the bias (neural-tangents'
      ``b_std``). The bias starts at zero, so ``beta`` leaves the initial network alone
      and scales the bias's share of the NTK by ``beta**2``; ``beta = 0`` makes the bias
      inert (zero gradient).
    """

    weight: Array
    bias: Array | None
    init_std: float = eqx.field(static=True)
    hidden_input: bool = eqx.field(static=True)
    bias_multiplier: float = eqx.field(static=True)

    def linear(self, weight: Array, x: Array) -> Array:
        raise NotImplementedError

    def post(self, h: Array) -> Array:
        return h

    def __call__(self, x: Array) -> Array:
        return self.post(self.affine(x))

    def affine(self, x: Array, linear_out: Array | None = None) -> Array:
        h = self.linear(self.weight, x) if linear_out is None else linear_out
        return h if self.bias is None else h + self.bias_multiplier * self.bias


class Dense(WeightedLayer):
    """Dense site. ``weight``: ``(n_out, n_in)``; input ``(..., n_in)`` -> ``(..., n_out)``.

    NTK parameterisation: ``h = W x / sqrt(n_in) + beta b`` with ``W ~ N(0, 1)``;
    standard: ``h = W x + beta b`` with ``W ~ N(0, 1/n_in)``. Biases start at zero;
    ``beta = bias_multiplier`` (default 1).
    """

    multiplier: float = eqx.field(static=True)

    def __init__(self, n_in: int, n_out: int, *, key: Array,
                 parameterization: Parameterization = "ntk", bias: bool = True,
                 hidden_input: bool = False, zero_init: bool = False,
                 bias_multiplier: float = 1.0):
        n_in, n_out = check_size("n_in", n_in), check_size("n_out", n_out)
        self.bias_multiplier = check_bias_multiplier(bias_multiplier)
        self.weight, self.multiplier, self.init_std = _init_weight(
            key, (n_out, n_in), n_in, parameterization, zero_init)
        self.bias = jnp.zeros((n_out,)) if bias else None
        self.hidden_input = hidden_input

    def linear(self, weight: Array, x: Array) -> Array:
        return self.multiplier * (x @ weight.T)


class Conv(WeightedLayer):
    """3x3 'SAME' convolution site followed by the authors' batch norm.

    ``weight``: ``(k, k, c_in, c_out)`` (HWIO, as in TensorFlow); input
    ``(batch, H, W, c_in)`` -> ``(batch, ceil(H/s), ceil(W/s), c_out)``. The NTK multiplier
    is ``1/sqrt(k*k*c_in)``.
    """

    multiplier: float = eqx.field(static=True)
    stride: int = eqx.field(static=True)
    normalize: bool = eqx.field(static=True)

    def __init__(self, c_in: int, c_out: int, *, key: Array, kernel_size: int = 3,
                 stride: int = 1, parameterization: Parameterization = "ntk",
                 normalize: bool = True, hidden_input: bool = False,
                 bias_multiplier: float = 1.0):
        self.bias_multiplier = check_bias_multiplier(bias_multiplier)
        c_in = check_size("c_in", c_in)
        c_out = check_size("width (c_out)", c_out)
        stride = check_size("stride", stride)
        kernel_size = check_size("kernel_size", kernel_size)
        fan_in = kernel_size * kernel_size * c_in
        self.weight, self.multiplier, self.init_std = _init_weight(
            key, (kernel_size, kernel_size, c_in, c_out), fan_in, parameterization, False)
        self.bias = jnp.zeros((c_out,))
        self.stride = stride
        self.normalize = normalize
        self.hidden_input = hidden_input

    def linear(self, weight: Array, x: Array) -> Array:
        return self.multiplier * conv_same(x, weight, self.stride)

    def post(self, h: Array) -> Array:
        return batch_norm(h) if self.normalize else h


# --------------------------------------------------------------------------------------
# WeightedLayer wrappers: how each learning rule changes what happens at a site.
# --------------------------------------------------------------------------------------

FeedbackMode = Literal["weights", "direct", "cut"]


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _linear_with_feedback(site: "_LinearMap", mode: str, weight: Array, x: Array, signal: Any) -> Array:
    return site.linear(weight, x)


def _fwd(site, mode, weight, x, signal):
    return site.linear(weight, x), (weight, x, signal)


def _bwd(site, mode, residuals, g):
    weight, x, signal = residuals
    # Weight update: the layer's sensitivity times the layer's actual input.
    (d_weight,) = jax.vjp(lambda w: site.linear(w, x), weight)[1](g)
    if mode == "weights":  # FA / Align-prop: carry g backwards through other weights
        (d_x,) = jax.vjp(lambda v: site.linear(signal, v), x)[1](g)
    elif mode == "direct":  # DFA: the input receives B e, whatever arrives from above
        b_matrix, error = signal
        d_x = (error.reshape(-1, error.shape[-1]) @ b_matrix.T).reshape(x.shape)
    else:  # cut: nothing flows to earlier layers
        d_x = jnp.zeros_like(x)
    return d_weight, d_x, jax.tree.map(jnp.zeros_like, signal)


_linear_with_feedback.defvjp(_fwd, _bwd)


class Feedback(eqx.Module):
    """A site whose backward pass to its input is replaced.

    ``mode='weights'``: the error goes back through ``signal`` (same shape as the site's
    weight) instead of the forward weight (FA, Align-prop).
    ``mode='direct'``: the input receives ``signal = (B, e)``: ``e @ B^T`` reshaped to the
    input (DFA, ``e`` being dLoss/d output).
    ``mode='cut'``: the input receives nothing.
    The weight and bias updates are the ordinary ones: sensitivity times actual input.
    """

    site: WeightedLayer
    signal: Any
    mode: str = eqx.field(static=True)

    def __call__(self, x: Array) -> Array:
        h = _linear_with_feedback(_LinearMap(self.site), self.mode, self.site.weight, x,
                                  self.signal)
        return self.site.post(self.site.affine(x, linear_out=h))


class _LinearMap:
    """Hashable stand-in for a site's linear map, used as a ``custom_vjp`` static argument.

    The linear map depends only on the site's class and static fields; the arrays are
    stripped (the weight is passed separately) so nothing traced is closed over.
    """

    def __init__(self, site: WeightedLayer):
        self._site = eqx.filter(site, eqx.is_array, inverse=True)
        self._key = (type(site), tuple(
            (f.name, getattr(site, f.name)) for f in dataclasses.fields(site)
            if f.metadata.get("static", False)))

    def linear(self, weight: Array, x: Array) -> Array:
        return type(self._site).linear(self._site, weight, x)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _LinearMap) and self._key == other._key


class AlignAdaLayer(eqx.Module):
    """Align-ada at one site: the current network's input meets the initial network's
    sensitivity.

    Input and output are :class:`CurrentAndInitial`. The current stream is computed with its input
    held fixed (no backprop through the current network); the initial stream has the
    initial network's values, plus a zero-valued term ``out - stop_gradient(out)`` that
    routes the initial network's backward signal into the current weights at the
    current input. This is the authors' ``x_lin + x - tf.stop_gradient(x)`` construction.
    """

    current: WeightedLayer
    initial: WeightedLayer

    def __call__(self, x: CurrentAndInitial) -> CurrentAndInitial:
        out = self.current(lax.stop_gradient(x.current))
        out_initial = jax.tree.map(lax.stop_gradient, self.initial)(x.initial)
        return CurrentAndInitial(out, out_initial + out - lax.stop_gradient(out))
