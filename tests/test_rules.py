"""Learning rules: exact equalities at initialisation, and each rule after training equals
an independent computation of its definition (the book's derivation page)."""


import equinox as eqx
import jax
import jax.numpy as jnp
import pytest
from helpers import rel_err
from unrolled_rnn import unrolled

import alignlib as al
from alignlib import rules as R


@pytest.fixture(autouse=True, scope="module")
def _jit_rule_gradients():
    """Run every rule's gradient compiled (eager op-by-op dispatch is slow on CPU)."""
    originals = {name: rule for name, rule in R.RULES.items()}
    for name, rule in originals.items():
        setattr(R, name, rule._replace(gradient=eqx.filter_jit(rule.gradient)))
    yield
    for name, rule in originals.items():
        setattr(R, name, rule)


def make_case(arch: str, key):
    k_model, k_x, k_y = jax.random.split(key, 3)
    if arch == "mlp":
        model = al.MLP((6, 6, 1), 48, 2, 4, key=k_model)
        x = jax.random.uniform(k_x, (20, 6, 6, 1))
        y = jax.random.normal(k_y, (20, 4))
        return model, x, y, al.mse
    if arch == "conv":
        model = al.ConvNet((6, 6, 2), 8, 4, strides=(1, 2, 2), key=k_model)
        x = jax.random.uniform(k_x, (20, 6, 6, 2))
        y = jax.random.normal(k_y, (20, 4))
        return model, x, y, al.mse
    model = al.RNN(1, 24, key=k_model)
    x = jax.random.bernoulli(k_x, 0.5, (10, 9, 1)).astype(jnp.float32)
    y = jax.random.normal(k_y, (10, 9, 1))
    return model, x, y, al.sequence_mse


def train_a_little(model, x, y, loss_fn, steps=5, lr=0.5):
    """Move the weights away from initialisation with a few backprop steps."""
    for _ in range(steps):
        _, g = R.backprop.gradient(model, None, x, y, loss_fn)
        model = eqx.apply_updates(model, jax.tree.map(lambda a: -lr * a, g))
    return model


ARCHS = ["mlp", "conv", "rnn"]


@pytest.mark.parametrize("arch, x64, tol", [
    # the ConvNet in float32 (20 s, mostly compiling) runs in .ci/run; in float64 here
    pytest.param(arch, x64, tol, marks=pytest.mark.ci) if arch == "conv" and not x64
    else (arch, x64, tol)
    for arch in ARCHS for x64, tol in [(False, 1e-5), (True, 1e-10)]])
def test_align_rules_equal_backprop_at_initialisation(arch, x64, tol):
    with jax.enable_x64(x64):
        model, x, y, loss_fn = make_case(arch, jax.random.PRNGKey(0))
        assert model.readout.weight.dtype == (jnp.float64 if x64 else jnp.float32)
        loss_bp, g_bp = R.backprop.gradient(model, None, x, y, loss_fn)
        for rule in (R.align_zero, R.align_ada, R.align_prop):
            state = rule.init(model, x, jax.random.PRNGKey(1))
            loss, g = rule.gradient(model, state, x, y, loss_fn)
            assert float(loss) == pytest.approx(float(loss_bp), rel=tol)
            assert rel_err(g, g_bp) < tol, rule.name
        for rule in (R.fa, R.dfa):
            state = rule.init(model, x, jax.random.PRNGKey(1))
            _, g = rule.gradient(model, state, x, y, loss_fn)
            assert rel_err(g, g_bp) > 0.1, rule.name


@pytest.mark.parametrize("arch", ARCHS)
def test_align_rules_differ_from_backprop_after_training(arch):
    with jax.enable_x64(True):
        model0, x, y, loss_fn = make_case(arch, jax.random.PRNGKey(0))
        model = train_a_little(model0, x, y, loss_fn, lr=0.02 if arch == "rnn" else 0.5)
        assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(eqx.filter(model, eqx.is_array)))
        _, g_bp = R.backprop.gradient(model, None, x, y, loss_fn)
        for rule in (R.align_zero, R.align_ada, R.align_prop):
            _, g = rule.gradient(model, model0, x, y, loss_fn)
            assert rel_err(g, g_bp) > 1e-6, rule.name


# the ConvNet case, mostly compilation, runs in .ci/run (the MLP and RNN cases here)
@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.ci) if a == "conv" else a
                                  for a in ARCHS])
def test_align_zero_is_initial_jacobian_times_current_error(arch):
    with jax.enable_x64(True):
        model0, x, y, loss_fn = make_case(arch, jax.random.PRNGKey(2))
        model = train_a_little(model0, x, y, loss_fn, lr=0.02 if arch == "rnn" else 0.5)
        params0, static = eqx.partition(model0, eqx.is_inexact_array)
        out0, vjp = jax.vjp(lambda p: eqx.combine(p, static)(x), params0)
        dloss_df = jax.grad(lambda f: loss_fn(f, y))(model(x))
        (expected,) = vjp(dloss_df)
        _, g = R.align_zero.gradient(model, model0, x, y, loss_fn)
        assert rel_err(g, expected) < 1e-12


# ---------------------------------------------------------------- independent MLP algebra
# A plain-jax MLP that mirrors the library's: h^l = m_l W^l a^(l-1) + b^l, a^l = relu(h^l).


def mlp_params(model):
    s = R.weighted_layers(model)
    return [(site.weight, site.bias, site.multiplier) for site in s]


def mlp_forward(params, x, perturb=None):
    """Returns output, layer inputs a^(l-1), pre-activations h^l."""
    a = x.reshape(x.shape[0], -1)
    inputs, pre = [], []
    for l, (w, b, m) in enumerate(params):
        inputs.append(a)
        h = m * a @ w.T + b
        if perturb is not None:
            h = h + perturb[l]
        pre.append(h)
        a = jax.nn.relu(h)
    return pre[-1], inputs, pre


def sensitivities(params, x, cotangent):
    """delta^l = d f / d h^l applied to ``cotangent``, by perturbing pre-activations."""
    _, _, pre = mlp_forward(params, x)
    zeros = [jnp.zeros_like(h) for h in pre]
    _, vjp = jax.vjp(lambda p: mlp_forward(params, x, p)[0], zeros)
    return vjp(cotangent)[0]


def weight_updates(params, deltas, inputs):
    return [(m * d.T @ a, d.sum(0)) for (w, b, m), d, a in zip(params, deltas, inputs)]


def grads_list(g):
    return [(s.weight, s.bias) for s in g.weighted_layers()]


@pytest.fixture
def trained_mlp():
    with jax.enable_x64(True):
        model0, x, y, loss_fn = make_case("mlp", jax.random.PRNGKey(3))
        model = train_a_little(model0, x, y, loss_fn, steps=10, lr=1.0)
        yield model0, model, x, y, loss_fn


def test_align_ada_mlp_is_initial_sensitivity_times_current_input(trained_mlp):
    model0, model, x, y, loss_fn = trained_mlp
    with jax.enable_x64(True):
        p0, p = mlp_params(model0), mlp_params(model)
        out, inputs, _ = mlp_forward(p, x)
        dloss_df = jax.grad(lambda f: loss_fn(f, y))(out)
        deltas0 = sensitivities(p0, x, dloss_df)
        expected = weight_updates(p, deltas0, inputs)
        _, g = R.align_ada.gradient(model, model0, x, y, loss_fn)
        assert rel_err(grads_list(g), expected) < 1e-12
        # and it is not Align-zero's (initial inputs) nor backprop's
        _, g_zero = R.align_zero.gradient(model, model0, x, y, loss_fn)
        assert rel_err(grads_list(g), grads_list(g_zero)) > 1e-4


def backward_with(params, weights_back, x, dloss_df):
    """Backprop through current activations but with ``weights_back`` carrying the error."""
    out, inputs, pre = mlp_forward(params, x)
    deltas = [None] * len(params)
    deltas[-1] = dloss_df
    for l in range(len(params) - 2, -1, -1):
        m_next = params[l + 1][2]
        deltas[l] = (m_next * deltas[l + 1] @ weights_back[l + 1]) * (pre[l] > 0)
    return deltas, inputs


def test_align_prop_and_fa_mlp_match_manual_backward(trained_mlp):
    model0, model, x, y, loss_fn = trained_mlp
    with jax.enable_x64(True):
        p = mlp_params(model)
        out, _, _ = mlp_forward(p, x)
        dloss_df = jax.grad(lambda f: loss_fn(f, y))(out)
        # Align-prop: initial weights in the backward pass
        deltas, inputs = backward_with(p, [w for w, _, _ in mlp_params(model0)], x, dloss_df)
        _, g = R.align_prop.gradient(model, model0, x, y, loss_fn)
        assert rel_err(grads_list(g), weight_updates(p, deltas, inputs)) < 1e-12
        # FA: fixed random weights in the backward pass
        state = R.fa.init(model, x, jax.random.PRNGKey(7))
        deltas, inputs = backward_with(p, list(state), x, dloss_df)
        _, g = R.fa.gradient(model, state, x, y, loss_fn)
        assert rel_err(grads_list(g), weight_updates(p, deltas, inputs)) < 1e-12
        # the feedback weights are a fresh draw of the forward distribution
        for b, site in zip(state, R.weighted_layers(model0)):
            assert b.shape == site.weight.shape
            assert not jnp.allclose(b, site.weight)
            assert abs(float(jnp.std(b)) - 1.0) < 0.15


def test_dfa_mlp_matches_manual_direct_feedback(trained_mlp):
    model0, model, x, y, loss_fn = trained_mlp
    with jax.enable_x64(True):
        p = mlp_params(model)
        out, inputs, pre = mlp_forward(p, x)
        e = jax.grad(lambda f: loss_fn(f, y))(out)
        state = R.dfa.init(model, x, jax.random.PRNGKey(5))
        assert state[0] is None  # first layer is fed by data
        deltas = [None] * len(p)
        deltas[-1] = e
        for l in range(len(p) - 1):
            b = state[l + 1]  # delivered at the input of the next site = output of layer l
            assert b.shape == (p[l][0].shape[0], e.shape[-1])
            deltas[l] = (e @ b.T) * (pre[l] > 0)
        _, g = R.dfa.gradient(model, state, x, y, loss_fn)
        assert rel_err(grads_list(g), weight_updates(p, deltas, inputs)) < 1e-12


def test_readout_rule_trains_only_the_readout(trained_mlp):
    model0, model, x, y, loss_fn = trained_mlp
    with jax.enable_x64(True):
        _, g_bp = R.backprop.gradient(model, None, x, y, loss_fn)
        _, g = R.readout.gradient(model, None, x, y, loss_fn)
        assert rel_err((g.readout.weight, g.readout.bias),
                       (g_bp.readout.weight, g_bp.readout.bias)) < 1e-12
        for layer in g.layers:
            assert float(jnp.abs(layer.weight).max()) == 0.0


# ---------------------------------------------------------------- ConvNet: authors' construction


def conv_forward_authors(model, model0, x):
    """Align-ada written out like the authors' script, ``x_lin + x - stop_gradient(x)``
    after every block, but mixing before the ReLU at every block (their script mixes the
    last conv block only after its ReLU and pooling; see the book's differences page)."""
    sg = jax.lax.stop_gradient
    a, a_lin = x, x
    for c, c0 in zip(model.convs, model0.convs):
        h = al.batch_norm(c.linear(c.weight, sg(a)) + c.bias)
        h_lin = al.batch_norm(c0.linear(sg(c0.weight), a_lin) + sg(c0.bias))
        a, a_lin = jax.nn.relu(h), jax.nn.relu(h_lin + h - sg(h))
    pooled, pooled_lin = jnp.mean(a, (1, 2)), jnp.mean(a_lin, (1, 2))
    r, r0 = model.readout, model0.readout
    out = r.linear(r.weight, sg(pooled)) + r.bias
    out_lin = r0.linear(sg(r0.weight), pooled_lin) + sg(r0.bias)
    return out, out_lin + out - sg(out)


def test_align_ada_convnet_matches_authors_construction():
    with jax.enable_x64(True):
        model0, x, y, loss_fn = make_case("conv", jax.random.PRNGKey(4))
        model = train_a_little(model0, x, y, loss_fn, steps=5, lr=1.0)

        def loss(m):
            out, out_lin = conv_forward_authors(m, model0, x)
            return loss_fn(jax.lax.stop_gradient(out) + out_lin - jax.lax.stop_gradient(out_lin), y)

        expected = eqx.filter_grad(loss)(model)
        _, g = R.align_ada.gradient(model, model0, x, y, loss_fn)
        assert rel_err(g, expected) < 1e-12


# ---------------------------------------------------------------- RNN through time


def test_align_ada_rnn_is_initial_sensitivity_times_current_input():
    with jax.enable_x64(True):
        model0, x, y, loss_fn = make_case("rnn", jax.random.PRNGKey(6))
        model = train_a_little(model0, x, y, loss_fn, steps=5, lr=0.02)
        out, hs, prev, _ = unrolled(model, x)
        hs = jnp.stack(hs, 1)
        e = jax.grad(lambda f: loss_fn(f, y))(out)
        _, _, _, pre0 = unrolled(model0, x)
        zeros = [jnp.zeros_like(z) for z in pre0]
        _, vjp = jax.vjp(lambda p: unrolled(model0, x, p)[0], zeros)
        deltas0 = vjp(e)[0]  # includes the readout's direct term at every step
        m_rec, m_in = model.recurrent.multiplier, model.input.multiplier
        d_rec = sum(m_rec * d.T @ h for d, h in zip(deltas0, prev))
        d_in = sum(m_in * d.T @ x[:, t] for t, d in enumerate(deltas0))
        d_b = sum(d.sum(0) for d in deltas0)
        d_out = model.readout.multiplier * jnp.einsum("bto,btn->on", e, hs)
        _, g = R.align_ada.gradient(model, model0, x, y, loss_fn)
        assert rel_err([g.recurrent.weight, g.input.weight, g.input.bias, g.readout.weight],
                       [d_rec, d_in, d_b, d_out]) < 1e-12
        # the unrolled loop agrees with the scanned model
        assert rel_err(out, model(x)) < 1e-12


@pytest.mark.parametrize("arch", ARCHS)
def test_feedback_weights_are_independent_even_with_the_model_key(arch):
    model, x, _, _ = make_case(arch, jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(0)
    for b, s in zip(R.fa.init(model, x, key), R.weighted_layers(model)):
        assert s.init_std == 0 or not jnp.allclose(b, s.weight)
    model = al.MLP(4, 8, 2, 3, key=key)  # built with the very key the rule gets
    for b, s in zip(R.fa.init(model, jnp.ones((2, 4)), key), R.weighted_layers(model)):
        assert float(jnp.abs(b - s.weight).max()) > 0.1


def test_unknown_rule_lists_valid_names():
    with pytest.raises(ValueError, match="align_ada.*align_prop"):
        R.get_rule("align-ada")
    assert R.get_rule("dfa").name == "dfa"
    assert R.get_rule(R.backprop) is R.backprop
