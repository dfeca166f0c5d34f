"""What the theory chapter shows: its figures, its table and the numbers its prose quotes,
all drawn from the :class:`~alignlib.experiments.theory.Analysis` that
:func:`alignlib.experiments.theory.analyse` returns.

Each figure function returns ``(figure, data)``: the matplotlib figure and the tidy table
it plots (offered beside the figure as CSV). The ``*_numbers`` functions return ``{glue
key: (value, format spec)}`` for the Markdown cells of one section of the page.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from alignlib.experiments.plotting import RULE_LABELS, loglog_with_fits, rule_palette
from alignlib.experiments.tables import markdown_table
from alignlib.experiments.theory import (ALIGN_RULES, FEEDBACK_RULES, INFINITE_WIDTH_METRICS,
                                         Analysis, slope, value_at)

__all__ = ["lazy_training", "layerwise_theorem", "infinite_width", "trajectories",
           "losses_markdown", "lazy_training_numbers", "layerwise_numbers",
           "infinite_width_numbers", "trajectory_numbers"]


# ----------------------------------------------------------------------------- figures

def lazy_training(a: Analysis):
    """Left: each layer's relative weight change ``||W(T) - W(0)|| / ||W(0)||`` against
    width on log-log axes, Frobenius norm (solid, with power-law fits) and spectral norm
    (dotted); right: the empirical NTK's relative change ``||Theta(T) - Theta(0)||_F /
    ||Theta(0)||_F``. Data: the layer rows (``width, layer, metric, value, layer_name``)
    and the NTK rows (``width, metric, value, name``)."""
    rel = a.layers[a.layers.metric.isin(["relative_change_fro", "relative_change_op"])]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    loglog_with_fits(axes[0], rel[rel.metric == "relative_change_fro"], x="width", y="value",
                     hue="layer_name")
    loglog_with_fits(axes[0], rel[rel.metric == "relative_change_op"], x="width", y="value",
                     hue="layer_name", fit=False, linestyle=":", marker=".")
    axes[0].set(xlabel="width $n$", ylabel=r"$\|W(T)-W(0)\| / \|W(0)\|$",
                title="relative weight change (solid: Frobenius, dotted: spectral)")
    axes[0].legend()
    ntk = a.network[a.network.metric == "ntk_change"].assign(name="empirical NTK")
    loglog_with_fits(axes[1], ntk, x="width", y="value", hue="name")
    axes[1].set(xlabel="width $n$", ylabel=r"$\|\Theta(T)-\Theta(0)\|_F / \|\Theta(0)\|_F$",
                title="relative change of the empirical NTK")
    axes[1].legend()
    return fig, pd.concat([rel, ntk], ignore_index=True)


def layerwise_theorem(a: Analysis):
    """Left: each layer's relative distance ``||dW - dW_pred||_F / ||dW||_F`` to the
    predicted update against width (log-log, with power-law fits); right: the alignment
    score of ``dW`` with ``dW_pred`` (solid) and of the shuffled control (dotted). Data:
    the layer rows with ``kind`` (``trained`` or ``shuffled control``) for the scores."""
    layers = a.layers
    pred = layers[layers.metric == "prediction_distance"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    loglog_with_fits(axes[0], pred, x="width", y="value", hue="layer_name")
    axes[0].set(xlabel="width $n$", ylabel=r"$\|\Delta W - \Delta W_{pred}\|_F / \|\Delta W\|_F$",
                title="distance to the predicted update")
    axes[0].legend()
    ali = layers[layers.metric.isin(["alignment", "alignment_shuffled"])].assign(
        kind=lambda t: t.metric.map({"alignment": "trained", "alignment_shuffled": "shuffled control"}))
    for kind, ls in [("trained", "-"), ("shuffled control", ":")]:
        for name, g in ali[ali.kind == kind].groupby("layer_name"):
            axes[1].plot(g.width, g.value, ls, marker="o", label=f"{name}, {kind}")
    axes[1].set_xscale("log", base=2)
    axes[1].set(xlabel="width $n$", ylabel="alignment score", ylim=(0, 1.02),
                title=r"alignment of $\Delta W$ with $\Delta W_{pred}$")
    axes[1].legend(ncol=2)
    return fig, pd.concat([pred, ali], ignore_index=True)


#: Legend labels of the infinite-width comparisons.
INFINITE_WIDTH_LABELS = {"layer1_gram_vs_analytic": r"layer-1 Gram $\Delta W^{1\top}\Delta W^1$",
                         "ntk_vs_analytic": r"NTK at initialisation $\Theta_0$",
                         "error_sum_vs_analytic": r"integrated error $E$"}


def infinite_width(a: Analysis):
    """The relative Frobenius error to the infinite-width formulas against width (log-log,
    with power-law fits): layer 1's Gram matrix ``dW1^T dW1``, the NTK at initialisation
    and the integrated error ``E``. Data: the network rows (``width, metric, value``)."""
    inf = a.network[a.network.metric.isin(INFINITE_WIDTH_METRICS)]
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    loglog_with_fits(ax, inf, x="width", y="value", hue="metric", labels=INFINITE_WIDTH_LABELS)
    ax.set(xlabel="width $n$", ylabel="relative error to the infinite-width formula",
           title="finite networks against the analytic limit")
    ax.legend()
    return fig, inf


def trajectories(a: Analysis):
    """Output distances against width (log-log, with power-law fits), left to backprop
    (the Align rules, FA, DFA and readout-only training), right to readout-only training
    (FA and DFA). Data: the plotted rows, ``width, rule, reference, value, pair``."""
    tr = a.trajectories
    shown = pd.concat([
        tr[(tr.reference == "backprop") & tr.rule.isin(ALIGN_RULES)],
        tr[(tr.reference == "readout") & tr.rule.isin(FEEDBACK_RULES)],
        tr[(tr.reference == "backprop") & tr.rule.isin([*FEEDBACK_RULES, "readout"])],
    ])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, layout="constrained")
    palette = rule_palette(list(RULE_LABELS))
    for ax, ref in zip(axes, ["backprop", "readout"]):
        part = shown[shown.reference == ref]
        colours = {p: palette[r] for p, r in zip(part.pair, part.rule)}
        loglog_with_fits(ax, part, x="width", y="value", hue="pair", palette=colours)
        ax.set(xlabel="width $n$", title=f"distance to {RULE_LABELS[ref]}")
        ax.legend()
    axes[0].set_ylabel("relative output distance")
    return fig, shown


# ----------------------------------------------------------------------------- table and numbers

def losses_markdown(a: Analysis, steps: int) -> str:
    """The training loss at initialisation and after ``steps`` steps per width, as a
    Markdown table."""
    return markdown_table(pd.DataFrame({
        "width n": a.losses.width, "training loss at initialisation": a.losses.initial_loss,
        f"after {steps} steps": a.losses.final_loss}), {"width n": "d"}, default=".4f")


Numbers = dict[str, tuple[float, str]]
"""``{glue key: (value, format spec)}``: the numbers a section of the page quotes."""


def lazy_training_numbers(a: Analysis) -> Numbers:
    """Lazy training: the slopes in width of the relative weight change (Frobenius and
    spectral norm) of layer 1, the readout and the hidden-to-hidden layer 2, and of the
    empirical NTK's relative change; both changes at the widest width."""
    fro, op = "relative_change_fro", "relative_change_op"
    return {
        "slope_fro_layer1": (slope(a, fro, "layer 1"), "+.2f"),
        "slope_fro_readout": (slope(a, fro, "readout"), "+.2f"),
        "slope_fro_hidden": (slope(a, fro, "layer 2"), "+.2f"),
        "slope_op_hidden": (slope(a, op, "layer 2"), "+.2f"),
        "slope_op_layer1": (slope(a, op, "layer 1"), "+.2f"),
        "slope_ntk": (slope(a, "ntk_change"), "+.2f"),
        "change_layer1_widest": (value_at(a.layers, a.widest, fro, layer=1), ".4f"),
        "ntk_change_widest": (value_at(a.network, a.widest, "ntk_change"), ".4f"),
    }


def layerwise_numbers(a: Analysis) -> Numbers:
    """The layerwise theorem, per layer (keys end in ``layer1``, ``layer2``, ...,
    ``readout``): the slope of ``||dW - dW_pred||_F / ||dW||_F`` in width, its value at the
    widest width, the alignment score at the widest and narrowest widths and the shuffled
    control at the widest."""
    out = {}
    for layer, name in a.layer_names.items():
        key = name.replace(" ", "")
        out[f"slope_pred_{key}"] = (slope(a, "prediction_distance", name), "+.2f")
        for label, metric, width in [("pred_widest", "prediction_distance", a.widest),
                                     ("align_widest", "alignment", a.widest),
                                     ("shuffled_widest", "alignment_shuffled", a.widest),
                                     ("align_narrowest", "alignment", a.narrowest)]:
            out[f"{label}_{key}"] = (value_at(a.layers, width, metric, layer=layer), ".3f")
    return out


def infinite_width_numbers(a: Analysis) -> Numbers:
    """Against the infinite-width formulas: the relative errors of the layer-1 Gram
    matrix, the NTK at initialisation and the integrated error at the widest width, the
    Gram error at the narrowest, and the slopes in width of the first two."""
    w, n = a.widest, a.narrowest
    return {
        "gram_err_widest": (value_at(a.network, w, "layer1_gram_vs_analytic"), ".3f"),
        "ntk_err_widest": (value_at(a.network, w, "ntk_vs_analytic"), ".3f"),
        "esum_err_widest": (value_at(a.network, w, "error_sum_vs_analytic"), ".3f"),
        "gram_err_narrowest": (value_at(a.network, n, "layer1_gram_vs_analytic"), ".3f"),
        "slope_gram": (slope(a, "layer1_gram_vs_analytic"), "+.2f"),
        "slope_ntk_analytic": (slope(a, "ntk_vs_analytic"), "+.2f"),
    }


def trajectory_numbers(a: Analysis) -> Numbers:
    """Every rule's output distance to each reference at the widest and narrowest widths:
    keys ``dist_<rule>_<reference>_widest`` and ``..._narrowest``."""
    pivot = a.trajectories.pivot_table(index=["rule", "reference"], columns="width", values="value")
    out = {}
    for (rule, reference), row in pivot.iterrows():
        out[f"dist_{rule}_{reference}_widest"] = (float(row[a.widest]), ".3f")
        out[f"dist_{rule}_{reference}_narrowest"] = (float(row[a.narrowest]), ".3f")
    return out
