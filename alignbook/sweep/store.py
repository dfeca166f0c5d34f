"""Where a sweep's points live, and running one point into it.

:class:`SweepStore` keeps each point in its own folder of the results store,
``<root>/<name>/<profile>/<point key>/point.csv`` with its ``provenance.json``, written
atomically; a point whose table is recorded as complete is never computed again.
:func:`run_point` is what every engine executes for a point: run it unless it is
finished, and store (or return) its table and arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from alignbook.results import ResultStore, results_root
from alignbook.sweep.points import Point, resolve_experiment


#: File stem of a point's table in its store folder.
POINT_TABLE = "point"


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
