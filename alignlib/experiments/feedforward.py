"""The benchmark experiments of the book: accuracy against width and learning rate for
every learning rule, with seeds, intervals and timing (the sweep over training-set sizes,
:func:`alignlib.experiments.low_data.sweep`, is built on :func:`width_sweep`).

Each sweep trains, for every (rule, width) or (rule, training-set size), all seeds and
learning rates of that point in *one* call of :func:`alignlib.training.train`, i.e. one
compiled, ``vmap``-ed program, and returns the concatenated training histories as one
tidy :class:`pandas.DataFrame` with one row per

    (experiment, dataset, arch, optimizer, parameterization, n_train, rule, width, lr,
     seed, epoch, metric)

and the columns ``value``, ``diverged``, ``batch_size`` and ``runs_in_call``. Metrics are
those of :func:`~alignlib.training.train`: ``train_loss``, ``heldout_loss``,
``heldout_accuracy`` and ``seconds`` (wall time of the epoch for all runs of the call;
epoch 1 includes compilation).

The analysis functions reduce such a table:

* :func:`final_values`: each run's value of a metric at its last epoch;
* :func:`summarise`: mean over seeds and a Student-t confidence interval per group;
* :func:`best_lr`: the learning rate with the best mean per (rule, width), keeping every
  learning rate in the data;
* :func:`gap_to_reference`: each rule's accuracy minus backprop's, paired by seed (same
  seed, same initial network), with an interval;
* :func:`epoch_seconds`: training time per epoch and rule, without the compiling epoch.

Conventions (the authors', see the book's differences page): squared loss against ``one_hot - 0.1``, plain SGD
with batch 100, accuracy on a split held out of the training set.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from alignlib.convergence import MIN_EPOCHS
from alignlib.data import TARGET_OFFSET, Dataset, load_dataset, one_hot_targets
from alignlib.experiments import points as P
from alignlib.models import model_factory
from alignlib.rules import get_rule
from alignlib import statistics
from alignlib.training import train
from alignlib.validation import integers, numbers_list
from alignlib.experiments.tables import format_ci, markdown_table

__all__ = [
    "ARCHS",
    "BENCHMARK_DATASETS",
    "RUN_KEYS",
    "load_benchmark_data",
    "synthetic_dataset",
    "width_sweep",
    "lr_sweep",
    "stable_lr_at_init",
    "lr_grid",
    "conv_feature_sizes",
    "final_values",
    "summarise",
    "best_lr",
    "gap_to_reference",
    "epoch_seconds",
    "markdown_table",
    "format_ci",
    "select_lrs",
]

#: Architectures the sweeps build: the ReLU MLP and the authors' ConvNet.
ARCHS = ("mlp", "convnet")

#: Datasets :func:`load_benchmark_data` knows (``digits`` is offline).
BENCHMARK_DATASETS = ("digits", "kmnist", "cifar10", "imagenet32")

#: Columns that identify one run (one network) in a sweep table, where present.
RUN_KEYS = ("experiment", "dataset", "arch", "optimizer", "parameterization", "n_train",
            "rule", "width", "lr", "seed")

_COLUMN_ORDER = (*RUN_KEYS, "epoch", "metric", "value", "diverged", "batch_size",
                 "runs_in_call")


# --------------------------------------------------------------------------- checks


_int_list = integers  # a non-empty list of distinct integers >= low
_lr_list = numbers_list  # a non-empty list of distinct positive, finite numbers


def _rule_list(rules) -> list[str]:
    if isinstance(rules, str):
        rules = [rules]
    rules = list(rules)
    if not rules:
        raise ValueError("`rules` must list at least one learning rule")
    names = [get_rule(r).name for r in rules]  # raises ValueError naming the valid rules
    if len(set(names)) != len(names):
        raise ValueError(f"`rules` has repeated entries: {names}")
    return names


def _require_columns(table: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} needs the column(s) {missing}; the table has {list(table.columns)}")


# --------------------------------------------------------------------------- models, data


def synthetic_dataset(input_shape: Sequence[int], n_classes: int, *, n_train: int, n_test: int,
                      seed: int = 0, name: str = "synthetic",
                      target_offset: float = TARGET_OFFSET) -> Dataset:
    """Random images in ``[0, 1]`` with random labels: a *smoke test* of shapes and code
    paths whose accuracies mean nothing (chance is ``1 / n_classes``).

    Images ``(n, *input_shape)`` float32, uniform; labels uniform over ``n_classes``;
    targets ``one_hot - target_offset``.
    """
    n_train = _int_list("n_train", [n_train])[0]
    n_test = _int_list("n_test", [n_test])[0]
    n_classes = _int_list("n_classes", [n_classes], low=2)[0]
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"`input_shape` must hold positive sizes, got {tuple(input_shape)}")
    rng = np.random.default_rng(seed)
    x = rng.random((n_train + n_test, *shape), dtype=np.float32)
    labels = rng.integers(0, n_classes, n_train + n_test).astype(np.int64)
    y = (one_hot_targets(labels, n_classes) + np.float32(TARGET_OFFSET)
         - np.float32(target_offset)).astype(np.float32)
    return Dataset(name=name, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                   y_test=y[n_train:], labels_train=labels[:n_train], labels_test=labels[n_train:],
                   n_outputs=n_classes)


def load_benchmark_data(name: str, **kwargs) -> Dataset:
    """The data set of a benchmark chapter (one of :data:`BENCHMARK_DATASETS`):
    :func:`alignlib.data.load_dataset` without a download progress bar. Keyword arguments
    as there: ``n_train``, ``cache_dir``, ``cap_heldout``, ``target_offset`` and the
    loader's own (e.g. ``checksums=``, ``holdout=``, ``split=``)."""
    if name not in BENCHMARK_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(BENCHMARK_DATASETS)}")
    # a sweep's runner may load it again in another process instead of sending the arrays
    return P.with_source(load_dataset(name, **{"progress": False, **kwargs}),
                         f"{__name__}:load_benchmark_data", name=name, **kwargs)


# --------------------------------------------------------------------------- sweeps


def _tidy(history: pd.DataFrame, fixed: Mapping[str, object]) -> pd.DataFrame:
    table = history.drop(columns=["run"])
    for key, value in fixed.items():
        table[key] = value
    ordered = [c for c in _COLUMN_ORDER if c in table.columns]
    return table[ordered + [c for c in table.columns if c not in ordered]]


def _chunks(seeds: list[int], size: int | None) -> list[list[int]]:
    if not size:
        return [seeds]
    return [seeds[i:i + size] for i in range(0, len(seeds), size)]


def width_sweep(data: Dataset, *, arch: str, widths: Sequence[int], rules: Sequence[str],
                lrs: Sequence[float], seeds: Sequence[int], epochs: int,
                lrs_by_width: Mapping[int, Sequence[float]] | None = None, depth: int = 2,
                strides: Sequence[int] = (1, 2, 2), batch_size: int = 100,
                optimizer: str = "sgd", parameterization: str = "ntk",
                bias_multiplier: float = 1.0, convergence_tolerance: float | None = None,
                eval_every: int = 1, seeds_per_call: int | None = None,
                experiment: str = "width_sweep",
                progress: bool = False, points_only: bool = False) -> pd.DataFrame:
    """Train every rule at every width, for every (seed, learning rate), on ``data``.

    For each width and rule, the grid ``seeds x lrs`` runs in one
    :func:`~alignlib.training.train` call (one compiled program; ``seeds_per_call`` splits
    the seeds into several calls where memory requires). The same seed gives the same
    initial network for every rule and learning rate of a width.

    Args:
        data: train / held-out split (:func:`load_benchmark_data`).
        arch, depth, strides, parameterization, bias_multiplier: the network
            (:func:`alignlib.models.model_factory`).
        widths: hidden widths (MLP units or ConvNet channels).
        rules: learning-rule names (:data:`alignlib.rules.RULES`).
        lrs: learning rates of every width ...
        lrs_by_width: ... except the widths listed here, which use their own list (a
            learning-rate sweep at some widths shares the runs of the width sweep).
        seeds: seeds of the initial networks, feedback weights and shuffles.
        epochs: passes over the training set (>= 1); the maximum when
            ``convergence_tolerance`` is given.
        eval_every: record held-out metrics every this many epochs (and at the last).
        convergence_tolerance: stop each training call once all its runs have converged
            (:mod:`alignlib.convergence`); ``None`` trains every run for ``epochs``. At each
            width every rule trains at least as many epochs as the first rule of ``rules``
            needed (backprop in the book), so a rule whose loss flattens early, at a worse
            value, is not stopped before the reference.
        batch_size: SGD batch size; the held-out set is evaluated whole, in batches of
            at most this size (:func:`alignlib.training.evaluation_batches`).
        optimizer: ``"sgd"`` (NTK experiments) or ``"adam"`` (standard parameterisation).
        experiment: value of the ``experiment`` column.
        points_only: return the sweep's points (:mod:`alignlib.experiments.points`)
            instead of running them.

    Each training call is one point (:mod:`alignlib.experiments.points`), run by the
    current runner: with a convergence tolerance the first rule's calls run first (chunk
    after chunk, each raising its width's floor), then every other call at once.

    Returns:
        The tidy history (module docstring), ``len(widths) * len(rules) * len(seeds) *
        len(lrs) * (epochs + 1)`` rows per metric (epoch 0 has no ``train_loss`` or
        ``seconds``), fewer if every run of a call diverged early.
    """
    steps = _width_sweep_steps(
        data, arch=arch, widths=widths, rules=rules, lrs=lrs, seeds=seeds, epochs=epochs,
        lrs_by_width=lrs_by_width, depth=depth, strides=strides, batch_size=batch_size,
        optimizer=optimizer, parameterization=parameterization, bias_multiplier=bias_multiplier,
        convergence_tolerance=convergence_tolerance, eval_every=eval_every,
        seeds_per_call=seeds_per_call, experiment=experiment, progress=progress)
    if points_only is P.STAGES:
        return steps
    if points_only:
        return P.list_points([steps])
    return P.run_sweeps([steps], experiment)[0]


def _width_sweep_steps(data: Dataset, *, arch, widths, rules, lrs, seeds, epochs, lrs_by_width,
                       depth, strides, batch_size, optimizer, parameterization, bias_multiplier,
                       convergence_tolerance, eval_every, seeds_per_call, experiment,
                       progress) -> P.SweepSteps:
    """:func:`width_sweep` in stages (:mod:`alignlib.experiments.points`)."""
    if arch not in ARCHS:
        raise ValueError(f"`arch` must be one of {ARCHS}, got {arch!r}")
    widths = _int_list("widths", widths)
    rules = _rule_list(rules)
    lrs = _lr_list("lrs", lrs)
    seeds = _int_list("seeds", seeds, low=0)
    epochs = _int_list("epochs", [epochs])[0]
    lrs_by_width = {int(w): _lr_list(f"lrs_by_width[{w}]", v) for w, v in (lrs_by_width or {}).items()}
    unknown = sorted(set(lrs_by_width) - set(widths))
    if unknown:
        raise ValueError(f"`lrs_by_width` names widths {unknown} that are not in `widths` {widths}")
    if seeds_per_call is not None and seeds_per_call != 0:
        seeds_per_call = _int_list("seeds_per_call", [seeds_per_call])[0]
    if batch_size > data.n_train:
        raise ValueError(f"`batch_size` {batch_size} exceeds the {data.n_train} training examples; "
                         "use alignlib.experiments.low_data.authors_batch_size(n_train)")
    chunks = _chunks(seeds, seeds_per_call)
    # each width's floor: raised to the epochs the first rule trained there (it matters only
    # when training stops at convergence; without a tolerance every call is independent)
    floor = dict.fromkeys(widths, MIN_EPOCHS)

    def point(width: int, rule: str, chunk: list[int]) -> P.Point:
        return P.Point(f"{__name__}:_width_point", dict(
            arch=arch, width=width, rule=rule, lrs=lrs_by_width.get(width, lrs), seeds=chunk,
            epochs=epochs, depth=depth, strides=strides, batch_size=batch_size,
            optimizer=optimizer, parameterization=parameterization,
            bias_multiplier=bias_multiplier, convergence_tolerance=convergence_tolerance,
            min_epochs=min(floor[width], epochs), eval_every=eval_every, experiment=experiment),
            data={"data": data}, options={"progress": progress})

    tables: dict[tuple[int, int, int], pd.DataFrame] = {}
    first = range(len(chunks)) if convergence_tolerance is not None else []
    for c in first:  # the first rule, chunk after chunk
        results = yield [point(width, rules[0], chunks[c]) for width in widths]
        for width, result in zip(widths, results or []):
            floor[width] = max(floor[width], int(result.table.epoch.max()))
            tables[width, 0, c] = result.table
    rest = [(width, i, c) for width in widths for i in range(len(rules))
            for c in range(len(chunks)) if i or convergence_tolerance is None]
    results = yield [point(width, rules[i], chunks[c]) for width, i, c in rest]
    if results is None:
        return None
    tables.update({key: result.table for key, result in zip(rest, results)})
    return pd.concat([tables[width, i, c] for width in widths for i in range(len(rules))
                      for c in range(len(chunks))], ignore_index=True)


def _width_point(data: Dataset, *, arch: str, width: int, rule: str, lrs: Sequence[float],
                 seeds: Sequence[int], epochs: int, depth: int, strides: Sequence[int],
                 batch_size: int, optimizer: str, parameterization: str, bias_multiplier: float,
                 convergence_tolerance: float | None, min_epochs: int, eval_every: int,
                 experiment: str, progress: bool = False) -> pd.DataFrame:
    """One point of :func:`width_sweep`: one rule at one width, its seeds and learning rates
    trained in one :func:`~alignlib.training.train` call; the tidy history."""
    make = model_factory(arch, data.x_train.shape[1:], data.n_outputs, width, depth=depth,
                         strides=strides, parameterization=parameterization,
                         bias_multiplier=bias_multiplier)
    result = train(make, rule, data, epochs=epochs, learning_rates=lrs, seeds=seeds,
                   batch_size=batch_size, optimizer=optimizer, progress=progress,
                   convergence_tolerance=convergence_tolerance, min_epochs=min_epochs,
                   eval_every=eval_every)
    return _tidy(result.history, {
        "experiment": experiment, "dataset": data.name, "arch": arch, "optimizer": optimizer,
        "parameterization": parameterization, "n_train": data.n_train, "width": width,
        "batch_size": batch_size, "runs_in_call": len(seeds) * len(lrs)})


def _width_point_workload(data: Dataset, *, arch: str, width: int, rule: str, lrs, seeds,
                          epochs: int, depth: int, strides, batch_size: int, eval_every: int,
                          parameterization: str = "ntk", bias_multiplier: float = 1.0,
                          **_) -> P.Workload:
    """What a :func:`_width_point` trains (for a cost plan): at most ``epochs`` epochs."""
    from alignlib.models import loss_for

    make = model_factory(arch, data.x_train.shape[1:], data.n_outputs, width, depth=depth,
                         strides=strides, parameterization=parameterization,
                         bias_multiplier=bias_multiplier)
    evaluations = 1 + -(-epochs // eval_every)  # epoch 0, every eval_every-th and the last
    return P.Workload(make, rule, data.x_train[:batch_size], data.y_train[:batch_size],
                      loss_for(arch), runs=len(seeds) * len(lrs),
                      steps=epochs * (data.n_train // batch_size),
                      eval_examples=evaluations * data.n_test,
                      structure=(arch, data.x_train.shape[1:], data.n_outputs, width, depth,
                                 tuple(strides), parameterization, rule, batch_size))


_width_point.workload = _width_point_workload


def stable_lr_at_init(data: Dataset, *, arch: str, width: int, depth: int = 2,
                      strides: Sequence[int] = (1, 2, 2), parameterization: str = "ntk",
                      bias_multiplier: float = 1.0, batch_size: int = 100,
                      seed: int = 0) -> dict[str, float]:
    """The stable SGD learning rate of a sweep point, measured at initialisation.

    Builds the network of ``seed`` exactly as :func:`~alignlib.training.train` does and
    returns ``{"ntk_top_eigenvalue": lambda_max, "lr_bound": B K / lambda_max}`` for the
    empirical NTK on the first ``batch_size`` training examples
    (:func:`alignlib.stability.stable_learning_rate`).
    """
    import jax

    from alignlib.stability import ntk_top_eigenvalue

    make = model_factory(arch, data.x_train.shape[1:], data.n_outputs, width, depth=depth,
                         strides=strides, parameterization=parameterization,
                         bias_multiplier=bias_multiplier)
    model = make(jax.random.split(jax.random.PRNGKey(seed), 3)[0])
    x = data.x_train[:min(batch_size, data.n_train)]
    lam = ntk_top_eigenvalue(model, x)
    return {"ntk_top_eigenvalue": lam, "lr_bound": x.shape[0] * data.n_outputs / lam}


def lr_grid(bound: float, fractions: Sequence[float]) -> list[float]:
    """Learning rates ``fraction * bound``, rounded to two significant digits (so tables
    read ``20``, ``40``, ``79`` rather than ``39.589...``)."""
    fractions = _lr_list("fractions", fractions)
    if not math.isfinite(bound) or bound <= 0:
        raise ValueError(f"`bound` must be a positive, finite learning rate, got {bound!r}")
    return sorted({float(f"{bound * f:.2g}") for f in fractions})


def lr_sweep(data: Dataset, *, widths: Sequence[int], lrs: Sequence[float],
             **kwargs) -> pd.DataFrame:
    """:func:`width_sweep` with ``experiment="lr_sweep"``: every rule at each of
    ``widths`` (the paper: 8 and 256) for every learning rate in ``lrs`` (the paper:
    0.05 ... 20)."""
    kwargs.setdefault("experiment", "lr_sweep")
    return width_sweep(data, widths=widths, lrs=lrs, **kwargs)


def conv_feature_sizes(input_size: int, strides: Sequence[int]) -> list[int]:
    """Side length of each convolution's output for 'SAME' padding: ``ceil(size / s)`` per
    layer (ImageNet 224 with strides 4, 2, 1, 2, 1, 2, 1: 56, 28, 28, 14, 14, 7, 7)."""
    size = _int_list("input_size", [input_size])[0]
    strides = list(strides)
    if not strides or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                          for s in strides):
        raise ValueError(f"`strides` must list positive integers, got {strides}")
    out = []
    for s in strides:
        size = -(-size // int(s))
        out.append(size)
    return out


# --------------------------------------------------------------------------- analysis


def _run_keys(table: pd.DataFrame) -> list[str]:
    return [c for c in RUN_KEYS if c in table.columns]


def final_values(table: pd.DataFrame, metric: str = "heldout_accuracy") -> pd.DataFrame:
    """One row per run: the run's ``metric`` at its last recorded epoch (normally the last
    epoch; earlier if every run of its call diverged and training stopped).

    A run that diverged keeps the value of its last finite parameters, with
    ``diverged=True``; :func:`summarise` leaves such runs out.
    """
    _require_columns(table, ["epoch", "metric", "value"], "final_values")
    sub = table[table.metric == metric]
    if sub.empty:
        raise ValueError(f"the table has no rows with metric {metric!r}; "
                         f"metrics: {sorted(table.metric.unique())}")
    keys = _run_keys(sub)
    idx = sub.groupby(keys, dropna=False, sort=True).epoch.idxmax()
    return sub.loc[idx.values].reset_index(drop=True)


def summarise(table: pd.DataFrame, by: Sequence[str] = ("rule", "width", "lr"), *,
              metric: str = "heldout_accuracy", confidence: float = 0.95) -> pd.DataFrame:
    """Mean over seeds and its ``confidence`` Student-t interval, per group ``by``.

    ``table``: a sweep table (reduced first with :func:`final_values`) or a table of
    final values (no ``epoch`` column; column ``value``, optional ``diverged``).
    Diverged runs are left out of the mean and counted in ``n_diverged``.

    Returns columns ``*by, n, n_diverged, mean, sd, ci_low, ci_high`` (``n``: runs used;
    the interval is NaN when ``n < 2``).
    """
    final = final_values(table, metric) if "epoch" in table.columns else table
    _require_columns(final, [*by, "value"], "summarise")
    diverged = final["diverged"].astype(bool) if "diverged" in final.columns else None
    summary = statistics.summarise(final, "value", by, confidence=confidence, excluded=diverged)
    return summary.rename(columns={"n_excluded": "n_diverged"})


def best_lr(table: pd.DataFrame, by: Sequence[str] = ("rule", "width"), *,
            metric: str = "heldout_accuracy", confidence: float = 0.95,
            higher_is_better: bool = True) -> pd.DataFrame:
    """For each group ``by``, the learning rate with the best mean final ``metric``.

    ``table``: a sweep table or a :func:`summarise` table that has an ``lr`` column.
    Only learning rates at which no seed diverged compete; ties go to the smaller
    learning rate. A group in which every learning rate diverged is returned with ``lr``
    and ``mean`` NaN. The learning rates that lost stay in the sweep table.

    Returns the summary row of the winner per group, plus ``n_lrs`` (learning rates tried).
    """
    by = list(by)
    if "lr" in by:
        raise ValueError("`by` must not contain 'lr': best_lr chooses it")
    summary = table if "mean" in table.columns else summarise(
        table, [*by, "lr"], metric=metric, confidence=confidence)
    _require_columns(summary, [*by, "lr", "mean", "n", "n_diverged"], "best_lr")
    rows = []
    for key, group in summary.groupby(by, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        valid = group[(group.n_diverged == 0) & (group.n > 0) & np.isfinite(group["mean"])]
        if valid.empty:
            row = {c: np.nan for c in summary.columns}
            row.update(dict(zip(by, key)))
        else:
            order = valid.assign(_score=valid["mean"] if higher_is_better else -valid["mean"])
            row = order.sort_values(["_score", "lr"], ascending=[False, True]).iloc[0] \
                .drop("_score").to_dict()
        row["n_lrs"] = int(group.lr.nunique())
        rows.append(row)
    return pd.DataFrame(rows, columns=[*summary.columns, "n_lrs"])


def gap_to_reference(table: pd.DataFrame, reference: str = "backprop",
                     over: Sequence[str] = ("width",), *, metric: str = "heldout_accuracy",
                     confidence: float = 0.95) -> pd.DataFrame:
    """Each rule's final ``metric`` minus the reference rule's, at each point ``over``.

    Both rules use their own best learning rate (:func:`best_lr`); the difference is taken
    seed by seed (the same seed gives the same initial network, so the pairs share their
    initialisation), and its mean gets a Student-t interval. Seeds where either run
    diverged are left out.

    Returns columns ``*over, rule, lr, reference_lr, n, mean, reference_mean, gap,
    ci_low, ci_high`` (``gap`` = mean paired difference, positive when the rule is
    better); the reference rule itself is not listed.
    """
    over = list(over)
    final = final_values(table, metric)
    _require_columns(final, ["rule", "lr", "seed", *over], "gap_to_reference")
    if reference not in set(final.rule):
        raise ValueError(f"reference rule {reference!r} is not in the table; rules: "
                         f"{sorted(final.rule.unique())}")
    best = best_lr(final, ["rule", *over], metric=metric, confidence=confidence)
    if "diverged" not in final.columns:
        final = final.assign(diverged=False)
    rows = []
    ref_best = best[best.rule == reference].set_index(over)
    for _, row in best[best.rule != reference].iterrows():
        point = tuple(row[c] for c in over)
        key = point if len(point) > 1 else point[0]
        if key not in ref_best.index or not np.isfinite(row["lr"]):
            continue
        ref_lr = float(ref_best.loc[key, "lr"])
        if not np.isfinite(ref_lr):
            continue
        at_point = np.logical_and.reduce([final[c] == row[c] for c in over])
        mine = final[at_point & (final.rule == row.rule) & np.isclose(final.lr, row.lr)]
        ref = final[at_point & (final.rule == reference) & np.isclose(final.lr, ref_lr)]
        pairs = mine.merge(ref, on="seed", suffixes=("", "_ref"))
        pairs = pairs[~pairs.diverged.astype(bool) & ~pairs.diverged_ref.astype(bool)]
        diff = (pairs.value - pairs.value_ref).to_numpy(float)
        gap, low, high = statistics.t_interval(diff, confidence)
        rows.append({**dict(zip(over, point)), "rule": row.rule, "lr": row.lr,
                     "reference_lr": ref_lr, "n": int(diff.size),
                     "mean": float(pairs.value.mean()) if len(pairs) else np.nan,
                     "reference_mean": float(pairs.value_ref.mean()) if len(pairs) else np.nan,
                     "gap": gap, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=[*over, "rule", "lr", "reference_lr", "n", "mean",
                                       "reference_mean", "gap", "ci_low", "ci_high"])


def epoch_seconds(table: pd.DataFrame, by: Sequence[str] = ("rule", "width"), *,
                  reference: str | None = "backprop") -> pd.DataFrame:
    """Training time per epoch, without the compiling first epoch.

    For each training call (all seeds and learning rates of one point trained together)
    this takes the median of its ``seconds`` over epochs 2, 3, ... (epoch 1 includes
    compilation), then the median over the calls of each group ``by``. Columns: ``*by,
    runs_in_call, seconds_per_epoch`` (the whole call), ``seconds_per_run`` (divided by
    the runs sharing it: ``vmap`` runs them together, so this is an amortised cost) and,
    if ``reference`` is given and ``by`` contains ``rule``, ``ratio_to_reference`` (per
    call, relative to the reference rule at the same other ``by`` values).
    """
    by = list(by)
    _require_columns(table, ["epoch", "metric", "value", *by], "epoch_seconds")
    sec = table[table.metric == "seconds"]
    if sec.empty:
        raise ValueError("the table has no 'seconds' rows")
    later = sec[sec.epoch >= 2]
    if later.empty:
        raise ValueError("epoch_seconds needs at least 2 epochs: epoch 1 includes compilation")
    call_keys = [c for c in _run_keys(sec) if c not in ("lr", "seed")]
    for c in by:
        if c not in call_keys:
            call_keys.append(c)
    runs_col = "runs_in_call" if "runs_in_call" in later.columns else None
    if runs_col is None:
        later = later.assign(runs_in_call=1)
    # each call records one time per epoch (the same value on every run's row)
    per_call = (later.groupby([*call_keys, "epoch"], dropna=False)
                .agg(value=("value", "first"), runs_in_call=("runs_in_call", "first"))
                .groupby(call_keys, dropna=False)
                .agg(seconds_per_epoch=("value", "median"), runs_in_call=("runs_in_call", "first"))
                .reset_index())
    per_call["seconds_per_run"] = per_call.seconds_per_epoch / per_call.runs_in_call
    out = (per_call.groupby(by, dropna=False)
           .agg(runs_in_call=("runs_in_call", "median"),
                seconds_per_epoch=("seconds_per_epoch", "median"),
                seconds_per_run=("seconds_per_run", "median"))
           .reset_index())
    if reference is not None and "rule" in by:
        others = [c for c in by if c != "rule"]
        ref = out[out.rule == reference]
        if not ref.empty:
            ref = ref[[*others, "seconds_per_run"]].rename(columns={"seconds_per_run": "_ref"})
            out = out.merge(ref, on=others, how="left") if others else out.assign(_ref=ref._ref.iloc[0])
            out["ratio_to_reference"] = out.seconds_per_run / out.pop("_ref")
    return out


def select_lrs(table: pd.DataFrame, lrs: Sequence[float]) -> pd.DataFrame:
    """The rows of ``table`` whose learning rate is one of ``lrs`` (compared with
    ``numpy.isclose``, so values read back from CSV match)."""
    _require_columns(table, ["lr"], "select_lrs")
    lrs = np.asarray(_lr_list("lrs", lrs), float)
    keep = np.isclose(table.lr.to_numpy(float)[:, None], lrs[None, :]).any(axis=1)
    return table[keep]
