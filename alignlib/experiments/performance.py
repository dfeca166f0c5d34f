"""Cost of each learning rule: one compiled training step, timed against backprop.

A *step* is what training does per minibatch: the rule's pseudo-gradient and the SGD
update, ``(model, opt_state) -> (model', opt_state', loss)``. For every rule the step is
compiled once (:func:`compile_step`: ``jax.jit(...).lower(...).compile()``, data, rule
state and model passed as arguments, nothing closed over as a constant) and the same
executable is

* read: the compiled HLO's op counts (dot products, convolutions, loops) and XLA's cost
  analysis (floating-point operations and bytes accessed) -- :func:`hlo_stats`;
* timed: after ``warmup`` steps, ``repeats`` rounds in which every rule runs one step in
  turn (the order rotates from round to round), the device synchronised
  (``jax.block_until_ready``) before the clock is read -- :func:`time_programs`.

Timing the rules in interleaved rounds rather than one after the other makes the ratios
robust to a machine whose load changes during the measurement: each round gives one
paired ratio ``t_rule / t_backprop``, and the reported ratio is the median of these.

Why a rule costs what it costs, per step, counting a backward pass as two forward passes
(one product for the weight gradient, one for the input gradient):

===========  ==============================================  =========================
rule         work                                            ~ relative to backprop
===========  ==============================================  =========================
backprop     forward, backward through W(t)                   1  (= 3 forward units)
align_zero   forward (error), forward + backward of W(0)       4/3
align_ada    forward, forward of W(0), backward through W(0)   4/3
align_prop   forward, backward through W(0)                    1
fa           forward, backward through B                       1
dfa          forward, e B^T at every hidden layer              < 1 (no input gradients
                                                               through the layers)
readout      forward, readout gradient only                    ~1/3
===========  ==============================================  =========================

Benchmark problems (:func:`bench_problem`) use random inputs of the data's shape (the
values do not change the cost): ``mlp`` on 8x8 digits, ``convnet`` on 8x8x1 digits (strides
1, 2, 2), ``rnn`` on the Add task (sequences of 100 bits).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from alignlib.data import add_task_targets
from alignlib.models import loss_for, model_factory
from alignlib.rules import RULES, LossFn, get_rule, mse
from alignlib.training import make_step
from alignlib.validation import positive_integer

Array = jax.Array

__all__ = [
    "BENCH_MODELS", "BENCH_RULES", "Problem", "StepProgram", "bench_problem", "compile_step",
    "hlo_stats", "time_programs", "time_rule_steps", "benchmark", "benchmark_rules",
    "bench_point", "cost_table", "batching_gain", "plot_rule_costs",
    "ALIGN_TARGET",
]

#: Model kinds :func:`bench_problem` builds.
BENCH_MODELS = ("mlp", "convnet", "rnn")
#: Every rule, backprop first.
BENCH_RULES = tuple(RULES)


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One model and one batch to time rules on.

    ``model``: the network at initialisation; ``x``, ``y``: one minibatch
    (``(batch, *input_shape)`` and the matching targets); ``loss_fn``: the loss.
    """

    kind: str
    width: int
    model: Any
    x: Array
    y: Array
    loss_fn: LossFn

    @property
    def batch_size(self) -> int:
        return int(self.x.shape[0])


def bench_problem(kind: str, width: int, *, batch_size: int | None = None,
                  input_shape: Sequence[int] | None = None, depth: int = 2,
                  strides: Sequence[int] = (1, 2, 2), seq_len: int = 100,
                  n_outputs: int = 10, seed: int = 0) -> Problem:
    """A benchmark problem: a model of ``kind`` and ``width`` and one random batch.

    * ``"mlp"``: :class:`~alignlib.models.MLP` with ``depth`` hidden layers on inputs of
      ``input_shape`` (default ``(8, 8)``, the digits), ``n_outputs`` classes, batch 100;
    * ``"convnet"``: :class:`~alignlib.models.ConvNet` with ``strides`` on ``input_shape``
      (default ``(8, 8, 1)``; the paper's CIFAR-10 network is ``(32, 32, 3)`` with strides
      ``(1, 1, 1, 2, 1, 2, 1)``), batch 100;
    * ``"rnn"``: :class:`~alignlib.models.RNN` on the Add task (``seq_len`` random bits,
      their targets, :func:`~alignlib.rules.sequence_mse`), batch 50.

    Inputs are uniform in [0, 1] (bits for the RNN), classification targets are one-hot
    minus 0.1 as in the authors' scripts. The batch is drawn by numpy and the weights
    with ``jax.random.key(seed, impl="rbg")`` (XLA's random-bit generator compiles
    several times faster than the default threefry; the values do not change the cost).
    """
    build, loss_fn, batch_size = _problem_builder(kind, width, batch_size, input_shape, depth,
                                                  strides, seq_len, n_outputs)
    # the network in one compiled program rather than one eager dispatch per weight
    model = eqx.filter_jit(build)(jax.random.key(seed, impl="rbg"))
    rng = np.random.default_rng(seed)
    if kind == "rnn":
        bits = rng.integers(0, 2, (batch_size, seq_len)).astype(np.float32)
        x = jnp.asarray(bits[..., None])
        y = jnp.asarray(add_task_targets(bits)[..., None])
    else:
        x = jnp.asarray(rng.uniform(0.0, 1.0, (batch_size, *model.input_shape)).astype(np.float32))
        labels = rng.integers(0, n_outputs, batch_size)
        y = jnp.asarray(np.eye(n_outputs, dtype=np.float32)[labels] - np.float32(0.1))
    return Problem(kind, int(width), model, x, y, loss_fn)


def _problem_builder(kind, width, batch_size, input_shape, depth, strides, seq_len, n_outputs):
    """``(build, loss_fn, batch_size)`` with ``build(key) -> model``
    (:func:`alignlib.models.model_factory`)."""
    if kind not in BENCH_MODELS:
        raise ValueError(f"kind must be one of {BENCH_MODELS}, got {kind!r}")
    architecture = kind
    if kind == "rnn":
        positive_integer("seq_len", seq_len)
        shape, n_outputs = (seq_len, 1), 1
    else:
        shape = tuple(input_shape) if input_shape is not None else _DEFAULT_INPUT[kind]
    batch_size = _DEFAULT_BATCH[kind] if batch_size is None else batch_size
    _check_batch(batch_size)
    build = model_factory(architecture, shape, n_outputs, width, depth=depth, strides=strides)
    return build, loss_for(architecture), batch_size


_DEFAULT_INPUT = {"mlp": (8, 8), "convnet": (8, 8, 1)}
_DEFAULT_BATCH = {"mlp": 100, "convnet": 100, "rnn": 50}


def _check_batch(batch_size: int) -> None:
    positive_integer("batch_size", batch_size)


# ------------------------------------------------------------------ compiled steps


@dataclass
class StepProgram:
    """One rule's compiled training step and the arguments it runs on.

    ``compiled(args) -> (model_arrays, opt_state_arrays, loss)``, where ``args`` is the
    tuple of the arrays of ``(model, rule_state, opt_state, x, y)``; :meth:`run` feeds
    the new model and optimizer state back, as training does.
    """

    rule: str
    compiled: Any
    args: tuple
    compile_seconds: float

    def run(self):
        """One step; returns the outputs (not yet synchronised)."""
        model, opt_state, loss = out = self.compiled(self.args)
        self.args = (model, self.args[1], opt_state, self.args[3], self.args[4])
        return out


def compile_step(problem: Problem, rule: str, *, lr: float = 0.1,
                 key: Array | None = None, runs: int | None = None) -> StepProgram:
    """Compile one SGD step of ``rule`` on ``problem`` (ahead of time, no warm-up run).

    Everything the step reads (model, rule state, optimizer state, batch) is an argument
    of the compiled program, so XLA cannot fold any of it into constants. With ``runs``,
    the step of ``runs`` copies of the network stacked along a leading axis, ``vmap``-ed
    over them on the same batch, as :func:`alignlib.train` runs seeds and learning rates.
    """
    learning_rule = get_rule(rule)
    key = jax.random.key(1, impl="rbg") if key is None else key
    model, x, y, loss_fn = problem.model, problem.x, problem.y, problem.loss_fn
    optimizer = optax.sgd(lr)

    def states(m):
        return learning_rule.init(m, x, key), optimizer.init(eqx.filter(m, eqx.is_inexact_array))

    if runs is not None:
        positive_integer("runs", runs)
        model = jax.tree.map(lambda a: jnp.repeat(a[None], runs, 0) if eqx.is_array(a) else a,
                            model)
        states = eqx.filter_vmap(states)
    # rule and optimizer state built by one compiled program (not op by op)
    state, opt_state = eqx.filter_jit(states)(model)
    return _step_program(learning_rule.name, make_step(learning_rule, optimizer, loss_fn),
                         (model, state, opt_state, x, y), vmapped=runs is not None)


def _step_program(name: str, sgd_step: Callable, args: tuple, vmapped: bool = False
                  ) -> StepProgram:
    """Compile ``sgd_step`` (:func:`alignlib.training.make_step`) on ``args = (model,
    rule_state, opt_state, x, y)`` ahead of time; with ``vmapped``, the model and the two
    states carry a leading axis of runs that share the batch."""
    dynamic, static = eqx.partition(args, eqx.is_array)
    if vmapped:
        sgd_step = eqx.filter_vmap(sgd_step, in_axes=(0, 0, 0, None, None))

    def step(arrays):
        m, o, loss, _ = sgd_step(*eqx.combine(arrays, static))
        return eqx.filter(m, eqx.is_array), eqx.filter(o, eqx.is_array), loss

    start = time.perf_counter()
    compiled = jax.jit(step).lower(dynamic).compile()
    return StepProgram(name, compiled, dynamic, time.perf_counter() - start)


_OP_PATTERN = re.compile(r"\s(dot|convolution|while|custom-call|fusion|infeed|outfeed|send|recv)\(")
_CALLBACK_PATTERN = re.compile(r'custom_call_target="[^"]*callback[^"]*"')


def hlo_stats(compiled) -> dict[str, float]:
    """Op counts and XLA's cost estimate of a compiled program.

    ``dot_ops``, ``conv_ops``, ``while_ops``, ``custom_call_ops``, ``fusion_ops``: how
    many instructions of each kind the optimised HLO (``compiled.as_text()``) holds,
    counting each instruction once (a loop body once, however many times it runs);
    ``host_ops``: transfers between device and host inside the step (infeed, outfeed,
    send, recv and host callbacks; 0 for a step that stays on the device);
    ``flops``, ``bytes_accessed``: from ``compiled.cost_analysis()`` (also counting a
    loop body once), NaN where the backend gives none.
    """
    text = compiled.as_text()
    counts = dict.fromkeys(("dot", "convolution", "while", "custom-call", "fusion", "infeed",
                            "outfeed", "send", "recv"), 0)
    for op in _OP_PATTERN.findall(text):
        counts[op] += 1
    host = sum(counts[k] for k in ("infeed", "outfeed", "send", "recv")) + \
        len(_CALLBACK_PATTERN.findall(text))
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    except Exception:  # pragma: no cover - backends without a cost model
        cost = {}
    cost = cost or {}
    return {
        "dot_ops": counts["dot"], "conv_ops": counts["convolution"],
        "while_ops": counts["while"], "custom_call_ops": counts["custom-call"],
        "fusion_ops": counts["fusion"], "host_ops": host,
        "flops": float(cost.get("flops", np.nan)),
        "bytes_accessed": float(cost.get("bytes accessed", np.nan)),
    }


def time_programs(programs: Mapping[str, StepProgram], *, warmup: int = 3,
                  repeats: int = 20, min_sample_s: float = 0.002,
                  clock: Callable[[], float] = time.perf_counter) -> dict[str, np.ndarray]:
    """Seconds per step of each program, measured in interleaved rounds.

    Each program first runs ``warmup`` steps (at least one). Then, ``repeats`` times,
    every program takes its turn (the starting program rotates from round to round) and
    runs ``k`` steps back to back, timed from the first call until
    ``jax.block_until_ready`` returns on the last; the sample is that time over ``k``.
    ``k`` is 1 unless the fastest program's warm-up step took less than
    ``min_sample_s``, in which case ``k`` is the smallest count that lasts that long (the
    same ``k`` for all programs), so that sub-millisecond steps are not lost in the
    timer's and the scheduler's noise. Returns ``{name: (repeats,) seconds per step}``,
    entry ``r`` of every array from the same round. ``clock``: wall time by default (this
    process's CPU time with ``time.process_time``).
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    names = list(programs)
    fastest = np.inf
    for name in names:
        for _ in range(max(warmup, 1)):
            start = clock()
            jax.block_until_ready(programs[name].run())
            last = clock() - start
        fastest = min(fastest, last)
    k = int(max(1, np.ceil(min_sample_s / max(fastest, 1e-9)))) if min_sample_s > 0 else 1
    times = {name: np.empty(repeats) for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            program = programs[name]
            start = clock()
            for _ in range(k):
                out = program.run()
            jax.block_until_ready(out)
            times[name][r] = (clock() - start) / k
    return times


# ---------------------------------------------------------------------- tables


def _rule_names(rules: Iterable[str]) -> list[str]:
    names = [get_rule(r).name for r in rules]
    if len(set(names)) != len(names):
        raise ValueError(f"rules must not repeat, got {names}")
    if "backprop" not in names:
        names = ["backprop"] + names
    return names


def _measure(problem: Problem, rules: Iterable[str], *, lr: float, warmup: int,
             repeats: int, key: Array | None) -> pd.DataFrame:
    """Wide table, one row per rule: timings, paired ratios and HLO statistics."""
    names = _rule_names(rules)
    programs = {name: compile_step(problem, name, lr=lr, key=key) for name in names}
    times = time_programs(programs, warmup=warmup, repeats=repeats)
    stats = {name: hlo_stats(p.compiled) for name, p in programs.items()}
    base = times["backprop"]
    rows = []
    for name in names:
        t = times[name]
        paired = t / base
        rows.append({
            "rule": name,
            "median_s": float(np.median(t)),
            "q25_s": float(np.percentile(t, 25)),
            "q75_s": float(np.percentile(t, 75)),
            "min_s": float(np.min(t)),
            "ratio_to_backprop": float(np.median(paired)),
            "ratio_q25": float(np.percentile(paired, 25)),
            "ratio_q75": float(np.percentile(paired, 75)),
            "ratio_of_minima": float(np.min(t) / np.min(base)),
            **stats[name],
            "flops_ratio": stats[name]["flops"] / stats["backprop"]["flops"],
            "bytes_ratio": stats[name]["bytes_accessed"] / stats["backprop"]["bytes_accessed"],
            "compile_s": programs[name].compile_seconds,
        })
    return pd.DataFrame(rows)


def time_rule_steps(model, x, y, rules: Iterable[str], *, loss_fn: LossFn = mse,
                    lr: float = 0.1, warmup: int = 3, repeats: int = 20,
                    key=None) -> pd.DataFrame:
    """Cost of one compiled step per rule on one batch ``(x, y)``.

    Returns one row per rule with columns ``rule, median_s, q25_s, q75_s, min_s`` (seconds
    per step), ``ratio_to_backprop, ratio_q25, ratio_q75`` (quartiles of the per-round
    ratio to backprop's step in the same round), ``ratio_of_minima`` (fastest step over
    backprop's fastest: the least disturbed by other processes on a shared machine), the
    :func:`hlo_stats` columns, ``flops_ratio`` and ``bytes_ratio`` (XLA's estimates
    relative to backprop's) and ``compile_s``. ``'backprop'`` is always timed (added first
    if absent) since the ratios refer to it.
    """
    width = getattr(getattr(model, "readout", None), "weight", jnp.zeros((0, 0))).shape[-1]
    problem = Problem("custom", int(width), model, jnp.asarray(x), jnp.asarray(y), loss_fn)
    return _measure(problem, rules, lr=lr, warmup=warmup, repeats=repeats, key=key)


def benchmark(models: dict[str, Callable[[], object]], x, y, rules: Iterable[str],
              **kwargs) -> pd.DataFrame:
    """:func:`time_rule_steps` for several named models; adds a ``model`` column."""
    tables = []
    for label, build in models.items():
        table = time_rule_steps(build(), x, y, rules, **kwargs)
        table.insert(0, "model", label)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


_TIDY_METRICS = ("median_s", "q25_s", "q75_s", "min_s", "ratio_to_backprop", "ratio_q25",
                 "ratio_q75", "ratio_of_minima",
                 "flops", "flops_ratio", "bytes_accessed", "bytes_ratio", "dot_ops", "conv_ops",
                 "while_ops", "fusion_ops", "host_ops", "compile_s")


def benchmark_rules(models: Mapping[str, Sequence[int]],
                    rules: Iterable[str] | Mapping[str, Iterable[str]] = BENCH_RULES, *,
                    batch_size: int | None = None, warmup: int = 3, repeats: int = 20,
                    lr: float = 0.1, problem_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
                    progress: bool = False) -> pd.DataFrame:
    """The rule-cost benchmark as a tidy table.

    ``models``: ``{kind: widths}`` with kinds from :data:`BENCH_MODELS`, e.g.
    ``{"mlp": [256, 1024], "convnet": [32, 64], "rnn": [64, 256]}``. ``rules``: rule names
    (backprop is added if absent), or ``{kind: rule names}`` to time different rules per
    model (a kind it does not list gets every rule). ``problem_kwargs``: extra arguments of
    :func:`bench_problem` per kind (``{"convnet": {"input_shape": [32, 32, 3], ...}}``).

    Returns one row per (model, width, rule, metric) with columns ``experiment``
    (``"rule_cost"``), ``model, width, batch_size, rule, device, metric, value``; the
    metrics are ``median_s, q25_s, q75_s, min_s, ratio_to_backprop, ratio_q25, ratio_q75,
    ratio_of_minima, flops, flops_ratio, bytes_accessed, bytes_ratio, dot_ops, conv_ops, while_ops,
    fusion_ops, host_ops, compile_s`` (see :func:`time_rule_steps`). :func:`cost_table`
    turns it into one row per rule.
    """
    per_kind = ({k: list(v) for k, v in rules.items()} if isinstance(rules, Mapping)
                else {k: list(rules) for k in models})
    problem_kwargs = dict(problem_kwargs or {})
    unknown = set(models) - set(BENCH_MODELS)
    if unknown:
        raise ValueError(f"unknown model kinds {sorted(unknown)}; valid: {BENCH_MODELS}")
    device = jax.devices()[0].device_kind
    tables = []
    for kind, widths in models.items():
        for width in widths:
            problem = bench_problem(kind, width, batch_size=batch_size,
                                    **dict(problem_kwargs.get(kind, {})))
            if progress:
                print(f"bench: {kind} width {width}", flush=True)
            wide = _measure(problem, per_kind.get(kind, BENCH_RULES), lr=lr, warmup=warmup,
                            repeats=repeats, key=None)
            tidy = wide.melt(id_vars=["rule"], value_vars=list(_TIDY_METRICS),
                             var_name="metric", value_name="value")
            tidy.insert(0, "experiment", "rule_cost")
            tidy.insert(1, "model", kind)
            tidy.insert(2, "width", int(width))
            tidy.insert(3, "batch_size", problem.batch_size)
            tidy.insert(5, "device", device)
            tables.append(tidy)
    return pd.concat(tables, ignore_index=True)


def bench_point(*, model: str, width: int, rules: Sequence[str] = BENCH_RULES,
                batch_size: int | None = None, warmup: int = 3, repeats: int = 20,
                lr: float = 0.1, problem_kwargs: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One model and width of the benchmark, as an experiment for
    :func:`alignbook.sweep.run_sweep` (``"alignlib.experiments.performance:bench_point"``): the tidy table of
    :func:`benchmark_rules` for ``{model: [width]}``. Timing points must not share a
    device: run them serially, or one per GPU (``resources={"GPU": 1}``)."""
    return benchmark_rules({model: [width]}, list(rules), batch_size=batch_size, warmup=warmup,
                           repeats=repeats, lr=lr,
                           problem_kwargs={model: dict(problem_kwargs or {})})


def cost_table(tidy: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (model, width, rule), one column per metric, from
    :func:`benchmark_rules`' tidy table (rules in :data:`BENCH_RULES` order). Columns:
    ``model, width, rule`` (and ``batch_size`` when the table has it), then the metrics."""
    table = tidy if metrics is None else tidy[tidy.metric.isin(metrics)]
    index = ["model", "width", "rule"] + (["batch_size"] if "batch_size" in table else [])
    wide = table.pivot_table(index=index, columns="metric",
                             values="value", aggfunc="first").reset_index()
    wide.columns.name = None
    order = {name: i for i, name in enumerate(BENCH_RULES)}
    wide = wide.sort_values(["model", "width", "rule"],
                            key=lambda s: s.map(order) if s.name == "rule" else s)
    if metrics is not None:
        wide = wide[[*index, *[m for m in metrics if m in wide.columns]]]
    return wide.reset_index(drop=True)


# ------------------------------------------------------- batching runs with vmap


def batching_gain(kind: str, width: int, n_runs: int, *, rule: str = "backprop",
                  batch_size: int | None = None, warmup: int = 3, repeats: int = 20,
                  **problem_kwargs) -> pd.DataFrame:
    """What running ``n_runs`` networks in one ``vmap``-ed program saves.

    Times (interleaved, as :func:`time_programs`) one step of a single network and one
    step of ``n_runs`` networks stacked along a leading axis (different seeds and
    learning rates, the way :func:`alignlib.training.train` runs a seed x learning-rate
    grid), on the same batch. Returns a tidy table (``experiment="vmap_runs"``) with the
    metrics ``single_run_s`` (median seconds of one run's step), ``vmapped_s`` (of the
    stacked step), ``per_run_s`` (``vmapped_s / n_runs``) and ``speedup``
    (``n_runs * single_run_s / vmapped_s``: how much faster than running them one after
    the other).
    """
    if n_runs < 1:
        raise ValueError(f"n_runs must be >= 1, got {n_runs}")
    learning_rule = get_rule(rule)
    problem = bench_problem(kind, width, batch_size=batch_size, **problem_kwargs)
    defaults = dict(input_shape=None, depth=2, strides=(1, 2, 2), seq_len=100, n_outputs=10)
    build, _, _ = _problem_builder(kind, width, batch_size, **{
        k: problem_kwargs.get(k, v) for k, v in defaults.items()})
    keys = jax.random.split(jax.random.key(2, impl="rbg"), n_runs)
    lrs = jnp.geomspace(0.05, 5.0, n_runs)
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    rule_key = jax.random.key(1, impl="rbg")

    @eqx.filter_jit
    def single_init(model):
        return (learning_rule.init(model, problem.x, rule_key),
                optimizer.init(eqx.filter(model, eqx.is_inexact_array)))

    @eqx.filter_jit
    def stacked_init(keys, lrs):
        # n_runs networks, rule states and optimizer states, built in one program
        def one(k, lr):
            model = build(k)
            opt = optax.inject_hyperparams(optax.sgd)(learning_rate=lr)
            return (model, learning_rule.init(model, problem.x, rule_key),
                    opt.init(eqx.filter(model, eqx.is_inexact_array)))
        return eqx.filter_vmap(one)(keys, lrs)

    sgd_step = make_step(learning_rule, optimizer, problem.loss_fn)

    def program(model, state, opt_state, vmapped: bool, name: str) -> StepProgram:
        return _step_program(name, sgd_step, (model, state, opt_state, problem.x, problem.y),
                             vmapped)

    single_state, single_opt = single_init(problem.model)
    stacked, stacked_state, stacked_opt = stacked_init(keys, lrs)
    programs = {"single": program(problem.model, single_state, single_opt, False, "single"),
                "vmapped": program(stacked, stacked_state, stacked_opt, True, "vmapped")}
    times = time_programs(programs, warmup=warmup, repeats=repeats)
    single, vmapped = float(np.median(times["single"])), float(np.median(times["vmapped"]))
    metrics = {"single_run_s": single, "vmapped_s": vmapped, "per_run_s": vmapped / n_runs,
               "speedup": n_runs * single / vmapped}
    return pd.DataFrame([{"experiment": "vmap_runs", "model": kind, "width": int(width),
                          "batch_size": problem.batch_size, "rule": learning_rule.name,
                          "n_runs": int(n_runs), "device": jax.devices()[0].device_kind,
                          "metric": k, "value": v} for k, v in metrics.items()])


# ------------------------------------------------------------- figure and files

#: The target for the Align rules' cost: at most this many backprop steps.
ALIGN_TARGET = 1.35
_RULE_LABELS = {"backprop": "backprop", "align_zero": "Align-zero", "align_ada": "Align-ada",
                "align_prop": "Align-prop", "fa": "FA", "dfa": "DFA", "readout": "readout only"}
_MODEL_LABELS = {"mlp": "MLP (2 hidden layers)", "convnet": "ConvNet", "rnn": "RNN (Add task)"}


def plot_rule_costs(tidy: pd.DataFrame, *, target: float | None = ALIGN_TARGET):
    """Figure: step time relative to backprop against width, one panel per model, one
    line per rule (bars: quartiles of the per-round ratio), the target as a dashed line.
    ``tidy``: the table of :func:`benchmark_rules`. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    from alignlib.experiments.plotting import dodge

    wide = cost_table(tidy)
    models = [m for m in BENCH_MODELS if m in set(wide.model)] + \
        sorted(set(wide.model) - set(BENCH_MODELS))
    rules = [r for r in BENCH_RULES if r in set(wide.rule)]
    colors = dict(zip(BENCH_RULES, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(1, len(models), figsize=(4.0 * len(models), 4.8), squeeze=False,
                             sharey=True, layout="constrained")
    for ax, model in zip(axes[0], models):
        part = wide[wide.model == model]
        present = [r for r in rules if r in set(part.rule)]
        for i, rule in enumerate(present):
            r = part[part.rule == rule].sort_values("width")
            # spread the rules sideways a little so that their bars do not hide each other
            shift = dodge(i, len(present))
            err = np.vstack([r.ratio_to_backprop - r.ratio_q25, r.ratio_q75 - r.ratio_to_backprop])
            ax.errorbar(r.width * shift, r.ratio_to_backprop, yerr=np.clip(err, 0, None),
                        marker="o", ms=4, capsize=2, lw=1.2, color=colors.get(rule),
                        label=_RULE_LABELS.get(rule, rule))
        if target is not None:
            ax.axhline(target, color="k", ls="--", lw=0.8)
        ax.axhline(1.0, color="grey", ls=":", lw=0.8)
        ax.set_xscale("log", base=2)
        ticks = sorted(set(int(w) for w in part.width))
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlim(min(ticks) / 1.6, max(ticks) * 1.6)
        ax.set_xlabel("width (hidden units / channels)")
        title = _MODEL_LABELS.get(model, model)
        if "batch_size" in part.columns:
            title += f", batch {int(part.batch_size.iloc[0])}"
        ax.set_title(title)
    axes[0][0].set_ylabel("step time / backprop step time")
    handles = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    order = [_RULE_LABELS.get(r, r) for r in rules]
    legend_handles = [handles[k] for k in order if k in handles]
    legend_labels = [k for k in order if k in handles]
    if target is not None:
        from matplotlib.lines import Line2D

        legend_handles.append(Line2D([], [], color="k", ls="--", lw=0.8))
        legend_labels.append(f"target {target:g}x")
    device = tidy.device.iloc[0] if "device" in tidy and len(tidy) else ""
    fig.suptitle(f"One compiled training step relative to backprop's ({device});\n"
                 "median and quartiles over rounds")
    fig.legend(legend_handles, legend_labels, loc="outside lower center", frameon=False,
               ncol=min(4, len(legend_labels)))
    return fig
