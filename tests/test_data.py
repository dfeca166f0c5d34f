"""Tests for alignlib.data: the digits stand-in for KMNIST and the Add task."""

import numpy as np
import pytest
from sklearn.datasets import load_digits as sk_load_digits

from alignlib.data import (
    Dataset,
    add_task,
    add_task_targets,
    load_dataset,
    load_digits,
    one_hot_targets,
    with_target_offset,
)

# ---------------------------------------------------------------------------------------
# Digits
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def test_digits_shapes_dtypes_and_ranges(digits):
    assert digits.name == "digits" and digits.n_outputs == 10
    assert digits.x_train.shape == (1500, 8, 8, 1) and digits.x_test.shape == (297, 8, 8, 1)
    assert digits.y_train.shape == (1500, 10) and digits.y_test.shape == (297, 10)
    assert digits.labels_train.shape == (1500,) and digits.labels_test.shape == (297,)
    for a in (digits.x_train, digits.x_test, digits.y_train, digits.y_test):
        assert a.dtype == np.float32
    assert np.issubdtype(digits.labels_train.dtype, np.integer)
    x = np.concatenate([digits.x_train, digits.x_test])
    assert x.min() == 0.0 and x.max() == 1.0  # 0..16 divided by 16
    np.testing.assert_array_equal(x * 16, np.round(x * 16))  # exact multiples of 1/16
    assert set(np.unique(digits.labels_train)) == set(range(10))


def test_digits_targets_are_one_hot_minus_a_tenth(digits):
    for y, labels in ((digits.y_train, digits.labels_train), (digits.y_test, digits.labels_test)):
        np.testing.assert_array_equal(np.argmax(y, axis=1), labels)
        np.testing.assert_allclose(y[np.arange(len(labels)), labels], 0.9, rtol=0, atol=1e-7)
        off = np.ones_like(y, dtype=bool)
        off[np.arange(len(labels)), labels] = False
        np.testing.assert_allclose(y[off], -0.1, rtol=0, atol=1e-7)
    np.testing.assert_allclose(
        one_hot_targets(np.array([2, 0]), 3), [[-0.1, -0.1, 0.9], [0.9, -0.1, -0.1]], atol=1e-7
    )


def test_digits_split_is_a_partition_of_the_dataset(digits):
    """Train and held-out together are exactly the 1,797 sklearn (image, label) rows,
    each used once: a multiset equality, so no example is shared or missing."""
    sk = sk_load_digits()
    full = np.concatenate([sk.images.reshape(len(sk.images), -1) / 16, sk.target[:, None]], axis=1)
    ours = np.concatenate(
        [
            np.concatenate([digits.x_train, digits.x_test]).reshape(-1, 64),
            np.concatenate([digits.labels_train, digits.labels_test])[:, None],
        ],
        axis=1,
    )
    assert ours.shape == full.shape
    np.testing.assert_array_equal(
        ours[np.lexsort(ours.T[::-1])], full[np.lexsort(full.T[::-1])].astype(ours.dtype)
    )


def test_digits_deterministic_for_a_seed_and_seed_dependent(digits):
    again = load_digits(seed=0)
    np.testing.assert_array_equal(again.x_train, digits.x_train)
    np.testing.assert_array_equal(again.labels_test, digits.labels_test)
    other = load_digits(seed=1)
    assert not np.array_equal(other.labels_test, digits.labels_test)


def test_digits_holdout_and_n_train_cap(digits):
    d = load_digits(holdout=597)
    assert d.x_train.shape[0] == 1200 and d.x_test.shape[0] == 597
    small = load_digits(n_train=45)
    assert small.n_train == 45 and small.n_test == 297
    # Low-data sets are nested prefixes of the full training split; held-out unchanged.
    np.testing.assert_array_equal(small.x_train, digits.x_train[:45])
    np.testing.assert_array_equal(small.x_test, digits.x_test)
    assert load_digits(n_train=1500).n_train == 1500
    with pytest.raises(ValueError, match="n_train"):
        load_digits(n_train=1501)
    with pytest.raises(ValueError, match="n_train"):
        load_digits(holdout=1000, n_train=800)
    with pytest.raises(ValueError, match="n_train"):
        load_digits(n_train=0)


def test_digits_bad_arguments_name_the_argument():
    for kwargs, name in [
        ({"holdout": 0}, "holdout"),
        ({"holdout": 1797}, "holdout"),
        ({"holdout": 2.5}, "holdout"),
        ({"seed": -1}, "seed"),
        ({"n_train": 10.0}, "n_train"),
    ]:
        with pytest.raises(ValueError, match=name):
            load_digits(**kwargs)


# ---------------------------------------------------------------------------------------
# Add task
# ---------------------------------------------------------------------------------------

# x_t for t = 0..7, and by hand target_t = 0.5 + 0.5 x_(t-2) - 0.25 x_(t-5):
#   x_(t-2) = 0 0 1 0 1 1 0 0
#   x_(t-5) = 0 0 0 0 0 1 0 1
BITS = np.array([1, 0, 1, 1, 0, 0, 1, 0])
CAUSAL = np.array([0.5, 0.5, 1.0, 0.5, 1.0, 0.75, 0.5, 0.25])


def test_add_task_causal_targets_by_hand():
    np.testing.assert_array_equal(add_task_targets(BITS[None]), CAUSAL[None])


def test_add_task_wraparound_by_hand():
    """Authors' quirk on 7 copies of BITS: np.roll along time, then rows [:s] zeroed.
    np.roll(BITS, 2) = 1 0 1 0 1 1 0 0 and np.roll(BITS, 5) = 1 0 0 1 0 1 0 1, so
      rows 0-1: both lag terms zeroed           -> 0.5 everywhere
      rows 2-4: only the lag-5 term zeroed      -> 0.5 + 0.5 roll2
      rows 5-6: both terms wrap at t < 5        -> differs from causal at t = 0 and 3
    """
    y = add_task_targets(np.tile(BITS, (7, 1)), wraparound=True)
    rows01 = np.full(8, 0.5)
    rows24 = np.array([1.0, 0.5, 1.0, 0.5, 1.0, 1.0, 0.5, 0.5])
    rows56 = np.array([0.75, 0.5, 1.0, 0.25, 1.0, 0.75, 0.5, 0.25])
    np.testing.assert_array_equal(y, np.stack([rows01] * 2 + [rows24] * 3 + [rows56] * 2))
    np.testing.assert_array_equal(rows56 != CAUSAL, [1, 0, 0, 1, 0, 0, 0, 0])


def test_add_task_shapes_ranges_and_split():
    d = add_task()
    assert d.name == "add" and d.n_outputs == 1
    assert d.labels_train is None and d.labels_test is None
    assert d.x_train.shape == (300, 100, 1) and d.x_test.shape == (100, 100, 1)
    assert d.y_train.shape == (300, 100, 1) and d.y_test.shape == (100, 100, 1)
    for a in (d.x_train, d.x_test, d.y_train, d.y_test):
        assert a.dtype == np.float32
    x = np.concatenate([d.x_train, d.x_test])[..., 0]
    y = np.concatenate([d.y_train, d.y_test])[..., 0]
    assert set(np.unique(x)) == {0.0, 1.0}
    assert 0.4 < x.mean() < 0.6
    assert set(np.unique(y)) <= {0.25, 0.5, 0.75, 1.0}
    np.testing.assert_array_equal(y, add_task_targets(x))
    np.testing.assert_array_equal(y[:, :2], 0.5)  # nothing to look back to
    # Deterministic for a seed; another seed gives other bits.
    np.testing.assert_array_equal(add_task().x_test, d.x_test)
    assert not np.array_equal(add_task(seed=1).x_train, d.x_train)


def test_add_task_wraparound_differs_exactly_where_expected():
    causal = add_task(n_sequences=40, length=30, n_train=30, seed=3)
    wrap = add_task(n_sequences=40, length=30, n_train=30, seed=3, wraparound=True)
    assert wrap.name == "add-wraparound"
    np.testing.assert_array_equal(wrap.x_train, causal.x_train)
    x = np.concatenate([causal.x_train, causal.x_test])[..., 0]
    yc = np.concatenate([causal.y_train, causal.y_test])[..., 0]
    yw = np.concatenate([wrap.y_train, wrap.y_test])[..., 0]
    # Sequences >= 5: identical from t = 5 on; at t < 5 the lags wrap to the end.
    np.testing.assert_array_equal(yw[5:, 5:], yc[5:, 5:])
    t = np.arange(5)
    expected = 0.5 + 0.5 * x[5:, (t - 2) % 30] - 0.25 * x[5:, (t - 5) % 30]
    np.testing.assert_array_equal(yw[5:, :5], expected)
    assert np.any(yw[5:, :5] != yc[5:, :5])
    # Sequences 0-1 lose both lag terms, 2-4 lose the lag-5 term.
    np.testing.assert_array_equal(yw[:2], 0.5)
    np.testing.assert_array_equal(yw[2:5], 0.5 + 0.5 * np.roll(x[2:5], 2, axis=1))


def test_add_task_bad_arguments_name_the_argument():
    for kwargs, name in [
        ({"n_sequences": 1}, "n_sequences"),
        ({"length": 0}, "length"),
        ({"n_train": 400}, "n_train"),
        ({"n_train": 0}, "n_train"),
        ({"seed": -3}, "seed"),
        ({"wraparound": "yes"}, "wraparound"),
    ]:
        with pytest.raises(ValueError, match=name):
            add_task(**kwargs)
    with pytest.raises(ValueError, match="bits"):
        add_task_targets(np.zeros(5))


# ---------------------------------------------------------------------------------------
# load_dataset: one entry point, the same options for every classification set
# ---------------------------------------------------------------------------------------


def test_load_dataset_caps_the_heldout_digits_and_sets_their_target_offset(digits):
    capped = load_dataset("digits", n_train=45, cap_heldout=True, cache_dir=None)
    assert capped.n_train == 45 and capped.n_test == 45
    np.testing.assert_array_equal(capped.x_test, digits.x_test[:45])  # a prefix, nested
    np.testing.assert_array_equal(capped.labels_test, digits.labels_test[:45])
    assert load_dataset("digits", n_train=45).n_test == 297  # not capped by default
    plain = load_dataset("digits", target_offset=0.0)
    np.testing.assert_array_equal(plain.y_train, np.eye(10, dtype=np.float32)[digits.labels_train])
    np.testing.assert_array_equal(plain.x_train, digits.x_train)
    assert load_dataset("digits").y_train.min() == np.float32(-0.1)
    with pytest.raises(ValueError, match="cap_heldout"):
        load_digits(cap_heldout="yes")


def test_with_target_offset_rebuilds_targets_from_labels(digits):
    np.testing.assert_array_equal(with_target_offset(digits, 0.1).y_train, digits.y_train)
    plain = with_target_offset(digits, 0.0)
    np.testing.assert_array_equal(with_target_offset(plain, 0.1).y_test, digits.y_test)
    shifted = with_target_offset(digits, 0.25)
    np.testing.assert_allclose(shifted.y_test, one_hot_targets(digits.labels_test, 10) + 0.1 - 0.25,
                               atol=1e-7)
    assert shifted.y_test.dtype == np.float32 and digits.y_test.max() == np.float32(0.9)
    with pytest.raises(ValueError, match="no class labels"):
        with_target_offset(add_task(n_sequences=4, length=3, n_train=2), 0.0)


def test_load_dataset_add_task_takes_n_train_and_refuses_classification_options():
    assert load_dataset("add", n_sequences=10, length=6, n_train=8).n_train == 8
    assert load_dataset("add").n_train == 300  # n_train=None: the loader's default
    for kwargs in ({"cap_heldout": True}, {"target_offset": 0.0}):
        with pytest.raises(ValueError, match="regression"):
            load_dataset("add", **kwargs)
    with pytest.raises(ValueError) as err:
        load_dataset("mnist")
    assert "valid names: digits, add, kmnist, cifar10, imagenet32" in str(err.value)
