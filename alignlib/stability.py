"""The largest stable SGD learning rate, measured from the network at initialisation.

For the library's loss ``L = mean over the batch (B) and outputs (K) of (f - y)^2`` the
Gauss-Newton part of the Hessian with respect to the parameters has the same non-zero
eigenvalues as ``(2 / (B K)) Theta``, where ``Theta = J J^T`` is the empirical NTK of the
batch (``(B K) x (B K)``, ``J`` the Jacobian of the outputs). Gradient descent on a
quadratic is stable for ``lr < 2 / lambda_max(Hessian)``, hence

    lr_max = B K / lambda_max(Theta).

In wide networks trained in the NTK parameterisation the kernel barely moves, so this
bound, measured at initialisation, is the learning rate at which training diverges (to
within the change of the kernel during training). :func:`ntk_top_eigenvalue` finds
``lambda_max(Theta)`` by power iteration with one Jacobian-vector and one
vector-Jacobian product per step (the former as the transpose of the latter), so no
Jacobian is ever formed: it works for any model (MLP, ConvNet with batch norm, RNN) at
any width.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ntk_top_eigenvalue", "stable_learning_rate"]


def ntk_top_eigenvalue(model, x, *, iterations: int = 100, key=None) -> float:
    """``lambda_max`` of the empirical NTK ``J J^T`` of ``model`` on the batch ``x``.

    ``J``: the Jacobian of the flattened outputs ``model(x)`` (``B K`` values) with
    respect to every inexact array of ``model``. Power iteration from a random start
    (``key``, default ``PRNGKey(0)``) for ``iterations`` steps; returns the Rayleigh
    quotient of the last iterate (a lower bound that converges to ``lambda_max``).
    """
    if iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def outputs(p):
        return eqx.combine(p, static)(x).reshape(-1)

    out, vjp = jax.vjp(outputs, params)
    # J u as the transpose of the (linear) map v -> J^T v: reverse mode only, so it also
    # works through custom-VJP layers (the ConvNet's convolution) that forward mode cannot.
    transpose = jax.linear_transpose(lambda v: vjp(v)[0], out)

    @jax.jit
    def apply(v):
        (pullback,) = vjp(v)
        return transpose(pullback)[0]

    v = jax.random.normal(jax.random.PRNGKey(0) if key is None else key, out.shape, out.dtype)
    v = v / jnp.linalg.norm(v)
    value = 0.0
    for _ in range(iterations):
        w = apply(v)
        value = float(jnp.vdot(v, w))
        v = w / jnp.linalg.norm(w)
    return value


def stable_learning_rate(model, x, **kwargs) -> float:
    """``B K / lambda_max(Theta)``: the largest SGD learning rate that is stable at
    initialisation for the library's mean squared loss on batches shaped like ``x``
    (``B`` examples, ``K`` outputs). ``kwargs`` go to :func:`ntk_top_eigenvalue`."""
    n_values = int(np.prod(jax.eval_shape(model, x).shape))
    return n_values / ntk_top_eigenvalue(model, x, **kwargs)
