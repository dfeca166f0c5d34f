"""Infinite-width kernels of a ReLU MLP in the NTK parameterisation.

This module is the "kernel face" of the library's MLP (the finite model and its
infinite-width limit are the same description evaluated two ways). Everything is
closed form; nothing here is random.

Model
-----
Input ``x`` in R^d (flattened), ``n_layers = L`` weight layers: hidden layers
``l = 1 .. L-1`` of width ``n`` and a readout layer ``L`` with ``k`` outputs::

    h^1     = sigma_w W^1 x / sqrt(d)                + b^1
    h^(l+1) = sigma_w W^(l+1) relu(h^l) / sqrt(n)    + b^(l+1)
    f(x)    = h^L

with every weight entry N(0, 1) at initialisation. A bias enters with multiplier 1
and is initialised N(0, sigma_b^2); the library's MLP has ``sigma_b = 0``
(zero-initialised biases), which are nevertheless trained. So a bias contributes

* ``sigma_b^2`` to the NNGP (its variance at initialisation), and
* ``1`` to the NTK of every layer (d h / d b = 1), when the biases are trained.

The flag ``bias_in_ntk`` (default True) controls the second point. (Jacot et al.'s
convention ``h = ... + sigma_b b`` with ``b ~ N(0, 1)`` corresponds to
``bias_in_ntk = sigma_b**2``; a float is accepted for that case.)

Kernels (all N x N for inputs ``X`` of shape (N, d); the book's derivation page)
--------------------------------------------------------------------------------
Layer-input kernels (the kernel of the input of layer l, before ``sigma_w^2``)::

    C^1(x, x')     = x.x' / d
    C^(l+1)(x, x') = E[relu(u) relu(u')],  (u, u') ~ N(0, Sigma^l restricted to x, x')
                   = sqrt(S S') / (2 pi) * (sin t + (pi - t) cos t)

NNGP (pre-activation covariances), ``l = 1 .. L``::

    Sigma^l = sigma_w^2 C^l + sigma_b^2

Derivative kernels of the hidden layers, ``l = 1 .. L-1``::

    Sigmadot^l(x, x') = E[relu'(u) relu'(u')] = (pi - t) / (2 pi)

where ``t = arccos(Sigma^l(x,x') / sqrt(Sigma^l(x,x) Sigma^l(x',x')))``, ``S =
Sigma^l(x, x)`` and ``S' = Sigma^l(x', x')``. (If ``S`` or ``S'`` is 0 the
pre-activation is identically 0 and both expectations are 0, matching
``jax.nn.relu``'s derivative 0 at 0.)

Backward kernels (the limit of d f/d h^l . d f/d h^l', summed over layer l's units)::

    K^l = prod_{m=l}^{L-1} sigma_w^2 Sigmadot^m,   K^L = 1 (readout).

(The derivation page writes the product over m = l..L; the readout has no
nonlinearity, so its factor is 1 and the two agree.)

NTK of one output unit (the multi-output NTK is ``Theta ⊗ I_k``)::

    Theta = sum_{l=1}^{L} (sigma_w^2 C^l + beta) * K^l,   beta = 1 if bias_in_ntk else 0

Gradient-descent dynamics in the infinite-width limit
-----------------------------------------------------
The library's loss is the mean over the batch (N) and the outputs (k) of
``(f - y)^2``. One full-batch gradient-descent step with learning rate ``lr``
changes the outputs, to leading order in 1/n, by ``f <- f - eta Theta (f - y)``
with::

    eta = 2 lr / (N k)                                  (see ``gd_step_size``)

so the error ``e = f - y`` (N x k) follows

* discrete time (what a finite network trained by full-batch GD approaches):
  ``e(t) = (I - eta Theta)^t e(0)``, and the integrated error over ``T`` steps is
  ``E = sum_{t=0}^{T-1} e(t)``;
* continuous time (gradient flow; ``t`` measured in steps):
  ``e(t) = exp(-eta Theta t) e(0)`` and
  ``E = int_0^T e(s) ds = (eta Theta)^{-1} (I - exp(-eta Theta T)) e(0)``.

The derivation page writes the flow as ``eps(t) = Theta^{-1} (I - exp(-lr Theta t)) e(0)``;
that ``eps`` includes the learning rate, i.e. ``eps_reference = eta * E`` with the
reference's ``lr`` playing the role of ``eta``.

Layer-1 alignment: :func:`layer1_gram_prediction` gives the limit of
``dW1.T @ dW1`` (d x d, no normalisation by the width), namely
``eta^2 sigma_w^2 / d * X^T (K^1 ∘ E E^T) X``.

Finite widths (the tests: 3 weight layers, d = 5, N = 8, k = 3, lr 0.5, 20
steps): the empirical NTK at initialisation approaches ``ntk`` like n^-1/2; the
training-error trajectory and the layer-1 Gram approach the theory more slowly
(log-log slope about -0.4 for n = 256..4096, relative Gram error 0.08 at n = 4096),
because ReLU activation patterns flip during training.

Precision: the functions compute in JAX's default float type. Enable float64 with
``jax.config.update("jax_enable_x64", True)`` (or ``with jax.enable_x64(True):``)
for the float64 results the tests check.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
from jax import Array

from alignlib.validation import positive_integer

__all__ = [
    "nngp",
    "derivative_kernels",
    "layer_input_kernels",
    "backward_kernels",
    "ntk",
    "gd_step_size",
    "error_trajectory",
    "integrated_error",
    "layer1_gram_prediction",
]


# --------------------------------------------------------------------------- #
# argument checks
# --------------------------------------------------------------------------- #


def _float_dtype():
    return jnp.result_type(float)


def _as_inputs(X, name: str = "X") -> Array:
    """(N, ...) array -> (N, d) float array, flattening each example."""
    X = jnp.asarray(X)
    if X.ndim < 2:
        raise ValueError(
            f"{name} must have shape (N, d) or (N, ...) with one example per row; "
            f"got shape {X.shape}"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no examples (shape {X.shape})")
    X = X.reshape(X.shape[0], -1).astype(_float_dtype())
    if X.shape[1] == 0:
        raise ValueError(f"{name} has zero input dimension (shape {X.shape})")
    return X


def _check_n_layers(n_layers) -> int:
    """The number of weight layers, readout included (an MLP with ``L`` hidden layers has
    ``n_layers = L + 1``; ``depth`` in :class:`alignlib.MLP` counts hidden layers only)."""
    return positive_integer("n_layers (the number of weight layers, readout included)", n_layers)


def _check_sigmas(sigma_w, sigma_b) -> tuple[float, float]:
    sigma_w = float(sigma_w)
    sigma_b = float(sigma_b)
    if not (math.isfinite(sigma_w) and sigma_w > 0):
        raise ValueError(f"sigma_w must be a finite positive number; got {sigma_w!r}")
    if not (math.isfinite(sigma_b) and sigma_b >= 0):
        raise ValueError(f"sigma_b must be a finite number >= 0; got {sigma_b!r}")
    return sigma_w, sigma_b


def _bias_term(bias_in_ntk) -> float:
    if isinstance(bias_in_ntk, bool):
        return 1.0 if bias_in_ntk else 0.0
    beta = float(bias_in_ntk)
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(
            f"bias_in_ntk must be a bool or a finite float >= 0; got {bias_in_ntk!r}"
        )
    return beta


# --------------------------------------------------------------------------- #
# forward recursion
# --------------------------------------------------------------------------- #


def _recursion(X, X2, n_layers, sigma_w, sigma_b):
    """Run the arc-cosine recursion.

    Returns ``(inputs, sigmas, dots)``: lists of the layer-input kernels C^1..C^L,
    the NNGP Sigma^1..Sigma^L and the derivative kernels Sigmadot^1..Sigmadot^(L-1),
    each of shape (N1, N2).
    """
    n_layers = _check_n_layers(n_layers)
    sigma_w, sigma_b = _check_sigmas(sigma_w, sigma_b)
    X1 = _as_inputs(X, "X")
    same = X2 is None
    X2 = X1 if same else _as_inputs(X2, "X2")
    if X2.shape[1] != X1.shape[1]:
        raise ValueError(
            f"X and X2 must have the same input dimension; got {X1.shape[1]} and "
            f"{X2.shape[1]}"
        )
    return _recursion_core(X1, X2, n_layers, same, sigma_w**2, sigma_b**2)


@functools.partial(jax.jit, static_argnames=("n_layers", "same"))
def _recursion_core(X1, X2, n_layers, same, sw2, sb2):
    d = X1.shape[1]

    # Layer-1 input kernel: cross term and the two diagonals.
    c = X1 @ X2.T / d
    q1 = jnp.sum(X1 * X1, axis=1) / d
    q2 = q1 if same else jnp.sum(X2 * X2, axis=1) / d
    eye = jnp.eye(X1.shape[0], dtype=bool) if same else None

    inputs, sigmas, dots = [], [], []
    for layer in range(1, n_layers + 1):
        s12 = sw2 * c + sb2
        s1 = sw2 * q1 + sb2
        s2 = sw2 * q2 + sb2
        inputs.append(c)
        sigmas.append(s12)
        if layer == n_layers:
            break
        norm = jnp.sqrt(s1[:, None] * s2[None, :])
        pos = norm > 0
        safe = jnp.where(pos, norm, 1.0)
        cos = jnp.clip(s12 / safe, -1.0, 1.0)
        if same:
            cos = jnp.where(eye, 1.0, cos)  # exact on the diagonal
        t = jnp.arccos(cos)
        dots.append(jnp.where(pos, (jnp.pi - t) / (2 * jnp.pi), 0.0))
        c = jnp.where(
            pos, safe * (jnp.sin(t) + (jnp.pi - t) * cos) / (2 * jnp.pi), 0.0
        )
        # E[relu(u)^2] = Var(u) / 2
        q1 = s1 / 2
        q2 = s2 / 2
    return inputs, sigmas, dots


def nngp(X, n_layers: int, *, X2=None, sigma_w: float = 1.0, sigma_b: float = 0.0):
    """NNGP kernels (pre-activation covariances) of every layer at initialisation.

    ``Sigma^1 = sigma_w^2 x.x'/d + sigma_b^2`` and
    ``Sigma^(l+1) = sigma_w^2 sqrt(S S')/(2 pi) (sin t + (pi - t) cos t) + sigma_b^2``
    (see the module docstring for ``S, S', t``).

    Args:
        X: inputs, shape (N, d) or (N, ...) (flattened per example).
        n_layers: number of weight layers L (readout included), >= 1.
        X2: optional second set of inputs, shape (N2, d); default ``X``.
        sigma_w: weight multiplier.
        sigma_b: standard deviation of the biases at initialisation (0 in the
            library's MLP).

    Returns:
        List of L arrays ``[Sigma^1, ..., Sigma^L]``, each (N, N2). ``Sigma^L`` is
        the covariance of each output unit of the network at initialisation.
    """
    return _recursion(X, X2, n_layers, sigma_w, sigma_b)[1]


def derivative_kernels(
    X, n_layers: int, *, X2=None, sigma_w: float = 1.0, sigma_b: float = 0.0
):
    """Derivative (arc-cosine degree 0) kernels of the hidden layers.

    ``Sigmadot^l(x, x') = E[relu'(u) relu'(u')] = (pi - t^l) / (2 pi)`` with
    ``(u, u') ~ N(0, Sigma^l)`` and ``t^l`` the angle of ``Sigma^l``.

    Args: as for :func:`nngp`.

    Returns:
        List of L-1 arrays ``[Sigmadot^1, ..., Sigmadot^(L-1)]``, each (N, N2)
        (empty for ``n_layers == 1``).
    """
    return _recursion(X, X2, n_layers, sigma_w, sigma_b)[2]


def layer_input_kernels(
    X, n_layers: int, *, X2=None, sigma_w: float = 1.0, sigma_b: float = 0.0
):
    """Kernels of each layer's input, normalised by its fan-in.

    ``C^1(x, x') = x.x'/d`` and, for l > 1, ``C^l(x, x') = lim (1/n) relu(h^(l-1)).
    relu(h'^(l-1)) = E[relu(u) relu(u')]`` with ``(u, u') ~ N(0, Sigma^(l-1))``.
    These carry neither ``sigma_w^2`` nor ``sigma_b``: ``Sigma^l = sigma_w^2 C^l +
    sigma_b^2``.

    Args: as for :func:`nngp`.

    Returns:
        List of L arrays ``[C^1, ..., C^L]``, each (N, N2).
    """
    return _recursion(X, X2, n_layers, sigma_w, sigma_b)[0]


def _backward(dots, sw2, ones):
    ks = [ones]
    for dot in reversed(dots):
        ks.append(sw2 * dot * ks[-1])
    return ks[::-1]


def backward_kernels(
    X, n_layers: int, *, X2=None, sigma_w: float = 1.0, sigma_b: float = 0.0
):
    """Backward kernels: the limit of ``sum_j (d f/d h^l_j)(x) (d f/d h^l_j)(x')``.

    ``K^l = prod_{m=l}^{L-1} sigma_w^2 Sigmadot^m``; ``K^L = 1`` (the readout's
    pre-activation is the output). For several outputs, the sensitivities of
    different output units are orthogonal in the limit, so the output-o / output-o'
    kernel is ``K^l delta_{o o'}``.

    Args: as for :func:`nngp`.

    Returns:
        List of L arrays ``[K^1, ..., K^L]``, each (N, N2).
    """
    sigma_w, _ = _check_sigmas(sigma_w, sigma_b)
    inputs, _, dots = _recursion(X, X2, n_layers, sigma_w, sigma_b)
    return _backward(dots, sigma_w**2, jnp.ones_like(inputs[0]))


def ntk(
    X,
    n_layers: int,
    *,
    X2=None,
    sigma_w: float = 1.0,
    sigma_b: float = 0.0,
    bias_in_ntk: bool | float = True,
):
    """Neural tangent kernel of one output unit at infinite width.

    ``Theta = sum_{l=1}^{L} (sigma_w^2 C^l + beta) K^l``, where ``C^l`` are the
    layer-input kernels, ``K^l`` the backward kernels and ``beta`` the bias term.
    Layer l's weight gradient is ``sigma_w / sqrt(fan_in) * (d f/d h^l) x^(l-1)T``,
    whence ``sigma_w^2 C^l K^l``; its bias gradient is ``d f/d h^l``, whence
    ``beta K^l``. The NTK of a k-output network is ``Theta ⊗ I_k``.

    Args:
        X, n_layers, X2, sigma_w, sigma_b: as for :func:`nngp`.
        bias_in_ntk: True (default) when every layer has a trained bias with
            multiplier 1 (the library's MLP; ``beta = 1``); False for untrained or
            absent biases (``beta = 0``); a float sets ``beta`` directly (e.g.
            ``sigma_b**2`` for biases written as ``sigma_b * b`` with ``b ~ N(0,1)``).

    Returns:
        Array (N, N2).
    """
    beta = _bias_term(bias_in_ntk)
    sigma_w, _ = _check_sigmas(sigma_w, sigma_b)
    sw2 = sigma_w**2
    inputs, _, dots = _recursion(X, X2, n_layers, sigma_w, sigma_b)
    ks = _backward(dots, sw2, jnp.ones_like(inputs[0]))
    theta = jnp.zeros_like(inputs[0])
    for c, k in zip(inputs, ks):
        theta = theta + (sw2 * c + beta) * k
    return theta


# --------------------------------------------------------------------------- #
# training dynamics
# --------------------------------------------------------------------------- #


def gd_step_size(lr: float, n_examples: int, n_outputs: int = 1) -> float:
    """Kernel step size ``eta = 2 lr / (N k)`` of full-batch GD on the library loss.

    The loss ``mean_{i,o} (f_o(x_i) - y_io)^2`` has gradient ``(2/(N k)) J^T e``, so a
    step of size ``lr`` moves the outputs by ``-eta Theta e`` (to leading order).
    """
    if n_examples < 1 or n_outputs < 1:
        raise ValueError(
            f"n_examples and n_outputs must be >= 1; got {n_examples}, {n_outputs}"
        )
    return 2.0 * float(lr) / (n_examples * n_outputs)


def _prepare_dynamics(theta, e0, lr, steps, n_outputs, dynamics):
    theta = jnp.asarray(theta, dtype=_float_dtype())
    if theta.ndim != 2 or theta.shape[0] != theta.shape[1]:
        raise ValueError(f"theta must be a square (N, N) matrix; got shape {theta.shape}")
    e0 = jnp.asarray(e0, dtype=_float_dtype())
    if e0.ndim not in (1, 2) or e0.shape[0] != theta.shape[0]:
        raise ValueError(
            f"e0 must have shape (N,) or (N, k) with N = {theta.shape[0]} "
            f"(theta's size); got shape {e0.shape}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0; got {steps!r}")
    if dynamics not in ("discrete", "continuous"):
        raise ValueError(
            f"dynamics must be 'discrete' or 'continuous'; got {dynamics!r}"
        )
    if n_outputs is None:
        n_outputs = 1 if e0.ndim == 1 else e0.shape[1]
    eta = gd_step_size(lr, theta.shape[0], n_outputs)
    return theta, e0, eta


def _spectrum(theta, e0, eta):
    """Eigen-decomposition of eta * Theta: (eta lambda (N,), U (N, N), U^T e0)."""
    lam, u = jnp.linalg.eigh((theta + theta.T) / 2)
    return eta * lam, u, u.T @ e0


@functools.partial(jax.jit, static_argnames=("steps", "continuous"))
def _trajectory_core(theta, e0, eta, steps, continuous):
    x, u, coef = _spectrum(theta, e0, eta)
    t = jnp.arange(steps + 1, dtype=x.dtype)[:, None]
    if continuous:
        g = jnp.exp(-x[None, :] * t)  # (T+1, N)
    else:
        g = jnp.power(1.0 - x[None, :], t)
    if coef.ndim == 2:
        return jnp.einsum("ab,tb,bk->tak", u, g, coef)
    return jnp.einsum("ab,tb,b->ta", u, g, coef)


@functools.partial(jax.jit, static_argnames=("continuous",))
def _integrated_core(theta, e0, eta, steps, continuous):
    x, u, coef = _spectrum(theta, e0, eta)
    T = jnp.asarray(steps, dtype=x.dtype)
    small = jnp.abs(x) < 1e-300
    xs = jnp.where(small, 1.0, x)
    if continuous:
        g = -jnp.expm1(-xs * T) / xs
    else:
        # sum_{t<T} (1 - x)^t = (1 - (1 - x)^T) / x, with expm1/log1p where |x| < 1
        # to avoid cancellation for small x.
        inside = jnp.abs(xs) < 1.0
        xi = jnp.where(inside, xs, 0.5)
        g_in = -jnp.expm1(T * jnp.log1p(-xi)) / xi
        g_out = (1.0 - jnp.power(1.0 - xs, T)) / xs
        g = jnp.where(inside, g_in, g_out)
    g = jnp.where(small, T, g)
    if coef.ndim == 2:
        return u @ (g[:, None] * coef)
    return u @ (g * coef)


def error_trajectory(
    theta,
    e0,
    lr: float,
    steps: int,
    *,
    n_outputs: int | None = None,
    dynamics: Literal["discrete", "continuous"] = "discrete",
):
    """Training error of the infinite-width network at steps ``t = 0 .. steps``.

    * ``dynamics="discrete"`` (default; full-batch GD, what a wide finite network
      approaches): ``e(t) = (I - eta Theta)^t e0``.
    * ``dynamics="continuous"`` (gradient flow, ``t`` in steps):
      ``e(t) = exp(-eta Theta t) e0``.

    with ``eta = 2 lr / (N k)`` (:func:`gd_step_size`; the loss is the mean over
    batch and outputs of the squared error). Each output column evolves
    independently under the same ``Theta`` (the k-output NTK is ``Theta ⊗ I``).

    Args:
        theta: NTK of one output unit on the training inputs, (N, N), symmetric.
        e0: initial error ``f(X; W(0)) - Y``, shape (N,) or (N, k).
        lr: learning rate of the GD on the library's mean-squared loss.
        steps: number of steps T (int >= 0).
        n_outputs: k in ``eta``; default ``e0.shape[1]`` (1 for a vector ``e0``).
            Pass it when ``e0`` holds only some of the network's output columns.
        dynamics: "discrete" or "continuous".

    Returns:
        Array of shape (steps + 1, *e0.shape); row t is ``e(t)``.
    """
    theta, e0, eta = _prepare_dynamics(theta, e0, lr, steps, n_outputs, dynamics)
    return _trajectory_core(theta, e0, eta, steps, dynamics == "continuous")


def integrated_error(
    theta,
    e0,
    lr: float,
    steps: int,
    *,
    n_outputs: int | None = None,
    dynamics: Literal["discrete", "continuous"] = "discrete",
):
    """Time-integrated training error of the infinite-width network.

    * ``dynamics="discrete"`` (default):
      ``E = sum_{t=0}^{T-1} e(t) = sum_{t=0}^{T-1} (I - eta Theta)^t e0
      = (eta Theta)^{-1} (I - (I - eta Theta)^T) e0``.
      This is exactly the error that multiplies the (frozen) sensitivities in the
      accumulated weight change of a linearised network after T full-batch GD steps:
      ``W(T) - W(0) = -eta * sum_i sum_o E_io * d f_o(x_i)/dW``.
    * ``dynamics="continuous"`` (gradient flow, ``t`` in steps):
      ``E = int_0^T exp(-eta Theta s) e0 ds = (eta Theta)^{-1} (I - exp(-eta Theta T)) e0``.

    ``eta = 2 lr / (N k)`` (:func:`gd_step_size`). Both are evaluated in the
    eigenbasis of ``Theta``; singular directions (``eta lambda = 0``) contribute
    ``T e0``. ``E`` carries no learning rate: the derivation page's
    ``eps = Theta^{-1} (I - exp(-lr Theta t)) e0`` equals ``eta * E``.

    Args: as for :func:`error_trajectory`.

    Returns:
        Array of the shape of ``e0``: (N,) or (N, k).
    """
    theta, e0, eta = _prepare_dynamics(theta, e0, lr, steps, n_outputs, dynamics)
    return _integrated_core(theta, e0, eta, steps, dynamics == "continuous")


# --------------------------------------------------------------------------- #
# layer-1 alignment (the paper's layerwise alignment theorem)
# --------------------------------------------------------------------------- #


def layer1_gram_prediction(
    X,
    e_sum,
    n_layers: int,
    *,
    lr: float,
    n_outputs: int | None = None,
    sigma_w: float = 1.0,
    sigma_b: float = 0.0,
):
    """Infinite-width limit of ``dW1.T @ dW1`` for the first layer, a (d, d) matrix.

    After T full-batch GD steps of the library loss, the first layer's weight change
    (shape (n, d); the library stores W^1 as (n, d) and uses ``sigma_w W^1 x/sqrt(d)``)
    tends to its lazy-training value (the layerwise alignment theorem)::

        dW^1 = -eta sigma_w / sqrt(d) * sum_i sum_o E_io  delta_o(x_i) x_i^T

    with ``eta = 2 lr/(N k)``, ``E = sum_{t<T} e(t)`` (:func:`integrated_error`) and
    ``delta_o(x) = d f_o(x)/d h^1`` in the initial network (an n-vector whose entries
    are O(n^{-1/2})). Since ``delta_o(x) . delta_o'(x') -> delta_{oo'} K^1(x, x')``::

        dW^1T dW^1  ->  eta^2 sigma_w^2 / d * X^T (K^1 ∘ (E E^T)) X

    The limit is O(1) in the width: compare it directly, with no normalisation by
    n, to ``dW1.T @ dW1`` of a trained finite network (``dW1 = W1(T) - W1(0)``,
    W1 of shape (n, d)); the relative difference shrinks like n^{-1/2}. In
    the derivation page's notation this is ``(sigma_w^2/d) X^T (K^1 ∘ eps eps^T) X`` with
    ``eps = eta E``. Biases do not enter (layer 1's bias change is not part of W1).

    Args:
        X: training inputs, (N, d) or (N, ...) (flattened per example).
        e_sum: integrated error ``E``, shape (N,) or (N, k) (from
            :func:`integrated_error`, or from a finite network's recorded errors).
        n_layers: number of weight layers L.
        lr: learning rate of GD on the library's mean-squared loss.
        n_outputs: k in ``eta``; default ``e_sum.shape[1]`` (1 for a vector).
        sigma_w, sigma_b: as for :func:`nngp`.

    Returns:
        Array (d, d), symmetric positive semi-definite.
    """
    Xf = _as_inputs(X, "X")
    e_sum = jnp.asarray(e_sum, dtype=_float_dtype())
    if e_sum.ndim == 1:
        e_sum = e_sum[:, None]
    if e_sum.ndim != 2 or e_sum.shape[0] != Xf.shape[0]:
        raise ValueError(
            f"e_sum must have shape (N,) or (N, k) with N = {Xf.shape[0]} (the "
            f"number of rows of X); got shape {e_sum.shape}"
        )
    if n_outputs is None:
        n_outputs = e_sum.shape[1]
    sigma_w, sigma_b = _check_sigmas(sigma_w, sigma_b)
    eta = gd_step_size(lr, Xf.shape[0], n_outputs)
    k1 = backward_kernels(Xf, n_layers, sigma_w=sigma_w, sigma_b=sigma_b)[0]
    d = Xf.shape[1]
    m = k1 * (e_sum @ e_sum.T)
    return (eta**2) * (sigma_w**2) / d * (Xf.T @ m @ Xf)
