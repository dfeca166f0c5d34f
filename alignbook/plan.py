"""What a profile's sweeps cost, before any of them runs: ``alignbook plan``.

For each chapter with a training sweep, :func:`chapter_points` lists the sweep's points
the way the chapter makes them: the chapter's sweep calls (as in its notebook) with
``points_only=True`` (:mod:`alignlib.experiments.points`), on data sets of the right
shapes that hold no data (no data files are read). Each point's
:meth:`~alignlib.experiments.points.Point.workload` says what it trains; :func:`plan`
compiles one SGD step of each distinct network, rule and batch
(:func:`alignlib.experiments.performance.compile_step`) and one forward pass, reads
XLA's cost analysis (:func:`~alignlib.experiments.performance.hlo_stats`) and adds up,
per point,

    FLOPs = runs x loop trips x (steps x step FLOPs + held-out batches x forward FLOPs)

(the loop trips: an RNN's time steps, whose loop body the cost analysis counts once), and
estimates its time as

    seconds = FLOPs / throughput + loop trips x (steps + held-out batches) x step overhead
              + start-up + compile factor x compile seconds

``throughput`` (TFLOP/s) is stated or measured here (a float32 matrix product); the
step overhead is what a step costs besides its arithmetic (measured here as the step time
of a negligible network in :func:`alignlib.train`'s loop, or stated); the last two terms
are a point's fixed cost (building its networks, compiling its epoch and evaluation
programs): the compile time of its step and forward programs, measured here, scaled by
a start-up and a factor fitted here to two small networks' whole start-up in
:func:`alignlib.train` (:func:`measure_device`). Points that stop at convergence are
counted for their maximum epochs, so those estimates are upper bounds.

Not counted: the work a chapter does besides its sweeps (learning-rate plans, timing
runs, the recurrent chapter's runs from the authors' seed, the alignment scores computed
after each epoch, figures), and the points' data loading.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from alignbook.parameters import BookError, resolve_parameters

__all__ = ["Plan", "plan", "chapter_points", "chapter_parameters", "stand_in_dataset",
           "PLANNED_CHAPTERS", "measure_device"]

#: Data sets read from files: input shape, classes, training-file and official test sizes.
_FILE_SETS = {
    "kmnist": ((28, 28, 1), 10, 60000, 10000),
    "cifar10": ((32, 32, 3), 10, 50000, 10000),
    "imagenet32": ((32, 32, 3), 1000, 1281167, 50000),
}
_DEFAULT_SPLIT = {"kmnist": "heldout", "cifar10": "heldout", "imagenet32": "test"}


def stand_in_dataset(name: str, *, n_train: int | None = None, cap_heldout: bool = False,
                     split: str | None = None, holdout: int | None = None, **_):
    """A data set with the shapes ``load_dataset(name, ...)`` would return and no data:
    every array is a read-only view of one zero (no memory, no files). The offline sets
    (``digits``, ``add``) are loaded for real: they are small."""
    from alignlib.data import AUTHORS_HOLDOUT, Dataset, load_dataset

    if name not in _FILE_SETS:
        kwargs = {} if n_train is None else {"n_train": n_train}
        return load_dataset(name, cap_heldout=cap_heldout, **kwargs)
    shape, classes, in_file, official_test = _FILE_SETS[name]
    split = split or _DEFAULT_SPLIT[name]
    holdout = (AUTHORS_HOLDOUT if split == "heldout" else 0) if holdout is None else holdout
    train = in_file - holdout if not n_train else int(n_train)
    test = holdout if split == "heldout" else official_test
    if cap_heldout and n_train:
        test = min(test, int(n_train))
    zero = np.zeros((), np.float32)

    def arrays(n, *tail, dtype=np.float32):
        return np.broadcast_to(np.zeros((), dtype), (n, *tail))

    return Dataset(name=name, x_train=np.broadcast_to(zero, (train, *shape)),
                   y_train=arrays(train, classes), x_test=np.broadcast_to(zero, (test, *shape)),
                   y_test=arrays(test, classes), labels_train=arrays(train, dtype=np.int64),
                   labels_test=arrays(test, dtype=np.int64), n_outputs=classes)


# ------------------------------------------------------------ the chapters' sweeps


def chapter_parameters(book, profile: str, chapter: str) -> dict[str, Any]:
    """Every parameter of ``chapter`` under ``profile``: its notebook's defaults with the
    profile's values."""
    values = {name: p.default for name, p in book.parameters(chapter).items() if p.literal}
    values.update(resolve_parameters(book, chapter, profile))
    return values


def _benchmark_data(p: Mapping[str, Any], **kwargs):
    return stand_in_dataset(p["dataset"], **kwargs)


def _alignment(p: Mapping[str, Any]) -> list:
    from alignlib.experiments import layer_alignment as la

    return la.alignment_experiments(
        p["datasets"], n_train=p["n_train"], epochs=p["epochs"], lr=p["lr"], seeds=p["seeds"],
        mlp_widths=p["mlp_widths"], mlp_depth=p["mlp_depth"], conv_widths=p["conv_widths"],
        probe_widths=p["probe_widths"], probe_batches=p["probe_batches"],
        load=lambda name, **kw: stand_in_dataset(name, **kw), points_only=True)


@contextlib.contextmanager
def _unmeasured_learning_rates():
    """The rules chapter's learning-rate plan measures each width's stable bound; the cost
    plan needs only which learning rates each width trains, so every bound is 1 here."""
    from alignlib.experiments import feedforward as ff

    measure = ff.stable_lr_at_init
    ff.stable_lr_at_init = lambda data, **_: {"ntk_top_eigenvalue": 1.0, "lr_bound": 1.0}
    try:
        yield
    finally:
        ff.stable_lr_at_init = measure


def _rules(p: Mapping[str, Any]) -> list:
    from alignlib.experiments import feedforward as ff
    from alignlib.experiments import rules_vs_width as rv

    data = _benchmark_data(p)
    network = dict(arch=p["arch"], depth=p["depth"], strides=p["strides"],
                   bias_multiplier=p["bias_multiplier"])
    with _unmeasured_learning_rates():
        lr_plan = rv.learning_rate_plan(
            data, p["widths"], fractions=p["lr_fractions"], common_fraction=p["common_fraction"],
            lrs=p["lrs"], wide_fractions=p["wide_lr_fractions"], wide_from=p["wide_from"],
            sweep_widths=p["lr_sweep_widths"], sweep_fractions=p["lr_sweep_fractions"], **network)
    points = rv.sweep(data, lr_plan, rules=p["rules"], wide_rules=p["wide_rules"],
                      wide_from=p["wide_from"], seeds=p["seeds"], epochs=p["max_epochs"],
                      convergence_tolerance=p["convergence_tolerance"],
                      seeds_per_call=p["seeds_per_call"] or None, points_only=True, **network)
    if p["adam_widths"] and p["adam_rules"]:
        points += ff.width_sweep(
            data, widths=p["adam_widths"], rules=p["adam_rules"], lrs=p["adam_lrs"],
            seeds=p["seeds"], epochs=p["max_epochs"], optimizer="adam",
            parameterization="standard", convergence_tolerance=p["convergence_tolerance"],
            seeds_per_call=p["seeds_per_call"] or None, experiment="standard_adam",
            points_only=True, **network)
    return points


def _low_data(p: Mapping[str, Any]) -> list:
    from alignlib.experiments import feedforward as ff, low_data as ld

    full = _benchmark_data(p)
    used = [n for n in p["sizes"] if n <= full.n_train]
    return ld.sweep(
        lambda n: _benchmark_data(p, n_train=n, cap_heldout=p["cap_heldout"]), used,
        width=p["width"], arch=p["arch"], depth=p["depth"], strides=p["strides"],
        rules=p["rules"], lrs=ff.lr_grid(1.0, p["lr_fractions"]),
        bias_multiplier=p["bias_multiplier"], seeds=p["seeds"], epochs=p["epochs"],
        min_steps=p["min_steps"], convergence_tolerance=p["convergence_tolerance"],
        seeds_per_call=p["seeds_per_call"] or None, points_only=True)


def _imagenet(p: Mapping[str, Any]) -> list:
    from alignlib.experiments import feedforward as ff

    if p["dataset"] == "synthetic":
        data = ff.synthetic_dataset((32, 32, 3), 1000, n_train=p["n_train"], n_test=p["n_test"],
                                    seed=0, target_offset=p["target_offset"])
    else:
        data = stand_in_dataset(p["dataset"], n_train=p["n_train"] or None)
    return ff.width_sweep(data, arch="convnet", widths=[p["width"]], rules=p["rules"],
                          lrs=p["lrs"], seeds=p["seeds"], epochs=p["epochs"],
                          strides=p["strides"], experiment="imagenet", points_only=True)


def _recurrent(p: Mapping[str, Any]) -> list:
    from alignlib.experiments import recurrent as rec

    return [point for width in p["widths"] for point in rec.sweep(
        [("intended", r, width) for r in p["rules"]], epochs=p["epochs"], lr=p["lr"],
        seeds=p["seeds"], batch_size=p["batch_size"], n_sequences=p["n_sequences"],
        length=p["length"], n_train=p["n_train"], data_seed=p["data_seed"], points_only=True)]


#: The chapters whose sweeps run as points, and how each makes them (its notebook's calls).
PLANNED_CHAPTERS: dict[str, Callable[[Mapping[str, Any]], list]] = {
    "alignment": _alignment, "rules": _rules, "low_data": _low_data, "imagenet": _imagenet,
    "recurrent": _recurrent,
}


#: JAX settings a chapter sets for itself before it compiles anything (the plan compiles
#: its steps with them too).
CHAPTER_JAX_SETTINGS: dict[str, Callable[[Mapping[str, Any]], dict]] = {
    "imagenet": lambda p: {"jax_disable_most_optimizations": bool(p["fast_compile"])},
}


def chapter_points(book, profile: str, chapter: str) -> list:
    """The sweep points ``chapter`` trains under ``profile``, without training them."""
    if chapter not in PLANNED_CHAPTERS:
        raise BookError(f"chapter {chapter!r} has no sweep to plan; chapters with sweeps: "
                        f"{', '.join(PLANNED_CHAPTERS)}")
    return PLANNED_CHAPTERS[chapter](chapter_parameters(book, profile, chapter))


# ------------------------------------------------------------------------- costs


def measure_device(size: int = 1024, repeats: int = 10) -> dict[str, float]:
    """This machine's default JAX device: ``tflops``, the float32 rate of a ``size``-square
    matrix product; ``step_overhead``, the seconds per step of an SGD epoch of a negligible
    network (width 2, batch 1) in :func:`alignlib.train`, what every step costs besides its
    arithmetic; ``startup_seconds`` and ``compile_factor``, the line through two small
    networks' (an MLP and a ConvNet) whole start-up in :func:`alignlib.train` (networks,
    states, the compiled epoch and evaluation: everything but their steps) against the
    compile time of their step and forward programs."""
    import jax
    import jax.numpy as jnp

    from alignlib.data import Dataset
    from alignlib.experiments.points import Workload
    from alignlib.models import model_factory
    from alignlib.rules import mse
    from alignlib.training import train

    a = jnp.ones((size, size), jnp.float32)
    product = jax.jit(lambda x: x @ x)
    product(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        product(a).block_until_ready()
    tflops = 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e12
    found = []
    for arch, shape, n in (("mlp", (2,), 2000), ("convnet", (4, 4, 1), 200)):
        x = np.zeros((n, *shape), np.float32)
        y = np.zeros((n, 2), np.float32)
        data = Dataset("overhead", x, y, x[:1], y[:1], None, None, 2)
        make = model_factory(arch, shape, 2, 2)
        start = time.perf_counter()
        history = train(make, "backprop", data, epochs=3, batch_size=1, progress=False).history
        total = time.perf_counter() - start
        epoch = float(history[(history.metric == "seconds") & (history.epoch >= 2)].value.median())
        compiled = _step_costs(Workload(make, "backprop", x[:1], y[:1], mse, 1, 1, 1))
        found.append((compiled["compile_seconds"], total - 3 * epoch, epoch / n))
    (c1, s1, overhead), (c2, s2, _) = found
    factor = max(1.0, (s2 - s1) / (c2 - c1)) if c2 > c1 else 1.0
    return {"tflops": tflops, "step_overhead": overhead,
            "startup_seconds": max(0.0, s1 - factor * c1), "compile_factor": factor}


def _step_costs(workload) -> dict[str, float]:
    """FLOPs of one SGD step (per network, every rule of the workload) and of one forward
    pass of a batch, from XLA's cost analysis of the compiled programs; compile seconds."""
    import equinox as eqx
    import jax

    from alignlib.experiments.performance import Problem, compile_step, hlo_stats

    model = eqx.filter_jit(workload.make)(jax.random.key(0, impl="rbg"))
    x, y = jax.numpy.asarray(workload.x), jax.numpy.asarray(workload.y)
    problem = Problem("plan", 0, model, x, y, workload.loss_fn)
    step_flops, seconds = 0.0, 0.0
    for rule in (workload.rule, *workload.extra_rules):
        program = compile_step(problem, rule)
        step_flops += hlo_stats(program.compiled)["flops"]
        seconds += program.compile_seconds
    start = time.perf_counter()
    arrays, static = eqx.partition(model, eqx.is_array)
    forward = jax.jit(lambda a, xb: eqx.combine(a, static)(xb)).lower(arrays, x).compile()
    seconds += time.perf_counter() - start
    return {"step_flops": step_flops, "forward_flops": hlo_stats(forward)["flops"],
            "compile_seconds": seconds, "batch": int(x.shape[0])}


def _describe(point) -> dict[str, Any]:
    p = point.params
    out = {"experiment": point.fn.partition(":")[2]}
    for key in ("model", "arch", "setting", "rule", "width", "optimizer", "batch_size",
                "epochs"):
        if key in p:
            out[key] = p[key] if not isinstance(p[key], (list, tuple)) else str(list(p[key]))
    data = point.data.get("data")
    if data is not None:
        out["n_train"] = int(data.n_train)
        out["dataset"] = str(data.name)
    return out


@dataclasses.dataclass
class Plan:
    """The cost plan of a profile (:func:`plan`).

    ``points``: one row per point: ``chapter``, what it trains (``experiment, rule,
    width, ...``), ``runs`` (networks trained together), ``steps`` (SGD steps per run,
    at most), ``step_flops`` (one step of one network, XLA's count), ``flops`` (the
    point's total), ``seconds`` (estimated; ``flop_seconds``, ``overhead_seconds``,
    ``startup_seconds`` its parts). ``chapters``: per chapter ``points, runs, steps,
    flops, seconds``, ``longest_seconds`` (its longest point) and ``measured_seconds`` (the profile's last build here, else its
    ``expected_seconds``; NaN when neither). ``device_tflops``, ``step_overhead``,
    ``startup_seconds``, ``compile_factor``: the assumptions, with ``measured`` naming
    those measured on this machine (``device``).
    """

    profile: str
    points: pd.DataFrame
    chapters: pd.DataFrame
    device_tflops: float
    step_overhead: float
    startup_seconds: float
    compile_factor: float
    measured: tuple[str, ...]
    device: str

    @property
    def total_seconds(self) -> float:
        return float(self.chapters.seconds.sum())

    def report(self) -> str:
        """The plan as text: one line per chapter and the total."""
        def measured(name: str) -> str:
            return f" (measured on {self.device})" if name in self.measured else " (stated)"

        lines = [f"Cost plan of profile {self.profile!r}: device throughput "
                 f"{self.device_tflops:.3g} TFLOP/s{measured('tflops')}, step overhead "
                 f"{self.step_overhead * 1e6:.3g} us{measured('step_overhead')}, start-up "
                 f"{self.startup_seconds:.3g} s + {self.compile_factor:.3g} x compile time"
                 f"{measured('startup')}; compile times measured on {self.device}.",
                 f"{'chapter':<10} {'points':>6} {'runs':>6} {'steps/run':>10} {'TFLOP':>10} "
                 f"{'estimate':>10} {'device-h':>9} {'longest':>9} {'measured':>9}"]
        for row in self.chapters.itertuples():
            lines.append(
                f"{row.chapter:<10} {row.points:>6d} {row.runs:>6d} {row.steps_per_run:>10.4g} "
                f"{row.flops / 1e12:>10.4g} {_duration(row.seconds):>10} {row.seconds / 3600:>9.3g} "
                f"{_duration(row.longest_seconds):>9} "
                f"{_duration(row.measured_seconds) if np.isfinite(row.measured_seconds) else '-':>9}")
        total = self.chapters
        lines.append(
            f"{'total':<10} {int(total.points.sum()):>6d} {int(total.runs.sum()):>6d} {'':>10} "
            f"{total.flops.sum() / 1e12:>10.4g} {_duration(self.total_seconds):>10} "
            f"{self.total_seconds / 3600:>9.3g} {_duration(total.longest_seconds.max()):>9}")
        lines.append("steps/run: SGD steps of a run, mean over the chapter's points, at most "
                     "(runs stop at convergence); estimate = FLOPs / throughput + steps x "
                     "overhead + start-up; longest: the longest point (no number of devices "
                     "finishes a chapter sooner); sweeps only; measured: the chapter's whole run.")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plan(book, profile: str, chapters: Sequence[str] | None = None, *,
         device_tflops: float | None = None, step_overhead: float | None = None,
         startup: tuple[float, float] | None = None, progress: bool = False) -> Plan:
    """The cost plan of ``profile``'s sweeps (module docstring), for ``chapters``
    (default: every chapter of :data:`PLANNED_CHAPTERS` in the book). ``device_tflops``,
    ``step_overhead`` (seconds) and ``startup`` (``(seconds, compile factor)``): the
    device's sustained throughput, per-step cost and a point's start-up; measured here
    (:func:`measure_device`) when not given."""
    import jax

    from alignbook.parameters import expected_seconds, load_profiles

    if profile not in load_profiles(book):
        raise BookError(f"unknown profile {profile!r}")
    available = [c for c in book.chapters() if c in PLANNED_CHAPTERS]
    chapters = available if chapters is None else list(chapters)
    unknown = [c for c in chapters if c not in available]
    if unknown:
        raise BookError(f"no sweep to plan in chapter(s) {', '.join(unknown)}; chapters with "
                        f"sweeps: {', '.join(available)}")
    if device_tflops is not None and not (np.isfinite(device_tflops) and device_tflops > 0):
        raise BookError(f"the device throughput must be a positive number, got {device_tflops!r}")
    if step_overhead is not None and not (np.isfinite(step_overhead) and step_overhead >= 0):
        raise BookError(f"the step overhead must be a number >= 0, got {step_overhead!r}")
    given = {"tflops": device_tflops, "step_overhead": step_overhead, "startup": startup}
    measured = tuple(name for name, value in given.items() if value is None)
    if measured:
        found = measure_device()
        given.update(tflops=device_tflops or found["tflops"],
                     step_overhead=found["step_overhead"] if step_overhead is None else step_overhead,
                     startup=startup or (found["startup_seconds"], found["compile_factor"]))
    device_tflops, step_overhead = given["tflops"], given["step_overhead"]
    startup_seconds, compile_factor = given["startup"]
    from alignlib.experiments.points import applied_jax_settings

    costs: dict[tuple, dict[str, float]] = {}
    rows = []
    for chapter in chapters:
        settings = CHAPTER_JAX_SETTINGS.get(chapter, lambda p: {})(
            chapter_parameters(book, profile, chapter))
        for point in chapter_points(book, profile, chapter):
            work = point.workload()
            structure = (point.fn, work.structure, tuple(sorted(settings.items())))
            if structure not in costs:
                with applied_jax_settings(settings):
                    costs[structure] = _step_costs(work)
                if progress:
                    print(f"  compiled {chapter} {point.describe()[:100]}", flush=True)
            c = costs[structure]
            eval_batches = -(-work.eval_examples // c["batch"])
            trips = work.loop_trips
            flops = work.runs * trips * (work.steps * c["step_flops"]
                                         + eval_batches * c["forward_flops"])
            flop_seconds = flops / (device_tflops * 1e12)
            overhead = trips * (work.steps + eval_batches) * step_overhead
            startup = startup_seconds + compile_factor * c["compile_seconds"]
            rows.append({"chapter": chapter, **_describe(point), "runs": work.runs,
                         "steps": work.steps, "loop_trips": trips,
                         "step_flops": trips * c["step_flops"],
                         "forward_flops": trips * c["forward_flops"], "flops": flops,
                         "flop_seconds": flop_seconds, "overhead_seconds": overhead,
                         "compile_seconds": c["compile_seconds"], "startup_seconds": startup,
                         "seconds": flop_seconds + overhead + startup})
    points = pd.DataFrame(rows)
    measured_times = expected_seconds(book, profile)
    summary = []
    for chapter in chapters:
        part = points[points.chapter == chapter] if len(points) else points
        summary.append({"chapter": chapter, "points": len(part),
                        "runs": int(part.runs.sum()) if len(part) else 0,
                        "steps_per_run": float(part.steps.mean()) if len(part) else 0.0,
                        "flops": float(part.flops.sum()) if len(part) else 0.0,
                        "seconds": float(part.seconds.sum()) if len(part) else 0.0,
                        "longest_seconds": float(part.seconds.max()) if len(part) else 0.0,
                        "measured_seconds": float(measured_times.get(chapter, np.nan))})
    device = jax.devices()[0].device_kind
    return Plan(profile, points, pd.DataFrame(summary), float(device_tflops),
                float(step_overhead), float(startup_seconds), float(compile_factor), measured,
                device)
