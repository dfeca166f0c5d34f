"""The :class:`Dataset` every loader returns, its targets, and its splits.

The conventions are the authors' (the book's differences page):

* inputs scaled to ``[0, 1]``;
* classification targets are ``one_hot - 0.1`` (0.9 for the true class, -0.1 elsewhere),
  fitted with the squared loss; :func:`with_target_offset` rebuilds them with another
  offset (their ImageNet script uses plain one-hot targets);
* the "test" split of an image set is a split *held out of the training set* (the
  authors hold out 5,000 of KMNIST's / CIFAR-10's training images and report accuracy
  on them), not the dataset's official test set.

All arrays are numpy ``float32`` (integer class labels are ``int64``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from alignlib.validation import integer

__all__ = ["Dataset", "one_hot_targets", "with_target_offset", "TARGET_OFFSET", "AUTHORS_HOLDOUT"]

#: Subtracted from one-hot targets, as in the authors' scripts (``train_labels - 0.1``).
TARGET_OFFSET = 0.1

#: Size of the held-out split the authors take from the training set (``VALIDATION_SIZE``).
AUTHORS_HOLDOUT = 5000


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train / held-out split.

    Attributes:
        name: short identifier, e.g. ``"digits"`` or ``"add"``.
        x_train, y_train: training inputs and regression targets (float32).
        x_test, y_test: held-out inputs and targets (float32).
        labels_train, labels_test: integer class labels, or ``None`` for regression.
        n_outputs: number of network outputs (classes, or 1 for the Add task).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_train: np.ndarray | None
    labels_test: np.ndarray | None
    n_outputs: int

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])


def one_hot_targets(labels: np.ndarray, n_classes: int, offset: float = TARGET_OFFSET) -> np.ndarray:
    """``one_hot(labels) - offset`` as float32, shape ``(N, n_classes)`` (the authors'
    targets with the default ``offset`` 0.1)."""
    labels = np.asarray(labels)
    return (np.eye(n_classes, dtype=np.float32)[labels] - np.float32(offset)).astype(np.float32)


def with_target_offset(data: Dataset, offset: float) -> Dataset:
    """A copy of ``data`` with targets ``one_hot - offset`` rebuilt from its labels,
    whatever offset ``data`` was built with (the loaders build the authors' ``0.1``;
    their ImageNet script trains on plain one-hot targets, ``offset=0``)."""
    if data.labels_train is None or data.labels_test is None:
        raise ValueError(f"dataset {data.name!r} has no class labels to rebuild targets from")
    return dataclasses.replace(
        data,
        y_train=one_hot_targets(data.labels_train, data.n_outputs, offset),
        y_test=one_hot_targets(data.labels_test, data.n_outputs, offset),
    )


def check_bool(name: str, value) -> bool:
    """``value`` as a ``bool``; a ``ValueError`` naming ``name`` for anything else."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be a bool, got {value!r}.")
    return bool(value)


def check_split(split: str) -> str:
    if split not in ("heldout", "test"):
        raise ValueError(f"`split` must be 'heldout' or 'test', got {split!r}.")
    return split


def _to_float(images: np.ndarray) -> np.ndarray:
    out = images.astype(np.float32, order="C")
    out /= np.float32(255.0)
    return out


def assemble(name: str, n_classes: int, x_all: np.ndarray, y_all: np.ndarray, *, holdout: int,
             n_train: int | None, split: str, cap_heldout: bool,
             test: Callable[[], tuple[np.ndarray, np.ndarray]]) -> Dataset:
    """The authors' split of an image set's training file (uint8 images, integer labels):
    the first ``holdout`` examples are held out, the rest train.

    ``test`` reads the official test split; it is called only when ``split="test"``.
    ``cap_heldout``: cut the evaluation split to its first ``n_train`` examples.
    """
    n_total = x_all.shape[0]
    low = 1 if split == "heldout" else 0
    holdout = integer("holdout", holdout, low=low, high=n_total - 1)
    available = n_total - holdout
    if n_train is not None:
        n_train = integer("n_train", n_train, low=1, high=available)
    cap_heldout = check_bool("cap_heldout", cap_heldout)
    stop = n_total if n_train is None else holdout + n_train
    x_train, labels_train = x_all[holdout:stop], y_all[holdout:stop]
    if split == "heldout":
        x_test, labels_test = x_all[:holdout], y_all[:holdout]
    else:
        x_test, labels_test = test()
    if cap_heldout and n_train is not None:
        x_test, labels_test = x_test[:n_train], labels_test[:n_train]
    labels_train = np.asarray(labels_train, dtype=np.int64)
    labels_test = np.asarray(labels_test, dtype=np.int64)
    return Dataset(
        name=name,
        x_train=_to_float(x_train),
        y_train=one_hot_targets(labels_train, n_classes),
        x_test=_to_float(x_test),
        y_test=one_hot_targets(labels_test, n_classes),
        labels_train=labels_train,
        labels_test=labels_test,
        n_outputs=n_classes,
    )
