"""Sweep points: one experiment call each, named by a content hash.

A :class:`Point` is an experiment, named by its import path ``"module:function"`` so
that any worker process can import it, and its parameters in canonical JSON; its
**key** hashes both (:func:`alignbook.results.params_hash`), so the same call made
anywhere, by any engine, is the same point. :func:`grid` makes the points of a sweep:
the product of its axes, with the batched parameters (seeds, learning rates) whole in
every point.
"""

from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from alignbook.results import canonical_json, params_hash


#: The experiment that runs a point of an :mod:`alignlib.experiments.points` sweep.
CALL_POINT = "alignlib.experiments.points:call_point"


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
