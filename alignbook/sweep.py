"""Sweeps: many independent experiment points, run here or on a cluster, each saved once.

A **point** is one call of an experiment function with one set of parameters::

    Point("alignbook.sweep:train_point", {"rule": "align_ada", "width": 256, ...})

The experiment is named by its import path ``"module:function"`` so that any worker
process can import it; it takes the parameters as keyword arguments and returns a tidy
:class:`pandas.DataFrame`. The point's **key** is the hash of its canonical JSON
(experiment name and parameters, :func:`alignbook.results.params_hash`).

**Batch what can be batched.** Seeds and learning rates of one configuration should be
*one* point, passed as lists (``seeds=[0, 1, 2], learning_rates=[1, 2, 5]``):
:func:`alignlib.training.train` runs them in one compiled, ``vmap``-ed program, so a
narrow network does not leave the device idle. :func:`grid` builds points this way: the
product of the ``axes`` (rule, width, ...) makes the points, the ``batched`` parameters
go whole into every point.

**Storage.** Every finished point is written through the results store
(:class:`alignbook.results.ResultStore`): ``<root>/<name>/<profile>/<key>/point.csv``
with ``provenance.json`` (parameters, versions, device, git revision, checksum), each
file written to a temporary name and moved into place atomically. A point whose table is
recorded as complete is never computed again; a point that was running when its process
died has no trusted file and is computed again. So a sweep interrupted half-way resumes
where it stopped, with nothing lost and nothing done twice.

**Engines** (:func:`run_sweep`):

* ``engine="serial"`` (default): the points run one after the other in this process.
  Nothing to set up.
* ``engine="dask"``: each point is a task of a `Dask distributed
  <https://distributed.dask.org>`_ cluster. ``address=None`` starts a local cluster of
  ``n_workers`` worker processes (one thread each) for the duration of the sweep;
  ``address="tcp://host:8786"`` (or a :class:`distributed.Client`) uses a running cluster.
  ``resources={"GPU": 1}`` sends each point to a worker that declared that resource
  (``dask worker ... --resources GPU=1``), one point per GPU at a time. A worker that
  dies has its points rescheduled on the others by the scheduler (up to
  ``distributed.scheduler.allowed-failures`` deaths per point). Workers write the
  points themselves (``shared_filesystem=True``: the results root must be the same path
  on every machine, as on a cluster's shared disk); with ``shared_filesystem=False``
  they send the tables back and this process writes them.

SLURM: start the cluster with ``dask_jobqueue.SLURMCluster`` (package ``dask-jobqueue``)
and pass its client or ``scheduler_address``; see the book's performance chapter.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import importlib
import itertools
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from alignbook.results import ResultStore, canonical_json, params_hash, results_root

__all__ = [
    "Point", "SweepResult", "SweepStore", "grid", "experiment_name", "resolve_experiment",
    "run_point", "run_sweep", "train_point", "demo_point", "ENGINES", "POINT_TABLE",
    "SweepError", "describe_point", "Engine", "CHAPTER_ENGINES", "ENGINE_ENV", "WORKERS_ENV",
    "ADDRESS_ENV", "POINTS_FOLDER", "chapter_runner", "engine_client", "local_cluster",
    "gpu_worker_specs", "visible_gpus",
]

#: Names accepted by :func:`run_sweep`'s ``engine``.
ENGINES = ("serial", "dask")
#: File stem of a point's table in its store folder.
POINT_TABLE = "point"
#: The experiment that runs a point of an :mod:`alignlib.experiments.points` sweep.
CALL_POINT = "alignlib.experiments.points:call_point"


# ------------------------------------------------------------------------- points


def experiment_name(experiment: str | Callable) -> str:
    """The ``"module:function"`` name of an experiment (a function or its name).

    Lambdas and functions defined inside other functions are refused: their name does
    not identify them, so neither a worker nor a later resume could find them.
    """
    if isinstance(experiment, str):
        name = experiment
    elif callable(experiment):
        name = f"{experiment.__module__}:{experiment.__qualname__}"
    else:
        raise TypeError(f"experiment must be a function or 'module:function', got {experiment!r}")
    module, sep, qualname = name.partition(":")
    if not sep or not module or not qualname or "<" in name:
        raise ValueError(
            f"experiment {name!r} is not importable: give a module-level function or its "
            "name as 'package.module:function'")
    return name


def resolve_experiment(name: str) -> Callable[..., pd.DataFrame]:
    """Import the experiment function named ``"module:function"``."""
    module, _, qualname = experiment_name(name).partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"experiment {name!r} is not callable")
    return target


@dataclass(frozen=True)
class Point:
    """One experiment call: ``experiment`` (``"module:function"``) and its ``params``.

    ``params`` must have a canonical JSON form (numbers, strings, booleans, ``None``,
    lists and dicts of these); they are stored, hashed and passed to the experiment as
    that plain copy, in which integral floats are integers (``5.0`` and ``5`` are the same
    point), so every engine calls the experiment with exactly the same arguments.
    """

    experiment: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        import json

        object.__setattr__(self, "experiment", experiment_name(self.experiment))
        object.__setattr__(self, "params", json.loads(canonical_json(self.params)))

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def identity(self) -> dict[str, Any]:
        """What the key hashes: ``{"experiment": ..., "params": ...}``."""
        return {"experiment": self.experiment, "params": dict(self.params)}

    @property
    def key(self) -> str:
        """The point's key: 12 hex digits of the SHA-256 of its canonical JSON."""
        return params_hash(self.identity)


def grid(experiment: str | Callable, *, batched: Mapping[str, Any] | None = None,
         **axes: Sequence[Any]) -> list[Point]:
    """Points for every combination of ``axes`` (each a list of values).

    ``batched`` parameters are passed whole to every point: lists of seeds and learning
    rates that one compiled program runs together. Example::

        grid(train_point, rule=["backprop", "align_ada"], width=[64, 256],
             batched=dict(seeds=[0, 1, 2], learning_rates=[1.0, 5.0], epochs=10))

    gives 4 points, each training 6 networks in one ``vmap``-ed program.
    """
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(f"axis {name!r} must be a list of values, got {values!r}")
    batched = dict(batched or {})
    overlap = set(batched) & set(axes)
    if overlap:
        raise ValueError(f"parameters {sorted(overlap)} are both axes and batched")
    names = list(axes)
    return [Point(experiment, {**dict(zip(names, combo)), **batched})
            for combo in itertools.product(*(list(axes[n]) for n in names))]


# -------------------------------------------------------------------------- store


class _PointStore(ResultStore):
    """A point's folder, ``<base>/<point key>``. Not announced to the ``alignbook``
    pipeline's manifest (a chapter's own store is; a sweep's many point folders would
    drown it)."""

    def __init__(self, name: str, profile: str, identity: Mapping[str, Any], *, root: Path,
                 base: Path):
        self._base = base
        super().__init__(name, profile, identity, root=root)

    def _folder(self) -> Path:
        return self._base / self.hash

    def _announce(self) -> None:
        return None


class SweepStore:
    """Where a sweep's points live: ``<root>/<name>/<profile>/<point key>/point.csv``.

    ``root``: results root (default ``$ALIGNBOOK_RESULTS`` or ``<book>/results``),
    resolved to an absolute path when the store is made.
    """

    def __init__(self, name: str = "sweep", profile: str = "default",
                 root: str | Path | None = None, base: str | Path | None = None):
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ValueError(f"sweep names must be plain, non-empty names, got {name!r}")
        self.name = name
        self.profile = profile
        self.root = results_root(root)
        #: the folder holding one folder per point (``base``, default ``<root>/<name>/<profile>``)
        self.base = Path(base).resolve() if base is not None else self.root / name / profile

    def __repr__(self) -> str:
        return f"SweepStore({self.name!r}, {self.profile!r}, base='{self.base}')"

    def folder(self, point: Point) -> Path:
        """The point's folder (not created)."""
        return self.base / point.key

    def _store(self, point: Point) -> ResultStore:
        store = _PointStore(self.name, self.profile, point.identity, root=self.root,
                            base=self.base)
        assert store.hash == point.key
        return store

    def is_done(self, point: Point) -> bool:
        """True when the point's table exists and is recorded as complete."""
        if not (self.folder(point) / f"{POINT_TABLE}.csv").is_file():
            return False
        return self._store(point).has_table(POINT_TABLE)

    def save(self, point: Point, table: pd.DataFrame,
             arrays: Mapping[str, Any] | None = None) -> Path:
        """Write the point's arrays (if any, ``point.npz``) and then its table atomically,
        each with its checksum: the table, written last, marks the point finished."""
        store = self._store(point)
        if arrays:
            store.save_arrays(arrays, POINT_TABLE)
        return store.save_table(table, POINT_TABLE)

    def load(self, point: Point) -> pd.DataFrame:
        """The point's table as read back from its CSV (raises
        :class:`~alignbook.results.IncompleteResultError` if it is not complete)."""
        return self._store(point).load_table(POINT_TABLE)

    def load_arrays(self, point: Point) -> dict[str, np.ndarray]:
        """The arrays the point returned besides its table (``{}`` when none)."""
        store = self._store(point)
        return store.load_arrays(POINT_TABLE) if store.has_arrays(POINT_TABLE) else {}

    def done(self, points: Iterable[Point]) -> list[Point]:
        """The points of ``points`` that are finished."""
        return [p for p in points if self.is_done(p)]


def _check_result(point: Point, result: Any) -> tuple[pd.DataFrame, dict]:
    """An experiment's return value as ``(table, arrays)``: a DataFrame, or a pair of a
    DataFrame and a mapping of names to arrays."""
    arrays: Mapping = {}
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping):
        result, arrays = result
    if not isinstance(result, pd.DataFrame):
        raise TypeError(f"experiment {point.experiment} returned {type(result).__name__}, "
                        "not a pandas DataFrame")
    return result, {str(k): np.asarray(v) for k, v in arrays.items()}


def run_point(experiment: str, params: Mapping[str, Any], name: str, profile: str,
              root: str | None, recompute: bool = False, base: str | None = None,
              inputs: Mapping[str, Any] | None = None
              ) -> tuple[bool, tuple[pd.DataFrame, dict] | None]:
    """Run one point unless it is finished; what every engine's workers execute.

    ``inputs``: further keyword arguments of the experiment that are not part of the
    point's key (objects too large or too rich for its parameters; the key must already
    identify them). With ``root`` (a results root reachable from here; ``base`` the
    sweep's folder in it, :class:`SweepStore`) the result is written through
    :class:`SweepStore` and ``(computed, None)`` is returned, ``computed`` telling whether
    it ran (``False``: it was already complete; ``recompute=True`` runs it anyway). With
    ``root=None`` nothing is written and ``(True, (table, arrays))`` is returned for the
    caller to save.
    """
    point = Point(experiment, params)
    fn = resolve_experiment(point.experiment)
    if root is None:
        return True, _check_result(point, fn(**point.params, **dict(inputs or {})))
    store = SweepStore(name, profile, root, base)
    if not recompute and store.is_done(point):
        return False, None
    store.save(point, *_check_result(point, fn(**point.params, **dict(inputs or {}))))
    return True, None


# -------------------------------------------------------------------------- runner


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns.

    ``table``: the points' tables concatenated in the order of the points, each row
    with the point's ``point`` key and, where the table lacks a column of that name, the
    point's scalar parameters; ``tables`` / ``arrays``: each point's own table (as stored,
    without those columns) and arrays, in the order of the points; ``computed``: keys of
    the points that were not finished when the call started (in completion order);
    ``reused``: keys of those that were; ``seconds``: wall time of the call.
    """

    table: pd.DataFrame
    computed: list[str]
    reused: list[str]
    seconds: float
    store: SweepStore
    tables: list[pd.DataFrame] = field(default_factory=list)
    arrays: list[dict] = field(default_factory=list)


class SweepError(RuntimeError):
    """Points of a sweep raised; every other point was run and stored. ``failures``:
    ``[(point, exception), ...]``."""

    def __init__(self, message: str, failures: list[tuple[Point, BaseException]]):
        super().__init__(message)
        self.failures = failures


def describe_point(point: Point) -> str:
    """The point's key and what it computes, for messages."""
    params = dict(point.params)
    if point.experiment == CALL_POINT:  # a point of an alignlib sweep: name its own call
        return f"{point.key} {params.get('fn')} {canonical_json(params.get('params') or {})}"
    return f"{point.key} {point.experiment} {canonical_json(params)}"


def _annotate(point: Point, table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    for key, value in point.params.items():
        if key not in table.columns and isinstance(value, (bool, int, float, str)):
            table[key] = value
    table.insert(0, "point", point.key)
    return table


def _check_points(points: Iterable[Point]) -> list[Point]:
    points = list(points)
    for p in points:
        if not isinstance(p, Point):
            raise TypeError(f"points must be Point objects (see grid()), got {p!r}")
    seen: dict[str, Point] = {}
    for p in points:
        if p.key in seen:
            raise ValueError(f"point {p.identity} is listed twice")
        seen[p.key] = p
    return points


def run_sweep(points: Iterable[Point], *, name: str = "sweep", profile: str = "default",
              root: str | Path | None = None, engine: str = "serial",
              address: Any = None, n_workers: int = 2, threads_per_worker: int = 1,
              resources: Mapping[str, float] | None = None, retries: int = 0,
              shared_filesystem: bool = True, recompute: bool = False,
              on_result: Callable[[Point, pd.DataFrame], None] | None = None,
              progress: bool = False, base: str | Path | None = None,
              inputs: Mapping[str, Mapping[str, Any]] | None = None) -> SweepResult:
    """Run every point that is not finished yet, then return all points' results.

    Arguments:
        points: the points (:func:`grid`); each must be listed once.
        name, profile, root, base: where results go (:class:`SweepStore`).
        engine: ``"serial"`` (this process, one point after the other) or ``"dask"``.
        address: ``"dask"`` only. ``None``: start a ``LocalCluster`` of ``n_workers``
            processes with ``threads_per_worker`` threads for this call; a scheduler
            address (``"tcp://host:8786"``) or a ``distributed.Client``: use that cluster.
        resources: ``"dask"`` only: worker resources each point needs, e.g.
            ``{"GPU": 1}`` (workers declare them with ``--resources GPU=1``).
        retries: ``"dask"`` only: extra attempts for a point whose experiment *raised*
            (a point whose worker *died* is always rescheduled).
        shared_filesystem: ``"dask"`` only: workers write the points into ``root``
            themselves (``True``), or return them to be written here (``False``).
        recompute: compute every point again, even finished ones (e.g. when the
            ``alignbook`` pipeline runs with ``--recompute``, ``$ALIGNBOOK_RECOMPUTE``).
        on_result: called as ``on_result(point, table)`` when a point finishes (in this
            process, in completion order; finished points found at the start are not
            reported). An exception it raises stops the sweep (finished points stay).
        progress: print one line per finished point.
        inputs: ``{point key: {argument: value}}``, further keyword arguments of a point's
            experiment that its key does not hash (:func:`run_point`).

    A point whose experiment raises does not stop the others: every other point is run
    and stored, then :class:`SweepError` names the points that failed, with their
    parameters (the first failure's exception as its cause).

    Returns a :class:`SweepResult`; its ``table`` is read back from the store, so a run
    that computed everything and a run that reused everything return identical frames,
    whichever engine ran the points.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "serial" and (address is not None or resources):
        raise ValueError("address and resources apply to engine='dask' only")
    points = _check_points(points)
    inputs = dict(inputs or {})
    store = SweepStore(name, profile, root, base)
    start = time.perf_counter()
    todo = list(points) if recompute else [p for p in points if not store.is_done(p)]
    todo_keys = {p.key for p in todo}
    reused = [p.key for p in points if p.key not in todo_keys]
    computed: list[str] = []
    failures: list[tuple[Point, BaseException]] = []

    def finished(point: Point, ran: bool, result: tuple[pd.DataFrame, dict] | None) -> None:
        # ran=False: finished meanwhile by someone else, e.g. a worker that died after
        # writing it; either way it was not finished when this call started
        if result is not None:
            store.save(point, *result)
        computed.append(point.key)
        if progress:
            print(f"sweep {name}: {len(computed) + len(reused)}/{len(points)} "
                  f"{'computed' if ran else 'finished meanwhile'} {point.key} {point.params}",
                  flush=True)
        if on_result is not None:
            on_result(point, store.load(point))

    def failed(point: Point, exc: BaseException) -> None:
        failures.append((point, exc))
        if progress:
            print(f"sweep {name}: FAILED {describe_point(point)}: {type(exc).__name__}: {exc}",
                  flush=True)

    if engine == "serial":
        for point in todo:
            try:
                ran, _ = run_point(point.experiment, point.params, name, profile,
                                   str(store.root), recompute, str(store.base),
                                   inputs.get(point.key))
            except Exception as exc:
                failed(point, exc)
                continue
            finished(point, ran, None)
    elif todo:
        _run_dask(todo, store, finished, failed, address=address, n_workers=n_workers,
                  threads_per_worker=threads_per_worker, resources=resources,
                  retries=retries, shared_filesystem=shared_filesystem, recompute=recompute,
                  inputs=inputs)
    if failures:
        lines = [f"  point {describe_point(p)}: {type(e).__name__}: {e}" for p, e in failures]
        raise SweepError(
            f"sweep {name!r}: {len(failures)} of {len(points)} points failed; the other "
            f"points are stored in {store.base}:\n" + "\n".join(lines), failures
        ) from failures[0][1]

    tables = [store.load(p) for p in points]
    table = pd.concat([_annotate(p, t) for p, t in zip(points, tables)], ignore_index=True) \
        if points else pd.DataFrame()
    return SweepResult(table, computed, reused, time.perf_counter() - start, store, tables,
                       [store.load_arrays(p) for p in points])


def _run_dask(todo: list[Point], store: SweepStore, finished, failed, *, address, n_workers,
              threads_per_worker, resources, retries, shared_filesystem, recompute,
              inputs) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise ImportError("engine='dask' needs the package 'distributed' "
                          "(pip install 'alignlib[distributed]')") from exc

    cluster = None
    own_client = False
    if address is None:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                               processes=True, dashboard_address=None)
        client, own_client = Client(cluster), True
    elif isinstance(address, Client):
        client = address
    else:
        client, own_client = Client(address), True
    try:
        root = str(store.root) if shared_filesystem else None
        # task keys name the store too: the same point of two stores is two tasks
        where = params_hash({"root": str(store.root), "base": str(store.base),
                             "name": store.name, "profile": store.profile}, 8)
        futures = {}
        for point in todo:
            future = client.submit(run_point, point.experiment, point.params, store.name,
                                   store.profile, root, recompute, str(store.base),
                                   inputs.get(point.key),
                                   key=f"alignbook-{store.name}-{where}-{point.key}",
                                   resources=dict(resources) if resources else None,
                                   retries=retries, pure=False)
            futures[future] = point
        for future in as_completed(futures):
            try:
                ran, result = future.result()
            except Exception as exc:  # the experiment raised, or its workers kept dying
                failed(futures[future], exc)
                continue
            finished(futures[future], ran, result)
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()


# ---------------------------------------------------------- the chapters' engine

#: Engines of ``alignbook build|run --engine`` (and of a profile's ``engine:`` key).
CHAPTER_ENGINES = ("serial", "local", "dask")
#: Environment variables that carry the engine into a chapter's kernel.
ENGINE_ENV = "ALIGNBOOK_ENGINE"
WORKERS_ENV = "ALIGNBOOK_WORKERS"
ADDRESS_ENV = "ALIGNBOOK_SCHEDULER"
#: Folder of a chapter's points: ``<root>/<chapter>/<profile>/points/<point key>/``.
POINTS_FOLDER = "points"


@dataclass(frozen=True)
class Engine:
    """Where a chapter's sweep points run.

    ``"serial"``: in the chapter's kernel, one after the other (the default). ``"local"``:
    a Dask cluster on this machine for the kernel's lifetime: one worker process per
    visible GPU, each pinned to it through ``CUDA_VISIBLE_DEVICES`` (``workers`` spreads
    that many over the GPUs, several sharing one), or ``workers`` CPU processes (default:
    one per core) where there is no GPU; every worker runs one point at a time with
    ``XLA_PYTHON_CLIENT_PREALLOCATE=false``. ``"dask"``: the Dask scheduler at
    ``address`` (``tcp://host:8786``, workers started by ``dask worker`` or
    dask-jobqueue; they send each table back to be stored here), or, without an address,
    a local cluster of ``workers`` CPU processes (default 2).
    """

    engine: str = "serial"
    workers: int | None = None
    address: str | None = None

    def __post_init__(self):
        if self.engine not in CHAPTER_ENGINES:
            raise ValueError(f"engine must be one of {', '.join(CHAPTER_ENGINES)}, got {self.engine!r}")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise ValueError(f"workers must be a positive integer, got {self.workers!r}")
        if self.engine == "serial" and self.workers is not None:
            raise ValueError("workers apply to the local and dask engines, not serial")
        if self.address is not None and self.engine != "dask":
            raise ValueError(f"an address applies to the dask engine, not {self.engine}")
        if self.address is not None and self.workers is not None:
            raise ValueError("give the dask engine a scheduler address or a number of local "
                             "workers, not both")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Engine":
        """The engine named by ``$ALIGNBOOK_ENGINE``, ``$ALIGNBOOK_WORKERS`` and
        ``$ALIGNBOOK_SCHEDULER`` (unset: serial)."""
        env = os.environ if environ is None else environ
        workers = env.get(WORKERS_ENV) or None
        try:
            workers = int(workers) if workers is not None else None
        except ValueError:
            raise ValueError(f"${WORKERS_ENV} must be a positive integer, got {workers!r}") from None
        return cls(env.get(ENGINE_ENV) or "serial", workers, env.get(ADDRESS_ENV) or None)

    def env(self) -> dict[str, str]:
        """The environment variables that select this engine in a chapter's kernel."""
        out = {ENGINE_ENV: self.engine, WORKERS_ENV: "", ADDRESS_ENV: ""}
        if self.workers is not None:
            out[WORKERS_ENV] = str(self.workers)
        if self.address is not None:
            out[ADDRESS_ENV] = self.address
        return out


def visible_gpus() -> list[str]:
    """The GPUs worker processes may be pinned to: ``$CUDA_VISIBLE_DEVICES`` where set,
    else those ``nvidia-smi`` lists; none where ``$JAX_PLATFORMS`` leaves CUDA out or no
    NVIDIA driver answers. JAX is not started."""
    platforms = os.environ.get("JAX_PLATFORMS", "").lower()
    if platforms and not any(p in platforms for p in ("cuda", "gpu")):
        return []
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        ids = [d.strip() for d in given.split(",") if d.strip()]
        return [] if not ids or ids[0] in ("-1", "NoDevFiles") else ids
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def local_cluster(workers: int | None = None, gpus: Sequence[str] | None = None):
    """A Dask cluster of worker processes on this machine, one thread each: one per GPU of
    ``gpus`` (default :func:`visible_gpus`) pinned through ``CUDA_VISIBLE_DEVICES``
    (``workers`` of them, round robin, where given), else ``workers`` CPU processes
    (default: one per core). Workers do not preallocate accelerator memory, so several
    processes (the chapter's kernel too) can share a device."""
    from distributed import LocalCluster, Scheduler, SpecCluster

    gpus = visible_gpus() if gpus is None else list(gpus)
    if not gpus:
        n = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                        else os.cpu_count() or 1)
        return LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                            dashboard_address=None, env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    return SpecCluster(workers=gpu_worker_specs(gpus, workers),
                       scheduler={"cls": Scheduler, "options": {"dashboard_address": None}})


def gpu_worker_specs(gpus: Sequence[str], workers: int | None = None) -> dict[str, dict]:
    """The workers of :func:`local_cluster` on ``gpus``, as ``SpecCluster`` specifications:
    ``workers`` (default one per GPU) worker processes (nannies) of one thread, spread over
    the GPUs in turn, each seeing only its GPU and declaring the resource ``GPU=1``."""
    from distributed import Nanny

    return {f"gpu{gpus[i % len(gpus)]}-{i}": {"cls": Nanny, "options": {
        "nthreads": 1, "resources": {"GPU": 1},
        "env": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                "CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]}}}
        for i in range(workers or len(gpus))}


_CLIENTS: dict[Engine, Any] = {}


def engine_client(engine: Engine):
    """The Dask client of ``engine`` (not serial), started on first use and kept for
    this process's lifetime (closed at exit)."""
    if engine.engine == "serial":
        raise ValueError("the serial engine has no cluster")
    if engine not in _CLIENTS:
        from distributed import Client, LocalCluster

        if engine.address is not None:
            client = Client(engine.address)
        elif engine.engine == "local":
            client = Client(local_cluster(engine.workers))
        else:
            client = Client(LocalCluster(n_workers=engine.workers or 2, threads_per_worker=1,
                                         processes=True, dashboard_address=None))
        if not _CLIENTS:
            atexit.register(_close_clients)
        _CLIENTS[engine] = client
    return _CLIENTS[engine]


def _close_clients() -> None:
    while _CLIENTS:
        _, client = _CLIENTS.popitem()
        cluster = client.cluster
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()


def chapter_runner(store: ResultStore, *, recompute: bool = False,
                   engine: Engine | None = None):
    """A runner for :func:`alignlib.experiments.points.use_runner` that runs a chapter's
    points through :func:`run_sweep` and keeps each one under
    ``<root>/<chapter>/<profile>/points/<key>/`` (:data:`POINTS_FOLDER`) of ``store``.

    A point's key hashes its function, parameters, the hashes of its data sets and the
    JAX settings that change numbers (:data:`alignlib.experiments.points.JAX_SETTINGS`),
    so a point computed for one parameter setting of a chapter is reused by another that
    has it too. ``engine``: default :meth:`Engine.from_env`. Data sets loaded through a
    recorded loader (:func:`alignlib.experiments.points.with_source`) are loaded again by
    each worker rather than sent, and checked against their hash there.
    """
    from alignlib.experiments import points as P

    engine = Engine.from_env() if engine is None else engine
    base = store.root / store.chapter / store.profile / POINTS_FOLDER

    def run(points, label: str):
        settings = P.jax_settings()
        unique: dict[str, Point] = {}
        inputs: dict[str, dict] = {}
        order = []
        for p in points:
            identity = p.identity
            point = Point(CALL_POINT, {"fn": identity["fn"], "params": identity["params"],
                                       "data": identity["data"], "jax": settings})
            order.append(point.key)
            if point.key in unique:
                continue
            unique[point.key] = point
            if engine.engine != "serial":  # send recipes, not arrays, where there are some
                p = dataclasses.replace(p, data={k: P.source_of(v) or v for k, v in p.data.items()})
            inputs[point.key] = {"point": p}
        where = {} if engine.engine == "serial" else {
            "engine": "dask", "address": engine_client(engine),
            "shared_filesystem": engine.address is None}
        result = run_sweep(list(unique.values()), name=store.chapter, profile=store.profile,
                           root=store.root, base=base, recompute=recompute, inputs=inputs,
                           **where)
        found = {key: P.PointResult(table, arrays)
                 for key, table, arrays in zip(unique, result.tables, result.arrays)}
        return [found[key] for key in order]

    return run


# ------------------------------------------------------------------ experiments


def train_point(*, rule: str, width: int, epochs: int, model: str = "mlp",
                dataset: str = "digits", learning_rates: float | Sequence[float] = 1.0,
                seeds: int | Sequence[int] = 0, batch_size: int = 100, depth: int = 2,
                strides: Sequence[int] = (1, 2, 2), optimizer: str = "sgd",
                dataset_kwargs: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Train one configuration for every seed and learning rate, in one program.

    ``model``: ``"mlp"`` (``depth`` hidden layers), ``"convnet"`` (``strides``) or ``"rnn"``
    (the Add task: use ``dataset="add"``); ``dataset``: a name for
    :func:`alignlib.data.load_dataset` with ``dataset_kwargs``. Returns the tidy
    history of :func:`alignlib.training.train` (tags ``model, width, dataset``) without
    its ``seconds`` metric, so the table depends only on the parameters: the same point
    gives the same table on any worker.
    """
    from alignlib.data import load_dataset
    from alignlib.models import ARCHITECTURES, loss_for, model_factory
    from alignlib.training import train

    if model not in ARCHITECTURES:
        raise ValueError(f"model must be one of {ARCHITECTURES}, got {model!r}")
    data = load_dataset(dataset, **dict(dataset_kwargs or {}))
    make = model_factory(model, data.x_train.shape[1:], data.n_outputs, width, depth=depth,
                         strides=strides)
    loss_fn = loss_for(model)
    result = train(make, rule, data, epochs=epochs, learning_rates=learning_rates,
                   seeds=seeds, batch_size=batch_size, optimizer=optimizer, loss_fn=loss_fn,
                   tags={"model": model, "width": width, "dataset": dataset}, progress=False)
    history = result.history
    return history[history.metric != "seconds"].reset_index(drop=True)


def demo_point(*, x: float, seconds: float = 0.0, log: str | None = None,
               fail: bool = False) -> pd.DataFrame:
    """A toy experiment for tests and examples: sleeps ``seconds``, then returns three
    rows ``(x, metric, value)`` that depend only on ``x``. ``log``: a file to which each
    finished computation appends the line ``x`` (to count computations across
    processes); ``fail=True``: raise a ValueError instead."""
    time.sleep(float(seconds))
    if fail:
        raise ValueError(f"demo point x={x} fails as asked")
    if log is not None:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{x}\n")
    values = {"square": x * x, "sine": float(np.sin(x)), "cube": x ** 3}
    return pd.DataFrame({"x": x, "metric": list(values), "value": list(values.values())})
