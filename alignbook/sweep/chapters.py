"""A chapter's points through the sweep runner: the runner its cached tables install.

:func:`chapter_runner` turns the points of an :mod:`alignlib.experiments.points` sweep
into sweep points (:data:`~alignbook.sweep.points.CALL_POINT`) kept under the
chapter's results folder (:data:`POINTS_FOLDER`), and runs them with the chapter's
:class:`~alignbook.sweep.engines.Engine`.
"""

from __future__ import annotations

import dataclasses

from alignbook.results import ResultStore
from alignbook.sweep.engines import Engine, engine_client
from alignbook.sweep.points import CALL_POINT, Point
from alignbook.sweep.runner import run_sweep


#: Folder of a chapter's points: ``<root>/<chapter>/<profile>/points/<point key>/``.
POINTS_FOLDER = "points"


def chapter_sweep_point(point, settings: dict) -> Point:
    """The sweep point (:data:`~alignbook.sweep.points.CALL_POINT`) that :func:`chapter_runner`
    runs and stores ``point`` (an :class:`alignlib.experiments.points.Point`) as, made in a
    process whose :func:`~alignlib.experiments.points.jax_settings` are ``settings``: its
    key is the folder of the point under :data:`POINTS_FOLDER`."""
    identity = point.identity
    return Point(CALL_POINT, {"fn": identity["fn"], "params": identity["params"],
                              "data": identity["data"], "jax": settings})


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
            point = chapter_sweep_point(p, settings)
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
