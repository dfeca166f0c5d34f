"""Models: shapes, NTK parameterisation, the authors' batch norm, and clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import cpu_only

import alignlib as al

KEY = jax.random.PRNGKey(0)


def test_shapes():
    x = jnp.ones((5, 8, 8, 1))
    assert al.MLP((8, 8, 1), 16, 3, 10, key=KEY)(x).shape == (5, 10)
    assert al.ConvNet((8, 8, 1), 4, 10, strides=(1, 2, 2), key=KEY)(x).shape == (5, 10)
    assert al.ConvNet((8, 8, 1), 4, 10, strides=(1, 1, 1, 2, 1, 2, 1), key=KEY)(x).shape == (5, 10)
    assert al.RNN(1, 16, key=KEY)(jnp.ones((5, 7, 1))).shape == (5, 7, 1)


def test_ntk_and_standard_parameterisation():
    ntk = al.MLP(100, 400, 1, 1, key=KEY)
    std = al.MLP(100, 400, 1, 1, key=KEY, parameterization="standard")
    w_ntk, w_std = ntk.layers[0], std.layers[0]
    assert w_ntk.multiplier == pytest.approx(0.1) and w_std.multiplier == 1.0
    assert float(jnp.std(w_ntk.weight)) == pytest.approx(1.0, abs=0.02)
    assert float(jnp.std(w_std.weight)) == pytest.approx(0.1, abs=0.002)
    assert float(jnp.abs(w_ntk.bias).max()) == 0.0
    # same function at initialisation up to the random draw's scale
    x = jax.random.normal(KEY, (3, 100))
    assert jnp.allclose(ntk(x), std(x), rtol=1e-5, atol=1e-5)
    conv = al.ConvNet((8, 8, 3), 32, 10, key=KEY)
    assert conv.convs[1].multiplier == pytest.approx(1 / np.sqrt(9 * 32))
    with pytest.raises(ValueError, match="parameterization"):
        al.MLP(4, 4, 1, 1, key=KEY, parameterization="mup")


def test_batch_norm_uses_batch_statistics_per_position():
    h = jax.random.normal(KEY, (50, 4, 4, 3)) * 3 + 2
    out = al.batch_norm(h)
    np.testing.assert_allclose(np.asarray(out.mean(0)), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.var(0)), 1, atol=1e-4)
    # evaluation also uses batch statistics: outputs depend on the rest of the batch
    net = al.ConvNet((8, 8, 1), 4, 10, key=KEY)
    x = jax.random.uniform(KEY, (10, 8, 8, 1))
    assert not jnp.allclose(net(x)[:5], net(x[:5]))


def test_rnn_is_causal_and_scanned():
    rnn = al.RNN(1, 16, key=KEY)
    x = jax.random.bernoulli(KEY, 0.5, (2, 10, 1)).astype(jnp.float32)
    y = rnn(x)
    y2 = rnn(x.at[:, 6:].set(1 - x[:, 6:]))
    np.testing.assert_allclose(np.asarray(y[:, :6]), np.asarray(y2[:, :6]), rtol=1e-6)
    assert not np.allclose(np.asarray(y[:, 6:]), np.asarray(y2[:, 6:]))
    jaxpr = str(jax.make_jaxpr(rnn)(x))
    assert "scan" in jaxpr


@pytest.mark.parametrize("build, message", [
    (lambda: al.MLP((8, 8, 1), 0, 2, 10, key=KEY), "width"),
    (lambda: al.MLP((8, 8, 1), 8, 0, 10, key=KEY), "depth"),
    (lambda: al.MLP((8, 8, 1), 8, 2, 0, key=KEY), "n_outputs"),
    (lambda: al.ConvNet((8, 8, 1), 0, 10, key=KEY), "width"),
    (lambda: al.ConvNet((8, 8, 1), 8, 10, strides=(1, 0), key=KEY), "strides"),
    (lambda: al.ConvNet((8, 8), 8, 10, key=KEY), "input_shape"),
    (lambda: al.RNN(1, -3, key=KEY), "width"),
])
def test_bad_arguments_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_mismatched_input_shape_raises():
    with pytest.raises(ValueError, match="x must have shape"):
        al.MLP((8, 8, 1), 8, 2, 10, key=KEY)(jnp.ones((2, 7, 7, 1)))
    with pytest.raises(ValueError, match="x must have shape"):
        al.ConvNet((8, 8, 1), 8, 10, key=KEY)(jnp.ones((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="x must have shape"):
        al.RNN(1, 8, key=KEY)(jnp.ones((2, 5, 2)))



@pytest.mark.parametrize("strides, shape, rules", [
    ((1, 2), (8, 8, 2), ("backprop", "align_zero", "align_ada", "align_prop", "fa", "dfa")),
    # odd sizes: uneven 'SAME' padding (in .ci/run: a second ConvNet to compile)
    pytest.param((2, 2), (7, 5, 3), ("backprop",), marks=pytest.mark.ci),
])
@cpu_only  # elsewhere conv_same's weight gradient is XLA's convolution: the HLO counts agree
def test_conv_weight_gradient_from_tap_products_equals_autodiff(strides, shape, rules,
                                                                 monkeypatch):
    """On CPU the ConvNet's weight gradient is computed as one matrix product per tap
    (``alignlib.layers.conv_same``); every rule's update equals the one computed with
    XLA's own convolution gradient (plain autodiff of ``lax.conv_general_dilated``)."""
    from alignlib import layers as _layers
    from alignlib.rules import mse

    net = al.ConvNet(shape, 6, 10, key=jax.random.PRNGKey(3), strides=strides)
    x = jax.random.uniform(jax.random.PRNGKey(4), (20, *shape))
    y = jax.random.normal(jax.random.PRNGKey(5), (20, 10))

    def updates():
        out = {}
        for rule in rules:
            r = al.get_rule(rule)
            out[rule] = r.gradient(net, r.init(net, x, jax.random.PRNGKey(6)), x, y, mse)[1]
        return net(x), out, jax.jit(lambda m: al.backprop.gradient(m, None, x, y, mse)[1]
                                    ).lower(net).as_text()

    f_taps, g_taps, hlo_taps = updates()
    with monkeypatch.context() as m:
        m.setattr(_layers, "conv_same", _layers._lax_conv_same)
        f_ref, g_ref, hlo_ref = updates()
    np.testing.assert_array_equal(f_taps, f_ref)
    for rule in rules:
        for a, b in zip(jax.tree.leaves(g_taps[rule]), jax.tree.leaves(g_ref[rule])):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6, err_msg=rule)
    # the weight gradients really are tap products here, not convolutions
    assert hlo_taps.count("stablehlo.convolution") < hlo_ref.count("stablehlo.convolution")
