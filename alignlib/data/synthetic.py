"""The offline data sets: scikit-learn's handwritten digits and the synthetic Add task.

They ship with installed packages (or are generated), so every profile can run without
downloading anything; the digits stand in for KMNIST in the ``tiny`` and ``cpu``
profiles. Both follow the conventions of :mod:`alignlib.data.dataset`.
"""

from __future__ import annotations

import numpy as np

from alignlib.data.dataset import Dataset, check_bool, one_hot_targets
from alignlib.validation import integer

__all__ = ["load_digits", "add_task", "add_task_targets", "ADD_TASK_LAGS", "DIGITS_HOLDOUT"]

#: The Add task's lags ``(s1, s2)`` and weights: target_t = 0.5 + 0.5 x_(t-2) - 0.25 x_(t-5).
ADD_TASK_LAGS = (2, 5)
_ADD_TASK_BIAS, _ADD_TASK_WEIGHTS = 0.5, (0.5, -0.25)

#: Held-out digits by default: 1/6 of the 1,797 images, leaving 1,500 to train.
DIGITS_HOLDOUT = 297


def load_digits(*, holdout: int | None = None, seed: int = 0, n_train: int | None = None,
                cap_heldout: bool = False) -> Dataset:
    """scikit-learn's handwritten digits (8x8 grey images, 10 classes, 1,797 images).

    The offline stand-in for KMNIST. Images are NHWC ``(N, 8, 8, 1)`` float32 in
    ``[0, 1]`` (pixel values 0..16 divided by 16); targets are ``one_hot - 0.1``
    ``(N, 10)``; ``labels_*`` hold the integer classes.

    Splits: the images are shuffled with ``numpy.random.default_rng(seed)``; the first
    ``holdout`` shuffled images form the held-out split (``x_test``), the rest the
    training split. The authors hold out 5,000 of KMNIST's 60,000 training images
    (1/12) and report accuracy on them; the default here, 297, keeps the same role
    and leaves 1,500 training images, a multiple of their batch size 100.

    Args:
        holdout: number of held-out images, in ``[1, 1796]``; default 297.
        seed: seed of the shuffle (same seed, same split).
        n_train: keep only the first ``n_train`` training images (low-data
            experiments; the sets are nested: a smaller ``n_train`` is a prefix of a
            larger one for the same seed, as in the authors' ``data_limit``). Must not
            exceed ``1797 - holdout``. The held-out split is not affected unless
            ``cap_heldout``.
        cap_heldout: also cut the held-out split to its first ``n_train`` images, as
            the authors' low-data script cuts its validation set (``data_limit``).

    Returns:
        A :class:`~alignlib.data.Dataset` named ``"digits"`` with ``n_outputs=10``.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)
    labels = np.asarray(bunch.target, dtype=np.int64)
    n_total = images.shape[0]

    holdout = DIGITS_HOLDOUT if holdout is None else integer("holdout", holdout, low=1, high=n_total - 1)
    seed = integer("seed", seed, low=0)
    cap_heldout = check_bool("cap_heldout", cap_heldout)
    available = n_total - holdout
    if n_train is not None:
        if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or n_train < 1:
            raise ValueError(f"`n_train` must be a positive integer or None, got {n_train!r}.")
        if n_train > available:
            raise ValueError(
                f"`n_train`={n_train} exceeds the {available} training images left after "
                f"holding out {holdout} of {n_total}."
            )

    order = np.random.default_rng(seed).permutation(n_total)
    test_idx, train_idx = order[:holdout], order[holdout:]
    if n_train is not None:
        train_idx = train_idx[: int(n_train)]
        if cap_heldout:
            test_idx = test_idx[: int(n_train)]

    x = images[..., None]  # (N, 8, 8, 1)
    return Dataset(
        name="digits",
        x_train=x[train_idx],
        y_train=one_hot_targets(labels[train_idx], 10),
        x_test=x[test_idx],
        y_test=one_hot_targets(labels[test_idx], 10),
        labels_train=labels[train_idx],
        labels_test=labels[test_idx],
        n_outputs=10,
    )


def _shift(x: np.ndarray, s: int, wraparound: bool) -> np.ndarray:
    """``x_(t-s)`` for bit sequences ``x`` of shape ``(N, T)``.

    Causal (``wraparound=False``): zero for ``t < s``.
    Authors' quirk (``wraparound=True``): ``np.roll(x, s, axis=1)`` followed by
    ``shifted[:s] = 0``, which zeroes the first ``s`` *sequences* (rows), so in every
    other sequence the first ``s`` steps hold ``x_(T-s+t)`` from the end of the sequence.
    """
    if wraparound:
        shifted = np.roll(x, s, axis=1)
        shifted[:s, :] = 0
        return shifted
    shifted = np.zeros_like(x)
    if s < x.shape[1]:
        shifted[:, s:] = x[:, : x.shape[1] - s]
    return shifted


def add_task_targets(bits, *, wraparound: bool = False) -> np.ndarray:
    """Targets of the Add task for bit sequences ``bits`` of shape ``(N, T)``::

        target_t = 0.5 + 0.5 x_(t-2) - 0.25 x_(t-5),      x_(t-s) = 0 for t < s

    With ``wraparound=True``, ``x_(t-s)`` is computed the authors' way (see
    :func:`add_task`). Returns float32 ``(N, T)``.
    """
    x = np.asarray(bits, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"`bits` must have shape (n_sequences, length), got {x.shape}.")
    wraparound = check_bool("wraparound", wraparound)
    (s1, s2), (w1, w2) = ADD_TASK_LAGS, _ADD_TASK_WEIGHTS
    return (
        np.float32(_ADD_TASK_BIAS)
        + np.float32(w1) * _shift(x, s1, wraparound)
        + np.float32(w2) * _shift(x, s2, wraparound)
    ).astype(np.float32)


def add_task(
    *,
    n_sequences: int = 400,
    length: int = 100,
    n_train: int = 300,
    seed: int = 0,
    wraparound: bool = False,
) -> Dataset:
    """The Add task of the paper's recurrent experiment (the recurrent chapter).

    Random bit sequences ``x_t`` in {0, 1} (fair coin, ``numpy.random.default_rng(seed)``)
    with targets::

        target_t = 0.5 + 0.5 x_(t-2) - 0.25 x_(t-5),      x_(t-s) = 0 for t < s

    The authors use 400 sequences of length 100: the first 300 for training, the last
    100 as the test split (their ``gen_data``); those are the defaults. Their bits come
    from ``np.random.seed(99)``, so the sequences here are not the same draws.

    Args:
        n_sequences: total number of sequences (>= 2).
        length: time steps per sequence (>= 1).
        n_train: the first ``n_train`` sequences train, the rest test;
            ``1 <= n_train < n_sequences``.
        seed: seed of the bits.
        wraparound: reproduce the authors' data quirk (a): they compute ``x_(t-s)`` as
            ``np.roll(x, s, axis=time)`` and then zero rows ``[:s]`` along the
            *sequence* axis instead of the first ``s`` time steps. Sequences ``0..s-1``
            then have that lag term zeroed entirely, and in every other sequence the
            first ``s`` targets wrap around from the end of the sequence (a causal
            network cannot fit them). Default ``False``: the intended causal targets.

    Returns:
        A :class:`~alignlib.data.Dataset` named ``"add"`` (``"add-wraparound"`` for the quirk) with
        ``x`` and ``y`` of shape ``(N, length, 1)`` float32, ``n_outputs=1`` and no labels.
    """
    n_sequences = integer("n_sequences", n_sequences, low=2)
    length = integer("length", length, low=1)
    n_train = integer("n_train", n_train, low=1, high=n_sequences - 1)
    seed = integer("seed", seed, low=0)
    wraparound = check_bool("wraparound", wraparound)

    x = np.random.default_rng(seed).integers(0, 2, size=(n_sequences, length)).astype(np.float32)
    y = add_task_targets(x, wraparound=wraparound)

    x, y = x[..., None], y[..., None]
    return Dataset(
        name="add-wraparound" if wraparound else "add",
        x_train=x[:n_train],
        y_train=y[:n_train],
        x_test=x[n_train:],
        y_test=y[n_train:],
        labels_train=None,
        labels_test=None,
        n_outputs=1,
    )
