"""Running a sweep: every unfinished point, serially here or as tasks of a Dask cluster.

:func:`run_sweep` runs the points that are not finished yet with the ``"serial"``
engine (one after the other in this process) or the ``"dask"`` engine (one task per
point on a local or running cluster, dead workers' points rescheduled, failing points
retried), stores each one as it finishes, then reads every point back into one
:class:`SweepResult`. Points that raise do not stop the others; :class:`SweepError`
names them at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from alignbook.results import canonical_json, params_hash
from alignbook.sweep.points import CALL_POINT, Point
from alignbook.sweep.store import SweepStore, run_point


#: Names accepted by :func:`run_sweep`'s ``engine``.
ENGINES = ("serial", "dask")


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
