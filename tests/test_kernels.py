"""Tests of alignlib.kernels: closed forms, dynamics, and convergence of finite
ReLU MLPs (built here in plain JAX, NTK parameterisation) to the infinite-width
theory.

Convergence numbers measured when these tests were written (float64, CPU, d=5,
N=8, k=3, depth 3, lr=0.5, 20 full-batch GD steps, root-mean-square over 4 seeds):

    width               256     1024    4096
    NTK at init         0.094   0.039   0.025   (log-log slope -0.48: n^-1/2)
    error trajectory    0.062   0.040   0.021   (slope -0.38)
    layer-1 Gram        0.25    0.15    0.084   (slope -0.39)

(NTK: ||Theta_emp - Theta ⊗ I||_F / ||Theta ⊗ I||_F at initialisation; trajectory:
max_t ||e_finite(t) - e_theory(t)||_F / ||e(0)||_F with the theory started from the
finite network's own e(0); Gram: ||dW1^T dW1 - prediction||_F / ||prediction||_F,
no normalisation by width.) A one-off check at n = 8192 gave 0.017 / 0.014 / 0.066
with a slightly different trajectory metric.

The lazy-training deviations of a ReLU network shrink more slowly than n^-1/2 at
these widths (activation patterns flip during training); the same harness with tanh
gives n^-1/2 or faster, so this is the ReLU kink, not the harness.
"""

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from alignlib import kernels as K


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


# --------------------------------------------------------------------------- #
# a finite ReLU MLP in the library's convention, in plain JAX
# --------------------------------------------------------------------------- #


def _mlp_init(key, d, n, depth, k, sigma_b=0.0):
    """W^l (out, in) ~ N(0, 1); biases ~ N(0, sigma_b^2) (zero for sigma_b = 0)."""
    dims = [d] + [n] * (depth - 1) + [k]
    keys = jax.random.split(key, 2 * depth)
    Ws = [
        jax.random.normal(keys[2 * i], (dims[i + 1], dims[i]), dtype=jnp.float64)
        for i in range(depth)
    ]
    bs = [
        sigma_b * jax.random.normal(keys[2 * i + 1], (dims[i + 1],), dtype=jnp.float64)
        for i in range(depth)
    ]
    return Ws, bs


def _mlp_forward(params, X, sigma_w=1.0, pert=None):
    """Returns (outputs (N, k), layer inputs [x^0 .. x^(L-1)], pre-activations)."""
    Ws, bs = params
    x, xs, hs = X, [X], []
    for layer, (W, b) in enumerate(zip(Ws, bs)):
        h = sigma_w * x @ W.T / math.sqrt(W.shape[1]) + b
        if pert is not None:
            h = h + pert[layer]
        hs.append(h)
        if layer < len(Ws) - 1:
            x = jax.nn.relu(h)
            xs.append(x)
    return h, xs, hs


def _sensitivities(params, X, sigma_w=1.0):
    """deltas[o][l]: (N, n_l) array of d f_o(x_i) / d h^l in the finite network."""
    Ws, _ = params
    zeros = [jnp.zeros((X.shape[0], W.shape[0])) for W in Ws]

    def out(pert, o):
        return _mlp_forward(params, X, sigma_w, pert)[0][:, o].sum()

    return [jax.grad(out)(zeros, o) for o in range(Ws[-1].shape[0])]


@functools.partial(jax.jit, static_argnames=("bias",))
def _empirical_ntk(params, X, sigma_w=1.0, bias=True):
    """Finite-width NTK, (N k) x (N k), index (i, o), from the layer-wise identity
    grad_{W^l} f_o(x) = sigma_w / sqrt(fan_in) delta^l_o(x) x^(l-1)T."""
    N = X.shape[0]
    _, xs, _ = _mlp_forward(params, X, sigma_w)
    deltas = _sensitivities(params, X, sigma_w)
    k = len(deltas)
    theta = jnp.zeros((N, k, N, k))
    for layer, x in enumerate(xs):
        c = sigma_w**2 * x @ x.T / x.shape[1] + (1.0 if bias else 0.0)
        D = jnp.stack([deltas[o][layer] for o in range(k)], axis=1)  # (N, k, n)
        theta = theta + c[:, None, :, None] * jnp.einsum("iaj,kbj->iakb", D, D)
    return theta.reshape(N * k, N * k)


@functools.partial(jax.jit, static_argnames=("steps",))
def _train(params, X, Y, lr, steps, sigma_w=1.0):
    """Full-batch GD on mean((f - Y)^2). Returns final params and errors e(0..T)."""

    def loss(p):
        return jnp.mean((_mlp_forward(p, X, sigma_w)[0] - Y) ** 2)

    def step(p, _):
        e = _mlp_forward(p, X, sigma_w)[0] - Y
        g = jax.grad(loss)(p)
        return jax.tree.map(lambda a, b: a - lr * b, p, g), e

    p, es = jax.lax.scan(step, params, None, length=steps)
    e_last = _mlp_forward(p, X, sigma_w)[0] - Y
    return p, jnp.concatenate([es, e_last[None]], axis=0)


def _inputs(N=8, d=5, seed=1):
    X = jax.random.normal(jax.random.PRNGKey(seed), (N, d), dtype=jnp.float64)
    return X / jnp.linalg.norm(X, axis=1, keepdims=True) * math.sqrt(d)


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


# --------------------------------------------------------------------------- #
# closed forms
# --------------------------------------------------------------------------- #


def test_shapes_and_dtypes():
    X = np.random.default_rng(0).normal(size=(6, 2, 3))  # flattened to d = 6
    assert len(K.nngp(X, 4)) == 4
    assert len(K.derivative_kernels(X, 4)) == 3
    assert len(K.layer_input_kernels(X, 4)) == 4
    assert len(K.backward_kernels(X, 4)) == 4
    assert K.derivative_kernels(X, 1) == []
    th = K.ntk(X, 4)
    assert th.shape == (6, 6) and th.dtype == jnp.float64
    np.testing.assert_allclose(th, K.ntk(X.reshape(6, 6), 4), rtol=0, atol=0)
    assert K.ntk(X, 3, X2=X[:2]).shape == (6, 2)


def test_layer1_and_depth1_closed_forms():
    X = np.random.default_rng(1).normal(size=(5, 7))
    sw, sb = 1.3, 0.4
    lin = X @ X.T / 7
    np.testing.assert_allclose(K.layer_input_kernels(X, 3)[0], lin, rtol=1e-14)
    np.testing.assert_allclose(
        K.nngp(X, 1, sigma_w=sw, sigma_b=sb)[0], sw**2 * lin + sb**2, rtol=1e-14
    )
    np.testing.assert_allclose(K.ntk(X, 1, sigma_w=sw), sw**2 * lin + 1, rtol=1e-14)
    np.testing.assert_allclose(
        K.ntk(X, 1, sigma_w=sw, bias_in_ntk=False), sw**2 * lin, rtol=1e-14
    )
    np.testing.assert_allclose(
        K.ntk(X, 1, sigma_w=sw, bias_in_ntk=0.25), sw**2 * lin + 0.25, rtol=1e-14
    )


def test_recursion_special_values():
    # Two orthogonal inputs of equal norm: t = pi/2 at layer 1.
    X = np.array([[1.0, 0.0], [0.0, 1.0]]) * math.sqrt(2)
    sw = 1.5
    C2 = K.layer_input_kernels(X, 2, sigma_w=sw)[1]
    S1 = sw**2  # Sigma^1 diagonal
    np.testing.assert_allclose(C2[0, 0], S1 / 2, rtol=1e-14)  # E[relu(u)^2] = S/2
    np.testing.assert_allclose(C2[0, 1], S1 / (2 * math.pi), rtol=1e-14)
    dot = K.derivative_kernels(X, 2, sigma_w=sw)[0]
    np.testing.assert_allclose(dot, [[0.5, 0.25], [0.25, 0.5]], rtol=1e-14)
    # Opposite inputs: t = pi, relu(u) relu(-u) = 0.
    Y = np.array([[1.0, 2.0], [-1.0, -2.0]])
    np.testing.assert_allclose(K.layer_input_kernels(Y, 2)[1][0, 1], 0.0, atol=1e-15)
    np.testing.assert_allclose(K.derivative_kernels(Y, 2)[0][0, 1], 0.0, atol=1e-15)
    # Diagonal of the derivative kernel is exactly 1/2 at every hidden layer.
    Z = np.random.default_rng(2).normal(size=(4, 3))
    for dot in K.derivative_kernels(Z, 5, sigma_b=0.2):
        np.testing.assert_array_equal(np.diag(dot), 0.5)


def test_arccos_formula_against_gaussian_monte_carlo():
    """E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for a 2x2 covariance, by sampling."""
    X = np.array([[1.0, 0.3, -0.2], [0.4, -1.1, 0.5]])
    sw, sb = 1.2, 0.3
    S = np.asarray(K.nngp(X, 2, sigma_w=sw, sigma_b=sb)[0])
    rng = np.random.default_rng(3)
    z = rng.multivariate_normal(np.zeros(2), S, size=2_000_000)
    r = np.maximum(z, 0)
    step = (z > 0).astype(float)
    mc_c = r.T @ r / len(z)
    mc_dot = step.T @ step / len(z)
    C2 = np.asarray(K.layer_input_kernels(X, 2, sigma_w=sw, sigma_b=sb)[1])
    dot = np.asarray(K.derivative_kernels(X, 2, sigma_w=sw, sigma_b=sb)[0])
    # Monte-Carlo standard error ~ 1e-3 at 2e6 samples.
    np.testing.assert_allclose(mc_c, C2, atol=5e-3)
    np.testing.assert_allclose(mc_dot, dot, atol=3e-3)
    np.testing.assert_allclose(
        K.nngp(X, 2, sigma_w=sw, sigma_b=sb)[1], sw**2 * C2 + sb**2, rtol=1e-14
    )


def test_ntk_is_sum_of_layer_terms_and_psd():
    X = np.random.default_rng(4).normal(size=(7, 3))
    sw, sb, L = 1.1, 0.2, 4
    C = K.layer_input_kernels(X, L, sigma_w=sw, sigma_b=sb)
    dots = K.derivative_kernels(X, L, sigma_w=sw, sigma_b=sb)
    Ks = K.backward_kernels(X, L, sigma_w=sw, sigma_b=sb)
    np.testing.assert_array_equal(Ks[-1], 1.0)
    for layer in range(L - 1):
        expected = np.ones((7, 7))
        for m in range(layer, L - 1):
            expected = expected * sw**2 * np.asarray(dots[m])
        np.testing.assert_allclose(Ks[layer], expected, rtol=1e-13)
    manual = sum((sw**2 * c + 1.0) * k for c, k in zip(C, Ks))
    th = K.ntk(X, L, sigma_w=sw, sigma_b=sb)
    np.testing.assert_allclose(th, manual, rtol=1e-13)
    np.testing.assert_allclose(th, th.T, rtol=1e-14)
    assert np.linalg.eigvalsh(np.asarray(th)).min() > 0


def test_cross_kernels_match_joint_blocks():
    rng = np.random.default_rng(5)
    X, Z = rng.normal(size=(4, 3)), rng.normal(size=(3, 3))
    XZ = np.concatenate([X, Z])
    kw = dict(sigma_w=1.3, sigma_b=0.5)
    np.testing.assert_allclose(K.ntk(X, 3, X2=Z, **kw), K.ntk(XZ, 3, **kw)[:4, 4:],
                               rtol=1e-12)
    for a, b in zip(K.nngp(X, 3, X2=Z, **kw), K.nngp(XZ, 3, **kw)):
        np.testing.assert_allclose(a, b[:4, 4:], rtol=1e-12)
    np.testing.assert_allclose(K.ntk(X, 3, X2=X, **kw), K.ntk(X, 3, **kw), rtol=1e-12)


def test_zero_input_gives_finite_kernels():
    X = np.array([[0.0, 0.0], [1.0, -0.5]])
    th = np.asarray(K.ntk(X, 3))
    assert np.all(np.isfinite(th))
    # relu(0) = 0 and relu'(0) = 0: the zero input only sees the readout bias.
    np.testing.assert_allclose(th[0], [1.0, 1.0], rtol=1e-14)


def test_float32_without_x64():
    with jax.enable_x64(False):
        th = K.ntk(np.random.default_rng(6).normal(size=(4, 3)), 3)
        assert th.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(th)))


def test_bad_arguments_raise():
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match="n_layers"):
        K.ntk(X, 0)
    with pytest.raises(ValueError, match="n_layers"):
        K.nngp(X, 2.0)
    with pytest.raises(ValueError, match="sigma_w"):
        K.ntk(X, 2, sigma_w=0.0)
    with pytest.raises(ValueError, match="sigma_b"):
        K.ntk(X, 2, sigma_b=-1.0)
    with pytest.raises(ValueError, match="X"):
        K.ntk(np.ones(3), 2)
    with pytest.raises(ValueError, match="X2"):
        K.ntk(X, 2, X2=np.ones((2, 5)))
    with pytest.raises(ValueError, match="bias_in_ntk"):
        K.ntk(X, 2, bias_in_ntk=-1.0)
    th = K.ntk(X, 2)
    with pytest.raises(ValueError, match="e0"):
        K.integrated_error(th, np.ones(4), 0.1, 3)
    with pytest.raises(ValueError, match="theta"):
        K.error_trajectory(np.ones((3, 2)), np.ones(3), 0.1, 3)
    with pytest.raises(ValueError, match="steps"):
        K.integrated_error(th, np.ones(3), 0.1, -1)
    with pytest.raises(ValueError, match="dynamics"):
        K.integrated_error(th, np.ones(3), 0.1, 2, dynamics="euler")
    with pytest.raises(ValueError, match="e_sum"):
        K.layer1_gram_prediction(X, np.ones(4), 2, lr=0.1)


# --------------------------------------------------------------------------- #
# dynamics
# --------------------------------------------------------------------------- #


def _dynamics_problem(k=3):
    X = np.random.default_rng(7).normal(size=(6, 4))
    th = np.asarray(K.ntk(X, 3))
    e0 = np.random.default_rng(8).normal(size=(6, k))
    return th, e0


# largest eta * lambda: 0.12 (monotone), 1.15 and 1.85 (oscillating, 1 - x < 0),
# 3.5 (divergent); the closed forms hold in every regime.
@pytest.mark.parametrize("lr", [0.1, 1.0, 1.6, 3.0])
def test_discrete_trajectory_is_matrix_power(lr):
    th, e0 = _dynamics_problem()
    eta = K.gd_step_size(lr, 6, 3)
    assert eta == 2 * lr / 18
    traj = np.asarray(K.error_trajectory(th, e0, lr, 40))
    assert traj.shape == (41, 6, 3)
    e, A = e0.copy(), np.eye(6) - eta * th
    for t in range(41):
        np.testing.assert_allclose(traj[t], e, rtol=1e-9, atol=1e-9 * np.abs(e).max())
        e = A @ e
    E = np.asarray(K.integrated_error(th, e0, lr, 40))
    S = traj[:-1].sum(0)
    np.testing.assert_allclose(E, S, rtol=1e-9, atol=1e-9 * np.abs(S).max())


def test_vector_error_and_n_outputs():
    th, e0 = _dynamics_problem(k=3)
    full = K.integrated_error(th, e0, 0.3, 25)
    col = K.integrated_error(th, e0[:, 1], 0.3, 25, n_outputs=3)
    np.testing.assert_allclose(col, full[:, 1], rtol=1e-12)
    assert K.error_trajectory(th, e0[:, 0], 0.3, 5).shape == (6, 6)


def test_continuous_dynamics_and_reference_form():
    th, e0 = _dynamics_problem()
    lr, T = 0.7, 30
    eta = K.gd_step_size(lr, 6, 3)
    traj = np.asarray(K.error_trajectory(th, e0, lr, T, dynamics="continuous"))
    for t in (0, 7, 30):
        np.testing.assert_allclose(traj[t], scipy.linalg.expm(-eta * t * th) @ e0,
                                   rtol=1e-10, atol=1e-12)
    E = np.asarray(K.integrated_error(th, e0, lr, T, dynamics="continuous"))
    # the derivation page: eps = Theta^-1 (I - exp(-lr' Theta t)) e0 with lr' = eta, eps = eta E
    eps_ref = np.linalg.solve(th, (np.eye(6) - scipy.linalg.expm(-eta * T * th)) @ e0)
    np.testing.assert_allclose(eta * E, eps_ref, rtol=1e-9)
    # small step: discrete sum -> integral
    Ed = np.asarray(K.integrated_error(th, e0, 1e-3, 20000))
    Ec = np.asarray(K.integrated_error(th, e0, 1e-3, 20000, dynamics="continuous"))
    np.testing.assert_allclose(Ed, Ec, rtol=2e-3, atol=2e-3 * np.abs(Ec).max())


def test_singular_theta_and_zero_steps():
    u = np.linalg.qr(np.random.default_rng(9).normal(size=(4, 4)))[0]
    th = u @ np.diag([0.0, 1e-12, 0.5, 3.0]) @ u.T
    e0 = u[:, 0] + 2 * u[:, 1]
    for dyn in ("discrete", "continuous"):
        E = np.asarray(K.integrated_error(th, e0, 0.5, 17, dynamics=dyn))
        np.testing.assert_allclose(E, 17 * e0, rtol=1e-9)  # no decay in null space
        np.testing.assert_array_equal(K.integrated_error(th, e0, 0.5, 0, dynamics=dyn), 0)


# --------------------------------------------------------------------------- #
# layer-1 Gram prediction
# --------------------------------------------------------------------------- #


def test_layer1_gram_exact_for_linear_network():
    """depth 1: f = sigma_w W x / sqrt(d) + b is linear in its parameters, so GD
    follows the kernel dynamics exactly and dW^T dW = eta^2 sw^2/d X^T E E^T X."""
    N, d, k, lr, T, sw = 6, 4, 2, 0.3, 15, 1.4
    X = np.random.default_rng(10).normal(size=(N, d))
    Y = np.random.default_rng(11).normal(size=(N, k))
    p0 = _mlp_init(jax.random.PRNGKey(0), d, 1, 1, k)
    pT, es = _train(p0, jnp.asarray(X), jnp.asarray(Y), lr, T, sw)
    th = K.ntk(X, 1, sigma_w=sw)
    np.testing.assert_allclose(es, K.error_trajectory(th, es[0], lr, T), rtol=1e-10,
                               atol=1e-12)
    E = K.integrated_error(th, es[0], lr, T)
    dW = pT[0][0] - p0[0][0]
    np.testing.assert_allclose(dW.T @ dW, K.layer1_gram_prediction(X, E, 1, lr=lr,
                               sigma_w=sw), rtol=1e-10)


def test_layer1_gram_formula():
    rng = np.random.default_rng(12)
    X, E = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    lr, sw, sb = 0.4, 1.2, 0.1
    eta = 2 * lr / 10
    K1 = np.asarray(K.backward_kernels(X, 3, sigma_w=sw, sigma_b=sb)[0])
    G = np.asarray(K.layer1_gram_prediction(X, E, 3, lr=lr, sigma_w=sw, sigma_b=sb))
    np.testing.assert_allclose(G, eta**2 * sw**2 / 3 * X.T @ (K1 * (E @ E.T)) @ X,
                               rtol=1e-13)
    np.testing.assert_allclose(G, G.T, rtol=1e-14)
    assert np.linalg.eigvalsh(G).min() > -1e-12


# --------------------------------------------------------------------------- #
# finite networks converge to the theory
# --------------------------------------------------------------------------- #


def test_empirical_ntk_harness_matches_full_jacobian():
    """The layer-wise empirical NTK used below equals J J^T (width 32)."""
    X = _inputs(N=4, d=3)
    p = _mlp_init(jax.random.PRNGKey(3), 3, 32, 3, 2, sigma_b=0.3)
    sw = 1.3

    def f(params):
        return _mlp_forward(params, X, sw)[0].reshape(-1)  # index (i, o)

    J = jax.jacrev(f)(p)
    leaves = [a.reshape(8, -1) for a in jax.tree.leaves(J)]
    jjt = sum(a @ a.T for a in leaves)
    np.testing.assert_allclose(_empirical_ntk(p, X, sw), jjt, rtol=1e-12)
    Ws_only = sum(a.reshape(8, -1) @ a.reshape(8, -1).T for a in jax.tree.leaves(J[0]))
    np.testing.assert_allclose(_empirical_ntk(p, X, sw, bias=False), Ws_only, rtol=1e-12)


@pytest.mark.slow
def test_nngp_and_kernels_monte_carlo_at_width():
    """One wide network (n = 4096, 2000 readout units) with sigma_w != 1, sigma_b != 0:
    empirical pre-activation covariances, post-activation kernels, derivative and
    backward kernels, and the NTK all match the closed forms (errors ~ n^-1/2)."""
    d, N, n, L, k, sw, sb = 5, 6, 4096, 3, 2000, 1.3, 0.4
    X = _inputs(N=N, d=d, seed=4)
    p = _mlp_init(jax.random.PRNGKey(5), d, n, L, k, sigma_b=sb)
    f, xs, hs = _mlp_forward(p, X, sw)
    kw = dict(sigma_w=sw, sigma_b=sb)
    # NNGP: hidden layers average over n units, the output over k units.
    for layer, S in enumerate(K.nngp(X, L, **kw)):
        h = hs[layer]
        emp = h @ h.T / h.shape[1]
        assert _rel(emp, S) < (0.06 if layer < L - 1 else 0.08), layer
    for layer, C in enumerate(K.layer_input_kernels(X, L, **kw)):
        x = xs[layer]
        assert _rel(x @ x.T / x.shape[1], C) < 0.06, layer
    for layer, dot in enumerate(K.derivative_kernels(X, L, **kw)):
        a = (hs[layer] > 0).astype(jnp.float64)
        assert _rel(a @ a.T / n, dot) < 0.03, layer
    # backward kernels and NTK of a few output units
    p_small = (p[0][:-1] + [p[0][-1][:2]], p[1][:-1] + [p[1][-1][:2]])
    deltas = _sensitivities(p_small, X, sw)
    for layer, Kl in enumerate(K.backward_kernels(X, L, **kw)):
        for o in range(2):
            D = deltas[o][layer]
            assert _rel(D @ D.T, Kl) < 0.1, (layer, o)
    th = K.ntk(X, L, **kw)
    emp = _empirical_ntk(p_small, X, sw)
    assert _rel(emp, jnp.kron(th, jnp.eye(2))) < 0.05


WIDTHS = (256, 1024, 4096)
SEEDS = 4


@pytest.fixture(scope="module")
def width_sweep():
    """Train depth-3 ReLU MLPs of several widths (full-batch GD, 20 steps, lr 0.5,
    k = 3) and measure the distance to the infinite-width theory. Returns
    {metric: array over widths} (root-mean-square over seeds)."""
    d, N, k, depth, lr, steps = 5, 8, 3, 3, 0.5, 20
    out = {"ntk": [], "trajectory": [], "gram": [], "seconds": []}
    with jax.enable_x64(True):
        X = _inputs(N=N, d=d)
        Y = jax.random.normal(jax.random.PRNGKey(2), (N, k), dtype=jnp.float64)
        th = K.ntk(X, depth)
        th_k = jnp.kron(th, jnp.eye(k))
        for n in WIDTHS:
            t0 = time.perf_counter()
            errs = []
            for seed in range(SEEDS):
                p0 = _mlp_init(jax.random.PRNGKey(100 + seed), d, n, depth, k)
                ntk_err = _rel(_empirical_ntk(p0, X), th_k)
                pT, es = _train(p0, X, Y, lr, steps)
                # theory started from the finite network's own initial error
                traj = K.error_trajectory(th, es[0], lr, steps)
                traj_err = float(
                    jnp.max(jnp.linalg.norm((es - traj).reshape(steps + 1, -1), axis=1))
                    / jnp.linalg.norm(es[0])
                )
                E = K.integrated_error(th, es[0], lr, steps)
                G = K.layer1_gram_prediction(X, E, depth, lr=lr)
                dW1 = pT[0][0] - p0[0][0]  # (n, d)
                errs.append((ntk_err, traj_err, _rel(dW1.T @ dW1, G)))
            rms = np.sqrt(np.mean(np.square(errs), axis=0))
            for name, v in zip(("ntk", "trajectory", "gram"), rms):
                out[name].append(v)
            out["seconds"].append(time.perf_counter() - t0)
    out = {key: np.array(v) for key, v in out.items()}
    print("\nwidth sweep (rms relative error over %d seeds)" % SEEDS)
    for i, n in enumerate(WIDTHS):
        print(f"  n={n:5d}  ntk {out['ntk'][i]:.4f}  trajectory {out['trajectory'][i]:.4f}"
              f"  gram {out['gram'][i]:.4f}  ({out['seconds'][i]:.1f} s)")
    return out


def _slope(errs):
    return float(np.polyfit(np.log(WIDTHS), np.log(errs), 1)[0])


@pytest.mark.slow
def test_empirical_ntk_converges_like_inverse_sqrt_width(width_sweep):
    e = width_sweep["ntk"]
    assert np.all(np.diff(e) < 0), e
    assert e[-1] < 0.05, e  # measured 0.025
    assert -0.75 < _slope(e) < -0.3, _slope(e)  # measured -0.48


@pytest.mark.slow
def test_training_error_approaches_kernel_dynamics(width_sweep):
    e = width_sweep["trajectory"]
    assert np.all(np.diff(e) < 0), e
    assert e[-1] < 0.04, e  # measured 0.021
    assert _slope(e) < -0.25, _slope(e)  # measured -0.38


@pytest.mark.slow
def test_layer1_gram_approaches_prediction(width_sweep):
    e = width_sweep["gram"]
    assert np.all(np.diff(e) < 0), e
    assert e[-1] < 0.15, e  # measured 0.084
    assert _slope(e) < -0.25, _slope(e)  # measured -0.39
