"""The paper's three architectures in NTK parameterisation: MLP, ConvNet and ReLU RNN.

Models act on a batch (batch statistics enter the ConvNet's batch norm). All parameters
live in weighted layers (:mod:`alignlib.layers`); each model lists them in forward order with
:meth:`weighted_layers` and names its readout, so every learning rule applies to every model
without rule-specific model code.
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from alignlib.layers import (
    Array,
    Conv,
    Dense,
    Parameterization,
    WeightedLayer,
    check_size,
    each,
    first_stream,
    relu,
)
from alignlib.rules import mse, sequence_mse

_check_positive = check_size  # a positive integer (Python or NumPy) as an int, or ValueError


def _check_input(x, expected: tuple[int, ...], what: str) -> None:
    shape = tuple(first_stream(x).shape[1:])
    if shape != tuple(expected):
        raise ValueError(
            f"x must have shape (batch, {', '.join(map(str, expected))}) for this {what}, "
            f"got {(first_stream(x).shape)}")


class MLP(eqx.Module):
    """ReLU multilayer perceptron.

    ``h^1 = W^1 x / sqrt(d) + beta b^1``,
    ``h^(l+1) = W^(l+1) relu(h^l) / sqrt(n) + beta b^(l+1)``, output ``f = h^(depth+1)``.
    Input ``(batch, *input_shape)`` (flattened to ``d`` features), output
    ``(batch, n_outputs)``. ``beta = bias_multiplier`` (default 1): every bias enters the
    NTK with weight ``beta**2`` (:func:`alignlib.kernels.ntk` with ``bias_in_ntk=beta**2``).
    """

    layers: tuple[Dense, ...]
    readout: Dense
    input_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, input_shape: int | Sequence[int], width: int, depth: int,
                 n_outputs: int, *, key: Array, parameterization: Parameterization = "ntk",
                 bias_multiplier: float = 1.0):
        input_shape = (input_shape,) if np.ndim(input_shape) == 0 else tuple(input_shape)
        input_shape = tuple(_check_positive("input_shape entries", dim) for dim in input_shape)
        width = _check_positive("width", width)
        depth = _check_positive("depth", depth)
        n_outputs = _check_positive("n_outputs", n_outputs)
        d = 1
        for dim in input_shape:
            d *= dim
        keys = jax.random.split(key, depth + 1)
        sizes = [d] + [width] * depth
        self.layers = tuple(
            Dense(sizes[i], sizes[i + 1], key=keys[i], parameterization=parameterization,
                  hidden_input=i > 0, bias_multiplier=bias_multiplier)
            for i in range(depth))
        self.readout = Dense(width, n_outputs, key=keys[-1],
                             parameterization=parameterization, hidden_input=True,
                             bias_multiplier=bias_multiplier)
        self.input_shape = input_shape

    def weighted_layers(self) -> tuple[WeightedLayer, ...]:
        return (*self.layers, self.readout)

    def __call__(self, x):
        _check_input(x, self.input_shape, "MLP")
        h = each(lambda a: a.reshape(a.shape[0], -1), x)
        for i, layer in enumerate(self.layers):
            h = layer(h if i == 0 else relu(h))
        return self.readout(relu(h))


class ConvNet(eqx.Module):
    """The authors' convolutional network.

    Each block: 3x3 'SAME' convolution (stride per block) / sqrt(9 c_in) + bias, then batch
    norm without learned scale or shift (batch statistics, eps 1e-6); ReLU before the next
    block; global average pooling of ReLU of the last block; dense readout. KMNIST:
    strides ``(1, 2, 2)``; CIFAR-10: ``(1, 1, 1, 2, 1, 2, 1)``. Input ``(batch, H, W, C)``,
    output ``(batch, n_outputs)``.
    """

    convs: tuple[Conv, ...]
    readout: Dense
    input_shape: tuple[int, int, int] = eqx.field(static=True)

    def __init__(self, input_shape: Sequence[int], width: int, n_outputs: int, *,
                 key: Array, strides: Sequence[int] = (1, 2, 2), kernel_size: int = 3,
                 parameterization: Parameterization = "ntk", bias_multiplier: float = 1.0):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (H, W, C), got {input_shape!r}")
        input_shape = tuple(_check_positive("input_shape entries", dim) for dim in input_shape)
        width = _check_positive("width", width)
        n_outputs = _check_positive("n_outputs", n_outputs)
        if len(strides) < 1:
            raise ValueError("strides must list at least one convolution")
        strides = tuple(_check_positive("strides entries", s) for s in strides)
        keys = jax.random.split(key, len(strides) + 1)
        channels = [input_shape[-1]] + [width] * len(strides)
        self.convs = tuple(
            Conv(channels[i], channels[i + 1], key=keys[i], stride=s,
                 kernel_size=kernel_size, parameterization=parameterization,
                 hidden_input=i > 0, bias_multiplier=bias_multiplier)
            for i, s in enumerate(strides))
        self.readout = Dense(width, n_outputs, key=keys[-1],
                             parameterization=parameterization, hidden_input=True,
                             bias_multiplier=bias_multiplier)
        self.input_shape = input_shape

    def weighted_layers(self) -> tuple[WeightedLayer, ...]:
        return (*self.convs, self.readout)

    def __call__(self, x):
        _check_input(x, self.input_shape, "ConvNet")
        h = x
        for i, conv in enumerate(self.convs):
            h = conv(h if i == 0 else relu(h))
        pooled = each(lambda a: jnp.mean(a, axis=(1, 2)), relu(h))
        return self.readout(pooled)


class RNN(eqx.Module):
    """ReLU recurrent network of the Add task.

    ``h_t = relu(W_ih x_t / sqrt(d) + W_hh h_(t-1) / sqrt(n) + b_h)``,
    ``y_t = w_ho . h_t / sqrt(n) + b_o``, with a learned initial state ``h_0`` (one vector,
    starting at zero). Input ``(batch, T, d)``, output ``(batch, T, n_outputs)``. The
    recurrence runs in ``lax.scan``; the readout acts on all time steps at once.
    """

    input: Dense
    recurrent: Dense
    readout: Dense
    initial_state: Dense
    n_inputs: int = eqx.field(static=True)

    def __init__(self, n_inputs: int, width: int, n_outputs: int = 1, *, key: Array,
                 parameterization: Parameterization = "ntk"):
        n_inputs = _check_positive("n_inputs", n_inputs)
        width = _check_positive("width", width)
        n_outputs = _check_positive("n_outputs", n_outputs)
        k_in, k_rec, k_out, k_h0 = jax.random.split(key, 4)
        self.input = Dense(n_inputs, width, key=k_in, parameterization=parameterization)
        self.recurrent = Dense(width, width, key=k_rec, parameterization=parameterization,
                               bias=False)
        self.readout = Dense(width, n_outputs, key=k_out, parameterization=parameterization,
                             hidden_input=True)
        # The initial state is a site fed the constant 1: h_0 = w_0 * 1.
        self.initial_state = Dense(1, width, key=k_h0, bias=False, zero_init=True)
        self.n_inputs = n_inputs

    def weighted_layers(self) -> tuple[WeightedLayer, ...]:
        return (self.initial_state, self.input, self.recurrent, self.readout)

    def __call__(self, x):
        xs = first_stream(x)
        if xs.ndim != 3 or xs.shape[-1] != self.n_inputs:
            raise ValueError(
                f"x must have shape (batch, T, {self.n_inputs}) for this RNN, got {xs.shape}")
        h0 = self.initial_state(each(lambda a: jnp.ones((a.shape[0], 1), a.dtype), x))
        time_major = each(lambda a: jnp.swapaxes(a, 0, 1), x)

        def step(h, x_t):
            h = relu(each(jnp.add, self.input(x_t), self.recurrent(h)))
            return h, h

        _, hs = lax.scan(step, h0, time_major)
        return self.readout(each(lambda a: jnp.swapaxes(a, 0, 1), hs))


Model = MLP | ConvNet | RNN

ARCHITECTURES = ("mlp", "convnet", "rnn")


def model_factory(architecture: str, input_shape: int | Sequence[int], n_outputs: int,
                  width: int, *, depth: int = 2, strides: Sequence[int] = (1, 2, 2),
                  parameterization: Parameterization = "ntk",
                  bias_multiplier: float = 1.0):
    """``make_model(key) -> model``, the one way every experiment builds its networks.

    * ``"mlp"``: :class:`MLP` with ``depth`` hidden layers of ``width`` units on inputs
      of ``input_shape`` (flattened);
    * ``"convnet"``: the authors' :class:`ConvNet` with ``width`` channels and one 3x3
      convolution per entry of ``strides`` (KMNIST ``(1, 2, 2)``, CIFAR-10
      ``(1, 1, 1, 2, 1, 2, 1)``) on images ``input_shape = (H, W, C)``;
    * ``"rnn"``: :class:`RNN` with ``input_shape[-1]`` input features per time step.

    ``parameterization``: ``"ntk"`` (weights N(0, 1) times ``1/sqrt(fan_in)`` in the
    forward pass) or ``"standard"`` (weights N(0, 1/fan_in)). ``bias_multiplier``
    (``beta``, MLP and ConvNet) sets the biases' share ``beta**2`` of the NTK.
    Arguments are checked here, so a bad one fails before any key is drawn.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if parameterization not in ("ntk", "standard"):
        raise ValueError(
            f"parameterization must be 'ntk' or 'standard', got {parameterization!r}")
    shape = (input_shape,) if np.ndim(input_shape) == 0 else tuple(input_shape)
    shape = tuple(_check_positive("input_shape entries", dim) for dim in shape)
    width, n_outputs = _check_positive("width", width), _check_positive("n_outputs", n_outputs)
    if architecture == "mlp":
        depth = _check_positive("depth", depth)
        return lambda key: MLP(shape, width, depth, n_outputs, key=key,
                               parameterization=parameterization,
                               bias_multiplier=bias_multiplier)
    if architecture == "convnet":
        if len(shape) != 3:
            raise ValueError(f"architecture 'convnet' needs images (H, W, C), got input "
                             f"shape {shape}")
        strides = tuple(_check_positive("strides entries", s) for s in strides)
        return lambda key: ConvNet(shape, width, n_outputs, key=key, strides=strides,
                                   parameterization=parameterization,
                                   bias_multiplier=bias_multiplier)
    return lambda key: RNN(shape[-1], width, n_outputs, key=key,
                           parameterization=parameterization)


def loss_for(architecture: str):
    """The training loss of an architecture: :func:`~alignlib.rules.mse` on the outputs,
    or :func:`~alignlib.rules.sequence_mse` over time steps for the ``"rnn"``."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    return sequence_mse if architecture == "rnn" else mse
