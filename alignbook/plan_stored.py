"""Which of a chapter's planned points the results store already holds, and how many
epochs their runs trained: for the cost plan (:mod:`alignbook.plan`).

A chapter keeps each finished sweep point under
``<results>/<chapter>/<profile>/points/<key>/`` (:func:`alignbook.sweep.chapter_runner`),
its key hashing the point's function, parameters, the fingerprints of its data sets and
the JAX settings of the process that made it. :func:`stored_points` looks each planned
point up by the runner's own key (:func:`alignbook.sweep.chapters.chapter_sweep_point`,
:meth:`alignbook.sweep.SweepStore.is_done`) and reads the largest ``epoch`` of its stored
table: a point's runs train in one :func:`alignlib.train` call, which stops them together
(at the first epoch every run has converged or diverged, or at the cap), so the point
trained that many epochs.

The points are listed again with the learning rates the chapter measures before its sweep
(:func:`alignbook.plan_work.chapter_points` with ``measured=True``: seconds to a minute)
when, and only when, the chapter's points folder holds a finished point, and a sweep
written in stages lists each later stage from the stored results of the stage before
(:func:`alignlib.experiments.points.known_results`): a width sweep that stops at
convergence trains every rule at least as many epochs as the first rule needed there,
so its later points are known only from the first rule's stored runs. A point on a
data set the plan does not read (:func:`alignbook.plan_work.is_stand_in`: a file the
profile reads, stood in for by zeros) cannot have the runner's key: it is not looked up.
"""

from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from alignbook.plan_work import chapter_points, is_stand_in

__all__ = ["Stored", "stored_points", "points_store", "recorded_epochs", "at_epochs"]


@dataclasses.dataclass(frozen=True)
class Stored:
    """What the results store says of a planned point: ``stored`` (a finished copy is
    there), ``epochs`` (the largest epoch of its table; ``None`` when not stored or the
    table has no ``epoch`` column) and ``looked_up`` (``False``: its data is a stand-in,
    so whether it is stored is not known; it is counted as not stored)."""

    stored: bool = False
    epochs: int | None = None
    looked_up: bool = True


def points_store(root: str | Path, chapter: str, profile: str):
    """The :class:`~alignbook.sweep.SweepStore` of a chapter's points in the results
    folder ``root``: ``<root>/<chapter>/<profile>/points/`` (as the chapter's runner
    makes it)."""
    from alignbook.sweep import POINTS_FOLDER, SweepStore

    root = Path(root)
    return SweepStore(chapter, profile, root, base=root / chapter / profile / POINTS_FOLDER)


def _holds_points(store) -> bool:
    """Whether the store's folder holds at least one point's table."""
    return store.base.is_dir() and any(store.base.glob("*/point.csv"))


def recorded_epochs(table: pd.DataFrame) -> int | None:
    """The epochs a stored point trained: the largest ``epoch`` of its table (``None``
    without an ``epoch`` column or rows)."""
    if "epoch" not in table.columns or not table["epoch"].notna().any():
        return None
    return int(table["epoch"].max())


def at_epochs(point, epochs: int | None):
    """``point`` with its ``epochs`` parameter (a cap, where runs stop at convergence)
    set to ``epochs`` when that is fewer: the point as its stored runs trained it."""
    cap = point.params.get("epochs")
    if epochs is None or not isinstance(cap, numbers.Integral) or epochs >= cap:
        return point
    return dataclasses.replace(point, params={**point.params, "epochs": int(epochs)})


def _key_settings(settings: Mapping[str, Any]) -> dict:
    """The JAX settings a point's key hashes in the chapter's kernel: this process's, with
    those the chapter sets for itself (``settings``)."""
    from alignlib.experiments.points import applied_jax_settings, jax_settings

    with applied_jax_settings(dict(settings)):
        return jax_settings()


def stored_points(book, profile: str, chapter: str, points: list, root: str | Path,
                  settings: Mapping[str, Any]) -> tuple[list, list[Stored]]:
    """``(points, found)``: the chapter's points (``points``, as listed for the plan, or
    listed again with the learning rates the chapter measures when its points folder in
    ``root`` holds any) and a :class:`Stored` per point. ``settings``: the JAX settings
    the chapter sets for itself (:data:`alignbook.plan_work.CHAPTER_JAX_SETTINGS`)."""
    from alignbook.sweep.chapters import chapter_sweep_point

    store = points_store(root, chapter, profile)
    if not _holds_points(store):
        return points, [Stored() for _ in points]
    from alignlib.experiments import points as P

    jax = _key_settings(settings)

    def known(point):  # a later stage is listed from the stored results of the one before
        if any(is_stand_in(data) for data in point.data.values()):
            return None
        key = chapter_sweep_point(point, jax)
        return P.PointResult(store.load(key), store.load_arrays(key)) if store.is_done(key) else None

    with P.known_results(known):
        points = chapter_points(book, profile, chapter, measured=True)
    found = []
    for point in points:
        if any(is_stand_in(data) for data in point.data.values()):
            found.append(Stored(looked_up=False))
            continue
        result = known(point)
        found.append(Stored() if result is None else Stored(True, recorded_epochs(result.table)))
    return points, found
