"""One entry point for every data set: :func:`load_dataset`."""

from __future__ import annotations

import os
from collections.abc import Callable

from alignlib.data.dataset import TARGET_OFFSET, Dataset, check_bool, with_target_offset
from alignlib.data.readers import load_cifar10, load_imagenet32, load_kmnist
from alignlib.data.registry import DATASET_NAMES, DATASETS
from alignlib.data.synthetic import add_task, load_digits

__all__ = ["load_dataset"]

_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "add": add_task,
    "kmnist": load_kmnist,
    "cifar10": load_cifar10,
    "imagenet32": load_imagenet32,
}


def load_dataset(name: str, *, n_train: int | None = None, cache_dir: str | os.PathLike | None = None,
                 cap_heldout: bool = False, target_offset: float = TARGET_OFFSET,
                 progress: bool = True, **kwargs) -> Dataset:
    """Load a data set by name: ``"digits"`` and ``"add"`` (offline,
    :mod:`alignlib.data.synthetic`), ``"kmnist"``, ``"cifar10"``, ``"imagenet32"`` (files
    in the data cache, :mod:`alignlib.data.readers`).

    Args:
        name: one of :data:`~alignlib.data.DATASET_NAMES`.
        n_train: keep the first ``n_train`` training examples (nested subsets); for
            ``"add"``, the number of training sequences. ``None``: the loader's default.
        cache_dir: folder holding the data set's files (``None`` or ``""``: the default
            cache folder, see :func:`~alignlib.data.cache_folder`); ignored by the
            offline sets, which have no files.
        cap_heldout: also cut the held-out split to ``n_train`` examples, as the authors'
            low-data script does (not for ``"add"``).
        target_offset: classification targets are ``one_hot - target_offset`` (authors:
            0.1; 0 in their ImageNet script). Not for ``"add"``, whose targets are numbers.
        progress: show a progress bar while downloading (file sets with ``download=True``).
        kwargs: passed to the loader (:func:`~alignlib.data.load_digits`,
            :func:`~alignlib.data.add_task`, :func:`~alignlib.data.load_kmnist`,
            :func:`~alignlib.data.load_cifar10`, :func:`~alignlib.data.load_imagenet32`),
            e.g. ``holdout=``, ``split=``, ``download=``, ``checksums=``.
    """
    if not isinstance(name, str) or name not in _LOADERS:
        raise ValueError(f"Unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}.")
    if n_train is not None:
        kwargs["n_train"] = n_train
    if name == "add":
        if check_bool("cap_heldout", cap_heldout) or target_offset != TARGET_OFFSET:
            raise ValueError("the Add task is a regression: `cap_heldout` and `target_offset` "
                             "do not apply to it.")
        return add_task(**kwargs)
    kwargs["cap_heldout"] = cap_heldout
    if name in DATASETS:
        kwargs.update(cache_dir=cache_dir or None, progress=progress)
    return with_target_offset(_LOADERS[name](**kwargs), target_offset)
