"""Tests for alignlib.alignment: the exact alignment score, the operator Gram of a
convolution, the authors' probe estimator, and the shuffled null control."""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignlib.alignment import (
    alignment_score,
    gram,
    probe_alignment_score,
    shuffled_update,
)


@pytest.fixture(autouse=True)
def _float64():
    """Compare in float64; restores the previous setting after each test."""
    with jax.enable_x64(True):
        yield


def _conv_matrix(w: np.ndarray, H: int, W: int, stride: int, padding: str) -> np.ndarray:
    """Brute-force matrix of a TF-convention convolution (cross-correlation, SAME pads
    floor(total/2) before) acting on C-order-flattened (H, W, c_in) images."""
    kh, kw, ci, co = w.shape
    if padding == "SAME":
        Ho, Wo = -(-H // stride), -(-W // stride)
        ph = max((Ho - 1) * stride + kh - H, 0) // 2
        pw = max((Wo - 1) * stride + kw - W, 0) // 2
    else:
        Ho, Wo = (H - kh) // stride + 1, (W - kw) // stride + 1
        ph = pw = 0
    C = np.zeros((Ho, Wo, co, H, W, ci))
    for oh in range(Ho):
        for ow in range(Wo):
            for i in range(kh):
                for j in range(kw):
                    ih, iw = oh * stride + i - ph, ow * stride + j - pw
                    if 0 <= ih < H and 0 <= iw < W:
                        C[oh, ow, :, ih, iw, :] += w[i, j].T
    return C.reshape(Ho * Wo * co, H * W * ci)


def _cosine(Ga: np.ndarray, Gb: np.ndarray) -> float:
    return float(np.sum(Ga * Gb) / (np.linalg.norm(Ga) * np.linalg.norm(Gb)))


def _decaying(rng, shape, scale=6.0):
    """A dense update with an anisotropic (non-trivial) input-side Gram."""
    return rng.standard_normal(shape) * np.exp(-np.arange(shape[1]) / scale)


# ---------------------------------------------------------------------------------------
# Exact score: invariances and brute force
# ---------------------------------------------------------------------------------------


def test_identical_rescaled_and_rotated_updates_score_one():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((20, 12))
    Q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    assert alignment_score(A, A) == pytest.approx(1.0, abs=1e-12)
    assert alignment_score(A, 3.7 * A) == pytest.approx(1.0, abs=1e-12)
    assert alignment_score(1e-8 * A, A) == pytest.approx(1.0, abs=1e-12)  # no underflow
    assert alignment_score(A, -A) == pytest.approx(1.0, abs=1e-12)
    assert alignment_score(A, Q @ A) == pytest.approx(1.0, abs=1e-12)  # output-side rotation
    Wc = rng.standard_normal((3, 3, 2, 4))
    assert alignment_score(Wc, 0.5 * Wc, input_shape=(5, 5, 2)) == pytest.approx(1.0, abs=1e-12)


def test_symmetric_and_in_unit_interval():
    rng = np.random.default_rng(1)
    for shape in [(8, 30), (30, 8), (3, 3, 2, 3)]:
        kw = {"input_shape": (5, 5, 2)} if len(shape) == 4 else {}
        for _ in range(5):
            A = rng.standard_normal(shape)
            B = -A + 2.0 * rng.standard_normal(shape)
            s_ab, s_ba = alignment_score(A, B, **kw), alignment_score(B, A, **kw)
            assert s_ab == pytest.approx(s_ba, abs=1e-12)
            assert 0.0 <= s_ab <= 1.0


def test_independent_isotropic_updates_match_wishart_prediction():
    """For iid N(0,1) updates of shape (m, d), E<G_a,G_b> = m^2 d and
    E||G||^2 = d m (m + d + 1), so the score concentrates near m / (m + d + 1).
    Wide-output isotropic updates are NOT unaligned (0.66 for 64x32): the shuffled
    control, not 'random', is the meaningful null."""
    rng = np.random.default_rng(2)
    for (m, d), tol in [((64, 32), 0.03), ((4, 256), 0.02)]:
        scores = [
            alignment_score(rng.standard_normal((m, d)), rng.standard_normal((m, d)))
            for _ in range(10)
        ]
        assert np.mean(scores) == pytest.approx(m / (m + d + 1), abs=tol)
    assert max(scores) < 0.05  # narrow output, wide input: nearly orthogonal Grams


@pytest.mark.parametrize("shape", [(24, 10), (10, 24)])  # both sides of the trace trick
def test_dense_score_equals_explicit_gram_formula(shape):
    rng = np.random.default_rng(3)
    A = _decaying(rng, shape)
    B = A + 0.5 * rng.standard_normal(shape)
    expected = _cosine(A.T @ A, B.T @ B)
    assert 0.2 < expected < 0.99
    assert alignment_score(A, B) == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(np.asarray(gram(A)), A.T @ A, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv_operator_gram_equals_materialised_matrix(stride, padding):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 3, 2, 3))
    C = _conv_matrix(w, 5, 5, stride, padding)
    # The brute-force matrix is the convolution that the library uses.
    x = rng.standard_normal((5, 5, 2))
    y = jax.lax.conv_general_dilated(
        x[None], w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_allclose(np.asarray(y).ravel(), C @ x.ravel(), atol=1e-12)
    G = gram(w, input_shape=(5, 5, 2), stride=stride, padding=padding, chunk_size=7)
    assert G.shape == (50, 50)
    np.testing.assert_allclose(np.asarray(G), C.T @ C, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_exact_score_equals_materialised_matrices(stride):
    rng = np.random.default_rng(5)
    Wa = rng.standard_normal((3, 3, 2, 3)) * np.array([1.0, 0.3])[None, None, :, None]
    Wb = Wa + 0.8 * rng.standard_normal(Wa.shape)
    Ca, Cb = (_conv_matrix(w, 5, 5, stride, "SAME") for w in (Wa, Wb))
    expected = _cosine(Ca.T @ Ca, Cb.T @ Cb)
    assert 0.2 < expected < 0.99
    got = alignment_score(Wa, Wb, input_shape=(5, 5, 2), stride=stride)
    assert got == pytest.approx(expected, abs=1e-12)
    # The tap-count sums hold for VALID padding too, against the materialised operator.
    Va, Vb = (_conv_matrix(w, 5, 5, stride, "VALID") for w in (Wa, Wb))
    got = alignment_score(Wa, Wb, input_shape=(5, 5, 2), stride=stride, padding="VALID")
    assert got == pytest.approx(_cosine(Va.T @ Va, Vb.T @ Vb), abs=1e-12)


# ---------------------------------------------------------------------------------------
# The authors' probe estimator
# ---------------------------------------------------------------------------------------


def test_probe_estimator_agrees_with_exact_dense():
    rng = np.random.default_rng(6)
    A = _decaying(rng, (64, 32))
    B = A + 0.5 * rng.standard_normal(A.shape)
    exact = alignment_score(A, B)
    assert 0.3 < exact < 0.95
    est = probe_alignment_score(A, B, jax.random.key(0))
    assert est.shape == ()
    assert float(est) == pytest.approx(exact, abs=0.02)
    # Deterministic given the key; a different key gives a (slightly) different estimate.
    assert float(probe_alignment_score(A, B, jax.random.key(0))) == float(est)
    assert float(probe_alignment_score(A, B, jax.random.key(1))) != float(est)


@pytest.mark.parametrize("stride", [1, 2])
def test_probe_estimator_agrees_with_exact_conv(stride):
    rng = np.random.default_rng(7)
    Wa = rng.standard_normal((3, 3, 2, 4)) * np.array([1.0, 0.5])[None, None, :, None]
    Wb = Wa + 1.0 * rng.standard_normal(Wa.shape)
    kw = dict(input_shape=(6, 6, 2), stride=stride)
    exact = alignment_score(Wa, Wb, **kw)
    assert 0.3 < exact < 0.95
    est = probe_alignment_score(Wa, Wb, jax.random.key(3), **kw)
    assert float(est) == pytest.approx(exact, abs=0.02)


def test_probe_estimator_is_jittable_and_skips_nan_batches():
    rng = np.random.default_rng(8)
    A = rng.standard_normal((16, 8))
    f = jax.jit(partial(probe_alignment_score, n_batches=5, batch_size=10))
    assert float(f(A, A, jax.random.key(0))) == pytest.approx(1.0, abs=1e-12)
    # Under jit a zero update cannot raise: every batch is NaN (0/0 normalisation),
    # every batch is skipped, and the estimate is NaN rather than a silent number.
    assert math.isnan(float(f(A, jnp.zeros_like(A), jax.random.key(0))))


# ---------------------------------------------------------------------------------------
# Shuffled null control
# ---------------------------------------------------------------------------------------


def test_shuffled_control_is_low_against_structured_update():
    rng = np.random.default_rng(9)
    W0 = rng.standard_normal((64, 32))
    u, v = rng.standard_normal((64, 3)), rng.standard_normal((3, 32))
    dW = u @ v / 3.0 + 0.05 * rng.standard_normal((64, 32))  # what training did
    dW_pred = dW + 0.2 * rng.standard_normal((64, 32))  # a good prediction of it
    W_trained = W0 + dW
    control = shuffled_update(W_trained, W0, jax.random.key(0))
    assert control.shape == W0.shape
    # It is a permutation of the trained entries, minus the initial weights.
    np.testing.assert_allclose(
        np.sort(np.asarray(control + W0).ravel()), np.sort(W_trained.ravel()), atol=1e-12
    )
    assert not np.allclose(np.asarray(control), dW)
    assert alignment_score(dW, dW_pred) > 0.9
    assert alignment_score(control, dW_pred) < 0.3


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def test_bad_arguments_raise_value_error_naming_the_argument():
    A = np.ones((4, 3))
    Wc = np.ones((3, 3, 2, 4))
    with pytest.raises(ValueError, match="dW_a"):
        alignment_score(A, np.ones((3, 4)))
    with pytest.raises(ValueError, match="dW_a"):
        probe_alignment_score(A, np.ones((4, 4)), jax.random.key(0))
    with pytest.raises(ValueError, match="input_shape"):
        alignment_score(Wc, Wc)
    with pytest.raises(ValueError, match="input_shape"):
        gram(Wc)
    with pytest.raises(ValueError, match="input_shape"):
        gram(Wc, input_shape=(5, 5, 3))  # c_in mismatch
    with pytest.raises(ValueError, match="input_shape"):
        gram(A, input_shape=(5,))
    with pytest.raises(ValueError, match="dW"):
        gram(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="dW_b"):
        alignment_score(A, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="dW_a"):
        probe_alignment_score(np.zeros((4, 3)), A, jax.random.key(0))
    with pytest.raises(ValueError, match="dW_a"):
        alignment_score(np.full((4, 3), np.nan), A)
    with pytest.raises(ValueError, match="stride"):
        alignment_score(Wc, Wc, input_shape=(5, 5, 2), stride=0)
    with pytest.raises(ValueError, match="padding"):
        alignment_score(Wc, Wc, input_shape=(5, 5, 2), padding="FULL")
    with pytest.raises(ValueError, match="max_dim"):
        gram(Wc, input_shape=(10, 10, 2), max_dim=100)
    with pytest.raises(ValueError, match="n_batches"):
        probe_alignment_score(A, A, jax.random.key(0), n_batches=0)
    with pytest.raises(ValueError, match="W_init"):
        shuffled_update(A, np.ones((3, 4)), jax.random.key(0))
