"""Input-weight alignment: the alignment score between two weight updates.

The paper (Boopathy & Fiete, ICML 2022, section "Input-weight alignment") compares two updates ``A`` and ``B`` of one layer's weights through their
*input-side Gram matrices*::

    score(A, B) = <A^T A, B^T B>_F / (||A^T A||_F ||B^T B||_F)          in [0, 1]

(the cosine similarity of the two Gram matrices; it is >= 0 because both are positive
semi-definite). The score is invariant to positive or negative rescaling of either
update and to any orthogonal transformation acting on the output side (``Q A``).

Weight layouts used throughout ``alignlib``:

* dense: ``(n_out, n_in)``; the layer computes ``W @ x``.
* convolution: HWIO ``(k_h, k_w, c_in, c_out)`` (TensorFlow layout), applied to NHWC
  images with ``jax.lax.conv_general_dilated(x, w, (s, s), padding,
  dimension_numbers=("NHWC", "HWIO", "NHWC"))``. For a convolution, ``A`` is the
  linear *operator* ``C_A`` mapping an image of shape ``input_shape = (H, W, c_in)``
  (flattened in C order) to the output feature map (flattened in C order), so its Gram
  matrix is the ``(H*W*c_in, H*W*c_in)`` matrix ``C_A^T C_A``.

Three ways to get at the score:

* :func:`gram` materialises ``A^T A`` (dense) or ``C^T C`` (conv) exactly.
* :func:`alignment_score` computes the exact score without forming Gram matrices, using
  ``<A^T A, B^T B>_F = ||A B^T||_F^2`` and ``||A^T A||_F = ||A A^T||_F`` on whichever
  side is smaller, and for convolutions the tap counts of
  :mod:`alignlib.alignment.conv_gram`.
* :func:`probe_alignment_score` is the authors' Monte-Carlo estimator with Gaussian
  probes, reproduced step by step from their script (``alignment_kmnist.py``).

:func:`shuffled_update` is the authors' null control.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from alignlib.alignment.conv_gram import conv_score_sums, conv_tap_counts

__all__ = [
    "gram",
    "alignment_score",
    "probe_alignment_score",
    "shuffled_update",
]

_PADDINGS = ("SAME", "VALID")


# --------------------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------------------


def _as_array(x, name: str) -> jax.Array:
    try:
        return jnp.asarray(x)
    except Exception as err:  # pragma: no cover - message only
        raise ValueError(f"`{name}` must be an array, got {type(x).__name__}.") from err


def _check_stride_padding(stride, padding) -> tuple[int, str]:
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"`stride` must be a positive integer, got {stride!r}.")
    if not isinstance(padding, str) or padding.upper() not in _PADDINGS:
        raise ValueError(f"`padding` must be one of {_PADDINGS}, got {padding!r}.")
    return int(stride), padding.upper()


def _layer_geometry(
    dW: jax.Array, name: str, input_shape, stride, padding
) -> tuple[str, tuple[int, ...], int, str]:
    """Classify a weight as dense or conv and validate its input shape.

    Returns ``(kind, input_shape, stride, padding)`` with ``kind`` in
    ``{"dense", "conv"}`` and ``input_shape`` the shape of ONE layer input:
    ``(n_in,)`` for dense, ``(H, W, c_in)`` for conv.
    """
    stride, padding = _check_stride_padding(stride, padding)
    if dW.ndim == 2:
        n_in = dW.shape[1]
        ok = input_shape is None or (
            isinstance(input_shape, Sequence) and tuple(input_shape) == (n_in,)
        )
        if not ok:
            raise ValueError(
                f"`input_shape` for a dense weight of shape {tuple(dW.shape)} must be None or "
                f"({n_in},), got {input_shape!r}."
            )
        return "dense", (n_in,), stride, padding
    if dW.ndim == 4:
        if input_shape is None:
            raise ValueError(
                f"`input_shape` (H, W, c_in) is required for a convolution weight "
                f"`{name}` of HWIO shape {tuple(dW.shape)}: the Gram matrix of a "
                "convolution depends on the image size."
            )
        shape = tuple(input_shape) if isinstance(input_shape, Sequence) else None
        if (
            shape is None
            or len(shape) != 3
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0
                       for s in shape)
        ):
            raise ValueError(
                f"`input_shape` must be a tuple (H, W, c_in) of positive ints, got {input_shape!r}."
            )
        if shape[2] != dW.shape[2]:
            raise ValueError(
                f"`input_shape` has c_in={shape[2]} but `{name}` (HWIO {tuple(dW.shape)}) "
                f"expects c_in={dW.shape[2]}."
            )
        return "conv", tuple(int(s) for s in shape), stride, padding
    raise ValueError(
        f"`{name}` must be a dense weight (n_out, n_in) or an HWIO convolution weight "
        f"(k, k, c_in, c_out); got shape {tuple(dW.shape)}."
    )


def _host_rescaled(x):
    """A NumPy (or nested-list) floating array divided by its largest absolute entry, so
    that values too small for float32 (below 1.2e-38) survive the conversion to JAX's
    default precision; anything else (JAX arrays, tracers, zero or non-finite arrays) as
    it is."""
    if isinstance(x, jax.Array) or isinstance(x, jax.core.Tracer):
        return x
    try:
        arr = np.asarray(x)
    except Exception:  # pragma: no cover - _as_array reports it
        return x
    if not np.issubdtype(arr.dtype, np.floating) or arr.size == 0:
        return x
    with np.errstate(all="ignore"):
        peak = np.max(np.abs(arr))
    if not np.isfinite(peak) or peak == 0:
        return x
    return arr / peak


def _check_pair(dW_a, dW_b) -> tuple[jax.Array, jax.Array]:
    a = _as_array(_host_rescaled(dW_a), "dW_a")
    b = _as_array(_host_rescaled(dW_b), "dW_b")
    if a.shape != b.shape:
        raise ValueError(
            f"`dW_a` and `dW_b` must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}."
        )
    dtype = jnp.result_type(a.dtype, b.dtype, jnp.float32)
    return a.astype(dtype), b.astype(dtype)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_nonzero_finite(x: jax.Array, name: str) -> None:
    """Eager check (skipped under tracing) that an update is finite and nonzero."""
    if not _is_concrete(x):
        return
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"`{name}` contains non-finite entries (nan or inf).")
    if not bool(jnp.any(x != 0)):
        raise ValueError(
            f"`{name}` is identically zero in {x.dtype} (every entry is 0, or below the "
            f"smallest normal {x.dtype} number {float(jnp.finfo(x.dtype).tiny):.3g}, which "
            "computations flush to zero): its Gram matrix is zero and the alignment score "
            "(a cosine similarity) is undefined."
        )


def _unit(x: jax.Array) -> jax.Array:
    """``x / ||x||_F``, computed as ``y / ||y||_F`` with ``y = x / max|x|``: the squares of
    entries of order 1e-30 (or 1e+30) would underflow (overflow) in float32, while those of
    ``y`` lie in ``(0, 1]``. A zero ``x`` gives NaN (callers check for it first)."""
    x = x / jnp.max(jnp.abs(x))
    return x / jnp.linalg.norm(x.ravel())


# --------------------------------------------------------------------------------------
# The convolution operator
# --------------------------------------------------------------------------------------


def _conv(x: jax.Array, w: jax.Array, stride: int, padding: str) -> jax.Array:
    """``C_w x`` for a batch of NHWC images ``x`` of shape ``(B, H, W, c_in)``."""
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _conv_transpose(
    y: jax.Array, w: jax.Array, input_shape: tuple[int, ...], stride: int, padding: str
) -> jax.Array:
    """``C_w^T y`` for a batch ``y`` of output maps; returns ``(B, *input_shape)``.

    This is the adjoint of :func:`_conv` (TensorFlow's ``conv2d_transpose`` with the
    same strides and padding, i.e. the gradient of the convolution w.r.t. its input).
    """
    primal = jax.ShapeDtypeStruct((y.shape[0], *input_shape), y.dtype)
    (x,) = jax.linear_transpose(lambda x: _conv(x, w, stride, padding), primal)(y)
    return x


def _conv_output_shape(w_shape, input_shape, stride: int, padding: str) -> tuple[int, ...]:
    out = jax.eval_shape(
        lambda x, w: _conv(x, w, stride, padding),
        jax.ShapeDtypeStruct((1, *input_shape), jnp.float32),
        jax.ShapeDtypeStruct(tuple(w_shape), jnp.float32),
    )
    return tuple(out.shape[1:])


def _basis(idx: jax.Array, dim: int, shape: tuple[int, ...], dtype) -> jax.Array:
    """Standard basis vectors ``e_idx`` reshaped to ``(len(idx), *shape)``.

    Indices ``>= dim`` (padding of the last chunk) give zero vectors.
    """
    return jax.nn.one_hot(idx, dim, dtype=dtype).reshape((idx.shape[0], *shape))


def _chunk_indices(dim: int, chunk_size: int) -> jax.Array:
    n_chunks = -(-dim // chunk_size)
    return jnp.arange(n_chunks * chunk_size).reshape(n_chunks, chunk_size)


@partial(jax.jit, static_argnames=("input_shape", "stride", "padding", "chunk_size"))
def _conv_gram(w, *, input_shape, stride, padding, chunk_size):
    dim = math.prod(input_shape)

    def rows(idx):
        e = _basis(idx, dim, input_shape, w.dtype)
        g = _conv_transpose(_conv(e, w, stride, padding), w, input_shape, stride, padding)
        return g.reshape(idx.shape[0], dim)

    g = jax.lax.map(rows, _chunk_indices(dim, chunk_size))
    # Row j of C^T C is (C^T C e_j)^T because C^T C is symmetric.
    return g.reshape(-1, dim)[:dim]


@jax.jit
def _dense_score_sums(a, b):
    """``(<A^T A, B^T B>_F, ||A^T A||_F^2, ||B^T B||_F^2)`` on the smaller side."""
    n_out, n_in = a.shape
    if n_out <= n_in:
        ab, aa, bb = a @ b.T, a @ a.T, b @ b.T
        return jnp.stack([jnp.sum(ab * ab), jnp.sum(aa * aa), jnp.sum(bb * bb)])
    ga, gb = a.T @ a, b.T @ b
    return jnp.stack([jnp.sum(ga * gb), jnp.sum(ga * ga), jnp.sum(gb * gb)])


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def gram(
    dW,
    *,
    input_shape: tuple[int, ...] | None = None,
    stride: int = 1,
    padding: str = "SAME",
    max_dim: int = 8192,
    chunk_size: int = 256,
) -> jax.Array:
    """Input-side Gram matrix ``dW^T dW`` of a weight update.

    Args:
        dW: dense ``(n_out, n_in)`` or HWIO convolution ``(k_h, k_w, c_in, c_out)`` update.
        input_shape: for a convolution, the shape ``(H, W, c_in)`` of one input image
            (required); for a dense weight, ``None`` or ``(n_in,)``.
        stride, padding: the convolution's stride and ``"SAME"``/``"VALID"`` padding
            (ignored for dense weights).
        max_dim: refuse (ValueError) when the Gram matrix side ``n_in`` or
            ``H*W*c_in`` exceeds this; the result has ``max_dim**2`` entries.
        chunk_size: how many basis images are pushed through the convolution at once
            (bounds memory at about ``chunk_size * (H*W*c_in + H'*W'*c_out)`` floats).

    Returns:
        Dense: ``dW^T dW`` of shape ``(n_in, n_in)``.
        Conv: ``C^T C`` of shape ``(H*W*c_in, H*W*c_in)``, where ``C`` is the matrix of
        the convolution acting on C-order-flattened ``(H, W, c_in)`` images. It is built
        exactly by applying the convolution and its adjoint to the standard basis.
    """
    dW = _as_array(dW, "dW")
    kind, in_shape, stride, padding = _layer_geometry(dW, "dW", input_shape, stride, padding)
    dim = math.prod(in_shape)
    if dim > max_dim:
        raise ValueError(
            f"The Gram matrix of `dW` would be {dim} x {dim} (input_shape={in_shape}), larger "
            f"than max_dim={max_dim}. Raise `max_dim`, or use alignment_score (which avoids "
            "forming it) or probe_alignment_score."
        )
    dW = dW.astype(jnp.result_type(dW.dtype, jnp.float32))
    if kind == "dense":
        return dW.T @ dW
    return _conv_gram(
        dW, input_shape=in_shape, stride=stride, padding=padding,
        chunk_size=int(min(chunk_size, dim)),
    )


def alignment_score(
    dW_a,
    dW_b,
    *,
    input_shape: tuple[int, ...] | None = None,
    stride: int = 1,
    padding: str = "SAME",
) -> float:
    """Exact alignment score of two updates of one layer (the derivation page, "Measuring alignment")::

        score = <G_a, G_b>_F / (||G_a||_F ||G_b||_F),   G = dW^T dW (dense) or C^T C (conv)

    Computed without forming the Gram matrices: for dense weights the identities
    ``<A^T A, B^T B>_F = ||A B^T||_F^2`` and ``||A^T A||_F = ||A A^T||_F`` are used on
    the smaller of the two sides; for convolutions the sums are contracted over the
    kernel taps with counts that depend only on the geometry
    (:mod:`alignlib.alignment.conv_gram`), at a cost independent of the image size. Both
    updates are first divided by their largest
    entry, then by their Frobenius norms (the score is scale-invariant), so tiny (1e-30)
    or huge updates neither under- nor overflow; NumPy inputs are rescaled before they
    are converted to JAX's float32.

    Args:
        dW_a, dW_b: updates of the same shape, dense ``(n_out, n_in)`` or HWIO
            ``(k_h, k_w, c_in, c_out)``.
        input_shape: ``(H, W, c_in)`` of one input image, required for convolutions.
        stride, padding: convolution stride and ``"SAME"``/``"VALID"`` padding.

    Returns:
        The score as a Python float in ``[0, 1]`` (clipped to 1 against rounding).

    Raises:
        ValueError: shapes differ, a conv weight lacks ``input_shape``, an update is
            zero (the score is undefined) or non-finite.
    """
    a, b = _check_pair(dW_a, dW_b)
    kind, in_shape, stride, padding = _layer_geometry(a, "dW_a", input_shape, stride, padding)
    _check_nonzero_finite(a, "dW_a")
    _check_nonzero_finite(b, "dW_b")
    a, b = _unit(a), _unit(b)
    if kind == "dense":
        sums = _dense_score_sums(a, b)
    else:
        counts = conv_tap_counts(in_shape[:2], a.shape[:2], stride, padding)
        sums = conv_score_sums(a, b, counts)
    ab, aa, bb = (float(s) for s in sums)
    if not all(math.isfinite(v) for v in (ab, aa, bb)):  # never a silent NaN
        raise ValueError(
            f"The alignment score of `dW_a` and `dW_b` could not be computed in "
            f"{a.dtype} (non-finite intermediate sums {ab!r}, {aa!r}, {bb!r}); pass the "
            "updates in float64 (jax.config.update('jax_enable_x64', True))."
        )
    if aa == 0.0 or bb == 0.0:
        which = "dW_a" if aa == 0.0 else "dW_b"
        raise ValueError(
            f"The Gram matrix of `{which}` is zero for input_shape={in_shape} (the update "
            "never touches the image); the alignment score is undefined."
        )
    return float(min(max(ab / math.sqrt(aa * bb), 0.0), 1.0))


@partial(
    jax.jit,
    static_argnames=("kind", "input_shape", "stride", "padding", "n_batches", "batch_size"),
)
def _probe_score(a, b, key, *, kind, input_shape, stride, padding, n_batches, batch_size):
    if kind == "dense":
        n_out = a.shape[0]

        def backproject(w, z):
            return (z @ w.T) @ w

    else:
        n_out = a.shape[-1]

        def backproject(w, z):
            return _conv_transpose(_conv(z, w, stride, padding), w, input_shape, stride, padding)

    feature_axes = tuple(range(1, 1 + len(input_shape)))

    def one_batch(totals, k):
        z = jax.random.normal(k, (batch_size, *input_shape), a.dtype)
        b_a = backproject(a, z) / n_out
        b_b = backproject(b, z) / n_out
        b_a = b_a / jnp.mean(jnp.abs(b_a))
        b_b = b_b / jnp.mean(jnp.abs(b_b))
        wd = jnp.mean(jnp.sum(b_a * b_b, axis=feature_axes))
        ww = jnp.mean(jnp.sum(b_a * b_a, axis=feature_axes))
        dd = jnp.mean(jnp.sum(b_b * b_b, axis=feature_axes))
        vals = jnp.stack([wd, ww, dd])
        ok = ~jnp.any(jnp.isnan(vals))
        return totals + jnp.where(ok, vals, 0.0), None

    totals, _ = jax.lax.scan(one_batch, jnp.zeros(3, a.dtype), jax.random.split(key, n_batches))
    wd, ww, dd = totals
    return wd / jnp.sqrt(ww * dd)


def probe_alignment_score(
    dW_a,
    dW_b,
    key: jax.Array,
    *,
    input_shape: tuple[int, ...] | None = None,
    stride: int = 1,
    padding: str = "SAME",
    n_batches: int = 100,
    batch_size: int = 100,
) -> jax.Array:
    """The authors' Monte-Carlo estimate of the alignment score (Gaussian probes).

    Reproduces ``align`` in their ``alignment_kmnist.py``. For each of ``n_batches``
    batches, draw probes ``z ~ N(0, I)`` shaped like the layer input (dense
    ``(batch_size, n_in)``, conv ``(batch_size, H, W, c_in)``; the same probes for both
    updates) and back-project them::

        b_A = A^T A z / n_out        (conv: conv2d_transpose(conv2d(z, A), A) / c_out)

    then normalise ``b_A`` and ``b_B`` each by its mean absolute value over the whole
    batch, and form the per-batch means over probes
    ``WD = E<b_A, b_B>``, ``WW = E<b_A, b_A>``, ``DD = E<b_B, b_B>``. Batches in which any
    of the three is NaN are skipped, as in the authors' code. The estimate is::

        sum WD / sqrt(sum WW * sum DD)

    Since ``E_z <G_A z, G_B z> = <G_A, G_B>_F``, this converges to
    :func:`alignment_score` as the number of probes grows (up to the small effect of
    the per-batch normalisation).

    Args:
        dW_a, dW_b: updates of the same shape (dense ``(n_out, n_in)`` or HWIO).
        key: a ``jax.random`` key for the probes.
        input_shape: ``(H, W, c_in)`` for convolutions (required).
        stride, padding: convolution stride and ``"SAME"``/``"VALID"`` padding.
        n_batches, batch_size: 100 and 100 in the authors' script.

    Returns:
        A 0-d ``jax.Array`` (``nan`` if every batch was NaN, e.g. a zero update under
        ``jax.jit``; called eagerly, a zero update raises ValueError instead). The work
        is a ``lax.scan`` over batches with static shapes, so the function can be used
        inside ``jax.jit`` (with the keyword arguments static).
    """
    a, b = _check_pair(dW_a, dW_b)
    kind, in_shape, stride, padding = _layer_geometry(a, "dW_a", input_shape, stride, padding)
    for name, value in (("n_batches", n_batches), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    _check_nonzero_finite(a, "dW_a")
    _check_nonzero_finite(b, "dW_b")
    return _probe_score(
        _unit(a), _unit(b), key, kind=kind, input_shape=in_shape, stride=stride, padding=padding,
        n_batches=int(n_batches), batch_size=int(batch_size),
    )


def shuffled_update(W_trained, W_init, key: jax.Array) -> jax.Array:
    """The authors' null control: shuffle the trained weights, then subtract the initial.

    ``shuffle(W_trained) - W_init``, where ``shuffle`` applies one uniformly random
    permutation to all entries of the flattened array (their ``randomize=True`` path).
    The result has the entry statistics of a trained network's weights but none of the
    structure that training put into ``W_trained - W_init``.

    Args:
        W_trained: trained weights, any shape.
        W_init: initial weights, same shape.
        key: ``jax.random`` key for the permutation.

    Returns:
        An array shaped like ``W_init``.
    """
    w = _as_array(W_trained, "W_trained")
    w0 = _as_array(W_init, "W_init")
    if w.shape != w0.shape:
        raise ValueError(
            f"`W_init` must have the shape of `W_trained` {tuple(w.shape)}, got {tuple(w0.shape)}."
        )
    return jax.random.permutation(key, w.ravel()).reshape(w.shape) - w0
