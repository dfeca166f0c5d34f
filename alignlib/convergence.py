"""Has a run finished learning? One criterion, used to stop training and to report it.

A run has *converged* when its training loss changed by less than a tolerance over the
last tenth of its training, measured as a fraction of the loss it started from:

    |L(T) - L(T - w)| / L(1) < tol,    w = ceil(T / 10) epochs,

with ``L(t)`` the mean training loss of epoch ``t`` (``L(1)``: the first epoch's) and
``T`` the run's last epoch. ``tol = 0.01``: over the last tenth of training the loss moved
by less than 1 % of the way it could have gone.

Why not relative to the current loss? A wide network fitting its training set drives the
loss toward zero like a power law ``t^(-a)`` (the slow modes of the kernel), so
``|L(T) - L(0.9 T)| / L(0.9 T)`` stays near ``a / 10`` forever (about 6 % for the digits
MLPs here) and no tolerance below that is ever met, while one above it is met already at
epoch 10, long before the held-out accuracy has settled. Measured against the starting
loss, the change does go to zero once learning is over. Diverged runs never count as
converged.

:func:`alignlib.training.train` stops early, with ``convergence_tolerance=tol``, once
every run has converged or diverged; :func:`convergence_table` reports the criterion
for every run of a finished history, so a chapter can show which of its numbers come
from converged runs.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from alignlib.validation import number

__all__ = ["DEFAULT_TOLERANCE", "LAST_FRACTION", "MIN_EPOCHS", "check_tolerance", "window", "relative_change", "has_converged",
           "convergence_table"]

#: The tolerance the book's chapters use unless they say otherwise.
DEFAULT_TOLERANCE = 0.01
#: The part of training over which the loss must have settled.
LAST_FRACTION = 0.1
#: Training is not stopped for convergence before this many epochs.
MIN_EPOCHS = 10

_NOT_KEYS = {"epoch", "metric", "value", "diverged", "batch_size", "runs_in_call"}


def check_tolerance(tol) -> float:
    """``tol`` as a float; a clear error unless it is a finite number > 0."""
    return number("convergence tolerance", tol, low=0, low_open=True)


def window(epochs: int) -> int:
    """Epochs in the last tenth of ``epochs`` (at least 1)."""
    return max(1, math.ceil(LAST_FRACTION * epochs))


def relative_change(losses) -> np.ndarray:
    """``|L(T) - L(T - w)| / |L(1)|`` per run; ``losses``: ``(T, ...)``, the mean training
    loss of epochs ``1 .. T`` (one column per run). NaN where ``T < 2`` or a loss is not
    finite."""
    losses = np.asarray(losses, float)
    if losses.ndim == 0 or losses.shape[0] < 2:
        return np.full(losses.shape[1:], np.nan)
    last, before = losses[-1], losses[-1 - min(window(losses.shape[0]), losses.shape[0] - 1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.abs(last - before) / np.abs(losses[0])
    return np.where(np.isfinite(change), change, np.nan)


def has_converged(losses, tol: float, diverged=None) -> np.ndarray:
    """Boolean per run: :func:`relative_change` below ``tol`` and not diverged."""
    change = relative_change(losses)
    ok = np.isfinite(change) & (change < check_tolerance(tol))
    return ok if diverged is None else ok & ~np.asarray(diverged, bool)


def convergence_table(history: pd.DataFrame, tol: float, *, keys: Sequence[str] | None = None,
                      metric: str = "train_loss") -> pd.DataFrame:
    """One row per run of a tidy training history: ``*keys, epochs, window, loss,
    relative_change, diverged, converged``.

    ``keys``: the columns that identify a run (default: every column except ``epoch,
    metric, value, diverged, batch_size, runs_in_call``).
    """
    tol = check_tolerance(tol)
    sub = history[history.metric == metric]
    if sub.empty:
        raise ValueError(f"the history has no {metric!r} rows; metrics: {sorted(history.metric.unique())}")
    keys = list(keys) if keys is not None else [c for c in sub.columns if c not in _NOT_KEYS]
    rows = []
    for key, run in sub.groupby(keys, dropna=False, sort=True):
        run = run.sort_values("epoch")
        losses = run.value.to_numpy(float)
        diverged = bool(run.diverged.any()) if "diverged" in run else False
        change = float(relative_change(losses))
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                     "epochs": int(run.epoch.max()), "window": window(len(losses)),
                     "loss": float(losses[-1]), "relative_change": change,
                     "diverged": diverged,
                     "converged": bool(np.isfinite(change) and change < tol and not diverged)})
    return pd.DataFrame(rows)
