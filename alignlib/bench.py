"""Cost of each learning rule: one compiled SGD step, timed against backprop.

Each rule's step (pseudo-gradient + SGD update) is compiled once, warmed up, then timed
``repeats`` times with the device synchronised before the clock is read; the table
reports the median and its ratio to backprop's median on the same model, batch and
device.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import equinox as eqx
import jax
import numpy as np
import optax
import pandas as pd

from alignlib.rules import LossFn, get_rule, mse


def time_rule_steps(model, x, y, rules: Iterable[str], *, loss_fn: LossFn = mse,
                    lr: float = 0.1, warmup: int = 3, repeats: int = 20,
                    key=None) -> pd.DataFrame:
    """Median seconds of one compiled step per rule on one batch ``(x, y)``.

    Returns a DataFrame with columns ``rule, median_s, q25_s, q75_s, ratio_to_backprop``.
    ``'backprop'`` is always timed (added if absent) since the ratios refer to it.
    """
    rules = list(rules)
    if "backprop" not in rules:
        rules = ["backprop"] + rules
    key = jax.random.PRNGKey(0) if key is None else key
    optimizer = optax.sgd(lr)
    rows = []
    for name in rules:
        rule = get_rule(name)
        state = rule.init(model, x, key)
        opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

        @eqx.filter_jit
        def step(m, s, o):
            loss, grads = rule.gradient(m, s, x, y, loss_fn)
            updates, o = optimizer.update(grads, o)
            return eqx.apply_updates(m, updates), o, loss

        m, o = model, opt_state
        for _ in range(warmup):
            m, o, loss = step(m, state, o)
        jax.block_until_ready(loss)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            m, o, loss = step(m, state, o)
            jax.block_until_ready((m, loss))
            times.append(time.perf_counter() - start)
        rows.append({"rule": name, "median_s": float(np.median(times)),
                     "q25_s": float(np.percentile(times, 25)),
                     "q75_s": float(np.percentile(times, 75))})
    table = pd.DataFrame(rows)
    base = table.loc[table.rule == "backprop", "median_s"].item()
    table["ratio_to_backprop"] = table.median_s / base
    return table


def benchmark(models: dict[str, Callable[[], object]], x, y, rules: Iterable[str],
              **kwargs) -> pd.DataFrame:
    """:func:`time_rule_steps` for several named models; adds a ``model`` column."""
    tables = []
    for label, build in models.items():
        table = time_rule_steps(build(), x, y, rules, **kwargs)
        table.insert(0, "model", label)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)
