"""Sweeps as points: one training configuration is one point, and where points run is
pluggable.

A **point** (:class:`Point`) is one call of an experiment function: a ``"module:function"``
name, its keyword arguments (``params``, plain values), the data sets it trains on
(``data``, passed whole and identified by a hash of their arrays) and ``options`` that do
not change its result (``progress``). It returns a tidy :class:`pandas.DataFrame`, or a
``(table, {name: array})`` pair when the sweep needs arrays back (the recurrent sweep's
trained outputs). Seeds and learning rates of one configuration stay inside one point,
trained together by :func:`alignlib.train`.

The sweep functions of the chapters (:func:`~alignlib.experiments.feedforward.width_sweep`,
:func:`~alignlib.experiments.low_data.sweep`,
:func:`~alignlib.experiments.rules_vs_width.sweep`,
:func:`~alignlib.experiments.recurrent.sweep`,
:func:`~alignlib.experiments.layer_alignment.alignment_width_sweep` and
:func:`~alignlib.experiments.layer_alignment.alignment_experiments`) build their points,
hand them to :func:`run_points` and assemble the results into the table they always
returned. Each takes ``points_only=True`` to return its points without running them
(a cost plan reads their :meth:`Point.workload`).

**Runners.** By default :func:`run_points` runs the points one after the other in this
process: a library user gets exactly the table of a plain loop. :func:`use_runner`
installs another runner for a block: a callable ``runner(points, label) ->
[PointResult, ...]`` (results in the order of the points). The ``alignbook`` tooling
installs one backed by :mod:`alignbook.sweep` while a chapter computes a cached table:
every point is stored content-addressed, so a killed chapter resumes at the first
unfinished point, and the points may run on a Dask cluster.

**Stages.** Where a point needs results of others (a width sweep with a convergence
tolerance trains every rule at least as many epochs as the first rule needed), the sweep
is written as a generator that yields a list of points per stage and receives their
results (``None`` when only listing points); :func:`run_sweeps` runs the same stage of
several such sweeps together, so independent sweeps share every round of the runner.
Listing a later stage's points exactly needs the earlier stage's results: inside
:func:`known_results` a listing receives those that a lookup knows (e.g. the points a
store already holds), so it lists the points a run would make.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import importlib
import json
import weakref
from typing import Any, Callable, Generator, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "Point", "PointResult", "Source", "Workload", "run_points", "run_sweeps", "list_points",
    "use_runner", "current_runner", "serial_runner", "known_results", "fingerprint", "with_source",
    "source_of", "load_source", "call_point", "jax_settings", "applied_jax_settings",
    "JAX_SETTINGS", "STAGES",
]

#: JAX settings that change the numbers a point computes: a runner that executes points in
#: another process applies the values of the process that made them (:func:`jax_settings`).
JAX_SETTINGS = ("jax_enable_x64", "jax_disable_most_optimizations", "jax_default_matmul_precision",
                "jax_default_prng_impl", "jax_threefry_partitionable")

#: A sweep written in stages: yields lists of points, receives their results.
SweepSteps = Generator[Sequence["Point"], "Sequence[PointResult] | None", Any]

#: ``points_only=STAGES`` makes a sweep function return its stages unstarted, for a sweep
#: made of several that runs them together (:func:`run_sweeps`).
STAGES = object()


def _resolve(name: str) -> Callable:
    module, sep, qualname = name.partition(":")
    if not sep:
        raise ValueError(f"expected 'module:function', got {name!r}")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Source:
    """How to load a data set again in another process: ``loader`` (``"module:function"``)
    called with the keyword arguments ``kwargs`` (JSON text)."""

    loader: str
    kwargs: str

    def load(self):
        return _resolve(self.loader)(**json.loads(self.kwargs))


_SOURCES: "weakref.WeakKeyDictionary[Any, Source]" = weakref.WeakKeyDictionary()
_FINGERPRINTS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def with_source(data, loader: str, **kwargs):
    """Record that ``data`` is what ``loader(**kwargs)`` returns, so that a runner can send
    the recipe instead of the arrays (:func:`source_of`); returns ``data``. Arguments that
    have no JSON form (or an object that refuses weak references) are not recorded."""
    try:
        _SOURCES[data] = Source(loader, json.dumps(kwargs, sort_keys=True))
    except TypeError:
        pass
    return data


def source_of(data) -> Source | None:
    """The recipe recorded for ``data`` by :func:`with_source`, or ``None``."""
    try:
        return _SOURCES.get(data)
    except TypeError:
        return None


@functools.lru_cache(maxsize=2)
def load_source(source: Source):
    """``source.load()``, remembered for the next point of this process (two data sets)."""
    return source.load()


_ARRAYS = ("x_train", "y_train", "x_test", "y_test", "labels_train", "labels_test")


def fingerprint(value) -> dict:
    """What identifies a data input in a point's key: for a data set, its name, number of
    outputs and the SHA-256 of its arrays (dtype, shape, bytes); computed once per object."""
    if isinstance(value, Source):
        return {"source": value.loader, "kwargs": json.loads(value.kwargs)}
    with contextlib.suppress(TypeError):
        if value in _FINGERPRINTS:
            return _FINGERPRINTS[value]
    if not all(hasattr(value, a) for a in _ARRAYS):
        raise TypeError(f"point data must be data sets (alignlib.data.Dataset), got "
                        f"{type(value).__name__}")
    h = hashlib.sha256()
    for name in _ARRAYS:
        array = getattr(value, name)
        if array is None:
            h.update(f"{name}:None;".encode())
            continue
        array = np.ascontiguousarray(array)
        h.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        h.update(memoryview(array).cast("B"))
    found = {"name": str(value.name), "n_outputs": int(value.n_outputs), "sha256": h.hexdigest()}
    with contextlib.suppress(TypeError):
        _FINGERPRINTS[value] = found
    return found


# ---------------------------------------------------------------------------- points


class PointResult(NamedTuple):
    """A point's table and the arrays it returned (``{}`` when it returned only a table)."""

    table: pd.DataFrame
    arrays: dict


@dataclasses.dataclass(frozen=True)
class Workload:
    """What one point trains, for a cost plan: ``runs`` networks made by ``make(key)``
    (one network), trained with ``rule`` (and, per step, also ``extra_rules``' updates,
    e.g. the alignment chapter's prediction) on batches shaped like ``x`` / ``y`` with
    ``loss_fn``, for at most ``steps`` SGD steps each; ``eval_examples``: held-out examples
    each run evaluates over the point (forward passes); ``structure``: what the compiled
    programs depend on (points with equal structures cost the same per step);
    ``loop_trips``: how many times the loop inside a step runs (the RNN's time steps), which
    XLA's cost analysis counts once."""

    make: Callable
    rule: Any
    x: Any
    y: Any
    loss_fn: Callable
    runs: int
    steps: int
    eval_examples: int
    extra_rules: tuple = ()
    structure: tuple = ()
    loop_trips: int = 1


@dataclasses.dataclass(frozen=True, eq=False)
class Point:
    """One call ``fn(**params, **data, **options)`` of a sweep (module docstring).

    ``fn``: ``"module:function"`` of a module-level function; ``params``: the keyword
    arguments that, with ``data``, determine the result (JSON-like values); ``data``: the
    data sets, passed whole (identified by :func:`fingerprint`); ``options``: keyword
    arguments that do not change the result.
    """

    fn: str
    params: Mapping[str, Any]
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        module, sep, qualname = self.fn.partition(":")
        if not sep or not module or not qualname or "<" in self.fn:
            raise ValueError(f"a point's fn must name a module-level function as "
                             f"'module:function', got {self.fn!r}")
        overlap = (set(self.params) & set(self.data)) | (set(self.params) & set(self.options)) \
            | (set(self.data) & set(self.options))
        if overlap:
            raise ValueError(f"point arguments {sorted(overlap)} are given twice")

    @property
    def identity(self) -> dict:
        """What names the point: ``{"fn", "params", "data": {name: fingerprint}}``."""
        return {"fn": self.fn, "params": dict(self.params),
                "data": {k: fingerprint(v) for k, v in self.data.items()}}

    def describe(self) -> str:
        """``fn(param=value, ...)`` for messages."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.fn.partition(':')[2]}({args})"

    def function(self) -> Callable:
        return _resolve(self.fn)

    def run(self) -> PointResult:
        """Call the experiment here and now."""
        return _result(self, self.function()(**self.params, **self.data, **self.options))

    def workload(self) -> Workload:
        """The point's :class:`Workload`: its experiment's ``workload`` attribute, called
        with the point's params and data."""
        fn = self.function()
        estimate = getattr(fn, "workload", None)
        if estimate is None:
            raise TypeError(f"experiment {self.fn} has no workload function")
        return estimate(**self.params, **self.data)


def _result(point: Point, out) -> PointResult:
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
        table, arrays = out
    else:
        table, arrays = out, {}
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{point.fn} returned {type(table).__name__}, not a pandas DataFrame")
    return PointResult(table, {k: np.asarray(v) for k, v in arrays.items()})


# --------------------------------------------------------------------------- runners

Runner = Callable[[Sequence[Point], str], Sequence[PointResult]]


def serial_runner(points: Sequence[Point], label: str = "") -> list[PointResult]:
    """The default runner: every point in this process, one after the other."""
    return [p.run() for p in points]


_RUNNER: contextvars.ContextVar[Runner | None] = contextvars.ContextVar(
    "alignlib_points_runner", default=None)


def current_runner() -> Runner:
    """The runner :func:`run_points` uses now (:func:`serial_runner` unless one is installed)."""
    return _RUNNER.get() or serial_runner


@contextlib.contextmanager
def use_runner(runner: Runner | None) -> Iterator[None]:
    """Run the points of every sweep in the block with ``runner`` (``None``: the default)."""
    token = _RUNNER.set(runner)
    try:
        yield
    finally:
        _RUNNER.reset(token)


def run_points(points: Sequence[Point], label: str = "sweep") -> list[PointResult]:
    """Run ``points`` with the current runner; their results, in the order of the points."""
    points = list(points)
    if not points:
        return []
    results = list(current_runner()(points, label))
    if len(results) != len(points):
        raise RuntimeError(f"the runner returned {len(results)} results for {len(points)} points")
    return results


def _drive(sweeps: Sequence[SweepSteps], label: str, listing: list | None) -> list:
    """Run the stages of ``sweeps`` together; with ``listing`` (a list), only collect their
    points into it, sending ``None`` instead of results."""
    sweeps = list(sweeps)
    values: list = [None] * len(sweeps)
    stage: dict[int, list[Point]] = {}
    for i, sweep in enumerate(sweeps):  # every sweep checks its arguments first
        try:
            stage[i] = list(next(sweep))
        except StopIteration as stop:
            values[i] = stop.value
    while stage:
        flat = [p for i in stage for p in stage[i]]
        if listing is not None:
            listing.extend(flat)
            lookup = _KNOWN.get()
            results = None if lookup is None else [lookup(p) for p in flat]
        else:
            results = run_points(flat, label)
        following: dict[int, list[Point]] = {}
        at = 0
        for i, points in stage.items():
            part = None if results is None else results[at:at + len(points)]
            at += len(points)
            if part is not None and any(r is None for r in part):
                part = None  # a listing that does not know every result of the stage
            try:
                following[i] = list(sweeps[i].send(part))
            except StopIteration as stop:
                values[i] = stop.value
        stage = following
    return values


def run_sweeps(sweeps: Sequence[SweepSteps], label: str = "sweep") -> list:
    """Run sweeps written in stages (module docstring), stage by stage, all together;
    each sweep's return value, in order."""
    return _drive(sweeps, label, None)


#: While listing points: ``lookup(point) -> PointResult | None``, the results of points
#: that already ran (:func:`known_results`).
_KNOWN: contextvars.ContextVar[Callable[[Point], PointResult | None] | None] = \
    contextvars.ContextVar("known_results", default=None)


@contextlib.contextmanager
def known_results(lookup: Callable[[Point], PointResult | None]) -> Iterator[None]:
    """While listing points in the block (:func:`list_points`, ``points_only=True``), send a
    sweep the results ``lookup`` returns for the points of a stage, when it returns them
    for every point the sweep listed in that stage; otherwise none, as without a lookup.
    The next stage is then the one a run would build (e.g. each rule's least epochs, from
    the epochs the first rule trained)."""
    token = _KNOWN.set(lookup)
    try:
        yield
    finally:
        _KNOWN.reset(token)


def list_points(sweeps: Sequence[SweepSteps]) -> list[Point]:
    """Every point of sweeps written in stages, without running any (a later stage is
    built as if earlier points had no results: e.g. with the least epochs; inside
    :func:`known_results`, from the results it knows)."""
    found: list[Point] = []
    _drive(sweeps, "", found)
    return found


# ----------------------------------------------------- running a point elsewhere


def _setting(name: str):
    """The value of JAX setting ``name`` in force here: a setting with a context manager is
    read as an attribute of ``jax.config`` (its thread's value); a plain flag
    (``jax_disable_most_optimizations``) has no such attribute and is read from
    ``jax.config.values``. ``None`` for a setting this JAX does not have."""
    import jax

    try:
        value = getattr(jax.config, name)
    except AttributeError:
        value = jax.config.values.get(name)
    return value if isinstance(value, (bool, int, float, str, type(None))) else str(value)


def jax_settings() -> dict:
    """This process's values of :data:`JAX_SETTINGS` (JAX is imported if need be). A plain
    flag at its default (``False``) is left out, so that the keys of points computed
    without it stay what they were before such flags were read."""
    import jax

    out = {}
    for name in JAX_SETTINGS:
        value = _setting(name)
        if hasattr(jax.config, name) or value:
            out[name] = value
    return out


#: Settings that JAX's in-memory caches of compiled programs do not key on: a program
#: compiled before such a setting changed would be reused after it.
_UNKEYED_SETTINGS = ("jax_disable_most_optimizations",)


@contextlib.contextmanager
def applied_jax_settings(settings: Mapping[str, Any] | None) -> Iterator[None]:
    """Apply ``settings`` (from :func:`jax_settings`) for the block, then restore. When a
    setting that JAX's caches do not key on changes (:data:`_UNKEYED_SETTINGS`), the caches
    are cleared on entry and on exit, so the block compiles everything it runs under its own
    settings, as the process that made them did."""
    if not settings:
        yield
        return
    import jax

    before = {name: _setting(name) for name in JAX_SETTINGS if name in jax.config.values}
    # a plain flag the settings leave out is at its default (see jax_settings)
    wanted = {**{k: False for k in _UNKEYED_SETTINGS if k in before}, **settings}
    changed = {k: v for k, v in wanted.items() if k in before and before[k] != v}
    unkeyed = any(name in changed for name in _UNKEYED_SETTINGS)
    for name, value in changed.items():
        jax.config.update(name, value)
    if unkeyed:
        jax.clear_caches()
    try:
        yield
    finally:
        for name in changed:
            jax.config.update(name, before[name])
        if unkeyed:
            jax.clear_caches()


def call_point(*, fn: str, params: Mapping[str, Any], data: Mapping[str, Any],
               jax: Mapping[str, Any] | None = None, point: Point) -> PointResult:
    """Run ``point`` in this process as the process that made it would: ``jax`` settings
    applied, data sent as a :class:`Source` loaded here and checked against its
    fingerprint. ``fn``, ``params`` and ``data`` (fingerprints) are the point's identity,
    given so that a runner's key can hash them; they must match ``point``."""
    if fn != point.fn:
        raise ValueError(f"call_point: fn {fn!r} does not match the point's {point.fn!r}")
    with applied_jax_settings(jax):  # loading the data too: it may compile what the point reuses
        values = {}
        for name, value in point.data.items():
            if isinstance(value, Source):
                value = load_source(value)
                if fingerprint(value) != data.get(name):
                    raise RuntimeError(
                        f"data {name!r} of {point.describe()} loaded here differs from the data "
                        "the sweep was started with (different files on this machine?)")
            values[name] = value
        out = point.function()(**point.params, **values, **point.options)
    return _result(point, out)
