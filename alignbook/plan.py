"""What a profile's chapters cost, before any of them runs: ``alignbook plan``.

For each chapter with a training sweep, :mod:`alignbook.plan_work` lists what the chapter
computes without computing it: its sweep points (each point's
:meth:`~alignlib.experiments.points.Point.workload` says what it trains), the programs a
point runs besides training (the alignment chapter's scores) and the work the chapter does
besides its sweeps (stable learning rates at initialisation, the recurrent chapter's
check at initialisation and runs from the authors' seed), each as SGD steps of a network.
:func:`plan` compiles one SGD step of each distinct network, rule and batch and one
forward pass, and each other program once, reads XLA's cost analysis
(:mod:`alignbook.plan_costs`) and adds up, per point or item,

    FLOPs = runs x loop trips x (steps x step FLOPs + held-out batches x forward FLOPs)
            + calls x loop trips x program FLOPs

(the loop trips: an RNN's time steps or the probe batches, whose loop body the cost
analysis counts once), and estimates its time as

    seconds = compute
              + (steps + held-out batches) x step overhead + epochs x epoch overhead
              + start-up + compile factor x compile seconds + program compile seconds

``compute`` is the FLOPs over a stated throughput (``--device-tflops``: a plan for
another device, e.g. the gpu profile's), else it is timed here: each distinct step (of
the point's networks stacked, as :func:`alignlib.train` runs them; less the cost of
calling it from Python, which a step inside the training loop does not pay), forward pass
and program is run and timed, and multiplied by how often it runs. (With a stated
throughput the step overhead is paid per loop trip.) The step and epoch overheads are
what :func:`alignlib.train`'s loop costs besides arithmetic, per step and per epoch; the
start-up terms are a point's fixed cost (building its networks, compiling its epoch and
evaluation programs): the compile time of its step and forward programs, measured here,
scaled by a start-up and a factor measured on two small networks' whole start-up in
:func:`alignlib.train`. A chapter's kernel keeps what it compiled: a point whose networks
(shapes, runs, batch) an earlier point of the chapter built pays only its step's compile
time, one that trains the same step again nothing. Work that does not run in :func:`alignlib.train`'s loop costs its
compile time and no start-up or epoch overhead. All are measured by
:func:`alignbook.plan_costs.measure_device` unless stated; on a CPU every measurement is
CPU time (:func:`alignbook.plan_costs.clock`): the wall time of a chapter that has a core
to itself, as in a build that runs two chapters at a time on two cores.

A chapter's estimate adds its **page**: what its notebook takes besides its computations
(kernel, imports, analysis, tables, figures), measured on its last executed notebook here
(:func:`alignbook.plan_costs.page_seconds`; none for a profile never run here).

**Points already stored.** Each point is looked up in the results folder (``results``,
default ``$ALIGNBOOK_RESULTS`` or ``<book>/results``) under the key its chapter's runner
stores it by (:mod:`alignbook.plan_stored`; where the chapter's points folder holds any,
the plan first measures the learning rates the chapter measures, which the keys hash:
seconds to a minute; a point on data the plan stands in for, files it does not read, is
not looked up and counts as not stored). A stored point is priced at the epochs its
runs trained (the largest epoch of its stored table); every other point at its maximum
epochs, so where its runs stop at convergence its price is an upper bound. The estimate
is the chapter **from scratch** (stored points as they trained, the others at their cap);
**still to run** is what a build that resumes computes: the points not stored, priced as
if only they ran (a stored point costs only reading its table), the work besides the
sweeps and the page. (A chapter whose tables are cached whole runs none of its points:
the plan does not look at those tables.) Not counted: loading data files.

:func:`save_plan` writes a plan and its provenance (commit, date, the device of the cost
analysis, the assumptions, a hash of the parameters it read), :func:`check_stored_plan`
says whether a stored plan is still the profile's.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from alignbook.parameters import BookError
from alignbook.plan_costs import measure_device, page_seconds, program_costs, step_costs
from alignbook.plan_stored import at_epochs, stored_points
from alignbook.plan_work import (CHAPTER_JAX_SETTINGS, PLANNED_CHAPTERS, chapter_extras,
                                 chapter_parameters, chapter_points, planned_parameters,
                                 point_programs, stand_in_dataset)

__all__ = ["Plan", "plan", "chapter_points", "chapter_extras", "chapter_parameters",
           "stand_in_dataset", "PLANNED_CHAPTERS", "measure_device", "save_plan",
           "parameters_hash", "check_stored_plan", "provenance_path"]


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

    ``points``: one row per sweep point: ``chapter``, what it trains (``experiment, rule,
    width, ...``), ``runs`` (networks trained together), ``steps`` (SGD steps per run,
    at most), ``step_flops`` (one step of one network, XLA's count), ``program_flops``
    (the programs it runs besides training), ``flops`` (the point's total), ``seconds``
    (estimated; ``flop_seconds``, ``overhead_seconds``, ``startup_seconds`` its parts),
    ``stored`` (the results folder holds it; ``looked_up`` False: its data is a stand-in,
    not looked up), ``epochs`` (its maximum) and ``epochs_priced`` (what ``steps`` and
    ``seconds`` count: a stored point's trained epochs, else its maximum), ``run_seconds``
    (in a build that resumes: 0 for a stored point).
    ``extras``: the same per item of work besides the sweeps (``what`` it is).
    ``chapters``: per chapter ``points, runs, steps_per_run, flops``,
    ``sweep_seconds`` (its points), ``extra_seconds``, ``page_seconds`` (NaN where not
    measured, ``page_source`` the notebook), ``seconds`` (their sum, a missing page
    counted as 0), ``longest_seconds`` (its longest point), ``measured_seconds`` (the
    profile's last build here, else its ``expected_seconds``; NaN when neither),
    ``stored_points`` (points stored), ``unknown_points`` (points not looked up),
    ``run_sweep_seconds`` (its points not stored, in a build that resumes) and
    ``run_seconds`` (that, its extra work and its page).
    ``device_tflops``, ``step_overhead``, ``epoch_overhead``, ``startup_seconds``,
    ``compile_factor``: the assumptions, with ``measured`` naming those measured on this
    machine (``device``); ``timed``: the computations were timed here rather than priced
    at ``device_tflops``; ``results``: the results folder the points were looked up in.
    """

    profile: str
    points: pd.DataFrame
    extras: pd.DataFrame
    chapters: pd.DataFrame
    device_tflops: float
    step_overhead: float
    epoch_overhead: float
    startup_seconds: float
    compile_factor: float
    measured: tuple[str, ...]
    device: str
    timed: bool = False
    results: str = ""

    @property
    def total_seconds(self) -> float:
        return float(self.chapters.seconds.sum())

    def assumptions(self) -> dict[str, Any]:
        return {"device_tflops": self.device_tflops, "step_overhead": self.step_overhead,
                "epoch_overhead": self.epoch_overhead, "startup_seconds": self.startup_seconds,
                "compile_factor": self.compile_factor, "measured": list(self.measured),
                "device": self.device, "timed": self.timed}

    def report(self) -> str:
        """The plan as text: one line per chapter and the total."""
        def measured(name: str) -> str:
            return f" (measured on {self.device})" if name in self.measured else " (stated)"

        compute = (f"every step, forward pass and program timed on {self.device} (a float32 "
                   f"matrix product: {self.device_tflops:.3g} TFLOP/s)" if self.timed else
                   f"device throughput {self.device_tflops:.3g} TFLOP/s{measured('tflops')}")
        lines = [f"Cost plan of profile {self.profile!r}: {compute}, step overhead "
                 f"{self.step_overhead * 1e6:.3g} us{measured('step_overhead')}, epoch overhead "
                 f"{self.epoch_overhead * 1e3:.3g} ms{measured('epoch_overhead')}, start-up "
                 f"{self.startup_seconds:.3g} s + {self.compile_factor:.3g} x compile time"
                 f"{measured('startup')}; compile times measured on {self.device}.",
                 f"{'chapter':<10} {'points':>6} {'stored':>6} {'runs':>5} {'steps/run':>9} "
                 f"{'TFLOP':>9} {'sweeps':>8} {'besides':>8} {'page':>7} {'estimate':>9} "
                 f"{'device-h':>8} {'to run':>8} {'longest':>8} {'measured':>8} {'ratio':>5}"]
        for row in self.chapters.itertuples():
            ratio = row.seconds / row.measured_seconds
            lines.append(
                f"{row.chapter:<10} {row.points:>6d} {row.stored_points:>6d} {row.runs:>5d} "
                f"{row.steps_per_run:>9.4g} {row.flops / 1e12:>9.4g} "
                f"{_duration(row.sweep_seconds):>8} {_duration(row.extra_seconds):>8} "
                f"{_duration(row.page_seconds):>7} {_duration(row.seconds):>9} "
                f"{row.seconds / 3600:>8.3g} {_duration(row.run_seconds):>8} "
                f"{_duration(row.longest_seconds):>8} {_duration(row.measured_seconds):>8} "
                f"{f'{ratio:.2f}' if np.isfinite(ratio) else '-':>5}")
        total = self.chapters
        measured_total = total.measured_seconds.sum(min_count=len(total))
        lines.append(
            f"{'total':<10} {int(total.points.sum()):>6d} {int(total.stored_points.sum()):>6d} "
            f"{int(total.runs.sum()):>5d} {'':>9} {total.flops.sum() / 1e12:>9.4g} "
            f"{_duration(total.sweep_seconds.sum()):>8} "
            f"{_duration(total.extra_seconds.sum()):>8} {_duration(total.page_seconds.sum()):>7} "
            f"{_duration(self.total_seconds):>9} {self.total_seconds / 3600:>8.3g} "
            f"{_duration(total.run_seconds.sum()):>8} "
            f"{_duration(total.longest_seconds.max()):>8} {_duration(measured_total):>8} "
            f"{f'{self.total_seconds / measured_total:.2f}' if measured_total > 0 else '-':>5}")
        lines += self._stored_lines()
        lines.append("steps/run: SGD steps of a run, mean over the chapter's points (a stored "
                     "point's as it trained, the others' at most: runs stop at convergence); "
                     "sweeps: the points (training, and the alignment scores); besides: the "
                     "chapter's other computations; page: its notebook's other cells, "
                     "measured on its last run here; estimate: their sum, from scratch; to "
                     "run: what a build that resumes still computes (the points not stored, "
                     "besides and page); longest: the longest point (no number of devices "
                     "finishes a chapter sooner); measured: the chapter's whole run; ratio: "
                     "estimate / measured.")
        return "\n".join(lines)

    def _stored_lines(self) -> list[str]:
        """What the report says of the stored points: how many, and how they were priced."""
        points = self.points
        where = f" in {self.results}/<chapter>/{self.profile}/points" if self.results else ""
        stored = points[points.stored] if len(points) else points
        if not len(stored):
            lines = [f"No point is stored{where}: every point is priced at its maximum epochs "
                     "(an upper bound where its runs stop at convergence)."]
        else:
            others = len(points) - len(stored)
            lines = [f"Priced from stored runs: {len(stored)} of {len(points)} points (stored"
                     f"{where}), at the epochs their runs trained ({int(stored.epochs_priced.sum())}"
                     f" epochs in all, of at most {int(stored.epochs.sum())})" + (
                         f"; the other {others} at their maximum epochs (upper bounds where "
                         "runs stop at convergence)" if others else "")
                     + ". A build that resumes reuses the stored points: 'to run' leaves them out."]
        unknown = int((~points.looked_up).sum()) if len(points) else 0
        if unknown:
            lines.append(f"{unknown} points on data the plan does not read (stood in for by "
                         "zeros) were not looked up: counted as not stored.")
        return lines


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class _Costs:
    """Compiles each distinct step, forward pass and program once and prices work with
    the plan's assumptions (module docstring); ``timed``: run each program here instead
    of dividing its FLOPs by a throughput."""

    def __init__(self, assumptions: dict, timed: bool, progress: bool = False):
        self.a, self.timed, self.progress = assumptions, timed, progress
        self.steps: dict = {}
        self.programs: dict = {}

    def _step(self, key, work, settings):
        from alignlib.experiments.points import applied_jax_settings

        if key not in self.steps:
            with applied_jax_settings(settings):
                self.steps[key] = step_costs(work, timed=self.timed)
            if self.progress:
                print(f"  compiled {str(key)[:110]}", flush=True)
        return self.steps[key]

    def _program(self, program, settings):
        from alignlib.experiments.points import applied_jax_settings

        if program.key not in self.programs:
            with applied_jax_settings(settings):
                self.programs[program.key] = program_costs(program.fn, program.args,
                                                           timed=self.timed)
        return self.programs[program.key]

    def price(self, key, work, settings, *, epochs: int, in_train: bool, programs=(),
              compiled: set | None = None) -> dict:
        """The cost columns of ``work`` (a Workload) with ``programs`` besides it.
        ``compiled``: the programs the chapter compiled before (its kernel keeps them),
        updated here; a point whose network the chapter built before pays no start-up but
        the compilation of its own step, and nothing when the chapter trained the same
        step and number of networks before."""
        a, c = self.a, self._step(key, work, settings)
        compiled = set() if compiled is None else compiled
        eval_batches = -(-work.eval_examples // c["batch"])
        trips = work.loop_trips
        flops = work.runs * trips * (work.steps * c["step_flops"]
                                     + eval_batches * c["forward_flops"])
        program_flops, program_compile, program_seconds = 0.0, 0.0, 0.0
        for program in programs:
            p = self._program(program, settings)
            program_flops += program.calls * program.loop_trips * p["flops"]
            program_compile += p["compile_seconds"] * (program.key not in compiled)
            program_seconds += program.calls * p.get("seconds", 0.0)
            compiled.add(program.key)
        if self.timed:  # a step in the training loop pays no call from Python
            rules = 1 + len(work.extra_rules)
            step = max(0.0, c["step_seconds"] - rules * a["call_seconds"])
            compute = work.steps * step + eval_batches * c["forward_seconds"] + program_seconds
            overhead = (work.steps + eval_batches) * a["step_overhead"]
        else:
            compute = (flops + program_flops) / (a["tflops"] * 1e12)
            overhead = trips * (work.steps + eval_batches) * a["step_overhead"]
        overhead += epochs * a["epoch_overhead"]
        if not in_train:
            startup = c["compile_seconds"]
        elif (key, work.runs) in compiled:
            startup = 0.0
        elif _network(work) in compiled:
            startup = c["step_compile_seconds"]
        else:
            startup = a["startup_seconds"] + a["compile_factor"] * c["compile_seconds"]
        compiled.update({(key, work.runs), _network(work)})
        startup += program_compile
        return {"runs": work.runs, "steps": work.steps, "loop_trips": trips,
                "step_flops": trips * c["step_flops"],
                "forward_flops": trips * c["forward_flops"], "program_flops": program_flops,
                "flops": flops + program_flops, "compute_seconds": compute,
                "overhead_seconds": overhead,
                "compile_seconds": c["compile_seconds"] + program_compile,
                "startup_seconds": startup, "seconds": compute + overhead + startup}


def _network(work) -> tuple:
    """What identifies the networks of ``work`` and their batches: the shapes of every
    array of one network, its type and the batch's shapes."""
    import equinox as eqx
    import jax

    model = eqx.filter_eval_shape(work.make, jax.random.key(0, impl="rbg"))
    shapes = tuple((tuple(a.shape), str(a.dtype)) for a in jax.tree.leaves(model)
                   if isinstance(a, jax.ShapeDtypeStruct))
    return ("network", type(model).__name__, shapes, np.shape(work.x), np.shape(work.y), work.runs)


def _price_points(costs: _Costs, chapter: str, points: list, found: list, settings: dict,
                  frozen: tuple) -> list[dict]:
    """One row per point of ``chapter``: its cost from scratch (a stored point's, of
    ``found`` (:class:`~alignbook.plan_stored.Stored`), at the epochs it trained; its
    chapter's kernel compiling the points in order), and ``run_seconds``, its cost in a
    build that resumes (0 for a stored point; the others priced as if only they ran)."""
    def price(point, compiled):
        work = point.workload()
        return costs.price((point.fn, work.structure, frozen), work, settings,
                           epochs=int(point.params.get("epochs") or 0), in_train=True,
                           programs=point_programs(point), compiled=compiled)

    rows, compiled = [], set()  # the programs the chapter's kernel compiled so far
    for point, s in zip(points, found):
        priced = at_epochs(point, s.epochs) if s.stored else point
        rows.append({"chapter": chapter, **_describe(point), **price(priced, compiled),
                     "stored": s.stored, "looked_up": s.looked_up,
                     "epochs_priced": int(priced.params.get("epochs") or 0)})
    resumed: set = set()  # a build that resumes compiles the points not stored only
    for row, point, s in zip(rows, points, found):
        if s.stored or not any(f.stored for f in found):
            row["run_seconds"] = 0.0 if s.stored else row["seconds"]
        else:
            row["run_seconds"] = price(point, resumed)["seconds"]
    return rows


def plan(book, profile: str, chapters: Sequence[str] | None = None, *,
         device_tflops: float | None = None, step_overhead: float | None = None,
         epoch_overhead: float | None = None, startup: tuple[float, float] | None = None,
         results: str | Path | None = None, progress: bool = False) -> Plan:
    """The cost plan of ``profile`` (module docstring), for ``chapters`` (default: every
    chapter of :data:`PLANNED_CHAPTERS` in the book). ``device_tflops``, ``step_overhead``
    and ``epoch_overhead`` (seconds) and ``startup`` (``(seconds, compile factor)``): the
    device's sustained throughput, the loop's per-step and per-epoch costs and a point's
    start-up; measured here (:func:`measure_device`) when not given. ``results``: the
    results folder whose stored points are priced as they trained (default: the
    pipeline's, :func:`alignbook.pipeline.results_folder`)."""
    import jax

    from alignbook.parameters import expected_seconds, load_profiles
    from alignbook.pipeline import results_folder

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
    for name, value in (("step", step_overhead), ("epoch", epoch_overhead)):
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise BookError(f"the {name} overhead must be a number >= 0, got {value!r}")
    given = {"tflops": device_tflops, "step_overhead": step_overhead,
             "epoch_overhead": epoch_overhead, "startup": startup}
    measured = tuple(name for name, value in given.items() if value is None)
    found = measure_device() if measured else {"call_seconds": 0.0}
    found["startup"] = (found.get("startup_seconds"), found.get("compile_factor"))
    given = {name: found[name] if value is None else value for name, value in given.items()}
    assumptions = {**given, "call_seconds": found["call_seconds"],
                   "startup_seconds": given["startup"][0], "compile_factor": given["startup"][1]}
    costs = _Costs(assumptions, timed=device_tflops is None, progress=progress)
    root = Path(results) if results is not None else results_folder(book)
    points, extras = [], []
    for chapter in chapters:
        settings = CHAPTER_JAX_SETTINGS.get(chapter, lambda p: {})(
            chapter_parameters(book, profile, chapter))
        frozen = tuple(sorted(settings.items()))
        listed, found = stored_points(book, profile, chapter,
                                      chapter_points(book, profile, chapter), root, settings)
        points += _price_points(costs, chapter, listed, found, settings, frozen)
        for extra in chapter_extras(book, profile, chapter):
            work = extra.workload
            extras.append({"chapter": chapter, "what": extra.what, **costs.price(
                ("extra", work.structure, frozen), work, settings, epochs=extra.epochs,
                in_train=extra.in_train)})
    points = pd.DataFrame(points)
    extras = pd.DataFrame(extras) if extras else pd.DataFrame(
        columns=["chapter", "what", "flops", "seconds"])
    measured_times = expected_seconds(book, profile)
    summary = []
    for chapter in chapters:
        part = points[points.chapter == chapter] if len(points) else points
        other = extras[extras.chapter == chapter]
        page, source = page_seconds(book, profile, chapter)
        sweep, besides = float(part.seconds.sum()), float(other.seconds.sum())
        page_counted = page if np.isfinite(page) else 0.0
        to_run = float(part.run_seconds.sum()) if len(part) else 0.0
        summary.append({"chapter": chapter, "points": len(part),
                        "runs": int(part.runs.sum()) if len(part) else 0,
                        "steps_per_run": float(part.steps.mean()) if len(part) else 0.0,
                        "flops": float(part.flops.sum() + other.flops.sum()),
                        "sweep_seconds": sweep, "extra_seconds": besides,
                        "page_seconds": page, "page_source": source,
                        "seconds": sweep + besides + page_counted,
                        "longest_seconds": float(part.seconds.max()) if len(part) else 0.0,
                        "measured_seconds": float(measured_times.get(chapter, np.nan)),
                        "stored_points": int(part.stored.sum()) if len(part) else 0,
                        "unknown_points": int((~part.looked_up).sum()) if len(part) else 0,
                        "run_sweep_seconds": to_run,
                        "run_seconds": to_run + besides + page_counted})
    device = jax.devices()[0].device_kind
    return Plan(profile, points, extras, pd.DataFrame(summary), float(given["tflops"]),
                float(given["step_overhead"]), float(given["epoch_overhead"]),
                *map(float, given["startup"]), measured, device, timed=costs.timed,
                results=str(root))


# ------------------------------------------------------------------ a stored plan


def parameters_hash(parameters: dict[str, dict[str, Any]]) -> str:
    """SHA-256 of ``{chapter: {name: value}}`` (:func:`alignbook.plan_work.
    planned_parameters`) as sorted JSON."""
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def provenance_path(path: str | Path) -> Path:
    """The provenance file of the stored plan ``path`` (``plan_gpu.csv`` ->
    ``plan_gpu.json``)."""
    return Path(path).with_suffix(".json")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def save_plan(result: Plan, book, path: str | Path, *, command: str = "") -> dict[str, Path]:
    """Write ``result``: its chapters to ``path`` (CSV), its points and extra work beside
    it (``<stem>_points.csv``, ``<stem>_extras.csv``) and its provenance
    (:func:`provenance_path`: profile, command, date, git commit, the device and CPU the
    cost analysis ran on, package versions, the assumptions, the results folder its
    stored points were looked up in, the parameters the plan read and their
    :func:`parameters_hash`). Returns the paths by kind."""
    from alignbook.results import _device_info, _git_info, _package_versions

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    paths = {"chapters": path, "points": path.with_name(f"{path.stem}_points.csv"),
             "extras": path.with_name(f"{path.stem}_extras.csv"),
             "provenance": provenance_path(path)}
    result.chapters.drop(columns=["page_source", "measured_seconds"]).to_csv(
        paths["chapters"], index=False)
    result.points.to_csv(paths["points"], index=False)
    result.extras.to_csv(paths["extras"], index=False)
    parameters = planned_parameters(book, result.profile, list(result.chapters.chapter))
    provenance = {
        "profile": result.profile, "command": command,
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": _git_info(book.root), "device": {**_device_info(), "cpu": _cpu_model()},
        "packages": _package_versions(), "assumptions": result.assumptions(),
        "results": result.results,
        "parameters_sha256": parameters_hash(parameters), "parameters": parameters,
        "files": {kind: p.name for kind, p in paths.items() if kind != "provenance"},
    }
    paths["provenance"].write_text(json.dumps(provenance, indent=1, default=str) + "\n",
                                   encoding="utf-8")
    return paths


def check_stored_plan(book, path: str | Path) -> list[str]:
    """What makes the stored plan ``path`` (:func:`save_plan`) no longer its profile's:
    parameters whose values changed since it was written, chapters whose number of points
    changed; ``[]`` when it is current. Lists points without compiling anything
    (seconds)."""
    provenance = json.loads(provenance_path(path).read_text(encoding="utf-8"))
    profile, stored = provenance["profile"], provenance["parameters"]
    current = json.loads(json.dumps(planned_parameters(book, profile, list(stored)),
                                    default=str))  # as stored
    problems = []
    if parameters_hash(current) != provenance["parameters_sha256"]:
        for chapter in sorted(set(stored) | set(current)):
            old, new = stored.get(chapter, {}), current.get(chapter, {})
            problems += [f"{chapter}.{name}: {old.get(name)!r} -> {new.get(name)!r}"
                         for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
        problems = problems or ["the parameters' hash differs"]
    chapters = pd.read_csv(path)
    for row in chapters.itertuples():
        count = len(chapter_points(book, profile, row.chapter))
        if count != row.points:
            problems.append(f"{row.chapter}: {row.points} points stored, {count} now")
    return problems
