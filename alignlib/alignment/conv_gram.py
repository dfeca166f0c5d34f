"""The exact alignment score of a convolution, from the geometry of its taps.

For a convolution with HWIO weight ``w`` (taps ``t = 1..K``, ``K = k_h k_w``, tap slice
``w_t`` of shape ``(c_in, c_out)``) the operator block from input position ``r`` to output
position ``p`` is ``w_t^T`` with ``t = r - s p + pad`` (zero if ``t`` is not a tap). Hence::

    <C_a^T C_a, C_b^T C_b>_F = ||C_a C_b^T||_F^2
        = sum_{p,q} || sum_r a_{t(p,r)}^T b_{t(q,r)} ||_F^2
        = sum_{i,j,i',j'} N[i, j, i', j'] < a_i a_i'^T , b_j b_j'^T >_F,

where ``N[i, j, i', j']`` counts the output pairs ``(p, q)`` and input pairs ``(r, r')``
with ``i = t(p, r)``, ``j = t(q, r)``, ``i' = t(p, r')``, ``j' = t(q, r')``. ``N`` depends
only on the geometry (image size, kernel, stride, padding), factorises over the two
spatial axes, and is counted once in numpy. The rest is two ``(K c_in) x (K c_in)`` Gram
products and one ``K^2 x K^2`` contraction: ``O(K^2 c_in^2 c_out)`` work, independent of
the image size. Equivalently ``<a_i a_i'^T, b_j b_j'^T> = <a_i^T b_j, a_i'^T b_j'>``, which
needs only the tap pairs ``(i, j)`` that ``N`` uses (a third of them at stride 2); the
cheaper of the two forms is taken. The basis method of
:func:`alignlib.alignment.gram` instead pushes every basis image through the operator
(tens of seconds for ``8 x 8 x 128`` inputs on a CPU); the tests check that both give the
same number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array

__all__ = ["conv_tap_counts", "conv_score_sums"]


def _axis_counts(n_in: int, k: int, stride: int, pad_lo: int, n_out: int) -> np.ndarray:
    """One spatial axis of :func:`conv_tap_counts`: ``(k, k, k, k)`` counts."""
    counts = np.zeros((k, k, k, k), dtype=np.int64)
    for p in range(n_out):
        for q in range(n_out):
            valid = []  # (i, j): input r = s p + i - pad lies in the image and is tap j of q
            for i in range(k):
                r = stride * p + i - pad_lo
                j = r - stride * q + pad_lo
                if 0 <= r < n_in and 0 <= j < k:
                    valid.append((i, j))
            for i, j in valid:
                for i2, j2 in valid:
                    counts[i, j, i2, j2] += 1
    return counts


def conv_tap_counts(input_hw: Sequence[int], kernel_hw: Sequence[int], stride: int,
                    padding: str = "SAME") -> np.ndarray:
    """Geometry counts ``N[i, j, i', j']`` of the exact convolution score (module docstring).

    ``N[i, j, i', j']`` is the number of (output position ``p``, output position ``q``,
    input position ``r``, input position ``r'``) with ``r`` at tap ``i`` of ``p`` and tap
    ``j`` of ``q``, and ``r'`` at tap ``i'`` of ``p`` and tap ``j'`` of ``q``; taps are
    numbered ``t = t_h * k_w + t_w`` as in a C-order reshape of an HWIO weight.

    Args:
        input_hw: ``(H, W)`` of one layer input.
        kernel_hw: ``(k_h, k_w)``.
        stride: the convolution's stride (both axes).
        padding: ``"SAME"`` (JAX/TensorFlow convention: ``floor(total/2)`` before) or
            ``"VALID"``.

    Returns:
        ``float64`` array of shape ``(K, K, K, K)``, ``K = k_h k_w``.
    """
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"`stride` must be a positive integer, got {stride!r}.")
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"`padding` must be 'SAME' or 'VALID', got {padding!r}.")
    (H, W), (kh, kw) = tuple(input_hw), tuple(kernel_hw)
    pads = lax.padtype_to_pads((H, W), (kh, kw), (stride, stride), padding)
    per_axis = []
    for n, k, (lo, hi) in zip((H, W), (kh, kw), pads):
        n_out = (n + lo + hi - k) // stride + 1
        if n_out < 1:
            raise ValueError(f"kernel {kernel_hw} does not fit input {input_hw} with {padding!r}.")
        per_axis.append(_axis_counts(n, k, stride, lo, n_out))
    nh, nw = per_axis
    K = kh * kw
    # tap (t_h, t_w) -> t_h * k_w + t_w for each of the four indices
    full = np.einsum("abcd,efgh->aebfcgdh", nh, nw)
    return full.reshape(K, K, K, K).astype(np.float64)


def _taps_gram(w: Array) -> Array:
    """``X[i, i'] = w_i w_i'^T`` for all tap pairs, as ``(K*K, c_in*c_in)`` (row ``i*K + i'``)."""
    kh, kw, ci, co = w.shape
    K = kh * kw
    flat = w.reshape(K * ci, co)
    x = (flat @ flat.T).reshape(K, ci, K, ci)
    return jnp.transpose(x, (0, 2, 1, 3)).reshape(K * K, ci * ci)


class _ConvForm(NamedTuple):
    """How :func:`exact_alignments` evaluates ``S(a, b) = sum N[i,j,i',j'] <a_i a_i'^T, b_j b_j'^T>``.

    ``"taps"``: through the input-side tap Grams ``X_w[i, i'] = w_i w_i'^T`` (one per
    update, ``K^2 c_in^2 c_out`` each), contracted with ``N`` (``K^4 c_in^2``).
    ``"pairs"``: through the output-side products ``M[i, j] = a_i^T b_j`` (``c_out x c_out``),
    using ``<a_i a_i'^T, b_j b_j'^T> = <M[i, j], M[i', j']>``, but only for the tap pairs
    ``(i, j)`` that ``N`` uses (with stride 2 about a third of them), ``P c_in c_out^2``
    per product plus ``P^2 c_out^2`` for the contraction.
    """

    name: str
    weights: np.ndarray  # taps: (K*K, K*K) over ((i, i'), (j, j')); pairs: (P, P)
    pair_i: np.ndarray  # pairs: tap i of each used pair (P,)
    pair_j: np.ndarray  # pairs: tap j of each used pair (P,)


def _conv_form(counts: np.ndarray, c_in: int, c_out: int, n_updates: int,
               force: str | None = None) -> _ConvForm:
    K = counts.shape[0]
    used = np.argwhere(counts.sum(axis=(2, 3)) > 0)  # (i, j) pairs with nonzero counts
    P = len(used)
    taps_cost = (n_updates + 1) * K * K * c_in * c_in * c_out + (2 * n_updates + 1) * K**4 * c_in**2
    pairs_cost = (2 * n_updates + 1) * (P * c_in * c_out**2 + P * P * c_out**2)
    name = force or ("taps" if taps_cost <= pairs_cost else "pairs")
    if name == "taps":
        weights = np.transpose(counts, (0, 2, 1, 3)).reshape(K * K, K * K)
        return _ConvForm("taps", weights, used[:, 0], used[:, 1])
    if name != "pairs":
        raise ValueError(f"unknown convolution form {name!r}")
    i, j = used[:, 0], used[:, 1]
    weights = counts[i[:, None], j[:, None], i[None, :], j[None, :]]
    return _ConvForm("pairs", weights, i, j)


def _pair_products(form: _ConvForm, a: Array, b: Array) -> Array:
    """``M[p] = a_{i_p}^T b_{j_p}`` flattened: ``(P, c_out * c_out)``."""
    kh, kw, ci, co = a.shape
    at = a.reshape(kh * kw, ci, co)[form.pair_i]
    bt = b.reshape(kh * kw, ci, co)[form.pair_j]
    return jnp.einsum("pco,pcd->pod", at, bt).reshape(len(form.pair_i), co * co)


def conv_score_sums(a: Array, b: Array, counts: np.ndarray, form: str | None = None) -> Array:
    """``(<G_a, G_b>_F, ||G_a||_F^2, ||G_b||_F^2)`` of two HWIO convolution updates whose
    geometry gives the tap counts ``counts`` (:func:`conv_tap_counts`). ``form`` forces
    ``"taps"`` or ``"pairs"`` (two exact evaluations of the same sums, see
    :class:`_ConvForm`); by default the cheaper one. Pure ``jax.numpy`` (``jit``/``vmap``)."""
    chosen = _conv_form(counts, a.shape[2], a.shape[3], 1, force=form)
    w = jnp.asarray(chosen.weights, a.dtype)
    if chosen.name == "taps":
        xa, xb = _taps_gram(a), _taps_gram(b)
        return jnp.stack([jnp.sum(w * (x @ y.T)) for x, y in ((xa, xb), (xa, xa), (xb, xb))])
    out = []
    for x, y in ((a, b), (a, a), (b, b)):
        m = _pair_products(chosen, x, y)
        out.append(jnp.sum(w * (m @ m.T)))
    return jnp.stack(out)
