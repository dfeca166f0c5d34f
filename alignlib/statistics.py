"""Statistics of the book's measurements: intervals over seeds and fitted slopes.

Every interval and slope the chapters report comes from here:

- :func:`t_interval`: the mean of a few seeds and its Student-t confidence interval,
  ``mean +- t_{(1+c)/2, n-1} s / sqrt(n)``; with ``log=True`` the geometric mean and
  the interval of the mean of ``log v``, exponentiated (for losses and ratios, whose
  spread over seeds is multiplicative);
- :func:`summarise`: :func:`t_interval` per group of a tidy table (a rule at a width,
  over its seeds), the table every chapter's intervals come from;
- :func:`linear_fit`: a least-squares slope with its Student-t interval
  (``n - 2`` degrees of freedom), e.g. a rule's gap to backprop against ``log2`` width;
- :func:`power_law_fit`: the same on ``log y`` against ``log x``, the exponent of a
  power law ``y ~ x^slope`` (how a quantity scales with width).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from alignlib.validation import number

__all__ = ["t_interval", "summarise", "linear_fit", "power_law_fit", "check_confidence"]


def check_confidence(confidence) -> float:
    """``confidence`` as a float in (0, 1), or a ``ValueError`` naming it."""
    return number("`confidence`", confidence, low=0, high=1, low_open=True, high_open=True)


def _t_quantile(confidence: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf((1 + confidence) / 2, dof))


def t_interval(values: Sequence[float], confidence: float = 0.95, *,
               log: bool = False) -> tuple[float, float, float]:
    """``(mean, low, high)`` of ``values`` (finite ones only; with ``log=True`` finite
    positive ones, and the geometric mean). NaN bounds for fewer than 2 values, all NaN
    for none."""
    confidence = check_confidence(confidence)
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)]
    if log:
        v = np.log(v)
    back = np.exp if log else float
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    if v.size < 2:
        return float(back(mean)), float("nan"), float("nan")
    half = _t_quantile(confidence, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return float(back(mean)), float(back(mean - half)), float(back(mean + half))


def summarise(table: pd.DataFrame, value: str, by: Sequence[str], *,
              confidence: float = 0.95, log: bool = False,
              excluded: pd.Series | None = None) -> pd.DataFrame:
    """Mean of ``table[value]`` over the rows of each group ``by`` (e.g. the seeds of a rule
    at a width) with its Student-t interval (:func:`t_interval`, ``log`` as there).

    ``excluded``: a boolean Series aligned with ``table`` marking rows to leave out (e.g.
    diverged runs); they are counted in ``n_excluded``. Returns one row per group with
    columns ``*by, n, n_excluded, mean, sd, ci_low, ci_high``: ``n`` values used (finite;
    finite and positive with ``log``), ``sd`` their standard deviation (of ``log v`` with
    ``log``), NaN bounds when ``n < 2``.
    """
    by = list(by)
    missing = [c for c in [*by, value] if c not in table.columns]
    if missing:
        raise ValueError(f"summarise needs the columns {missing}; the table has {list(table.columns)}")
    excluded = (pd.Series(False, index=table.index) if excluded is None
                else excluded.reindex(table.index).fillna(False).astype(bool))
    rows = []
    for key, group in table.groupby(by, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        skip = excluded.loc[group.index]
        v = group[value][~skip].to_numpy(float)
        v = v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)]
        mean, low, high = t_interval(v, confidence, log=log)
        spread = np.log(v) if log else v
        rows.append({**dict(zip(by, key)), "n": int(v.size), "n_excluded": int(skip.sum()),
                     "mean": mean, "sd": float(spread.std(ddof=1)) if v.size > 1 else float("nan"),
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=[*by, "n", "n_excluded", "mean", "sd", "ci_low", "ci_high"])


def linear_fit(x: Sequence[float], y: Sequence[float],
               confidence: float = 0.95) -> tuple[float, float, float]:
    """``(slope, low, high)``: least-squares slope of ``y`` against ``x`` and its Student-t
    interval (``n - 2`` degrees of freedom); finite pairs only. Raises ``ValueError`` with
    fewer than 3 pairs or fewer than 2 distinct ``x`` (no interval can be given)."""
    from scipy import stats

    confidence = check_confidence(confidence)
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.unique(x).size < 2:
        raise ValueError(f"a slope with an interval needs at least 3 points at 2 or more x values; "
                         f"got {x.size} points at {np.unique(x).size} x values")
    fit = stats.linregress(x, y)
    half = _t_quantile(confidence, x.size - 2) * float(fit.stderr)
    return float(fit.slope), float(fit.slope) - half, float(fit.slope) + half


def power_law_fit(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> dict:
    """Least-squares fit of ``log y = slope * log x + intercept`` over the finite, positive
    pairs. Returns ``slope, intercept, low, high, n``: the interval of the slope needs 3
    points (NaN bounds below that), the slope itself 2 distinct ``x`` (all NaN below)."""
    from scipy import stats

    confidence = check_confidence(confidence)
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[keep]), np.log(y[keep])
    out = {"slope": float("nan"), "intercept": float("nan"), "low": float("nan"),
           "high": float("nan"), "n": int(lx.size)}
    if lx.size < 2 or np.unique(lx).size < 2:
        return out
    fit = stats.linregress(lx, ly)
    out.update(slope=float(fit.slope), intercept=float(fit.intercept))
    if lx.size >= 3:
        half = _t_quantile(confidence, lx.size - 2) * float(fit.stderr)
        out.update(low=float(fit.slope) - half, high=float(fit.slope) + half)
    return out
