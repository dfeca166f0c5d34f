"""Layerwise alignment during training: how far SGD's weight change follows the paper's prediction.

The paper's theorem (the book's derivation page) says that under gradient descent every layer's
weight change ``dW^l = W^l(t) - W^l(0)`` approaches, as width grows, a sum of
error-scaled input correlations of the *initial* network::

    dW^l_pred = - sum_steps lr * sum_i delta0_i^l (x0_i^(l-1))^T,

which is minus the learning rate times the Align-zero pseudo-gradient summed over the
steps, driven by the trained network's own errors. :func:`alignlib.train` accumulates
it beside plain SGD (``predict=True``). This module scores, per layer, how well the two
agree with the alignment score of the paper (the cosine similarity of the
input-side Gram matrices ``G = dW^T dW``; for a convolution, ``G = C^T C`` with ``C`` the
convolution operator on one layer input) and the authors' null control, which replaces
``dW`` by ``shuffle(W(t)) - W(0)``.

What is here:

* :func:`layer_geometry`: every weighted layer's kind, input shape and stride.
* :func:`gram_inner_products`: the three Frobenius products ``<G_a, G_b>``,
  ``||G_a||^2``, ``||G_b||^2`` *exactly* and cheaply, also for convolutions (see
  :func:`conv_tap_counts`), inside ``jit``/``vmap``.
* :func:`layer_alignment`: per-run, per-layer scores of trained (stacked) networks, with
  the exact score or the authors' probe estimator, optionally for the shuffled control.
* :func:`alignment_epoch_metrics`: the ``epoch_metrics`` hook for :func:`alignlib.train`
  (alignment, shuffled control, relative change and prediction distance per layer and
  epoch).
* :func:`alignment_width_sweep`: train one network per width (several seeds in one
  vmapped program) and return a tidy table.
* :func:`random_update_score`: what two *independent random* dense updates score.
* :func:`make_network`: the MLP or ConvNet of the sweep.

Why the exact convolution score is cheap here
--------------------------------------------
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
:func:`alignlib.alignment.alignment_score` instead pushes every basis image through the
operator (tens of seconds for ``8 x 8 x 128`` inputs on a CPU); the tests check that both
give the same number.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax import lax

from alignlib._sites import Conv, Dense
from alignlib.alignment import _dense_score_sums, probe_alignment_score
from alignlib.data import Dataset
from alignlib.models import MLP, ConvNet
from alignlib.rules import sites
from alignlib.training import train

Array = jax.Array

__all__ = [
    "PAPER_CONV_STRIDES",
    "LayerGeometry",
    "layer_geometry",
    "conv_tap_counts",
    "gram_inner_products",
    "exact_alignment",
    "layer_alignment",
    "alignment_epoch_metrics",
    "alignment_width_sweep",
    "random_update_score",
    "shuffle_permutations",
    "exact_alignments",
    "make_network",
    "final_epoch",
    "alignment_experiments",
    "width_summary",
    "probe_pairs",
    "plot_width_sweep",
    "plot_epochs",
    "plot_probe_vs_exact",
    "width_headlines",
    "epoch_headlines",
]

#: The authors' ConvNet strides per data set (the book's differences page). The 8x8 digits stand in
#: for KMNIST and get its three-layer network.
PAPER_CONV_STRIDES: dict[str, tuple[int, ...]] = {
    "digits": (1, 2, 2),
    "kmnist": (1, 2, 2),
    "cifar10": (1, 1, 1, 2, 1, 2, 1),
}

METHODS = ("exact", "probe")
MODELS = ("mlp", "convnet")

#: Per-layer metrics recorded every epoch by :func:`alignment_epoch_metrics`.
EPOCH_METRICS = ("alignment", "alignment_shuffled", "relative_change", "prediction_distance")

_SHUFFLE_SALT = 0x5A1E  # mixed into the seed of the control's permutations


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


class LayerGeometry(NamedTuple):
    """One weighted layer (site) as the alignment score sees it.

    ``name``: ``"dense 1"``, ``"conv 2"``, ``"readout"``...; ``kind``: ``"dense"`` (weight
    ``(n_out, n_in)``) or ``"conv"`` (HWIO ``(k_h, k_w, c_in, c_out)``); ``weight_shape``;
    ``input_shape``: one layer input, ``(n_in,)`` or ``(H, W, c_in)``; ``stride`` and
    ``padding`` of a convolution (``1`` and ``"SAME"`` for dense layers).
    """

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    stride: int
    padding: str


def _first_run(models):
    """The first network of a stack (leading run axis on every array)."""
    return jax.tree.map(lambda a: a[0] if eqx.is_array(a) else a, models)


def _is_stacked(model) -> bool:
    """True when ``model``'s weights carry a leading run axis (``train`` results)."""
    s = sites(model)[0]
    expected = 2 if isinstance(s, Dense) else 4
    return s.weight.ndim == expected + 1


def layer_geometry(model) -> tuple[LayerGeometry, ...]:
    """Kind, weight shape, input shape and stride of every weighted layer, in forward order.

    ``model``: an :class:`~alignlib.models.MLP` or :class:`~alignlib.models.ConvNet`,
    single or stacked over runs (as :func:`alignlib.train` returns them). Input shapes
    come from tracing the model abstractly on one example (no computation).
    """
    if not isinstance(model, (MLP, ConvNet)):
        raise ValueError(f"`model` must be an alignlib MLP or ConvNet, got {type(model).__name__}.")
    if _is_stacked(model):
        model = _first_run(model)
    shapes: list[tuple[int, ...]] = []

    class _Record(eqx.Module):
        site: Any

        def __call__(self, v):
            shapes.append(tuple(v.shape[1:]))
            return self.site(v)

    recorder = eqx.tree_at(lambda m: m.sites(), model,
                           replace=[_Record(s) for s in sites(model)])
    x = jax.ShapeDtypeStruct((2, *model.input_shape), jnp.float32)
    jax.eval_shape(lambda m, v: m(v), recorder, x)
    out: list[LayerGeometry] = []
    n_hidden = len(sites(model)) - 1
    prefix = "conv" if isinstance(model, ConvNet) else "dense"
    for i, (s, shape) in enumerate(zip(sites(model), shapes)):
        name = "readout" if i == n_hidden else f"{prefix} {i + 1}"
        if isinstance(s, Conv):
            out.append(LayerGeometry(name, "conv", tuple(s.weight.shape), shape, int(s.stride), "SAME"))
        else:
            out.append(LayerGeometry(name, "dense", tuple(s.weight.shape), shape, 1, "SAME"))
    return tuple(out)


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


# --------------------------------------------------------------------------------------
# Exact scores (jit- and vmap-friendly)
# --------------------------------------------------------------------------------------


_dense_sums = _dense_score_sums  # (<A^T A, B^T B>_F, ||A^T A||^2, ||B^T B||^2), smaller side


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


def _conv_sums(a: Array, b: Array, counts: np.ndarray, form: str | None = None) -> Array:
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


def _geometry_counts(geometry: LayerGeometry, weight_shape) -> np.ndarray:
    return conv_tap_counts(geometry.input_shape[:2], weight_shape[:2], geometry.stride,
                           geometry.padding)


def gram_inner_products(a: Array, b: Array, geometry: LayerGeometry, *,
                        conv_form: str | None = None) -> Array:
    """Exact ``(<G_a, G_b>_F, ||G_a||_F^2, ||G_b||_F^2)`` of two updates of one layer.

    ``G = A^T A`` for a dense update ``(n_out, n_in)`` (computed on the smaller side) and
    ``G = C^T C`` for an HWIO convolution update, ``C`` acting on images of shape
    ``geometry.input_shape`` (computed with :func:`conv_tap_counts`; see the module
    docstring). ``conv_form`` forces ``"taps"`` or ``"pairs"`` (two exact evaluations of
    the same sums, see :class:`_ConvForm`); by default the cheaper one. Pure
    ``jax.numpy``: usable inside ``jit`` and ``vmap`` (``geometry`` static).
    """
    if geometry.kind == "dense":
        return _dense_sums(a, b)
    if geometry.kind != "conv":
        raise ValueError(f"geometry.kind must be 'dense' or 'conv', got {geometry.kind!r}.")
    return _conv_sums(a, b, _geometry_counts(geometry, a.shape), conv_form)


def _unit(x: Array) -> tuple[Array, Array]:
    n = jnp.linalg.norm(x.ravel())
    return x / jnp.where(n > 0, n, 1.0), n > 0


def exact_alignment(a: Array, b: Array, geometry: LayerGeometry) -> Array:
    """Exact alignment score ``<G_a, G_b> / (||G_a|| ||G_b||)`` (the derivation page, "Measuring alignment").

    Both updates are divided by their Frobenius norms first (the score is scale
    invariant). Returns a 0-d array in ``[0, 1]``, ``nan`` when either update is zero
    (e.g. at epoch 0, before any step). Usable inside ``jit``/``vmap``.
    """
    return exact_alignments([a], b, geometry)[0]


def exact_alignments(updates: Sequence[Array], b: Array, geometry: LayerGeometry, *,
                     conv_form: str | None = None) -> Array:
    """:func:`exact_alignment` of several updates against the same ``b``, sharing ``b``'s
    work (for a convolution, ``||G_b||`` and, in the ``"taps"`` form, ``b``'s tap Gram are
    computed once). Returns ``(len(updates),)``.
    """
    if geometry.kind not in ("dense", "conv"):
        raise ValueError(f"geometry.kind must be 'dense' or 'conv', got {geometry.kind!r}.")
    b, b_ok = _unit(b)
    units = [_unit(a) for a in updates]
    if geometry.kind == "dense":
        sums = [_dense_sums(a, b) for a, _ in units]
    else:
        form = _conv_form(_geometry_counts(geometry, b.shape), b.shape[2], b.shape[3],
                          len(updates), force=conv_form)
        w = jnp.asarray(form.weights, b.dtype)
        if form.name == "taps":
            xb = _taps_gram(b)
            bb = jnp.sum(w * (xb @ xb.T))
            sums = []
            for a, _ in units:
                xa = _taps_gram(a)
                sums.append((jnp.sum(w * (xa @ xb.T)), jnp.sum(w * (xa @ xa.T)), bb))
        else:
            def s(x, y):
                m = _pair_products(form, x, y)
                return jnp.sum(w * (m @ m.T))

            bb = s(b, b)
            sums = [(s(a, b), s(a, a), bb) for a, _ in units]
    out = []
    for (ab, aa, bb), (_, a_ok) in zip(sums, units):
        score = ab / jnp.sqrt(aa * bb)
        out.append(jnp.where(a_ok & b_ok, jnp.clip(score, 0.0, 1.0), jnp.nan))
    return jnp.stack(out)


def random_update_score(m: int, d: int) -> float:
    """Expected-value approximation of the score of two independent Gaussian dense updates.

    For ``A, B`` of shape ``(m, d)`` with i.i.d. standard normal entries, ``A^T A`` is
    Wishart with ``E<A^T A, B^T B> = m^2 d`` and ``E||A^T A||_F^2 = m d (m + d + 1)``, so
    the score is about ``m / (m + d + 1)``: close to 1 whenever the layer has many more
    outputs than inputs (a wide first layer on small images). Random updates are therefore
    not a useful null; the shuffled control is.
    """
    for name, v in (("m", m), ("d", d)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
    return m / (m + d + 1)


# --------------------------------------------------------------------------------------
# Scores of trained networks
# --------------------------------------------------------------------------------------


def _weights(tree) -> list[Array]:
    return [s.weight for s in sites(tree)]


def shuffle_permutations(seeds: Sequence[int], sizes: Sequence[int]) -> list[np.ndarray]:
    """The fixed permutations of the shuffled control: ``(runs, size)`` per layer.

    Run ``r``, layer ``l`` gets ``numpy.random.default_rng((seed_r, l, salt)).permutation``
    of its ``size`` weight entries, so the control of a run does not depend on run order,
    and the same permutation is used at every epoch (the authors shuffle each snapshot
    with the same numpy seed). The control is the one of
    :func:`alignlib.alignment.shuffled_update` (a uniformly random permutation of all
    entries of ``W(t)``, minus ``W(0)``); only the permutation is drawn with numpy here,
    because ``jax.random.permutation`` compiles a sort for every weight size, seconds per
    width on a CPU.
    """
    return [np.stack([np.random.default_rng((int(seed), layer, _SHUFFLE_SALT)).permutation(n)
                      for seed in seeds]) for layer, n in enumerate(sizes)]


def _controls(trained: Array, init: Array, perms: Array) -> Array:
    """Shuffled control per run: ``shuffle(W(t)) - W(0)`` with the entries of ``W(t)``
    permuted by ``perms[r]`` (the authors' ``randomize=True``).
    ``trained``, ``init``: ``(runs, *shape)``; ``perms``: ``(runs, size)``."""
    return jax.vmap(lambda w, w0, p: w.ravel()[p].reshape(w.shape) - w0)(trained, init, perms)


def _check_stacks(models, initial, predicted) -> tuple[LayerGeometry, ...]:
    if not _is_stacked(models):
        raise ValueError("`models` must be stacked over runs (as alignlib.train returns them); "
                         "add a leading axis with jax.tree.map(lambda a: a[None], model).")
    geometry = layer_geometry(models)
    for what, tree in (("initial", initial), ("predicted", predicted)):
        if tree is None:
            raise ValueError(f"`{what}` is None; train with predict=True to get dW_pred.")
        shapes = [tuple(w.shape) for w in _weights(tree)]
        expected = [tuple(w.shape) for w in _weights(models)]
        if shapes != expected:
            raise ValueError(f"`{what}` weights have shapes {shapes}, expected {expected}.")
    return geometry


@partial(jax.jit, static_argnames=("geometry", "control"))
def _exact_layer(w, w0, b, perms, geometry, control):
    a = _controls(w, w0, perms) if control else w - w0
    return jax.vmap(lambda x, y: exact_alignment(x, y, geometry))(a, b)


@partial(jax.jit, static_argnames=("geometry", "n_batches", "batch_size"))
def _probe_run(ws, w0s, bs, perms, key, control, geometry, n_batches, batch_size):
    """Probe scores of every layer of one run (one compilation per network shape)."""
    scores = []
    for layer, (geo, w, w0, b, perm) in enumerate(zip(geometry, ws, w0s, bs, perms)):
        a = jnp.where(control, w.ravel()[perm].reshape(w.shape) - w0, w - w0)
        ok = jnp.any(a != 0) & jnp.any(b != 0)
        score = probe_alignment_score(
            a, b, jax.random.fold_in(key, layer),
            input_shape=geo.input_shape if geo.kind == "conv" else None,
            stride=geo.stride, padding=geo.padding, n_batches=n_batches, batch_size=batch_size)
        scores.append(jnp.where(ok, score, jnp.nan))
    return jnp.stack(scores)


def layer_alignment(models, initial, predicted, *, method: Literal["exact", "probe"] = "exact",
                    control: bool = False, seeds: Sequence[int] | None = None,
                    key: Array | None = None, n_batches: int = 100,
                    batch_size: int = 100) -> np.ndarray:
    """Alignment score of every run and layer: ``dW = W(t) - W(0)`` against ``dW_pred``.

    Args:
        models, initial, predicted: trained networks, initial networks and accumulated
            ``dW_pred``, stacked over runs (``TrainResult.models``, ``.initial``,
            ``.predicted`` of :func:`alignlib.train` with ``predict=True``).
        method: ``"exact"`` (:func:`exact_alignment`) or ``"probe"`` (the authors'
            estimator, :func:`alignlib.alignment.probe_alignment_score`, with
            ``n_batches`` batches of ``batch_size`` Gaussian probes).
        control: score the authors' null control ``shuffle(W(t)) - W(0)`` instead of
            ``dW``, with the permutations of :func:`shuffle_permutations` for ``seeds``
            (default ``0, 1, ...``): the same ones :func:`alignment_epoch_metrics` uses.
        key: probe key (``method="probe"``); default ``PRNGKey(0)``. Each run and layer
            folds in its own index (run first, then layer).

    Returns:
        ``(runs, layers)`` float array; ``nan`` where an update is zero.
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    geometry = _check_stacks(models, initial, predicted)
    trained, init, pred = _weights(models), _weights(initial), _weights(predicted)
    runs = trained[0].shape[0]
    seeds = list(range(runs)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != runs:
        raise ValueError(f"`seeds` must list one seed per run ({runs}), got {len(seeds)}.")
    perms = shuffle_permutations(seeds, [math.prod(w.shape[1:]) for w in trained])
    key = jax.random.PRNGKey(0) if key is None else key
    scores = np.full((runs, len(geometry)), np.nan)
    if method == "exact":
        for layer, (geo, w, w0, b, p) in enumerate(zip(geometry, trained, init, pred, perms)):
            scores[:, layer] = np.asarray(_exact_layer(w, w0, b, p, geo, control))
        return scores
    for name, value in (("n_batches", n_batches), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    for r in range(runs):  # one run at a time: vmapped convolutions are slow on CPU
        scores[r] = np.asarray(_probe_run(
            [w[r] for w in trained], [w[r] for w in init], [b[r] for b in pred],
            [p[r] for p in perms], jax.random.fold_in(key, r), jnp.asarray(control),
            geometry, int(n_batches), int(batch_size)))
    return scores


def alignment_epoch_metrics(seeds: Sequence[int]) -> Callable:
    """The ``epoch_metrics`` hook of :func:`alignlib.train` for layerwise alignment.

    Returns ``fn(models, initial, predicted) -> {f"{metric}@{layer}": (runs,) array}`` with
    ``layer`` counted from 1 and ``metric`` one of :data:`EPOCH_METRICS`:

    * ``alignment``: exact score of ``dW`` with ``dW_pred``;
    * ``alignment_shuffled``: exact score of the shuffled control with ``dW_pred`` (the
      fixed permutations of :func:`shuffle_permutations`, as in :func:`layer_alignment`);
    * ``relative_change``: ``||dW||_F / ||W(0)||_F``;
    * ``prediction_distance``: ``||dW - dW_pred||_F / ||dW||_F``.

    ``train`` calls the hook at epoch 0 (before any step; scores are ``nan`` there) and
    after every epoch. One compiled program per network shape. ``seeds``: the runs' seeds,
    in run order (they fix the control's permutations).
    """
    seeds = [int(s) for s in seeds]
    perms: list[np.ndarray] = []  # drawn on the first call, when the weight sizes are known

    @partial(jax.jit, static_argnames=("geometry",))
    def compute(trained, init, pred, perms, geometry):
        out = {}
        norm = jax.vmap(lambda x: jnp.linalg.norm(x.ravel()))
        for layer, (geo, w, w0, b, p) in enumerate(zip(geometry, trained, init, pred, perms),
                                                   start=1):
            dw = w - w0
            shuffled = _controls(w, w0, p)
            scores = jax.vmap(lambda x, y, z: exact_alignments([x, y], z, geo))(dw, shuffled, b)
            out[f"alignment@{layer}"] = scores[:, 0]
            out[f"alignment_shuffled@{layer}"] = scores[:, 1]
            out[f"relative_change@{layer}"] = norm(dw) / norm(w0)
            out[f"prediction_distance@{layer}"] = norm(dw - b) / norm(dw)
        return out

    def epoch_metrics(models, initial, predicted):
        geometry = _check_stacks(models, initial, predicted)
        trained = _weights(models)
        if trained[0].shape[0] != len(seeds):
            raise ValueError(f"expected {len(seeds)} runs (one per seed), got {trained[0].shape[0]}.")
        if not perms:
            perms.extend(shuffle_permutations(seeds, [math.prod(w.shape[1:]) for w in trained]))
        return compute(trained, _weights(initial), _weights(predicted), perms, geometry)

    return epoch_metrics


# --------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------


def make_network(model: str, input_shape: Sequence[int], width: int, n_outputs: int, *,
                 key: Array, depth: int = 2, strides: Sequence[int] = (1, 2, 2)):
    """The networks of the sweep: ``"mlp"`` (``depth`` hidden ReLU layers) or ``"convnet"``
    (the authors' ConvNet with ``strides``).
    NTK parameterisation, weights ``N(0, 1)``."""
    if model == "mlp":
        return MLP(tuple(input_shape), width, depth, n_outputs, key=key)
    if model == "convnet":
        return ConvNet(tuple(input_shape), width, n_outputs, key=key, strides=tuple(strides))
    raise ValueError(f"`model` must be one of {MODELS}, got {model!r}.")


# --------------------------------------------------------------------------------------
# The width sweep
# --------------------------------------------------------------------------------------


def _split_metric(name: str) -> tuple[str, int]:
    metric, _, layer = name.partition("@")
    return metric, int(layer) if layer else 0


def alignment_width_sweep(model: str, data: Dataset, widths: Sequence[int], *, epochs: int,
                          lr: float = 5.0, seeds: Sequence[int] = (0, 1),
                          batch_size: int = 100, depth: int = 2,
                          strides: Sequence[int] = (1, 2, 2), probe_batches: int = 10,
                          probe_batch_size: int = 100, probe_runs: int = 1,
                          curve_widths: Sequence[int] | None = None,
                          probe_widths: Sequence[int] | None = None,
                          progress: bool = False) -> pd.DataFrame:
    """Train one network per width with SGD, accumulate ``dW_pred`` beside it, and score.

    For every width, all ``seeds`` train in one vmapped program
    (:func:`alignlib.train` with ``rule="backprop"``, ``predict=True``, squared loss,
    learning rate ``lr``, minibatches of ``batch_size``). After every epoch,
    :func:`alignment_epoch_metrics` records each layer's exact alignment, shuffled control,
    relative change and prediction distance; widths not in ``curve_widths`` (default: the
    narrowest and the widest) are scored at the last epoch only. At the widths in
    ``probe_widths`` (default: ``curve_widths``) the first ``probe_runs`` runs are also
    scored after the last epoch with the authors' probe estimator (``probe_batches``
    batches of ``probe_batch_size`` probes; the authors use 100 x 100), for both ``dW``
    and the control: metrics ``alignment_probe`` and ``alignment_shuffled_probe``. (Each
    probe layer is one compilation, about a second on a CPU, hence the subset.)

    Returns:
        A tidy DataFrame, one row per (width, seed, epoch, layer, metric), columns
        ``experiment, dataset, model, rule, width, lr, seed, epoch, layer, layer_name,
        kind, n_out, n_in, metric, value, diverged``. Network-level metrics
        (``train_loss``, ``heldout_loss``, ``heldout_accuracy``, ``seconds`` per epoch, and
        ``sweep_seconds``: wall time of the whole width, training and scoring;
        ``train_examples``: size of the training split) have
        ``layer = 0`` and ``layer_name = "network"``. ``n_out``/``n_in`` are the weight's
        output and input sizes (``c_out``/``c_in`` for convolutions).
    """
    if model not in MODELS:
        raise ValueError(f"`model` must be one of {MODELS}, got {model!r}.")
    widths = [int(w) for w in widths]
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"`widths` must list positive integers, got {widths!r}.")
    seeds = [int(s) for s in seeds]
    curve_widths = {min(widths), max(widths)} if curve_widths is None else set(curve_widths)
    probe_widths = curve_widths if probe_widths is None else set(probe_widths)
    if not 0 <= probe_runs <= len(seeds):
        raise ValueError(f"`probe_runs` must be between 0 and the number of seeds, got {probe_runs}.")
    input_shape = tuple(data.x_train.shape[1:])
    # One compiled initialiser per width (eager init would compile every weight shape's
    # random draw separately, about half a second each on a CPU).
    init = eqx.filter_jit(lambda key, width: make_network(
        model, input_shape, width, data.n_outputs, key=key, depth=depth, strides=strides))
    columns = ["experiment", "dataset", "model", "rule", "width", "lr", "seed", "epoch", "layer",
               "layer_name", "kind", "n_out", "n_in", "metric", "value", "diverged"]
    frames = []
    for width in widths:
        def make(key, width=width):
            return init(key, width)

        start = time.perf_counter()
        curve = width in curve_widths
        result = train(make, "backprop", data, epochs=epochs, learning_rates=lr, seeds=seeds,
                       batch_size=batch_size, predict=True,
                       epoch_metrics=alignment_epoch_metrics(seeds) if curve else None,
                       progress=progress)
        hist = result.history
        last = int(hist.epoch.max())
        # Scores that were not recorded during training: the last epoch of a width
        # without a curve, and the probe estimates of the first `probe_runs` runs.
        extra: dict[str, np.ndarray] = {}
        if not curve:
            extra.update({k: np.asarray(v) for k, v in alignment_epoch_metrics(seeds)(
                result.models, result.initial, result.predicted).items()})
        if probe_runs and width in probe_widths:
            sub = jax.tree.map(lambda a: a[:probe_runs] if eqx.is_array(a) else a,
                               (result.models, result.initial, result.predicted))
            for metric, control in (("alignment_probe", False), ("alignment_shuffled_probe", True)):
                scores = layer_alignment(*sub, method="probe", control=control,
                                         seeds=seeds[:probe_runs], key=jax.random.PRNGKey(width),
                                         n_batches=probe_batches, batch_size=probe_batch_size)
                for layer in range(scores.shape[1]):
                    extra[f"{metric}@{layer + 1}"] = scores[:, layer]
        if extra:
            diverged = hist[hist.epoch == last].groupby("run").diverged.first()
            rows = [{"run": r, "epoch": last, "metric": name, "value": float(v),
                     "diverged": bool(diverged.get(r, False))}
                    for name, values in extra.items() for r, v in enumerate(values)]
            hist = pd.concat([hist, pd.DataFrame(rows).merge(result.runs, on="run")],
                             ignore_index=True)
            hist["rule"] = "backprop"
        hist = pd.concat([hist, pd.DataFrame(
            [{"run": r, "epoch": last, "metric": metric, "rule": "backprop", "value": value,
              "diverged": bool(hist[(hist.run == r) & (hist.epoch == last)].diverged.any())}
             for r in range(len(seeds))
             for metric, value in (("sweep_seconds", time.perf_counter() - start),
                                   ("train_examples", data.n_train))]
        ).merge(result.runs, on="run")], ignore_index=True)
        split = hist.metric.map(_split_metric)
        hist = hist.assign(metric=[m for m, _ in split], layer=[i for _, i in split])
        names = {0: ("network", "", 0, 0)}
        for i, g in enumerate(layer_geometry(result.models), start=1):
            n_out, n_in = ((g.weight_shape[-1], g.weight_shape[-2]) if g.kind == "conv"
                           else g.weight_shape)
            names[i] = (g.name, g.kind, n_out, n_in)
        for j, column in enumerate(("layer_name", "kind", "n_out", "n_in")):
            hist[column] = hist.layer.map(lambda i, j=j: names[i][j])
        hist = hist.assign(experiment="width_sweep", dataset=data.name, model=model, width=width)
        frames.append(hist[columns])
    table = pd.concat(frames, ignore_index=True)
    table["diverged"] = table.diverged.astype(bool)
    return table.sort_values(["width", "seed", "epoch", "layer", "metric"], kind="stable") \
                .reset_index(drop=True)


def final_epoch(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of the last epoch of each (dataset, model, width, seed) in a sweep table."""
    keys = ["dataset", "model", "width", "seed"]
    last = table.groupby(keys).epoch.transform("max")
    return table[table.epoch == last]


# --------------------------------------------------------------------------------------
# The chapter's experiments, summaries and figures
# --------------------------------------------------------------------------------------


def alignment_experiments(datasets: Sequence[str], *, n_train: int, epochs: dict[str, int],
                          lr: float, seeds: Sequence[int], mlp_widths: Sequence[int],
                          mlp_depth: int, conv_widths: Sequence[int],
                          probe_widths: Sequence[int], probe_batches: int,
                          loader_kwargs: dict[str, dict] | None = None,
                          progress: bool = False) -> pd.DataFrame:
    """Every width sweep of the alignment chapter, in one tidy table.

    For each name in ``datasets`` (loaded with :func:`alignlib.data.load_dataset`,
    keeping the first ``n_train`` training examples, ``0`` for all), an MLP sweep over
    ``mlp_widths`` (skipped if empty) and a ConvNet sweep over ``conv_widths`` with the
    data set's strides from :data:`PAPER_CONV_STRIDES`, both by
    :func:`alignment_width_sweep` for ``epochs[name]`` epochs. The narrowest and widest
    width of each sweep are scored every epoch; ``probe_widths`` (those present in a
    sweep) are also scored with the probe estimator on the first seed.
    ``loader_kwargs[name]`` goes to the loader (e.g. ``cache_dir``, ``checksums``).
    """
    from alignlib.data import load_dataset

    unknown = [d for d in datasets if d not in PAPER_CONV_STRIDES]
    if unknown:
        raise ValueError(f"no ConvNet strides for data set(s) {unknown}; known: "
                         f"{sorted(PAPER_CONV_STRIDES)}.")
    missing = [d for d in datasets if d not in epochs]
    if missing:
        raise ValueError(f"`epochs` has no entry for data set(s) {missing}.")
    frames = []
    for name in datasets:
        kwargs = dict((loader_kwargs or {}).get(name, {}))
        if n_train:
            kwargs["n_train"] = int(n_train)
        data = load_dataset(name, **kwargs)
        common = dict(epochs=int(epochs[name]), lr=lr, seeds=seeds, probe_batches=probe_batches,
                      probe_runs=1, progress=progress)
        if mlp_widths:
            frames.append(alignment_width_sweep(
                "mlp", data, mlp_widths, depth=mlp_depth,
                probe_widths=[w for w in probe_widths if w in mlp_widths], **common))
        if conv_widths:
            frames.append(alignment_width_sweep(
                "convnet", data, conv_widths, strides=PAPER_CONV_STRIDES[name],
                probe_widths=[w for w in probe_widths if w in conv_widths], **common))
    if not frames:
        raise ValueError("nothing to run: both `mlp_widths` and `conv_widths` are empty.")
    return pd.concat(frames, ignore_index=True)


MODEL_LABELS = {"mlp": "MLP", "convnet": "ConvNet"}


def width_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Last-epoch layer scores, mean / min / max over seeds (diverged runs left out).

    One row per (dataset, model, width, layer, metric) with columns ``mean, min, max,
    n_seeds`` plus ``layer_name, kind, n_out, n_in``.
    """
    final = final_epoch(table)
    final = final[(final.layer > 0) & ~final.diverged]
    keys = ["dataset", "model", "width", "layer", "layer_name", "kind", "n_out", "n_in", "metric"]
    return (final.groupby(keys, as_index=False).value
            .agg(mean="mean", min="min", max="max", n_seeds="count"))


def probe_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """Exact and probe scores of the same run, layer and update, side by side.

    Columns ``dataset, model, width, seed, layer, layer_name, kind, update`` (``"trained"``
    or ``"shuffled"``), ``exact``, ``probe``, ``difference`` (probe - exact).
    """
    final = final_epoch(table)
    keys = ["dataset", "model", "width", "seed", "layer", "layer_name", "kind"]
    rows = []
    for update, exact, probe in (("trained", "alignment", "alignment_probe"),
                                 ("shuffled", "alignment_shuffled", "alignment_shuffled_probe")):
        e = final[final.metric == exact].set_index(keys).value.rename("exact")
        p = final[final.metric == probe].set_index(keys).value.rename("probe")
        both = pd.concat([e, p], axis=1, join="inner").reset_index().assign(update=update)
        rows.append(both)
    out = pd.concat(rows, ignore_index=True).dropna(subset=["exact", "probe"])
    out["difference"] = out.probe - out.exact
    return out


def _panels(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, model) pairs in data-set order of appearance, MLP before ConvNet."""
    datasets = list(dict.fromkeys(table.dataset))
    pairs = set(zip(table.dataset, table.model))
    return [(d, m) for d in datasets for m in MODELS if (d, m) in pairs]


def _layer_palette(names: Sequence[str]) -> dict[str, tuple]:
    import seaborn as sns

    names = list(dict.fromkeys(names))
    return dict(zip(names, sns.color_palette("colorblind", len(names))))


def plot_width_sweep(summary: pd.DataFrame, *, input_dims: dict[tuple[str, str], int] | None = None):
    """Figure (1): alignment per layer against width (log x), solid; the shuffled control,
    dashed; seeds' range as a band. One panel per (data set, model). ``input_dims`` maps
    (dataset, "mlp") to the input size ``d`` to draw the random-update reference
    ``n / (n + d + 1)`` of the MLP's first layer (dotted)."""
    import matplotlib.pyplot as plt

    panels = _panels(summary)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False,
                             layout="constrained")
    for ax, (dataset, model) in zip(axes[0], panels):
        part = summary[(summary.dataset == dataset) & (summary.model == model)]
        palette = _layer_palette(part.sort_values("layer").layer_name)
        for (metric, style) in (("alignment", "-"), ("alignment_shuffled", "--")):
            for name, g in part[part.metric == metric].groupby("layer_name", sort=False):
                g = g.sort_values("width")
                label = name if metric == "alignment" else None
                ax.plot(g.width, g["mean"], style, marker="o" if style == "-" else "x",
                        color=palette[name], label=label)
                ax.fill_between(g.width, g["min"], g["max"], color=palette[name], alpha=0.15)
        if input_dims and (dataset, model) in input_dims:
            widths = np.geomspace(part.width.min(), part.width.max(), 50)
            d = input_dims[(dataset, model)]
            ax.plot(widths, widths / (widths + d + 1), ":", color="0.3",
                    label=f"two random updates, {part.sort_values('layer').layer_name.iloc[0]}")
        ax.plot([], [], "k-", label="trained: $\\Delta W$ vs $\\Delta W_{pred}$")
        ax.plot([], [], "k--", label="shuffled control")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="width $n$ (units or channels)", ylabel="alignment score",
               ylim=(0, 1.03), title=f"{MODEL_LABELS.get(model, model)} on {dataset}")
        ax.legend(fontsize=7, loc="center right")
    return fig


def plot_epochs(table: pd.DataFrame):
    """Figure (2): alignment per layer against epoch at the narrowest and the widest width
    of each sweep (seed mean; shuffled control dashed). Rows: (data set, model); columns:
    narrow, wide."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    scored = table[(table.layer > 0) & table.metric.isin(["alignment", "alignment_shuffled"])
                   & ~table.diverged]
    counts = scored[scored.metric == "alignment"].groupby(["dataset", "model", "width"]).epoch.nunique()
    curves = counts[counts > 1].reset_index()
    panels = _panels(curves)
    fig, axes = plt.subplots(len(panels), 2, figsize=(10, 3.4 * len(panels)), squeeze=False,
                             layout="constrained", sharey=True)
    for row, (dataset, model) in zip(axes, panels):
        widths = sorted(curves[(curves.dataset == dataset) & (curves.model == model)].width)
        part = scored[(scored.dataset == dataset) & (scored.model == model)]
        palette = _layer_palette(part.sort_values("layer").layer_name)
        for ax, width in zip(row, (widths[0], widths[-1])):
            sub = part[part.width == width]
            for (metric, style) in (("alignment", "-"), ("alignment_shuffled", "--")):
                mean = (sub[sub.metric == metric].groupby(["layer_name", "epoch"], sort=False)
                        .value.mean().reset_index())
                for name, g in mean.groupby("layer_name", sort=False):
                    ax.plot(g.epoch, g.value, style, color=palette[name],
                            label=name if metric == "alignment" else None)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set(xlabel="epoch", title=f"{MODEL_LABELS.get(model, model)} on {dataset}, "
                                         f"width {width}", ylim=(0, 1.03))
            ax.legend(fontsize=7, loc="lower left")
        row[0].set_ylabel("alignment score\n(solid: trained, dashed: shuffled)")
    return fig


def plot_probe_vs_exact(pairs: pd.DataFrame):
    """Figure (3): probe estimate against the exact score, one point per run, layer and
    update (filled: trained, open: shuffled control); colour by layer kind."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
    kinds = {"dense": "dense (MLP, readouts)", "conv": "convolution"}
    colours = _layer_palette(list(kinds.values()))
    for kind, label in kinds.items():
        for update, face in (("trained", None), ("shuffled", "none")):
            g = pairs[(pairs["kind"] == kind) & (pairs["update"] == update)]
            if g.empty:
                continue
            ax.scatter(g.exact, g.probe, s=28, edgecolors=colours[label],
                       facecolors=colours[label] if face is None else "none",
                       label=f"{label}, {'trained' if face is None else 'shuffled control'}")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="probe = exact")
    ax.set(xlabel="exact alignment score", ylabel="probe estimate (authors' estimator)",
           xlim=(0, 1.02), ylim=(0, 1.02), title="probe estimator against the exact score")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def width_headlines(summary: pd.DataFrame, dataset: str, model: str) -> dict[str, float]:
    """The numbers the chapter quotes for one sweep, from :func:`width_summary`.

    Seed means at the last epoch: ``narrowest``/``widest`` width; ``align_narrowest_min``,
    ``align_narrowest_max``, ``align_widest_min`` (lowest and highest layer score);
    ``shuffled_hidden_widest_max`` (largest control of the layers fed by a hidden layer,
    i.e. all but the first and the readout), ``shuffled_first_widest``,
    ``shuffled_readout_widest`` and ``change_widest_max`` (largest relative weight change)
    at the widest width. ``nan`` where the sweep did not run.
    """
    part = summary[(summary.dataset == dataset) & (summary.model == model)]
    nan = float("nan")
    if part.empty:
        return {k: nan for k in ("narrowest", "widest", "align_narrowest_min",
                                 "align_narrowest_max", "align_widest_min",
                                 "shuffled_hidden_widest_max", "shuffled_first_widest",
                                 "shuffled_readout_widest", "change_widest_max")}
    lo, hi = int(part.width.min()), int(part.width.max())
    last_layer = int(part.layer.max())

    def at(width, metric):
        return part[(part.width == width) & (part.metric == metric)].set_index("layer")["mean"]

    shuffled = at(hi, "alignment_shuffled")
    hidden = shuffled[(shuffled.index > 1) & (shuffled.index < last_layer)]
    return {
        "narrowest": lo, "widest": hi,
        "align_narrowest_min": float(at(lo, "alignment").min()),
        "align_narrowest_max": float(at(lo, "alignment").max()),
        "align_widest_min": float(at(hi, "alignment").min()),
        "shuffled_hidden_widest_max": float(hidden.max()) if len(hidden) else nan,
        "shuffled_first_widest": float(shuffled.get(1, nan)),
        "shuffled_readout_widest": float(shuffled.get(last_layer, nan)),
        "change_widest_max": float(at(hi, "relative_change").max()),
    }


def epoch_headlines(table: pd.DataFrame, dataset: str, model: str) -> dict[str, float]:
    """Lowest layer score (seed mean) after the first and the last epoch at the narrowest
    width with a curve (``narrow_first_min``, ``narrow_last_min``), and after the last
    epoch at the widest (``wide_last_min``). ``nan`` where the sweep did not run."""
    part = table[(table.dataset == dataset) & (table.model == model) & (table.layer > 0)
                 & (table.metric == "alignment") & ~table.diverged & table.value.notna()]
    curves = part.groupby("width").epoch.nunique()
    curves = curves[curves > 1].index
    nan = float("nan")
    if len(curves) == 0:
        return {"narrow_first_min": nan, "narrow_last_min": nan, "wide_last_min": nan}
    mean = part.groupby(["width", "epoch", "layer"]).value.mean()
    lo, hi = min(curves), max(curves)
    first, last = int(part.epoch.min()), int(part.epoch.max())
    return {"narrow_first_min": float(mean[lo][first].min()),
            "narrow_last_min": float(mean[lo][last].min()),
            "wide_last_min": float(mean[hi][last].min())}

