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
* :func:`final_epoch`: the last epoch's rows of a sweep table.

The chapter's summaries, numbers, figures and scorecard records are
:mod:`alignlib.experiments.layer_alignment_analysis`.
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
# The chapter's experiments
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
