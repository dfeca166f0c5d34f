"""Argument checks shared by the whole library: one place for "a positive integer",
"a finite number in a range", "a non-empty list of distinct values".

Each check returns the value as a plain Python ``int`` / ``float`` / ``list`` (NumPy
scalars are accepted, ``bool`` is not a number) or raises a ``ValueError`` that names
the argument, says what it must be, and shows what it got.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

import numpy as np

__all__ = ["integer", "positive_integer", "number", "integers", "numbers_list"]


def _is_int(value: Any) -> bool:
    return isinstance(value, (numbers.Integral, np.integer)) \
        and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (numbers.Real, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))


def _range_text(low, high, low_open: bool = False, high_open: bool = False) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def integer(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` within ``[low, high]`` (either bound may be ``None``)."""
    if not _is_int(value):
        raise ValueError(f"`{name}` must be an integer, got {value!r}.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"`{name}` must be {_range_text(low, high)}, got {value}.")
    return int(value)


def positive_integer(name: str, value: Any) -> int:
    """A size, stride or count: an ``int`` >= 1."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """A finite ``float`` within ``[low, high]``; ``low_open`` / ``high_open`` leave the
    bound itself out."""
    if not _is_real(value) or not math.isfinite(value) \
            or (low is not None and (value <= low if low_open else value < low)) \
            or (high is not None and (value >= high if high_open else value > high)):
        bound = _range_text(low, high, low_open, high_open)
        raise ValueError(f"{name} must be a finite number{' ' + bound if bound else ''}, "
                         f"got {value!r}")
    return float(value)


def integers(name: str, values: Any, *, low: int = 1) -> list[int]:
    """A non-empty list of distinct integers >= ``low`` (a single integer is a list of one)."""
    return _distinct_list(name, values, _is_int, lambda v: v >= low, int,
                          f"integers >= {low}")


def numbers_list(name: str, values: Any) -> list[float]:
    """A non-empty list of distinct, positive, finite numbers (e.g. learning rates); a
    single number is a list of one."""
    return _distinct_list(name, values, _is_real, lambda v: math.isfinite(v) and v > 0, float,
                          "positive, finite numbers")


def _distinct_list(name, values, is_kind, ok, convert, what: str) -> list:
    if is_kind(values):
        values = [values]
    values = list(values)
    if not values:
        raise ValueError(f"`{name}` must list at least one value")
    for v in values:
        if not is_kind(v) or not ok(v):
            raise ValueError(f"`{name}` must hold {what}, got {v!r}")
    values = [convert(v) for v in values]
    _distinct(name, values)
    return values


def _distinct(name: str, values: Iterable) -> None:
    values = list(values)
    if len(set(values)) != len(values):
        raise ValueError(f"`{name}` has repeated entries: {values}")
