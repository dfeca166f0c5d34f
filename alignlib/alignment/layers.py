"""The alignment of every layer of a network: exact scores inside ``jit``/``vmap``, the
authors' probe estimate, and their shuffled control.

The paper's layerwise theorem says that under gradient descent every layer's weight
change ``dW^l = W^l(t) - W^l(0)`` approaches, as width grows, the prediction
``dW_pred^l`` accumulated beside training (:func:`alignlib.train` with
``predict=True``). This module scores, per layer, how well the two agree:

* :func:`layer_geometry`: every weighted layer's kind, input shape and stride;
* :func:`gram_inner_products`: the three Frobenius products ``<G_a, G_b>``,
  ``||G_a||^2``, ``||G_b||^2`` exactly, also for convolutions
  (:mod:`alignlib.alignment.conv_gram`);
* :func:`exact_alignment` / :func:`exact_alignments`: the exact score, ``nan`` for a zero
  update (epoch 0), usable inside ``jit`` and ``vmap``;
* :func:`layer_alignment`: per-run, per-layer scores of networks stacked over runs, exact
  or with the authors' probe estimator, optionally for the shuffled control
  ``shuffle(W(t)) - W(0)`` with the fixed permutations of :func:`shuffle_permutations`;
* :func:`alignment_epoch_metrics`: the ``epoch_metrics`` hook of :func:`alignlib.train`
  that records these scores (and the control, the relative change and the distance to
  the prediction) after every epoch;
* :func:`random_update_score`: what two independent random dense updates score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from alignlib.layers import Conv, Dense
from alignlib.alignment.conv_gram import conv_score_sums, conv_tap_counts
from alignlib.alignment.conv_gram import _conv_form, _pair_products, _taps_gram
from alignlib.alignment.score import _dense_score_sums, probe_alignment_score
from alignlib.models import MLP, ConvNet
from alignlib.rules import weighted_layers

Array = jax.Array

__all__ = [
    "LayerGeometry", "layer_geometry", "gram_inner_products", "exact_alignment",
    "exact_alignments", "layer_alignment", "shuffle_permutations", "random_update_score",
    "alignment_epoch_metrics", "EPOCH_METRICS",
]

METHODS = ("exact", "probe")

#: Per-layer metrics recorded every epoch by :func:`alignment_epoch_metrics`.
EPOCH_METRICS = ("alignment", "alignment_shuffled", "relative_change", "prediction_distance")

_SHUFFLE_SALT = 0x5A1E  # mixed into the seed of the control's permutations


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
    s = weighted_layers(model)[0]
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

    recorder = eqx.tree_at(lambda m: m.weighted_layers(), model,
                           replace=[_Record(s) for s in weighted_layers(model)])
    x = jax.ShapeDtypeStruct((2, *model.input_shape), jnp.float32)
    jax.eval_shape(lambda m, v: m(v), recorder, x)
    out: list[LayerGeometry] = []
    n_hidden = len(weighted_layers(model)) - 1
    prefix = "conv" if isinstance(model, ConvNet) else "dense"
    for i, (s, shape) in enumerate(zip(weighted_layers(model), shapes)):
        name = "readout" if i == n_hidden else f"{prefix} {i + 1}"
        if isinstance(s, Conv):
            out.append(LayerGeometry(name, "conv", tuple(s.weight.shape), shape, int(s.stride), "SAME"))
        else:
            out.append(LayerGeometry(name, "dense", tuple(s.weight.shape), shape, 1, "SAME"))
    return tuple(out)


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
        return _dense_score_sums(a, b)
    if geometry.kind != "conv":
        raise ValueError(f"geometry.kind must be 'dense' or 'conv', got {geometry.kind!r}.")
    return conv_score_sums(a, b, _geometry_counts(geometry, a.shape), conv_form)


def _unit_or_zero(x: Array) -> tuple[Array, Array]:
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
    b, b_ok = _unit_or_zero(b)
    units = [_unit_or_zero(a) for a in updates]
    if geometry.kind == "dense":
        sums = [_dense_score_sums(a, b) for a, _ in units]
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
    return [s.weight for s in weighted_layers(tree)]


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
