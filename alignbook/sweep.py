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

import importlib
import itertools
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
]

#: Names accepted by :func:`run_sweep`'s ``engine``.
ENGINES = ("serial", "dask")
#: File stem of a point's table in its store folder.
POINT_TABLE = "point"


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
    """A point's folder. Not announced to the ``alignbook`` pipeline's manifest (a
    chapter's own store is; a sweep's many point folders would drown it)."""

    def _announce(self) -> None:
        return None


class SweepStore:
    """Where a sweep's points live: ``<root>/<name>/<profile>/<point key>/point.csv``.

    ``root``: results root (default ``$ALIGNBOOK_RESULTS`` or ``<book>/results``),
    resolved to an absolute path when the store is made.
    """

    def __init__(self, name: str = "sweep", profile: str = "default",
                 root: str | Path | None = None):
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ValueError(f"sweep names must be plain, non-empty names, got {name!r}")
        self.name = name
        self.profile = profile
        self.root = results_root(root)

    def __repr__(self) -> str:
        return f"SweepStore({self.name!r}, {self.profile!r}, root='{self.root}')"

    def folder(self, point: Point) -> Path:
        """The point's folder (not created)."""
        return self.root / self.name / self.profile / point.key

    def _store(self, point: Point) -> ResultStore:
        store = _PointStore(self.name, self.profile, point.identity, root=self.root)
        assert store.hash == point.key
        return store

    def is_done(self, point: Point) -> bool:
        """True when the point's table exists and is recorded as complete."""
        if not (self.folder(point) / f"{POINT_TABLE}.csv").is_file():
            return False
        return self._store(point).has_table(POINT_TABLE)

    def save(self, point: Point, table: pd.DataFrame) -> Path:
        """Write the point's table atomically and record its checksum."""
        return self._store(point).save_table(table, POINT_TABLE)

    def load(self, point: Point) -> pd.DataFrame:
        """The point's table as read back from its CSV (raises
        :class:`~alignbook.results.IncompleteResultError` if it is not complete)."""
        return self._store(point).load_table(POINT_TABLE)

    def done(self, points: Iterable[Point]) -> list[Point]:
        """The points of ``points`` that are finished."""
        return [p for p in points if self.is_done(p)]


def _check_table(point: Point, table: Any) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"experiment {point.experiment} returned {type(table).__name__}, "
                        "not a pandas DataFrame")
    return table


def run_point(experiment: str, params: Mapping[str, Any], name: str, profile: str,
              root: str | None, recompute: bool = False) -> tuple[bool, pd.DataFrame | None]:
    """Run one point unless it is finished; what every engine's workers execute.

    With ``root`` (a results root reachable from here) the table is written through
    :class:`SweepStore` and ``(computed, None)`` is returned, ``computed`` telling whether
    it ran (``False``: it was already complete; ``recompute=True`` runs it anyway). With
    ``root=None`` nothing is written and ``(True, table)`` is returned for the caller to
    save.
    """
    point = Point(experiment, params)
    fn = resolve_experiment(point.experiment)
    if root is None:
        return True, _check_table(point, fn(**point.params))
    store = SweepStore(name, profile, root)
    if not recompute and store.is_done(point):
        return False, None
    store.save(point, _check_table(point, fn(**point.params)))
    return True, None


# -------------------------------------------------------------------------- runner


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns.

    ``table``: the points' tables concatenated in the order of the points, each row
    with the point's ``point`` key and, where the table lacks a column of that name, the
    point's scalar parameters; ``computed``: keys of the points that were not finished
    when the call started (in completion order); ``reused``: keys of those that were;
    ``seconds``: wall time of the call.
    """

    table: pd.DataFrame
    computed: list[str]
    reused: list[str]
    seconds: float
    store: SweepStore


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
              progress: bool = False) -> SweepResult:
    """Run every point that is not finished yet, then return all points' results.

    Arguments:
        points: the points (:func:`grid`); each must be listed once.
        name, profile, root: where results go (:class:`SweepStore`).
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

    Returns a :class:`SweepResult`; its ``table`` is read back from the store, so a run
    that computed everything and a run that reused everything return identical frames,
    whichever engine ran the points.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "serial" and (address is not None or resources):
        raise ValueError("address and resources apply to engine='dask' only")
    points = _check_points(points)
    store = SweepStore(name, profile, root)
    start = time.perf_counter()
    todo = list(points) if recompute else [p for p in points if not store.is_done(p)]
    todo_keys = {p.key for p in todo}
    reused = [p.key for p in points if p.key not in todo_keys]
    computed: list[str] = []

    def finished(point: Point, ran: bool, table: pd.DataFrame | None) -> None:
        # ran=False: finished meanwhile by someone else, e.g. a worker that died after
        # writing it; either way it was not finished when this call started
        if table is not None:
            store.save(point, table)
        computed.append(point.key)
        if progress:
            print(f"sweep {name}: {len(computed) + len(reused)}/{len(points)} "
                  f"{'computed' if ran else 'finished meanwhile'} {point.key} {point.params}",
                  flush=True)
        if on_result is not None:
            on_result(point, store.load(point))

    if engine == "serial":
        for point in todo:
            ran, _ = run_point(point.experiment, point.params, name, profile, str(store.root),
                               recompute)
            finished(point, ran, None)
    elif todo:
        _run_dask(todo, store, finished, address=address, n_workers=n_workers,
                  threads_per_worker=threads_per_worker, resources=resources,
                  retries=retries, shared_filesystem=shared_filesystem, recompute=recompute)

    table = pd.concat([_annotate(p, store.load(p)) for p in points], ignore_index=True) \
        if points else pd.DataFrame()
    return SweepResult(table, computed, reused, time.perf_counter() - start, store)


def _run_dask(todo: list[Point], store: SweepStore, finished, *, address, n_workers,
              threads_per_worker, resources, retries, shared_filesystem, recompute) -> None:
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
        where = params_hash({"root": str(store.root), "name": store.name,
                             "profile": store.profile}, 8)
        futures = {}
        for point in todo:
            future = client.submit(run_point, point.experiment, point.params, store.name,
                                   store.profile, root, recompute,
                                   key=f"alignbook-{store.name}-{where}-{point.key}",
                                   resources=dict(resources) if resources else None,
                                   retries=retries, pure=False)
            futures[future] = point
        for future in as_completed(futures):
            ran, table = future.result()
            finished(futures[future], ran, table)
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()


# ------------------------------------------------------------------ experiments


def train_point(*, rule: str, width: int, epochs: int, model: str = "mlp",
                dataset: str = "digits", learning_rates: float | Sequence[float] = 1.0,
                seeds: int | Sequence[int] = 0, batch_size: int = 100, depth: int = 2,
                strides: Sequence[int] = (1, 2, 2), optimizer: str = "sgd",
                dataset_kwargs: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Train one configuration for every seed and learning rate, in one program.

    ``model``: ``"mlp"`` (``depth`` hidden layers), ``"conv"`` (``strides``) or ``"rnn"``
    (the Add task: use ``dataset="add"``); ``dataset``: a name for
    :func:`alignlib.data.load_dataset` with ``dataset_kwargs``. Returns the tidy
    history of :func:`alignlib.training.train` (tags ``model, width, dataset``) without
    its ``seconds`` metric, so the table depends only on the parameters: the same point
    gives the same table on any worker.
    """
    from alignlib.data import load_dataset
    from alignlib.models import loss_for, model_factory
    from alignlib.training import train

    architecture = {"conv": "convnet"}.get(model, model)
    if architecture not in ("mlp", "convnet", "rnn"):
        raise ValueError(f"model must be 'mlp', 'conv' or 'rnn', got {model!r}")
    data = load_dataset(dataset, **dict(dataset_kwargs or {}))
    make = model_factory(architecture, data.x_train.shape[1:], data.n_outputs, width,
                         depth=depth, strides=strides)
    loss_fn = loss_for(architecture)
    result = train(make, rule, data, epochs=epochs, learning_rates=learning_rates,
                   seeds=seeds, batch_size=batch_size, optimizer=optimizer, loss_fn=loss_fn,
                   tags={"model": model, "width": width, "dataset": dataset}, progress=False)
    history = result.history
    return history[history.metric != "seconds"].reset_index(drop=True)


def demo_point(*, x: float, seconds: float = 0.0) -> pd.DataFrame:
    """A toy experiment for tests and examples: sleeps ``seconds``, then returns three
    rows ``(x, metric, value)`` that depend only on ``x``."""
    time.sleep(float(seconds))
    values = {"square": x * x, "sine": float(np.sin(x)), "cube": x ** 3}
    return pd.DataFrame({"x": x, "metric": list(values), "value": list(values.values())})
