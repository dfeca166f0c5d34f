"""Finite-width measurements for the paper's theory: lazy training and layerwise alignment.

Full-batch gradient descent on a small set, in any precision (the book uses float64):

* :func:`gradient_descent` trains with any rule and, beside it, accumulates the paper's
  prediction of every layer's weight change,
  ``dW_pred^l = - sum_t lr * sum_i delta0_i^l (x0_i^(l-1))^T`` (the layerwise theorem),
  which is exactly minus the learning rate times the Align-zero pseudo-gradient at the
  current error, summed over steps;
* :func:`mlp_ntk` is the empirical NTK of an MLP, ``Theta(x, x') = sum_l <df/dW^l(x),
  df/dW^l(x')> + <df/db^l(x), df/db^l(x')>``, built layer by layer from sensitivities and
  layer inputs so that wide networks never materialise the full Jacobian.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from alignlib import kernels
from alignlib.models import MLP
from alignlib.rules import LossFn, get_rule, mse, weighted_layers
from alignlib.statistics import power_law_fit
from alignlib.training import make_step

Array = jax.Array


class GDRun(NamedTuple):
    """Result of :func:`gradient_descent`.

    ``model``: the trained network; ``losses``: ``(steps,)`` loss before each step;
    ``error_sum``: ``(N, k)`` sum over steps of the error ``f(x; W(t)) - y`` before each
    step; ``predicted``: pytree shaped like the model's parameters holding ``dW_pred``
    (``None`` unless requested); ``outputs``: ``(N, k)`` outputs after training.
    """

    model: object
    losses: Array
    error_sum: Array
    predicted: object
    outputs: Array


def gradient_descent(model, rule, x: Array, y: Array, *, lr: float, steps: int,
                     loss_fn: LossFn = mse, key: Array | None = None,
                     predict: bool = False) -> GDRun:
    """Full-batch gradient descent on ``(x, y)`` with ``rule`` for ``steps`` steps.

    With ``predict=True`` the paper's prediction of the weight change is accumulated from
    the same errors: ``dW_pred = - lr * sum_t g_align_zero(W(t))``.
    """
    rule = get_rule(rule)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    key = jax.random.PRNGKey(0) if key is None else key
    state = rule.init(model, x, key)

    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=lr)
    sgd_step = make_step(rule, optimizer, loss_fn, predict)

    # Data, initial network and rule state are arguments, not closed-over constants, so
    # XLA does not try to constant-fold the whole forward pass at compile time.
    @eqx.filter_jit
    def run(model, initial, state, x, y):
        def step(carry, _):
            m, o, pred, err = carry
            out = m(x)
            m, o, loss, pred = sgd_step(m, state, o, x, y, initial, pred)
            return (m, o, pred, err + (out - y)), loss

        params = eqx.filter(initial, eqx.is_inexact_array)
        zeros = jax.tree.map(jnp.zeros_like, params)
        (m, _, pred, err), losses = jax.lax.scan(
            step, (model, optimizer.init(params), zeros, jnp.zeros_like(y)), None,
            length=steps)
        return m, pred, err, losses, m(x)

    m, pred, err, losses, outputs = run(model, model, state, x, y)
    return GDRun(m, losses, err, pred if predict else None, outputs)


def weight_change(model, initial) -> list[Array]:
    """``W^l(t) - W^l(0)`` for every site (weights only, forward order)."""
    return [s.weight - s0.weight for s, s0 in zip(weighted_layers(model), weighted_layers(initial))]


def relative_weight_change(model, initial) -> list[float]:
    """``||W^l(t) - W^l(0)||_F / ||W^l(0)||_F`` per site."""
    return [float(jnp.linalg.norm(d) / jnp.linalg.norm(s0.weight))
            for d, s0 in zip(weight_change(model, initial), weighted_layers(initial))]


def relative_distance(a: Array, b: Array) -> float:
    """``||a - b||_F / ||a||_F``."""
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a))


def mlp_ntk(model: MLP, x: Array, output: int = 0) -> Array:
    """Empirical NTK ``(N, N)`` of one output unit of an MLP (weights and biases).

    For a dense site ``h = m W a + beta b`` with sensitivity ``delta = df/dh``:
    ``<df/dW(x), df/dW(x')> = m^2 (a . a') (delta . delta')`` and
    ``<df/db(x), df/db(x')> = beta^2 delta . delta'``.
    """
    if not isinstance(model, MLP):
        raise ValueError(f"mlp_ntk needs an MLP, got {type(model).__name__}")
    a = x.reshape(x.shape[0], -1)
    inputs, pre = [], []
    for i, layer in enumerate(model.weighted_layers()):
        inputs.append(a)
        h = layer(a)
        pre.append(h)
        a = jax.nn.relu(h)

    def f_from(perturb):
        a = x.reshape(x.shape[0], -1)
        for layer, p in zip(model.weighted_layers(), perturb):
            h = layer(a) + p
            a = jax.nn.relu(h)
        return h[:, output]

    zero = [jnp.zeros_like(h) for h in pre]
    _, vjp = jax.vjp(f_from, zero)
    # f(x_i) depends only on its own row, so one vjp with ones gives every delta_i.
    deltas = vjp(jnp.ones(x.shape[0], dtype=pre[0].dtype))[0]
    theta = jnp.zeros((x.shape[0], x.shape[0]), dtype=pre[0].dtype)
    for layer, a_in, d in zip(model.weighted_layers(), inputs, deltas):
        dd = d @ d.T
        theta = theta + layer.multiplier ** 2 * (a_in @ a_in.T) * dd
        if layer.bias is not None:
            theta = theta + layer.bias_multiplier ** 2 * dd
    return theta


def output_distance(outputs: Array, reference: Array, reference_start: Array) -> float:
    """``||f - f_ref||_F / ||f_ref - f_ref(0)||_F``: distance between two trained networks'
    outputs relative to how far the reference moved."""
    return float(jnp.linalg.norm(outputs - reference)
                 / jnp.linalg.norm(reference - reference_start))


# ----------------------------------------------------------------------------- sweeps

THEORY_RULES = ("align_zero", "align_ada", "align_prop", "fa", "dfa", "readout")


def fitted_slopes(table, x: str, y: str = "value", by: tuple[str, ...] = ("metric",)):
    """Least-squares slope of ``log y`` against ``log x`` for each group of ``by``."""
    import pandas as pd

    rows = []
    for key, group in table.groupby(list(by)):
        key = key if isinstance(key, tuple) else (key,)
        group = group[group[y] > 0]
        if group[x].nunique() < 2:
            continue
        slope = power_law_fit(group[x], group[y])["slope"]
        rows.append({**dict(zip(by, key)), "slope": slope})
    return pd.DataFrame(rows)


def width_sweep(x: Array, y: Array, widths, *, depth: int = 2, lr: float = 1.0,
                steps: int = 300, seed: int = 0, rules=THEORY_RULES,
                progress: bool = True) -> dict:
    """Train one MLP per width with full-batch gradient descent and measure the theory.

    For every width: backprop with the accumulated prediction ``dW_pred``; per layer the
    relative weight change (Frobenius and spectral norm), the relative distance
    ``||dW - dW_pred|| / ||dW||``, the alignment score of ``dW`` with ``dW_pred`` and of
    the shuffled control; the relative change of the empirical NTK; and, for each rule in
    ``rules``, the trained outputs (same initialisation). Returns tidy DataFrames:
    ``layers`` (width, layer, metric, value), ``network`` (width, metric, value),
    ``outputs`` (width, rule, example, output, value) and the per-width training
    ``error_sum`` for the infinite-width comparison, plus the trained backprop models
    (``models``: width -> (initial, trained)).
    """
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from alignlib.alignment import alignment_score, shuffled_update

    layer_rows, net_rows, out_rows = [], [], []
    models = {}
    theta_inf = kernels.ntk(x, n_layers=depth + 1)  # weight layers, the readout included
    for width in tqdm(list(widths), desc="widths", disable=None if progress else True, leave=False):
        key = jax.random.PRNGKey(seed)
        m0 = MLP(x.shape[1:], width, depth, y.shape[-1], key=key)
        run = gradient_descent(m0, "backprop", x, y, lr=lr, steps=steps, predict=True)
        models[width] = (m0, run)
        changes = weight_change(run.model, m0)
        predicted = [s.weight for s in run.predicted.weighted_layers()]
        for layer, (dw, dp, s0, s) in enumerate(
                zip(changes, predicted, weighted_layers(m0), weighted_layers(run.model)), start=1):
            shuffled = shuffled_update(s.weight, s0.weight, jax.random.PRNGKey(seed + layer))
            metrics = {
                "relative_change_fro": float(jnp.linalg.norm(dw) / jnp.linalg.norm(s0.weight)),
                "relative_change_op": float(jnp.linalg.norm(dw, 2) / jnp.linalg.norm(s0.weight, 2)),
                "prediction_distance": relative_distance(dw, dp),
                "alignment": alignment_score(dw, dp),
                "alignment_shuffled": alignment_score(shuffled, dp),
            }
            layer_rows += [{"width": width, "layer": layer, "metric": k, "value": v}
                           for k, v in metrics.items()]
        theta0, theta1 = mlp_ntk(m0, x), mlp_ntk(run.model, x)
        # Infinite width: the analytic NTK, the closed-form integrated error started from
        # this network's own initial error, and the layer-1 Gram prediction built on them.
        e0 = m0(x) - y
        error_sum = kernels.integrated_error(theta_inf, e0, lr, steps)
        gram_pred = kernels.layer1_gram_prediction(x, error_sum, n_layers=depth + 1, lr=lr)
        gram = changes[0].T @ changes[0]
        net_rows += [
            {"width": width, "metric": "ntk_change", "value": relative_distance(theta0, theta1)},
            {"width": width, "metric": "ntk_vs_analytic", "value": relative_distance(theta_inf, theta0)},
            {"width": width, "metric": "layer1_gram_vs_analytic",
             "value": relative_distance(gram_pred, gram)},
            {"width": width, "metric": "error_sum_vs_analytic",
             "value": relative_distance(error_sum, run.error_sum)},
            {"width": width, "metric": "final_loss", "value": float(mse(run.outputs, y))},
            {"width": width, "metric": "initial_loss", "value": float(run.losses[0])},
        ]
        outputs = {"initial": m0(x), "backprop": run.outputs}
        for rule in rules:
            outputs[rule] = gradient_descent(m0, rule, x, y, lr=lr, steps=steps).outputs
        for rule, out in outputs.items():
            out = np.asarray(out)
            out_rows += [{"width": width, "rule": rule, "example": i, "output": j,
                          "value": float(out[i, j])}
                         for i in range(out.shape[0]) for j in range(out.shape[1])]
    return {"layers": pd.DataFrame(layer_rows), "network": pd.DataFrame(net_rows),
            "outputs": pd.DataFrame(out_rows), "models": models}


def trajectory_distances(outputs):
    """From :func:`width_sweep`'s ``outputs`` table: each rule's distance to backprop and
    to readout-only training, relative to how far backprop moved the outputs."""
    import numpy as np
    import pandas as pd

    rows = []
    for width, group in outputs.groupby("width"):
        arrays = {rule: g.sort_values(["example", "output"]).value.to_numpy()
                  for rule, g in group.groupby("rule")}
        scale = np.linalg.norm(arrays["backprop"] - arrays["initial"])
        for rule, out in arrays.items():
            if rule in ("initial", "backprop"):
                continue
            for reference in ("backprop", "readout"):
                if reference in arrays and reference != rule:
                    rows.append({"width": width, "rule": rule, "reference": reference,
                                 "value": float(np.linalg.norm(out - arrays[reference]) / scale)})
    return pd.DataFrame(rows)
