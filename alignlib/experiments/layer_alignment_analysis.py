"""The alignment chapter's reading of its sweep: summaries, the numbers its page quotes,
its figures and its scorecard records.

The sweep itself is :func:`alignlib.experiments.layer_alignment.alignment_experiments`:
one tidy table, one row per (dataset, model, width, seed, epoch, layer, metric). Here:

1. :func:`analyse` reduces it to an :class:`Analysis` of tidy tables: the last-epoch
   layer scores per width (:func:`width_summary`), the network-level rows of the last
   epoch, and the exact and probe scores side by side (:func:`probe_pairs`);
2. :func:`widest_table` is the page's table of the widest networks, and
   :func:`sweep_numbers`, :func:`width_numbers`, :func:`epoch_numbers` and
   :func:`probe_numbers` the numbers its prose quotes, each as ``{glue key: (value,
   format spec)}``;
3. :func:`plot_width_sweep`, :func:`plot_epochs` and :func:`plot_probe_vs_exact` draw its
   three figures;
4. :func:`claims` turns the analysis into scorecard records, judged against
   :data:`THRESHOLDS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from alignlib import claims as C
from alignlib.alignment.layers import random_update_score
from alignlib.experiments.layer_alignment import MODELS, final_epoch
from alignlib.experiments.tables import format_ci, markdown_table

__all__ = [
    "MODEL_LABELS", "THRESHOLDS", "Analysis", "analyse", "width_summary", "probe_pairs",
    "mlp_input_dims", "widest_table", "sweep_numbers", "width_headlines", "width_numbers",
    "epoch_headlines", "epoch_numbers", "probe_numbers", "plot_width_sweep", "plot_epochs",
    "plot_probe_vs_exact", "claims",
]

MODEL_LABELS = {"mlp": "MLP", "convnet": "ConvNet"}

#: How the page's glue keys name each model (``mlp_widest``, ``conv_widest``, ...).
_GLUE_PREFIX = {"mlp": "mlp", "convnet": "conv"}

#: What the claims' words mean in numbers: ``aligned``, "rises toward 1": every layer at
#: least this at the widest width; ``control_low``, "stays low": the shuffled control at
#: most this at the widest width; ``probe_agrees``: the probe estimate within this of the
#: exact score.
THRESHOLDS = {"aligned": 0.95, "control_low": 0.3, "probe_agrees": 0.05}

#: The figures the claims point to (their ``:name:`` on the page).
WIDTH_FIGURE = "fig-alignment-alignment-vs-width"
PROBE_FIGURE = "fig-alignment-probe-vs-exact"

#: Numbers for the page: ``{glue key: (value, format spec)}``.
Numbers = dict[str, tuple[float, str]]


# --------------------------------------------------------------------------------------
# Tidy summaries
# --------------------------------------------------------------------------------------


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


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What :func:`analyse` returns (all tidy tables).

    ``summary``: :func:`width_summary`; ``network``: the network-level rows (``layer =
    0``: losses, accuracy, ``sweep_seconds``, ``train_examples``) of each run's last epoch,
    columns of the sweep table, in the sweep's order; ``pairs``: :func:`probe_pairs`.
    """

    summary: pd.DataFrame
    network: pd.DataFrame
    pairs: pd.DataFrame


def analyse(table: pd.DataFrame) -> Analysis:
    """Reduce the sweep table of
    :func:`~alignlib.experiments.layer_alignment.alignment_experiments`."""
    final = final_epoch(table)
    return Analysis(width_summary(table), final[final.layer == 0], probe_pairs(table))


def mlp_input_dims(summary: pd.DataFrame) -> dict[tuple[str, str], int]:
    """``{(dataset, "mlp"): d}``, the input size ``d`` of each MLP's first layer in a
    :func:`width_summary` (for the random-update reference of :func:`plot_width_sweep`)."""
    first = summary[(summary.model == "mlp") & (summary.layer == 1)]
    return {(data, "mlp"): int(g.n_in.iloc[0]) for data, g in first.groupby("dataset")}


# --------------------------------------------------------------------------------------
# The page's table and numbers
# --------------------------------------------------------------------------------------


#: The columns of :func:`widest_table`: metric -> (header, format of its numbers).
_WIDEST_COLUMNS = {
    "alignment": ("alignment score", ".3f"),
    "alignment_shuffled": ("shuffled control", ".3f"),
    "relative_change": ("relative change ‖ΔW‖/‖W(0)‖", ".3g"),
    "prediction_distance": ("distance ‖ΔW − ΔW_pred‖/‖ΔW‖", ".3f"),
}


def widest_table(summary: pd.DataFrame) -> str:
    """The widest network of each sweep in a :func:`width_summary`, as a Markdown table:
    one row per (data set, model, width, layer), one column per metric of
    :data:`_WIDEST_COLUMNS`, each cell the seed mean with, in brackets, the range over
    the seeds (the mean alone with one seed)."""
    wide = summary.loc[summary.groupby(["dataset", "model"]).width.transform("max") == summary.width]
    cells = wide[wide.metric.isin(list(_WIDEST_COLUMNS))]
    cells = cells.assign(cell=[
        format_ci(m, lo, hi, _WIDEST_COLUMNS[k][1]) if n > 1 else format(m, _WIDEST_COLUMNS[k][1])
        for k, m, lo, hi, n in zip(cells.metric, cells["mean"], cells["min"], cells["max"],
                                   cells.n_seeds)])
    grid = cells.pivot_table(index=["dataset", "model", "width", "layer", "layer_name"],
                             columns="metric", values="cell", aggfunc="first").reset_index()
    return markdown_table(pd.DataFrame({
        "data": grid.dataset, "model": grid.model.map(MODEL_LABELS), "width": grid.width,
        "layer": grid.layer_name,
        **{name: grid[metric] for metric, (name, _) in _WIDEST_COLUMNS.items() if metric in grid}}),
        {"width": "d"})


def sweep_numbers(network: pd.DataFrame, dataset: str, epochs: int, batch_size: int = 100) -> Numbers:
    """From :attr:`Analysis.network`: ``n_train_main`` (training examples of ``dataset``),
    ``steps_main`` (its SGD steps: ``epochs`` times the full batches of ``batch_size``)
    and ``compute_seconds`` (the wall time of every width of every sweep, summed)."""
    examples = network[(network.dataset == dataset) & (network.metric == "train_examples")]
    n = int(examples.value.iloc[0])
    seconds = network[network.metric == "sweep_seconds"].groupby(["dataset", "model", "width"]).value
    return {"n_train_main": (n, "d"), "steps_main": (n // batch_size * epochs, "d"),
            "compute_seconds": (seconds.first().sum(), ".0f")}


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


def width_numbers(summary: pd.DataFrame, dataset: str) -> Numbers:
    """Section 1's numbers for ``dataset``: :func:`width_headlines` of each model, keyed
    ``mlp_<name>`` / ``conv_<name>``; ``random_layer1_widest``, the score
    ``m / (m + d + 1)`` of two random updates of the MLP's first layer at its widest width
    (:func:`~alignlib.alignment.layers.random_update_score`; NaN without an MLP); and
    ``conv1_taps``, the input numbers one filter of the first convolution sees (3x3 taps
    of the image's channels; 0 without a ConvNet)."""
    out: Numbers = {}
    for model, key in _GLUE_PREFIX.items():
        for name, value in width_headlines(summary, dataset, model).items():
            fmt = ".0f" if name in ("narrowest", "widest") else ".4f" if name.startswith("change") else ".3f"
            out[f"{key}_{name}"] = (value, fmt)
    dims = mlp_input_dims(summary)
    mlp_widest = summary[(summary.dataset == dataset) & (summary.model == "mlp")].width.max()
    out["random_layer1_widest"] = (random_update_score(int(mlp_widest), dims[(dataset, "mlp")])
                                   if (dataset, "mlp") in dims else float("nan"), ".2f")
    conv1 = summary[(summary.dataset == dataset) & (summary.model == "convnet") & (summary.layer == 1)]
    out["conv1_taps"] = (9 * int(conv1.n_in.max()) if len(conv1) else 0, "d")
    return out


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


def epoch_numbers(table: pd.DataFrame, dataset: str) -> Numbers:
    """Section 2's numbers for ``dataset``: :func:`epoch_headlines` of each model, keyed
    ``mlp_<name>`` / ``conv_<name>``, from the sweep table."""
    return {f"{key}_{name}": (value, ".3f") for model, key in _GLUE_PREFIX.items()
            for name, value in epoch_headlines(table, dataset, model).items()}


def probe_numbers(pairs: pd.DataFrame) -> Numbers:
    """Section 3's numbers, from :func:`probe_pairs`: ``probe_n_pairs``,
    ``probe_max_diff`` and ``probe_mean_diff`` (largest and mean ``|probe - exact|``),
    and per layer kind (``dense``, ``conv``) ``probe_max_diff_<kind>`` and
    ``probe_n_<kind>``."""
    gap = pairs.difference.abs()
    out: Numbers = {"probe_n_pairs": (len(pairs), "d"), "probe_max_diff": (gap.max(), ".3f"),
                    "probe_mean_diff": (gap.mean(), ".3f")}
    for kind in ("dense", "conv"):
        sub = gap[pairs.kind == kind]
        out[f"probe_max_diff_{kind}"] = (sub.max(), ".3f")
        out[f"probe_n_{kind}"] = (len(sub), "d")
    return out


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


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
    ``n / (n + d + 1)`` of the MLP's first layer (dotted; :func:`mlp_input_dims`)."""
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
        ax.legend(loc="center right")
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
            ax.legend(loc="lower left")
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
    ax.legend(loc="upper left")
    return fig


# --------------------------------------------------------------------------------------
# Scorecard records
# --------------------------------------------------------------------------------------


def _at_width(summary: pd.DataFrame, metric: str, pick: str) -> pd.DataFrame:
    """Rows of ``metric`` at each sweep's widest (``pick="max"``) or narrowest width."""
    part = summary[summary.metric == metric]
    return part[part.width == part.groupby(["dataset", "model"]).width.transform(pick)]


def _by_sweep(a: Analysis, rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(name, rows)`` per sweep present in ``rows`` ("digits MLP"), data sets in the
    sweep's order, the MLP before the ConvNet."""
    out = []
    for dataset, model in _panels(a.network):
        g = rows[(rows.dataset == dataset) & (rows.model == model)]
        if len(g):
            out.append((f"{dataset} {MODEL_LABELS.get(model, model)}", g))
    return out


def _seed_range(row) -> dict:
    """A summary row's seed mean as a claim's value, its range over seeds as the interval."""
    if row is None:
        return {"value": None, "low": None, "high": None}
    return {"value": row["mean"], "low": row["min"], "high": row["max"]}


def _rises_claim(a: Analysis, aligned: float, profile: str) -> C.Claim:
    hi, lo = _at_width(a.summary, "alignment", "max"), _at_width(a.summary, "alignment", "min")
    rising = hi.merge(lo[["dataset", "model", "layer", "width", "mean"]],
                      on=["dataset", "model", "layer"], suffixes=("", "_narrow"))
    rising = rising[rising.width > rising.width_narrow]  # sweeps with a single width show no rise
    checks = (rising["mean"] > rising.mean_narrow) & (rising["mean"] >= aligned)
    measured = ("lowest layer: " + "; ".join(
        f"{name} {g.mean_narrow.min():.3f} at width {g.width_narrow.iloc[0]}, "
        f"{g['mean'].min():.3f} at {g.width.iloc[0]}" for name, g in _by_sweep(a, rising))
        + f"; {int(checks.sum())} of {len(rising)} layers rise to at least {aligned:g}"
        if len(rising) else "not measured (every sweep has a single width)")
    return C.Claim(
        chapter="alignment", claim="alignment-rises",
        statement="Every layer's SGD weight change aligns with dW_pred more closely the wider "
                  "the network: the alignment score rises toward 1 with width",
        quantity="alignment score of the lowest layer at the widest width (seed mean; "
                 "interval: range over seeds)",
        **_seed_range(hi.loc[hi["mean"].idxmin()] if len(hi) else None), measured=measured,
        expectation=f"every layer higher at the widest width than at the narrowest, and at "
                    f"least {aligned:g}",
        verdict=C.verdict_of_checks(list(checks)), profile=profile, figure=WIDTH_FIGURE)


def _control_claim(a: Analysis, control_low: float, profile: str) -> C.Claim:
    control = _at_width(a.summary, "alignment_shuffled", "max")
    low = control["mean"] <= control_low
    measured = ("; ".join(f"{name} at most {g['mean'].max():.3f} "
                          f"({g.loc[g['mean'].idxmax(), 'layer_name']})"
                          for name, g in _by_sweep(a, control))
                + f"; {int(low.sum())} of {len(control)} layers at most {control_low:g}"
                if len(control) else "not measured")
    return C.Claim(
        chapter="alignment", claim="alignment-control-low",
        statement="The shuffled-weights control (trained weights' entries shuffled, minus W(0)) "
                  "stays low",
        quantity="shuffled control's alignment score of the highest layer at the widest width "
                 "(seed mean; interval: range over seeds)",
        **_seed_range(control.loc[control["mean"].idxmax()] if len(control) else None),
        measured=measured, expectation=f"at most {control_low:g} in every layer at the widest width",
        verdict=C.verdict_of_checks(list(low)), profile=profile, figure=WIDTH_FIGURE)


def _probe_claim(a: Analysis, probe_agrees: float, n_probes: int, profile: str) -> C.Claim:
    gap = a.pairs.difference.abs()
    return C.Claim(
        chapter="alignment", claim="probe-agrees",
        statement="The authors' Monte-Carlo probe estimator agrees with the exact alignment score",
        quantity=f"largest |probe estimate - exact score| over the scored pairs ({n_probes} "
                 f"probes each)",
        value=gap.max() if len(gap) else None, low=None, high=None,
        measured=(f"{gap.max():.3f} over {len(gap)} pairs (mean {gap.mean():.3f})" if len(gap)
                  else "not measured (no width of `probe_widths` in the sweeps)"),
        expectation=f"within {probe_agrees:g} in every pair",
        verdict=C.verdict_of_checks(list(gap <= probe_agrees)), profile=profile,
        figure=PROBE_FIGURE)


def claims(a: Analysis, *, profile: str, n_probes: int, aligned: float = THRESHOLDS["aligned"],
           control_low: float = THRESHOLDS["control_low"],
           probe_agrees: float = THRESHOLDS["probe_agrees"]) -> list[C.Claim]:
    """The chapter's scorecard records, from :func:`analyse`:

    * ``alignment-rises``: at each sweep's widest width every layer scores higher than at
      its narrowest and at least ``aligned`` (not tested where every sweep has one width);
    * ``alignment-control-low``: the shuffled control at most ``control_low`` in every
      layer at the widest width;
    * ``probe-agrees``: ``|probe - exact|`` at most ``probe_agrees`` in every scored pair
      (``n_probes`` probes each).

    Values are seed means with the range over seeds as interval; verdicts count the
    checks (:func:`alignlib.claims.verdict_of_checks`).
    """
    return [_rises_claim(a, aligned, profile), _control_claim(a, control_low, profile),
            _probe_claim(a, probe_agrees, n_probes, profile)]
