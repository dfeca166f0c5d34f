"""The sweep runner's own experiments: training one batched configuration, and a toy.

:func:`train_point` trains one configuration for every seed and learning rate in one
compiled program; :func:`demo_point` is a cheap stand-in for tests and examples. Both
are named ``alignbook.sweep:train_point`` and ``alignbook.sweep:demo_point``: that
name is part of every stored point's key (:class:`~alignbook.sweep.points.Point`), so
it stays the package's, wherever the code lives.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd


def train_point(*, rule: str, width: int, epochs: int, model: str = "mlp",
                dataset: str = "digits", learning_rates: float | Sequence[float] = 1.0,
                seeds: int | Sequence[int] = 0, batch_size: int = 100, depth: int = 2,
                strides: Sequence[int] = (1, 2, 2), optimizer: str = "sgd",
                dataset_kwargs: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Train one configuration for every seed and learning rate, in one program.

    ``model``: ``"mlp"`` (``depth`` hidden layers), ``"convnet"`` (``strides``) or ``"rnn"``
    (the Add task: use ``dataset="add"``); ``dataset``: a name for
    :func:`alignlib.data.load_dataset` with ``dataset_kwargs``. Returns the tidy
    history of :func:`alignlib.training.train` (tags ``model, width, dataset``) without
    its ``seconds`` metric, so the table depends only on the parameters: the same point
    gives the same table on any worker.
    """
    from alignlib.data import load_dataset
    from alignlib.models import ARCHITECTURES, loss_for, model_factory
    from alignlib.training import train

    if model not in ARCHITECTURES:
        raise ValueError(f"model must be one of {ARCHITECTURES}, got {model!r}")
    data = load_dataset(dataset, **dict(dataset_kwargs or {}))
    make = model_factory(model, data.x_train.shape[1:], data.n_outputs, width, depth=depth,
                         strides=strides)
    loss_fn = loss_for(model)
    result = train(make, rule, data, epochs=epochs, learning_rates=learning_rates,
                   seeds=seeds, batch_size=batch_size, optimizer=optimizer, loss_fn=loss_fn,
                   tags={"model": model, "width": width, "dataset": dataset}, progress=False)
    history = result.history
    return history[history.metric != "seconds"].reset_index(drop=True)


def demo_point(*, x: float, seconds: float = 0.0, log: str | None = None,
               fail: bool = False) -> pd.DataFrame:
    """A toy experiment for tests and examples: sleeps ``seconds``, then returns three
    rows ``(x, metric, value)`` that depend only on ``x``. ``log``: a file to which each
    finished computation appends the line ``x`` (to count computations across
    processes); ``fail=True``: raise a ValueError instead."""
    time.sleep(float(seconds))
    if fail:
        raise ValueError(f"demo point x={x} fails as asked")
    if log is not None:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{x}\n")
    values = {"square": x * x, "sine": float(np.sin(x)), "cube": x ** 3}
    return pd.DataFrame({"x": x, "metric": list(values), "value": list(values.values())})


# the name the points' keys hash (Point(train_point, ...) is "alignbook.sweep:train_point")
train_point.__module__ = demo_point.__module__ = "alignbook.sweep"
