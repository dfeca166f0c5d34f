"""The recurrent experiment of the paper: a ReLU RNN trained on the Add task.

The network is :class:`alignlib.RNN` (NTK parameterisation, recurrence in ``lax.scan``)::

    h_t = relu(W_ih x_t + W_hh h_(t-1) / sqrt(n) + b_h),     y_t = w_ho . h_t / sqrt(n) + b_o

with a learned initial state ``h_0``, trained on :func:`alignlib.data.add_task` with
:func:`alignlib.sequence_mse` (sum over time of the batch mean of ``(y_t - target_t)^2``).
The rules (backprop through time, Align-ada, Align-zero, Align-prop, readout only) are the
library's (:mod:`alignlib.rules`); the model code is the same for all of them.

This module holds the chapter's experiment (``book/recurrent.ipynb``); the authors' own
code, with its five quirks and their seed-99 run, is :mod:`alignlib.authors_add_task`
(its names are re-exported here for the chapter). What is here:

* :func:`sweep`: trains every (setting, rule, width) with several seeds and returns one
  tidy table (losses per epoch, seconds per epoch, distance of the trained outputs to
  backprop's);
* :func:`constant_predictor_losses`: the two reference lines (always 0.5; the training
  mean);
* :func:`time_epochs` and :func:`timing_summary`: seconds per epoch in the authors'
  setting, test-set evaluation included (and, separately, a pass over the training set),
  extrapolated to their 200 epochs and set beside their TensorFlow times;
  :func:`epoch_flops` and :func:`matmul_gflops` turn them into an arithmetic rate;
* :func:`update_relative_errors` and :func:`updates_at_initialisation`: how far a rule's
  update is from backprop through time at initialisation, per site;
* :func:`best_losses`, :func:`paired_ratios` (each rule against another from the same
  initial network) and :func:`markdown_table` for the chapter's tables; the intervals
  and slopes come from :mod:`alignlib.statistics`.

The chapter's analysis of these tables and its scorecard records are in
:mod:`alignlib.experiments.recurrent_analysis`, its figures in
:mod:`alignlib.experiments.recurrent_figures`.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Callable, Iterable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from alignlib.layers import Array
from alignlib.authors_add_task import (
    AUTHORS_BEST_TEST_LOSS,
    AUTHORS_CONSTANT_LOSS,
    AUTHORS_SECONDS_200_EPOCHS,
    AUTHORS_SEED,
    AUTHORS_SETTING,
    SETTINGS,
    AuthorsDraws,
    Setting,
    SlotInitialState,
    get_setting,
    align_ada_authors_rnn,
    align_zero_authors_rnn,
    authors_seed_draws,
    authors_seed_model,
    authors_seed_run,
    make_rnn,
    readout_authors_rnn,
    rule_for,
    with_slot_initial_state,
)
from alignlib.data import Dataset, add_task
from alignlib.experiments import points as P
from alignlib.experiments import tables
from alignlib.models import RNN
from alignlib.rules import (
    LearningRule,
    LossFn,
    get_rule,
    sequence_mse,
)
from alignlib.training import make_epoch, make_evaluate, make_optimizer, train

__all__ = [
    "AUTHORS_SETTING", "AUTHORS_BEST_TEST_LOSS", "AUTHORS_CONSTANT_LOSS",
    "AUTHORS_SECONDS_200_EPOCHS", "AUTHORS_SEED", "SETTINGS", "Setting", "SlotInitialState",
    "align_ada_authors_rnn", "align_zero_authors_rnn", "readout_authors_rnn",
    "with_slot_initial_state", "make_rnn", "rule_for", "get_setting", "AuthorsDraws",
    "authors_seed_draws",
    "authors_seed_model", "authors_seed_run", "paired_ratios",
    "constant_predictor_losses", "sweep", "best_losses", "output_distances",
    "time_epochs", "timing_summary", "epoch_flops", "matmul_gflops", "update_relative_errors",
    "updates_at_initialisation", "markdown_table",
]

# ------------------------------------------------------------------ reference lines


def constant_predictor_losses(data: Dataset) -> dict[str, float]:
    """Test loss (:func:`~alignlib.sequence_mse`) of two predictors that ignore the input.

    ``'constant_0.5'``: always 0.5 (what the authors print as "random chance");
    ``'training_mean'``: at each time step, the mean training target of that step (the best
    input-independent predictor fitted on the training set).
    """
    y_train, y_test = np.asarray(data.y_train, np.float64), np.asarray(data.y_test, np.float64)
    mean = y_train.mean(axis=0, keepdims=True)
    return {"constant_0.5": float(np.sum(np.mean((y_test - 0.5) ** 2, axis=0))),
            "training_mean": float(np.sum(np.mean((y_test - mean) ** 2, axis=0)))}


# ------------------------------------------------------------------ the sweep


def _outputs(models, x: Array, batch_size: int) -> np.ndarray:
    """Outputs of stacked models on ``x`` (in batches of ``batch_size``, as the per-slot
    initial state needs): ``(runs, N, T, 1)``."""
    n = (x.shape[0] // batch_size) * batch_size
    xb = x[:n].reshape((-1, batch_size) + x.shape[1:])
    out = np.asarray(_stacked_outputs(models, xb))
    return out.reshape((out.shape[0], n) + out.shape[3:])


@eqx.filter_jit
def _stacked_outputs(models, xb: Array) -> Array:
    """``(runs, batches, batch, T, 1)`` outputs; compiled once per model structure and
    shape (module level, so every rule of a width reuses it)."""
    return eqx.filter_vmap(lambda m: jax.lax.map(m, xb))(models)


def output_distances(output: np.ndarray, reference: np.ndarray, initial: np.ndarray) -> dict:
    """Distance between two networks' outputs on the same sequences, per run.

    ``output``, ``reference``, ``initial``: ``(runs, N, T, 1)`` (a rule's trained network,
    backprop's trained network, the common initial network). Returns per-run arrays:
    ``'output_distance'``: ``sum_t mean_i (f_i,t - f^ref_i,t)^2`` (the loss's units);
    ``'relative_output_distance'``: ``||f - f_ref||_F / ||f_ref - f(0)||_F``.
    """
    # a run whose outputs are not finite (it diverged) gives NaN, without a warning
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.asarray(output, np.float64) - np.asarray(reference, np.float64)
        moved = np.asarray(reference, np.float64) - np.asarray(initial, np.float64)
        runs = diff.shape[0]
        return {"output_distance": np.mean(diff ** 2, axis=1).reshape(runs, -1).sum(axis=1),
                "relative_output_distance": np.sqrt(
                    np.sum(diff.reshape(runs, -1) ** 2, axis=1)
                    / np.sum(moved.reshape(runs, -1) ** 2, axis=1))}


def sweep(runs: Iterable[tuple[str, str, int]], *, epochs: int, lr: float,
          seeds: Sequence[int], batch_size: int = 50, n_sequences: int = 400,
          length: int = 100, n_train: int = 300, data_seed: int = 0,
          progress: bool = False, points_only: bool = False) -> pd.DataFrame:
    """Train every ``(setting, rule, width)`` of ``runs`` on the Add task.

    Each triple trains one network per seed with :func:`alignlib.train` (all seeds in one
    compiled program), plain SGD at learning rate ``lr``, for ``epochs`` epochs. Networks of
    the same seed and width start from the same initial weights whatever the rule. Where a
    setting and width also trains ``'backprop'``, every other rule's trained outputs on
    the test sequences are compared with backprop's of the same seed
    (:func:`output_distances`), recorded at the last epoch.

    Each triple is one point (:mod:`alignlib.experiments.points`), run by the current
    runner; each returns its trained outputs on the test sequences, so the comparisons
    need no order among them. ``points_only`` returns the points instead.

    Returns a tidy DataFrame: ``setting, rule, width, run, seed, lr, epoch, metric, value,
    diverged``; metrics ``train_loss``, ``heldout_loss`` (epoch 0 = initialisation),
    ``seconds`` (wall time of the epoch for all seeds together; epoch 1 includes
    compilation), ``output_distance`` and ``relative_output_distance``.
    """
    runs = [(str(s), str(r), int(w)) for s, r, w in runs]
    for s, r, w in runs:
        get_setting(s)
        rule_for(s, r)
        if w < 1:
            raise ValueError(f"widths must be positive, got {w}")
    seeds = list(seeds)
    # backprop first in every (setting, width), so the others can be compared with it
    order = sorted(runs, key=lambda t: (t[0], t[2], t[1] != "backprop"))
    points = [P.Point(f"{__name__}:_sweep_point", dict(
        setting=setting, rule=rule, width=width, epochs=epochs, lr=lr, seeds=seeds,
        batch_size=batch_size, n_sequences=n_sequences, length=length, n_train=n_train,
        data_seed=data_seed), options={"progress": progress}) for setting, rule, width in order]
    if points_only:
        return points
    reference: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    tables = []
    for (setting_name, rule_name, width), (history, arrays) in zip(
            order, P.run_points(points, "recurrent")):
        setting = get_setting(setting_name)
        rule = rule_for(setting, rule_name)
        key = (setting.name, width)
        if rule_name == "backprop":
            reference[key] = (arrays["output"], arrays["initial_output"])
        elif key in reference:
            distances = output_distances(arrays["output"], *reference[key])
            last = history.epoch.max()
            diverged = history[history.epoch == last].groupby("run").diverged.first()
            rows = [{"run": r, "epoch": last, "metric": name, "value": float(v[r]),
                     "diverged": bool(diverged.get(r, False))}
                    for name, v in distances.items() for r in range(len(v))]
            runs_table = history[["run", "seed", "lr"]].drop_duplicates("run")
            extra = pd.DataFrame(rows).merge(runs_table, on="run")
            extra.insert(0, "rule", rule.name)
            extra["setting"], extra["width"] = setting.name, width
            history = pd.concat([history, extra], ignore_index=True)
        tables.append(history)
    columns = ["setting", "rule", "width", "run", "seed", "lr", "epoch", "metric", "value",
               "diverged"]
    return pd.concat(tables, ignore_index=True)[columns]


def _sweep_data(setting: str, *, n_sequences: int, length: int, n_train: int,
                data_seed: int) -> Dataset:
    return add_task(n_sequences=n_sequences, length=length, n_train=n_train, seed=data_seed,
                    wraparound=get_setting(setting).wraparound)


def _sweep_point(*, setting: str, rule: str, width: int, epochs: int, lr: float,
                 seeds: Sequence[int], batch_size: int, n_sequences: int, length: int,
                 n_train: int, data_seed: int, progress: bool = False):
    """One point of :func:`sweep`: one ``(setting, rule, width)`` for every seed. Returns the
    history and ``{"output": trained outputs on the test sequences}`` (``(runs, N, T, 1)``),
    with ``"initial_output"`` (the initial networks') for backprop."""
    spec = get_setting(setting)
    learning_rule = rule_for(spec, rule)
    data = _sweep_data(setting, n_sequences=n_sequences, length=length, n_train=n_train,
                       data_seed=data_seed)
    result = train(make_rnn(width, slot_state=batch_size if spec.slot_state else None),
                   learning_rule, data, epochs=epochs, learning_rates=lr, seeds=seeds,
                   batch_size=batch_size, loss_fn=sequence_mse, classification=False,
                   # the whole test set in one batch, unless the per-slot initial
                   # state needs batches of batch_size
                   eval_batch_size=batch_size if spec.slot_state else len(data.x_test),
                   tags={"setting": spec.name, "width": width}, progress=progress)
    x_test = jnp.asarray(data.x_test)
    arrays = {"output": _outputs(result.models, x_test, batch_size)}
    if rule == "backprop":
        arrays["initial_output"] = _outputs(result.initial, x_test, batch_size)
    return result.history, arrays


def _sweep_point_workload(*, setting: str, rule: str, width: int, epochs: int, seeds,
                          batch_size: int, n_sequences: int, length: int, n_train: int,
                          data_seed: int, **_) -> P.Workload:
    """What a :func:`_sweep_point` trains (for a cost plan)."""
    spec = get_setting(setting)
    data = _sweep_data(setting, n_sequences=n_sequences, length=length, n_train=n_train,
                       data_seed=data_seed)
    return P.Workload(make_rnn(width, slot_state=batch_size if spec.slot_state else None),
                      rule_for(spec, rule), data.x_train[:batch_size], data.y_train[:batch_size],
                      sequence_mse, runs=len(seeds), steps=epochs * (data.n_train // batch_size),
                      eval_examples=(epochs + 1) * data.n_test,
                      structure=(setting, rule, width, batch_size, length), loop_trips=length)


_sweep_point.workload = _sweep_point_workload


def best_losses(history: pd.DataFrame, metric: str = "heldout_loss") -> pd.DataFrame:
    """Per run, the best (lowest) value of ``metric`` over the epochs after initialisation,
    as the authors report it (their "best test loss"). Columns: the run's identifying
    columns and ``best``."""
    keys = [c for c in ("setting", "rule", "width", "seed", "lr") if c in history]
    part = history[(history.metric == metric) & (history.epoch > 0)]
    return part.groupby(keys, as_index=False).value.min().rename(columns={"value": "best"})


def paired_ratios(best: pd.DataFrame, reference: str = "backprop") -> pd.DataFrame:
    """Each run's best loss over the best loss of the ``reference`` rule's run with the same
    setting, width and seed, i.e. from the same initial network. ``best``: a
    :func:`best_losses` table. Adds ``best_reference`` and ``ratio`` (NaN where the
    reference's best loss is not finite: a diverged reference gives no comparison)."""
    keys = [c for c in ("setting", "width", "seed", "lr") if c in best]
    ref = best[best.rule == reference][keys + ["best"]].rename(columns={"best": "best_reference"})
    out = best.merge(ref, on=keys)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["ratio"] = np.where(np.isfinite(out.best_reference),
                                out.best / out.best_reference, np.nan)
    return out


# ------------------------------------------------------------------ timing


def time_epochs(width: int, rule: str | LearningRule, *, epochs: int, data: Dataset | None = None,
                lr: float = AUTHORS_SETTING["lr"], batch_size: int = AUTHORS_SETTING["batch_size"],
                slot_state: bool = False, seed: int = 0) -> pd.DataFrame:
    """Seconds per epoch of one network in the authors' setting, evaluation included.

    Each epoch is one pass of SGD steps over the shuffled training set
    (``alignlib.training.make_epoch``: a ``lax.scan`` over minibatches of a ``lax.scan``
    over time), then the loss on the test set (``make_evaluate``, the whole test set in one
    batch, or in batches of ``batch_size`` with the per-slot initial state). That is all
    the chapter records per epoch: its training loss is the mean over the epoch's steps.
    A full pass over the training set, which a script may also run each epoch to print the
    training loss, is timed separately after it. Every program is compiled in epoch 1,
    which therefore includes compilation; each clock stops when its results are ready.

    ``data`` defaults to the authors' Add task (:data:`AUTHORS_SETTING`). Returns a tidy
    DataFrame ``rule, width, epoch, metric, value`` with metrics

    * ``train_seconds`` (the SGD pass), ``eval_seconds`` (the test loss) and ``seconds``
      (their sum: the epoch);
    * ``train_eval_seconds`` (the extra pass over the training set) and
      ``seconds_with_train_eval`` (``seconds`` plus it);
    * ``cpu_seconds``: process CPU time of ``seconds`` (up to twice ``seconds`` when XLA
      keeps both cores of a 2-core machine busy);
    * ``load_average``: the machine's 1-minute load average when the epoch started (above
      the core count, other processes competed for the cores);
    * ``heldout_loss``.
    """
    rule = get_rule(rule) if not isinstance(rule, LearningRule) else rule
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if data is None:
        data = add_task(**{k: AUTHORS_SETTING[k] for k in ("n_sequences", "length", "n_train")})
    k_model, k_rule, k_data = jax.random.split(jax.random.PRNGKey(seed), 3)
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    model = make_rnn(width, slot_state=batch_size if slot_state else None)(k_model)
    state = rule.init(model, x_train[:batch_size], k_rule)
    optimizer = make_optimizer("sgd", lr)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    epoch_fn = eqx.filter_jit(make_epoch(rule, optimizer, sequence_mse, batch_size))

    def evaluator(n: int) -> Callable:
        return eqx.filter_jit(make_evaluate(sequence_mse, batch_size if slot_state else n,
                                            classification=False))

    evaluate_test, evaluate_train = evaluator(len(x_test)), evaluator(len(x_train))
    diverged = jnp.zeros((), bool)
    rows = []
    for epoch in range(1, epochs + 1):
        key = jax.random.fold_in(k_data, epoch)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        start, cpu = time.perf_counter(), time.process_time()
        model, opt_state, diverged, _, loss = epoch_fn(model, state, opt_state, diverged, key,
                                                       x_train, y_train, None, None)
        jax.block_until_ready((model, loss))
        mid = time.perf_counter()
        test = jax.block_until_ready(evaluate_test(model, x_test, y_test))
        end, cpu_end = time.perf_counter(), time.process_time()
        jax.block_until_ready(evaluate_train(model, x_train, y_train))
        train_eval = time.perf_counter() - end
        for name, value in (("train_seconds", mid - start), ("eval_seconds", end - mid),
                            ("seconds", end - start), ("train_eval_seconds", train_eval),
                            ("seconds_with_train_eval", end - start + train_eval),
                            ("cpu_seconds", cpu_end - cpu), ("load_average", load),
                            ("heldout_loss", float(test["loss"]))):
            rows.append({"rule": rule.name, "width": width, "epoch": epoch, "metric": name,
                         "value": float(value)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ updates at initialisation


_JITTED: dict[str, Callable] = {}


def _jitted_gradient(rule: LearningRule) -> Callable:
    """``rule.gradient`` compiled, one wrapper per rule (so repeated calls reuse it)."""
    if rule.name not in _JITTED:
        _JITTED[rule.name] = eqx.filter_jit(rule.gradient)
    return _JITTED[rule.name]


def update_relative_errors(model: RNN, rule: str | LearningRule, x: Array, y: Array,
                           loss_fn: LossFn = sequence_mse, key: Array | None = None,
                           reference=None) -> dict:
    """Relative distance of ``rule``'s pseudo-gradient from backprop through time, per site.

    ``||g_rule - g_bptt|| / ||g_bptt||`` (Frobenius, weight and bias of the site together)
    for each site of the RNN: ``'initial_state'``, ``'input'`` (``W_ih`` and ``b_h``),
    ``'recurrent'`` (``W_hh``), ``'readout'`` (``w_ho`` and ``b_o``). At initialisation
    the Align rules give 0 up to rounding; the authors' Align-ada does not.
    ``reference``: backprop's pseudo-gradient for the same model and batch, if already
    computed (else it is computed here).
    """
    rule = get_rule(rule) if not isinstance(rule, LearningRule) else rule
    key = jax.random.PRNGKey(0) if key is None else key
    state = rule.init(model, x, key)
    if reference is None:
        _, reference = _jitted_gradient(get_rule("backprop"))(model, None, x, y, loss_fn)
    g_bp = reference
    _, g = _jitted_gradient(rule)(model, state, x, y, loss_fn)
    out = {}
    for name in ("initial_state", "input", "recurrent", "readout"):
        a = [l for l in jax.tree.leaves(getattr(g, name)) if l is not None]
        b = [l for l in jax.tree.leaves(getattr(g_bp, name)) if l is not None]
        num = sum(float(jnp.sum((u - v) ** 2)) for u, v in zip(a, b))
        den = sum(float(jnp.sum(v ** 2)) for v in b)
        out[name] = float(np.sqrt(num / den)) if den > 0 else float(np.sqrt(num))
    return out


def updates_at_initialisation(width: int, data: Dataset, *, batch_size: int = 50,
                              seed: int = 0, slot_state: bool = True) -> pd.DataFrame:
    """Every Align rule's update against backprop through time, at initialisation.

    One network of ``width`` (built from ``seed``) and the first ``batch_size`` training
    sequences of ``data``. Rows for Align-ada, Align-zero and Align-prop (setting
    ``'intended'``), for the authors' Align-ada (``'authors_ada'``) and for the authors'
    Align-ada on their per-slot initial state (``'authors_code'``; only with
    ``slot_state=True``, which costs two more compilations). Columns: ``setting,
    rule, width, site, relative_error`` (see :func:`update_relative_errors`).
    """
    model = make_rnn(width)(jax.random.PRNGKey(seed))
    x, y = jnp.asarray(data.x_train[:batch_size]), jnp.asarray(data.y_train[:batch_size])
    cases = [("intended", model, r) for r in ("align_ada", "align_zero", "align_prop")]
    cases += [("authors_ada", model, "align_ada")]
    if slot_state:
        cases += [("authors_code", with_slot_initial_state(model, batch_size), "align_ada")]
    rows, references = [], {}
    for setting, m, name in cases:
        rule = rule_for(setting, name)
        structure = type(m.initial_state)
        if structure not in references:
            references[structure] = _jitted_gradient(get_rule("backprop"))(
                m, None, x, y, sequence_mse)[1]
        for site, err in update_relative_errors(m, rule, x, y,
                                                reference=references[structure]).items():
            rows.append({"setting": setting, "rule": rule.name, "width": width, "site": site,
                         "relative_error": err})
    return pd.DataFrame(rows)


def timing_summary(timing: pd.DataFrame, epochs_total: int = AUTHORS_SETTING["epochs"]
                   ) -> pd.DataFrame:
    """Per rule and width of a :func:`time_epochs` table.

    Columns: ``seconds_per_epoch`` (median over the epochs after the first: SGD pass and
    test loss), its parts ``train_seconds_per_epoch`` and ``eval_seconds_per_epoch``,
    ``cpu_seconds_per_epoch``, ``train_eval_seconds_per_epoch`` (the extra pass over the
    training set), ``first_epoch_seconds`` (compilation included), ``cores_busy`` (median
    ``cpu_seconds / seconds``), ``load_average`` (median while timing), the time for
    ``epochs_total`` epochs extrapolated as ``first + (epochs_total - 1) * median``
    without (``extrapolated_<N>_epochs_s``) and with (``..._with_train_eval_s``) the
    training-set pass, the authors' TensorFlow time where
    :data:`AUTHORS_SECONDS_200_EPOCHS` has one, and the ratios of ours to theirs (below 1:
    faster)."""
    rows = []
    for (rule, width), g in timing.groupby(["rule", "width"]):
        p = g.pivot(index="epoch", columns="metric", values="value").sort_index()
        later = p.iloc[1:] if len(p) > 1 else p
        theirs = AUTHORS_SECONDS_200_EPOCHS.get((rule, int(width))) if epochs_total == 200 else None
        row = {"rule": rule, "width": int(width), "epochs_timed": len(p)}
        for name, column in (("seconds_per_epoch", "seconds"),
                             ("train_seconds_per_epoch", "train_seconds"),
                             ("eval_seconds_per_epoch", "eval_seconds"),
                             ("cpu_seconds_per_epoch", "cpu_seconds"),
                             ("train_eval_seconds_per_epoch", "train_eval_seconds")):
            row[name] = float(later[column].median())
        row["first_epoch_seconds"] = float(p["seconds"].iloc[0])
        row["cores_busy"] = float((later["cpu_seconds"] / later["seconds"]).median())
        row["load_average"] = float(later["load_average"].median())
        for suffix, column in (("", "seconds"), ("_with_train_eval", "seconds_with_train_eval")):
            total = float(p[column].iloc[0]) + (epochs_total - 1) * float(later[column].median())
            row[f"extrapolated_{epochs_total}_epochs{suffix}_s"] = total
            row[f"ratio_to_authors{suffix}"] = np.nan if theirs is None else total / theirs
        row["authors_tf_s"] = np.nan if theirs is None else theirs
        rows.append(row)
    return pd.DataFrame(rows)


#: A DataFrame as a Markdown pipe table (:func:`alignlib.experiments.tables.markdown_table`),
#: numbers to 3 significant digits by default.
markdown_table = functools.partial(tables.markdown_table, default=".3g")

_MATMULS_PER_STEP = {"backprop": 3, "align_ada": 4, "align_zero": 4,
                     "align_ada_authors_rnn": 4}


def epoch_flops(width: int, rule: str, *, n_train: int = AUTHORS_SETTING["n_train"],
                n_test: int = AUTHORS_SETTING["n_sequences"] - AUTHORS_SETTING["n_train"],
                length: int = AUTHORS_SETTING["length"]) -> float:
    """Floating-point operations of the recurrent matrix products in one epoch of
    :func:`time_epochs` (``seconds``: the training pass, then the loss on the test set):
    ``2 n^2`` per sequence, time step and product, with :data:`_MATMULS_PER_STEP` products
    per training step and one per evaluation step. The input, readout and element-wise
    work (O(n) per step) is left out. NaN for rules not in the table."""
    per = _MATMULS_PER_STEP.get(rule)
    if per is None:
        return float("nan")
    return 2.0 * width * width * length * (per * n_train + n_test)


def matmul_gflops(width: int, rows: int = 5000, repeats: int = 20) -> float:
    """Reference rate of this machine: GFLOP per CPU second of one compiled
    ``(rows x width) @ (width x width)`` float32 product, from the fastest of ``repeats``
    runs (the least disturbed by other processes)."""
    a = jnp.ones((rows, width), jnp.float32)
    w = jnp.ones((width, width), jnp.float32)
    product = jax.jit(lambda u, v: u @ v)
    jax.block_until_ready(product(a, w))
    cpu = []
    for _ in range(repeats):
        start = time.process_time()
        jax.block_until_ready(product(a, w))
        cpu.append(time.process_time() - start)
    return 2.0 * rows * width * width / max(min(cpu), 1e-9) / 1e9
