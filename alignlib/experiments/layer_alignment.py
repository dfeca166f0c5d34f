"""The alignment chapter's experiment: layerwise alignment during training, across widths.

The paper's theorem (the book's derivation page) says that under gradient descent every
layer's weight change ``dW^l = W^l(t) - W^l(0)`` approaches, as width grows, the
prediction ``dW_pred^l = - sum_steps lr * sum_i delta0_i^l (x0_i^(l-1))^T``, minus the
learning rate times the Align-zero pseudo-gradient summed over the steps.
:func:`alignlib.train` accumulates it beside plain SGD (``predict=True``); the scores
themselves are :mod:`alignlib.alignment.layers`. What is here:

* :func:`alignment_epoch_metrics`: the ``epoch_metrics`` hook for :func:`alignlib.train`
  (alignment, shuffled control, relative change and prediction distance per layer and
  epoch);
* :func:`alignment_width_sweep` / :func:`alignment_experiments`: train one network per
  width (several seeds in one vmapped program) and return a tidy table;
* the chapter's summaries, headline numbers and figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import equinox as eqx
import jax
import numpy as np
import pandas as pd

from alignlib.alignment.layers import (
    alignment_epoch_metrics,
    layer_alignment,
    layer_geometry,
    random_update_score,
)
from alignlib.data import Dataset
from alignlib.experiments import points as P
from alignlib.models import model_factory
from alignlib.rules import mse
from alignlib.training import train

Array = jax.Array

__all__ = [
    "PAPER_CONV_STRIDES",
    "alignment_epoch_metrics",
    "alignment_width_sweep",
    "make_network",
    "final_epoch",
    "alignment_experiments",
    "width_summary",
    "probe_pairs",
    "plot_width_sweep",
    "plot_epochs",
    "plot_probe_vs_exact",
    "width_headlines",
    "epoch_headlines",
    "random_update_score",
]

#: The authors' ConvNet strides per data set (the book's differences page). The 8x8 digits stand in
#: for KMNIST and get its three-layer network.
PAPER_CONV_STRIDES: dict[str, tuple[int, ...]] = {
    "digits": (1, 2, 2),
    "kmnist": (1, 2, 2),
    "cifar10": (1, 1, 1, 2, 1, 2, 1),
}

MODELS = ("mlp", "convnet")


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------


def make_network(model: str, input_shape: Sequence[int], width: int, n_outputs: int, *,
                 key: Array, depth: int = 2, strides: Sequence[int] = (1, 2, 2)):
    """One network of the sweep, ``"mlp"`` or ``"convnet"``, drawn with ``key``
    (:func:`alignlib.models.model_factory`, NTK parameterisation)."""
    if model not in MODELS:
        raise ValueError(f"`model` must be one of {MODELS}, got {model!r}.")
    return model_factory(model, input_shape, n_outputs, width, depth=depth,
                         strides=strides)(key)


# --------------------------------------------------------------------------------------
# The width sweep
# --------------------------------------------------------------------------------------


def _split_metric(name: str) -> tuple[str, int]:
    metric, _, layer = name.partition("@")
    return metric, int(layer) if layer else 0


def alignment_width_sweep(model: str, data: Dataset, widths: Sequence[int], *, epochs: int,
                          lr: float = 5.0, seeds: Sequence[int] = (0, 1),
                          batch_size: int = 100, depth: int = 2,
                          strides: Sequence[int] = (1, 2, 2), probe_batches: int = 10,
                          probe_batch_size: int = 100, probe_runs: int = 1,
                          curve_widths: Sequence[int] | None = None,
                          probe_widths: Sequence[int] | None = None,
                          progress: bool = False, points_only: bool = False) -> pd.DataFrame:
    """Train one network per width with SGD, accumulate ``dW_pred`` beside it, and score.

    For every width, all ``seeds`` train in one vmapped program
    (:func:`alignlib.train` with ``rule="backprop"``, ``predict=True``, squared loss,
    learning rate ``lr``, minibatches of ``batch_size``). After every epoch,
    :func:`alignment_epoch_metrics` records each layer's exact alignment, shuffled control,
    relative change and prediction distance; widths not in ``curve_widths`` (default: the
    narrowest and the widest) are scored at the last epoch only. At the widths in
    ``probe_widths`` (default: ``curve_widths``) the first ``probe_runs`` runs are also
    scored after the last epoch with the authors' probe estimator (``probe_batches``
    batches of ``probe_batch_size`` probes; the authors use 100 x 100), for both ``dW``
    and the control: metrics ``alignment_probe`` and ``alignment_shuffled_probe``. (Each
    probe layer is one compilation, about a second on a CPU, hence the subset.)

    Returns:
        A tidy DataFrame, one row per (width, seed, epoch, layer, metric), columns
        ``experiment, dataset, model, rule, width, lr, seed, epoch, layer, layer_name,
        kind, n_out, n_in, metric, value, diverged``. Network-level metrics
        (``train_loss``, ``heldout_loss``, ``heldout_accuracy``, ``seconds`` per epoch, and
        ``sweep_seconds``: wall time of the whole width, training and scoring;
        ``train_examples``: size of the training split) have
        ``layer = 0`` and ``layer_name = "network"``. ``n_out``/``n_in`` are the weight's
        output and input sizes (``c_out``/``c_in`` for convolutions).

    Each width is one point (:mod:`alignlib.experiments.points`), run by the current
    runner; ``points_only`` returns the points instead.
    """
    steps = _width_sweep_steps(model, data, widths, epochs=epochs, lr=lr, seeds=seeds,
                               batch_size=batch_size, depth=depth, strides=strides,
                               probe_batches=probe_batches, probe_batch_size=probe_batch_size,
                               probe_runs=probe_runs, curve_widths=curve_widths,
                               probe_widths=probe_widths, progress=progress)
    if points_only is P.STAGES:
        return steps
    if points_only:
        return P.list_points([steps])
    return P.run_sweeps([steps], "alignment")[0]


def _width_sweep_steps(model, data, widths, *, epochs, lr, seeds, batch_size, depth, strides,
                       probe_batches, probe_batch_size, probe_runs, curve_widths, probe_widths,
                       progress) -> P.SweepSteps:
    """:func:`alignment_width_sweep` as one stage of points."""
    if model not in MODELS:
        raise ValueError(f"`model` must be one of {MODELS}, got {model!r}.")
    widths = [int(w) for w in widths]
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"`widths` must list positive integers, got {widths!r}.")
    seeds = [int(s) for s in seeds]
    curve_widths = {min(widths), max(widths)} if curve_widths is None else set(curve_widths)
    probe_widths = curve_widths if probe_widths is None else set(probe_widths)
    if not 0 <= probe_runs <= len(seeds):
        raise ValueError(f"`probe_runs` must be between 0 and the number of seeds, got {probe_runs}.")
    results = yield [P.Point(f"{__name__}:_width_point", dict(
        model=model, width=width, epochs=epochs, lr=lr, seeds=seeds, batch_size=batch_size,
        depth=depth, strides=strides, probe_batches=probe_batches,
        probe_batch_size=probe_batch_size, probe_runs=probe_runs,
        curve=width in curve_widths, probe=width in probe_widths),
        data={"data": data}, options={"progress": progress}) for width in widths]
    if results is None:
        return None
    table = pd.concat([r.table for r in results], ignore_index=True)
    table["diverged"] = table.diverged.astype(bool)
    return table.sort_values(["width", "seed", "epoch", "layer", "metric"], kind="stable") \
                .reset_index(drop=True)


_COLUMNS = ["experiment", "dataset", "model", "rule", "width", "lr", "seed", "epoch", "layer",
            "layer_name", "kind", "n_out", "n_in", "metric", "value", "diverged"]


def _width_point(data: Dataset, *, model: str, width: int, epochs: int, lr: float,
                 seeds: list[int], batch_size: int, depth: int, strides: Sequence[int],
                 probe_batches: int, probe_batch_size: int, probe_runs: int, curve: bool,
                 probe: bool, progress: bool = False) -> pd.DataFrame:
    """One point of :func:`alignment_width_sweep`: one width, every seed; its rows of the
    table. ``curve``: score every epoch (else the last only); ``probe``: also score the
    first ``probe_runs`` runs with the probe estimator."""
    input_shape = tuple(data.x_train.shape[1:])
    # One compiled initialiser (eager init would compile every weight shape's random draw
    # separately, about half a second each on a CPU).
    init = eqx.filter_jit(lambda key, width: make_network(
        model, input_shape, width, data.n_outputs, key=key, depth=depth, strides=strides))

    def make(key):
        return init(key, width)

    start = time.perf_counter()
    result = train(make, "backprop", data, epochs=epochs, learning_rates=lr, seeds=seeds,
                   batch_size=batch_size, predict=True,
                   epoch_metrics=alignment_epoch_metrics(seeds) if curve else None,
                   progress=progress)
    hist = result.history
    last = int(hist.epoch.max())
    # Scores that were not recorded during training: the last epoch of a width
    # without a curve, and the probe estimates of the first `probe_runs` runs.
    extra: dict[str, np.ndarray] = {}
    if not curve:
        extra.update({k: np.asarray(v) for k, v in alignment_epoch_metrics(seeds)(
            result.models, result.initial, result.predicted).items()})
    if probe_runs and probe:
        sub = jax.tree.map(lambda a: a[:probe_runs] if eqx.is_array(a) else a,
                           (result.models, result.initial, result.predicted))
        for metric, control in (("alignment_probe", False), ("alignment_shuffled_probe", True)):
            scores = layer_alignment(*sub, method="probe", control=control,
                                     seeds=seeds[:probe_runs], key=jax.random.PRNGKey(width),
                                     n_batches=probe_batches, batch_size=probe_batch_size)
            for layer in range(scores.shape[1]):
                extra[f"{metric}@{layer + 1}"] = scores[:, layer]
    if extra:
        diverged = hist[hist.epoch == last].groupby("run").diverged.first()
        rows = [{"run": r, "epoch": last, "metric": name, "value": float(v),
                 "diverged": bool(diverged.get(r, False))}
                for name, values in extra.items() for r, v in enumerate(values)]
        hist = pd.concat([hist, pd.DataFrame(rows).merge(result.runs, on="run")],
                         ignore_index=True)
        hist["rule"] = "backprop"
    hist = pd.concat([hist, pd.DataFrame(
        [{"run": r, "epoch": last, "metric": metric, "rule": "backprop", "value": value,
          "diverged": bool(hist[(hist.run == r) & (hist.epoch == last)].diverged.any())}
         for r in range(len(seeds))
         for metric, value in (("sweep_seconds", time.perf_counter() - start),
                               ("train_examples", data.n_train))]
    ).merge(result.runs, on="run")], ignore_index=True)
    split = hist.metric.map(_split_metric)
    hist = hist.assign(metric=[m for m, _ in split], layer=[i for _, i in split])
    names = {0: ("network", "", 0, 0)}
    for i, g in enumerate(layer_geometry(result.models), start=1):
        n_out, n_in = ((g.weight_shape[-1], g.weight_shape[-2]) if g.kind == "conv"
                       else g.weight_shape)
        names[i] = (g.name, g.kind, n_out, n_in)
    for j, column in enumerate(("layer_name", "kind", "n_out", "n_in")):
        hist[column] = hist.layer.map(lambda i, j=j: names[i][j])
    hist = hist.assign(experiment="width_sweep", dataset=data.name, model=model, width=width)
    return hist[_COLUMNS]


def _width_point_workload(data: Dataset, *, model: str, width: int, epochs: int, seeds,
                          batch_size: int, depth: int, strides, **_) -> P.Workload:
    """What a :func:`_width_point` trains (for a cost plan): backprop, and per step the
    prediction's Align-zero update; the alignment scores are not counted."""
    return P.Workload(
        model_factory(model, data.x_train.shape[1:], data.n_outputs, width, depth=depth,
                      strides=strides), "backprop", data.x_train[:batch_size],
        data.y_train[:batch_size], mse, runs=len(seeds),
        steps=epochs * (data.n_train // batch_size), eval_examples=(epochs + 1) * data.n_test,
        extra_rules=("align_zero",),
        structure=(model, data.x_train.shape[1:], data.n_outputs, width, depth, tuple(strides),
                   batch_size))


_width_point.workload = _width_point_workload


def final_epoch(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of the last epoch of each (dataset, model, width, seed) in a sweep table."""
    keys = ["dataset", "model", "width", "seed"]
    last = table.groupby(keys).epoch.transform("max")
    return table[table.epoch == last]


# --------------------------------------------------------------------------------------
# The chapter's experiments, summaries and figures
# --------------------------------------------------------------------------------------


def alignment_experiments(datasets: Sequence[str], *, n_train: int, epochs: dict[str, int],
                          lr: float, seeds: Sequence[int], mlp_widths: Sequence[int],
                          mlp_depth: int, conv_widths: Sequence[int],
                          probe_widths: Sequence[int], probe_batches: int,
                          loader_kwargs: dict[str, dict] | None = None,
                          progress: bool = False, points_only: bool = False,
                          load=None) -> pd.DataFrame:
    """Every width sweep of the alignment chapter, in one tidy table.

    For each name in ``datasets`` (loaded with :func:`alignlib.data.load_dataset`,
    keeping the first ``n_train`` training examples, ``0`` for all), an MLP sweep over
    ``mlp_widths`` (skipped if empty) and a ConvNet sweep over ``conv_widths`` with the
    data set's strides from :data:`PAPER_CONV_STRIDES`, both by
    :func:`alignment_width_sweep` for ``epochs[name]`` epochs. The narrowest and widest
    width of each sweep are scored every epoch; ``probe_widths`` (those present in a
    sweep) are also scored with the probe estimator on the first seed.
    ``loader_kwargs[name]`` goes to the loader (e.g. ``cache_dir``, ``checksums``);
    ``load(name, **kwargs)`` replaces :func:`~alignlib.data.load_dataset` (a cost plan
    passes data sets of the right shapes). The points of every sweep run together
    (:mod:`alignlib.experiments.points`); ``points_only`` returns them instead.
    """
    from alignlib.data import load_dataset

    unknown = [d for d in datasets if d not in PAPER_CONV_STRIDES]
    if unknown:
        raise ValueError(f"no ConvNet strides for data set(s) {unknown}; known: "
                         f"{sorted(PAPER_CONV_STRIDES)}.")
    missing = [d for d in datasets if d not in epochs]
    if missing:
        raise ValueError(f"`epochs` has no entry for data set(s) {missing}.")
    sweeps = []
    for name in datasets:
        kwargs = dict((loader_kwargs or {}).get(name, {}))
        if n_train:
            kwargs["n_train"] = int(n_train)
        if load is None:  # a runner may load it again in another process, not send it
            data = P.with_source(load_dataset(name, **kwargs), "alignlib.data:load_dataset",
                                 name=name, **kwargs)
        else:
            data = load(name, **kwargs)
        common = dict(epochs=int(epochs[name]), lr=lr, seeds=seeds, probe_batches=probe_batches,
                      probe_runs=1, progress=progress, points_only=P.STAGES)
        if mlp_widths:
            sweeps.append(alignment_width_sweep(
                "mlp", data, mlp_widths, depth=mlp_depth,
                probe_widths=[w for w in probe_widths if w in mlp_widths], **common))
        if conv_widths:
            sweeps.append(alignment_width_sweep(
                "convnet", data, conv_widths, strides=PAPER_CONV_STRIDES[name],
                probe_widths=[w for w in probe_widths if w in conv_widths], **common))
    if not sweeps:
        raise ValueError("nothing to run: both `mlp_widths` and `conv_widths` are empty.")
    if points_only:
        return P.list_points(sweeps)
    return pd.concat(P.run_sweeps(sweeps, "alignment"), ignore_index=True)


MODEL_LABELS = {"mlp": "MLP", "convnet": "ConvNet"}


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
    ``n / (n + d + 1)`` of the MLP's first layer (dotted)."""
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

