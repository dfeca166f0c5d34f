"""alignlib.statistics: intervals over seeds and fitted slopes, against their formulas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alignlib.statistics import linear_fit, power_law_fit, summarise, t_interval

T_975_2 = 4.302652729911275  # Student-t quantile t_{0.975} with 2 degrees of freedom
T_975_3 = 3.182446305284263  # ... with 3 degrees of freedom


def test_t_interval_matches_the_formula_and_contains_the_mean():
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    half = T_975_2 * 1.0 / math.sqrt(3)
    assert low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    m, lo, hi = t_interval([0.5, 0.52, 0.47, 0.55, 0.49], 0.9)
    assert lo < m < hi
    assert t_interval([0.3])[0] == 0.3 and math.isnan(t_interval([0.3])[1])
    assert all(math.isnan(v) for v in t_interval([]))
    assert t_interval([1.0, np.nan, 3.0, np.inf])[0] == 2.0  # non-finite values are left out
    with pytest.raises(ValueError, match="confidence"):
        t_interval([1, 2], confidence=1.5)


def test_log_interval_is_the_geometric_one():
    values = [1.0, 10.0, 100.0]
    mean, low, high = t_interval(values, log=True)
    assert mean == pytest.approx(10.0)
    half = T_975_2 * math.log(10.0) / math.sqrt(3)  # sd of (0, ln 10, 2 ln 10) is ln 10
    assert low == pytest.approx(10.0 * math.exp(-half)) and high == pytest.approx(10.0 * math.exp(half))
    assert low > 0
    assert t_interval([4.0, -1.0, 0.0], log=True)[0] == 4.0  # only positive values count


def test_linear_fit_recovers_a_line_and_its_interval_matches_the_formula():
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert linear_fit(x, 2.0 * x + 1.0)[0] == pytest.approx(2.0)
    y = 2.0 * x + np.array([0.1, -0.2, 0.15, -0.05, 0.0])
    slope, low, high = linear_fit(x, y)
    residual = y - np.polyval(np.polyfit(x, y, 1), x)
    stderr = math.sqrt(residual @ residual / 3 / ((x - x.mean()) @ (x - x.mean())))
    assert slope == pytest.approx(np.polyfit(x, y, 1)[0])
    assert high - slope == pytest.approx(T_975_3 * stderr) and low < 2.0 < high
    with pytest.raises(ValueError, match="at least 3 points"):
        linear_fit([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="2 or more x values"):
        linear_fit([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])


def test_power_law_fit_recovers_the_exponent():
    widths = np.array([8.0, 16.0, 32.0, 64.0])
    fit = power_law_fit(widths, 3.0 * widths ** -0.5)
    assert fit["slope"] == pytest.approx(-0.5) and fit["intercept"] == pytest.approx(math.log(3.0))
    assert fit["low"] == pytest.approx(-0.5) and fit["high"] == pytest.approx(-0.5)
    rng = np.random.default_rng(0)
    noisy = power_law_fit(np.repeat(widths, 5), 3.0 * np.repeat(widths, 5) ** -0.5
                          * np.exp(0.1 * rng.standard_normal(20)))
    assert noisy["low"] < -0.5 < noisy["high"] and noisy["n"] == 20
    two = power_law_fit([8.0, 16.0], [1.0, 2.0])  # a slope, but no interval
    assert two["slope"] == pytest.approx(1.0) and math.isnan(two["low"])
    assert math.isnan(power_law_fit([8.0, 8.0, 8.0], [1.0, 2.0, 3.0])["slope"])  # one width
    assert power_law_fit([8, 16, 32, 64], [1.0, np.inf, -1.0, 0.5])["n"] == 2


def test_summarise_gives_each_group_its_interval_and_leaves_out_excluded_rows():
    table = pd.DataFrame({"rule": ["a"] * 4 + ["b"] * 3, "width": 8,
                          "value": [1.0, 2.0, 3.0, 100.0, 2.0, np.nan, 4.0],
                          "diverged": [False, False, False, True, False, False, False]})
    out = summarise(table, "value", ["rule", "width"], excluded=table.diverged).set_index("rule")
    assert list(out.columns) == ["width", "n", "n_excluded", "mean", "sd", "ci_low", "ci_high"]
    assert (out.loc["a", "n"], out.loc["a", "n_excluded"]) == (3, 1)
    assert (out.loc["a", "mean"], out.loc["a", "ci_low"], out.loc["a", "ci_high"]) == \
        pytest.approx(t_interval([1.0, 2.0, 3.0]))
    assert out.loc["b", "n"] == 2 and out.loc["b", "mean"] == pytest.approx(3.0)  # NaN left out
    geometric = summarise(table[table.rule == "b"], "value", ["rule"], log=True)
    assert geometric["mean"].item() == pytest.approx(math.sqrt(8.0))
    assert geometric["sd"].item() == pytest.approx(np.std(np.log([2.0, 4.0]), ddof=1))
    one = summarise(table[table.index == 0], "value", ["rule"])
    assert one["n"].item() == 1 and math.isnan(one["ci_low"].item())
    with pytest.raises(ValueError, match="columns"):
        summarise(table, "accuracy", ["rule"])
