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

The chapter (``book/theory.ipynb``) hands the tables of :func:`width_sweep` and
:func:`trajectory_distances` to :func:`analyse`, which fits the power laws in width (a
frozen :class:`Analysis` of tidy tables); :func:`claims` turns them into the chapter's
scorecard records. The page's figures, its table and the numbers its prose quotes come
from :mod:`alignlib.experiments.theory_figures`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from alignlib import claims as C
from alignlib import kernels
from alignlib.experiments.plotting import RULE_LABELS
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


def trajectory_distances(outputs: pd.DataFrame) -> pd.DataFrame:
    """From :func:`width_sweep`'s ``outputs`` table: each rule's distance to backprop and
    to readout-only training, relative to how far backprop moved the outputs,
    ``||f_rule - f_ref||_F / ||f_backprop(T) - f(0)||_F``. Columns ``width, rule,
    reference, value``."""
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


# ----------------------------------------------------------------------------- analysis

#: A power law ``n^p`` counts as shown when the fitted slope's whole 95 % interval lies
#: within ``p +- SLOPE_TOLERANCE``.
SLOPE_TOLERANCE = 0.2
#: "Rises toward 1": every layer's alignment score at least this at the widest width.
ALIGNED = 0.95
#: "Stays low": every layer's shuffled control at most this at the widest width.
CONTROL_LOW = 0.3

#: The labels (``:name:``) of the page's figures that the claims point to.
FIGURES = {"lazy": "fig-theory-lazy", "layerwise": "fig-theory-layerwise",
           "infinite_width": "fig-theory-infinite-width",
           "trajectories": "fig-theory-trajectories"}

ALIGN_RULES = ("align_zero", "align_ada", "align_prop")
FEEDBACK_RULES = ("fa", "dfa")
#: The metrics of :func:`width_sweep`'s ``network`` table that compare the finite network
#: with the infinite-width formulas.
INFINITE_WIDTH_METRICS = ("layer1_gram_vs_analytic", "ntk_vs_analytic", "error_sum_vs_analytic")
#: The ``series`` of the network-wide metrics in :attr:`Analysis.slopes`.
NETWORK = "network"


def layer_name(layer: int, readout: int) -> str:
    """How the page names weighted layer ``layer`` (1-based, forward order) of a network
    whose readout is layer ``readout``: ``"layer 1"``, ``"layer 2"``, ..., ``"readout"``."""
    return "readout" if layer == readout else f"layer {layer}"


def power_law_slopes(table: pd.DataFrame, by, x: str = "width", y: str = "value",
                     confidence: float = 0.95) -> pd.DataFrame:
    """The exponent of the power law ``y ~ x^slope`` for each group ``by`` of a tidy table.

    The mean of ``y`` at each ``x``, then the least-squares slope of ``log y`` against
    ``log x`` with its Student-t interval (:func:`alignlib.statistics.power_law_fit`): the
    dashed line of the figures. Columns ``*by, slope, low, high, n``, with ``n`` the number
    of ``x`` whose mean is finite and positive; the bounds are NaN below 3 of them, the
    slope below 2."""
    by = list(by)
    rows = []
    for key, group in table.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        means = group.groupby(x, as_index=False)[y].mean()
        fit = power_law_fit(means[x], means[y], confidence)
        rows.append({**dict(zip(by, key)), "slope": fit["slope"], "low": fit["low"],
                     "high": fit["high"], "n": fit["n"]})
    return pd.DataFrame(rows, columns=[*by, "slope", "low", "high", "n"])


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What :func:`analyse` returns (tidy tables).

    ``layers``: :func:`width_sweep`'s per-layer table with the page's layer names,
    ``width, layer, metric, value, layer_name`` (metrics ``relative_change_fro``,
    ``relative_change_op``, ``prediction_distance``, ``alignment``,
    ``alignment_shuffled``); ``network``: its network-wide table, ``width, metric,
    value`` (``ntk_change``, ``ntk_vs_analytic``, ``layer1_gram_vs_analytic``,
    ``error_sum_vs_analytic``, ``initial_loss``, ``final_loss``); ``losses``: ``width,
    initial_loss, final_loss``; ``trajectories``: :func:`trajectory_distances` with
    ``pair`` (e.g. ``"FA to readout only"``), ``width, rule, reference, value, pair``;
    ``slopes``: the power law in width of every curve (:func:`power_law_slopes`),
    ``metric, series, slope, low, high, n``: per layer metric with ``series`` the layer
    name, per network metric with ``series`` :data:`NETWORK`, and the output distances
    (``metric`` ``output_distance``) with ``series`` the pair.
    """

    layers: pd.DataFrame
    network: pd.DataFrame
    losses: pd.DataFrame
    trajectories: pd.DataFrame
    slopes: pd.DataFrame

    @property
    def widest(self) -> int:
        return int(self.layers.width.max())

    @property
    def narrowest(self) -> int:
        return int(self.layers.width.min())

    @property
    def layer_names(self) -> dict[int, str]:
        """``{layer: name}`` in forward order."""
        pairs = self.layers[["layer", "layer_name"]].drop_duplicates("layer")
        return dict(zip(pairs.layer.astype(int), pairs.layer_name))


def analyse(layers: pd.DataFrame, network: pd.DataFrame,
            trajectories: pd.DataFrame) -> Analysis:
    """Reduce :func:`width_sweep`'s ``layers`` and ``network`` tables and
    :func:`trajectory_distances`' table (columns as there) to an :class:`Analysis`. The
    tables keep their row index, so that the figures' data files list the rows they plot."""
    readout = int(layers.layer.max())
    layers = layers.assign(layer_name=layers.layer.map(lambda layer: layer_name(layer, readout)))
    loss = network.pivot_table(index="width", columns="metric", values="value")
    losses = pd.DataFrame({"width": loss.index, "initial_loss": loss.initial_loss.values,
                           "final_loss": loss.final_loss.values})
    trajectories = trajectories.assign(pair=trajectories.rule.map(RULE_LABELS) + " to "
                                       + trajectories.reference.map(RULE_LABELS))
    slopes = pd.concat([
        power_law_slopes(layers, ["metric", "layer_name"]).rename(columns={"layer_name": "series"}),
        power_law_slopes(network, ["metric"]).assign(series=NETWORK),
        power_law_slopes(trajectories.assign(metric="output_distance"), ["metric", "pair"])
        .rename(columns={"pair": "series"}),
    ], ignore_index=True)[["metric", "series", "slope", "low", "high", "n"]]
    return Analysis(layers, network, losses, trajectories, slopes)


def fits(a: Analysis, metric: str, series) -> dict[str, tuple[float, float, float, int]]:
    """``{series: (slope, low, high, n)}`` of ``metric`` in :attr:`Analysis.slopes`, in
    the order of ``series``; a series not measured is left out."""
    table = a.slopes[a.slopes.metric == metric].set_index("series")
    return {s: (float(table.slope[s]), float(table.low[s]), float(table.high[s]), int(table.n[s]))
            for s in series if s in table.index}


def slope(a: Analysis, metric: str, series: str = NETWORK) -> float:
    """The fitted exponent of ``metric`` (:attr:`Analysis.slopes`); NaN if not measured."""
    found = fits(a, metric, [series])
    return found[series][0] if found else float("nan")


def value_at(table: pd.DataFrame, width: int, metric: str, **where) -> float:
    """The one ``value`` of a tidy table (columns ``width, metric, value, ...``) at
    ``width`` and ``metric`` and the column values ``where`` (e.g. ``layer=1``)."""
    rows = table[(table.width == width) & (table.metric == metric)]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return float(rows.value.item())


# ----------------------------------------------------------------------------- claims

def power_law_verdict(p: float, tolerance: float = SLOPE_TOLERANCE):
    """The verdict on fitted slopes ``[(slope, low, high, n), ...]`` against ``n^p``: each
    slope's interval, as an interval of ``|slope - p|``, must lie below ``tolerance``
    (wholly above it: the claim fails; across it: undecided)."""
    def judge(slopes) -> str:
        return C.verdict_of_intervals(
            [(max(0.0, low - p, p - high), max(abs(low - p), abs(high - p)))
             for _, low, high, _ in slopes], tolerance, above=False)
    return judge


def falls_verdict(slopes) -> str:
    """The verdict on falling with width: each slope's interval ``(low, high)`` below 0."""
    return C.verdict_of_intervals([(low, high) for _, low, high, _ in slopes], 0.0, above=False)


def slope_claim(claim: str, statement: str, quantity: str, found: dict, expectation: str,
                judge, figure: str, *, profile: str, missing: str = "") -> C.Claim:
    """A claim on fitted slopes (``found``: ``{series: (slope, low, high, n)}``, as
    :func:`fits`). The record's value is the slope that falls most slowly, with its
    interval; not tested when nothing was measured (``missing`` says why) or when a series
    has fewer than 3 widths."""
    quantity = f"{quantity}: log-log slope against width n, 95 % interval of the fit"
    record = dict(chapter="theory", claim=claim, statement=statement, expectation=expectation,
                  profile=profile, figure=figure)
    if not found:
        return C.Claim(**record, quantity=quantity, value=None, low=None, high=None,
                       measured=f"not measured ({missing})", verdict=C.NOT_TESTED)
    few = min(f[3] for f in found.values())
    if few < 3:
        return C.Claim(**record, quantity=quantity, value=None, low=None, high=None,
                       measured=f"not enough points ({few} width{'s' if few != 1 else ''}; a "
                                f"slope with an interval needs 3)", verdict=C.NOT_TESTED)
    show = {name: f"{s:+.2f} [{lo:+.2f}, {hi:+.2f}]" for name, (s, lo, hi, _) in found.items()}
    slowest = max(found.values(), key=lambda f: f[0])
    return C.Claim(**record, quantity=quantity + ("" if len(found) == 1 else "; the slowest"),
                   value=slowest[0], low=slowest[1], high=slowest[2],
                   measured=(next(iter(show.values())) if len(show) == 1
                             else "; ".join(f"{name} {text}" for name, text in show.items())),
                   verdict=judge(list(found.values())))


def claims(a: Analysis, *, profile: str, tolerance: float = SLOPE_TOLERANCE,
           aligned: float = ALIGNED, control_low: float = CONTROL_LOW) -> list[C.Claim]:
    """The chapter's scorecard records, in the order the page states them.

    Lazy training: the relative weight change ``||W(T) - W(0)||_F / ||W(0)||_F`` of layer
    1 and of the readout falls like ``n^-1/2``, of the hidden-to-hidden layers like
    ``n^-1``, and the empirical NTK's relative change like ``n^-1/2`` (each slope's whole
    95 % interval within ``p +- tolerance``). The layerwise theorem: ``||dW -
    dW_pred||_F / ||dW||_F`` falls with width in every layer (slope's interval below 0);
    the alignment score rises toward 1 (higher at the widest width than at the
    narrowest, and at least ``aligned``); the shuffled control stays at most
    ``control_low``. Layer 1's Gram matrix approaches the analytic prediction (falls) and
    the empirical NTK the analytic NTK (like ``n^-1/2``). The Align rules' outputs approach
    backprop's, FA's and DFA's approach readout-only training's (fall).
    """
    def power(p: str) -> str:
        return f"slope {p}, the whole interval within {p} ± {tolerance:g}"

    falls = "falls toward 0: slope below 0, the whole interval"
    fro = "relative_change_fro"
    names = a.layer_names
    readout = max(names)
    hidden = sorted(name for layer, name in names.items() if 1 < layer < readout)
    pairs = lambda rules, ref: [f"{RULE_LABELS[r]} to {RULE_LABELS[ref]}" for r in rules]
    out = [
        slope_claim(claim, f"Lazy training: {words}'s relative weight change shrinks like n^-1/2",
                    f"||W(T) - W(0)||_F / ||W(0)||_F of {words}", fits(a, fro, [name]),
                    power("-1/2"), power_law_verdict(-0.5, tolerance), FIGURES["lazy"],
                    profile=profile, missing=f"no {name}")
        for claim, name, words in (("lazy-first-layer", "layer 1", "the first layer"),
                                   ("lazy-readout", "readout", "the readout"))]
    out += [
        slope_claim("lazy-hidden-layer",
                    "Lazy training: a hidden-to-hidden layer's relative weight change shrinks with "
                    "width, like n^-1 in the Frobenius norm (which grows like n for an n x n matrix)",
                    "||W(T) - W(0)||_F / ||W(0)||_F of the hidden-to-hidden layers",
                    fits(a, fro, hidden), power("-1"), power_law_verdict(-1.0, tolerance),
                    FIGURES["lazy"], profile=profile, missing="no hidden-to-hidden layer"),
        slope_claim("lazy-ntk",
                    "Lazy training: the relative change of the empirical NTK shrinks like n^-1/2",
                    "||Theta(T) - Theta(0)||_F / ||Theta(0)||_F",
                    {"NTK": fits(a, "ntk_change", [NETWORK])[NETWORK]}, power("-1/2"),
                    power_law_verdict(-0.5, tolerance), FIGURES["lazy"], profile=profile),
        slope_claim("layerwise-distance",
                    "Layerwise theorem: every layer's weight change approaches the error-scaled "
                    "input-correlation prediction dW_pred as width grows",
                    "||dW - dW_pred||_F / ||dW||_F per layer",
                    fits(a, "prediction_distance", sorted(names.values())),
                    falls + " in every layer", falls_verdict, FIGURES["layerwise"], profile=profile),
    ]
    out += alignment_claims(a, profile=profile, aligned=aligned, control_low=control_low)
    out += [
        slope_claim("layer1-gram",
                    "Layerwise theorem: layer 1's Gram matrix dW1^T dW1 approaches the analytic "
                    "infinite-width prediction as width grows",
                    "relative Frobenius error of dW1^T dW1 to the analytic prediction",
                    {"Gram": fits(a, "layer1_gram_vs_analytic", [NETWORK])[NETWORK]}, falls,
                    falls_verdict, FIGURES["infinite_width"], profile=profile),
        slope_claim("ntk-analytic",
                    "The empirical NTK at initialisation approaches the analytic NTK like n^-1/2",
                    "relative Frobenius error of the empirical NTK to the analytic NTK",
                    {"NTK": fits(a, "ntk_vs_analytic", [NETWORK])[NETWORK]}, power("-1/2"),
                    power_law_verdict(-0.5, tolerance), FIGURES["infinite_width"], profile=profile),
        slope_claim("align-follows-backprop",
                    "The Align rules train like backprop as width grows: the same outputs after "
                    "training",
                    "output distance to backprop relative to backprop's change of the outputs",
                    fits(a, "output_distance", pairs(ALIGN_RULES, "backprop")),
                    falls + " for every Align rule", falls_verdict, FIGURES["trajectories"],
                    profile=profile, missing="no Align rule in `rules`"),
        slope_claim("feedback-like-readout",
                    "FA's and DFA's hidden-layer updates stop changing the output as width grows: "
                    "they train like readout-only training",
                    "output distance to readout-only training relative to backprop's change of the "
                    "outputs",
                    fits(a, "output_distance", pairs(FEEDBACK_RULES, "readout")),
                    falls + " for FA and DFA", falls_verdict, FIGURES["trajectories"],
                    profile=profile, missing="needs FA or DFA, and readout, in `rules`"),
    ]
    return out


def alignment_claims(a: Analysis, *, profile: str, aligned: float = ALIGNED,
                     control_low: float = CONTROL_LOW) -> list[C.Claim]:
    """The layerwise theorem's alignment claims: every layer's alignment score of ``dW``
    with ``dW_pred`` is higher at the widest width than at the narrowest and at least
    ``aligned`` (not tested with one width); the shuffled control is at most
    ``control_low`` in every layer at the widest width."""
    def by_layer(metric):
        return a.layers[a.layers.metric == metric].pivot_table(index="layer", columns="width",
                                                                values="value")

    score, control = by_layer("alignment"), by_layer("alignment_shuffled")
    names, lo, hi = a.layer_names, a.narrowest, a.widest
    record = dict(chapter="theory", profile=profile, figure=FIGURES["layerwise"], low=None, high=None)
    return [
        C.Claim(**record, claim="layerwise-alignment",
                statement="Layerwise theorem: the alignment score of dW with dW_pred rises toward "
                          "1 with width",
                quantity=f"alignment score of the lowest layer at width {hi}",
                value=float(score[hi].min()),
                measured="; ".join(f"{names[l]} {score.loc[l, lo]:.3f} at width {lo}, "
                                   f"{score.loc[l, hi]:.3f} at {hi}" for l in score.index),
                expectation=f"every layer higher at the widest width than at the narrowest, and at "
                            f"least {aligned:g}",
                verdict=C.verdict_of_checks([score.loc[l, hi] > score.loc[l, lo]
                                             and score.loc[l, hi] >= aligned for l in score.index])
                if lo < hi else C.NOT_TESTED),
        C.Claim(**record, claim="layerwise-control",
                statement="Layerwise theorem: the shuffled-weights control stays low",
                quantity=f"alignment score of the shuffled control, highest layer at width {hi}",
                value=float(control[hi].max()),
                measured="; ".join(f"{names[l]} {control.loc[l, hi]:.3f}" for l in control.index),
                expectation=f"at most {control_low:g} in every layer at the widest width",
                verdict=C.verdict_of_checks([control.loc[l, hi] <= control_low
                                             for l in control.index])),
    ]
