"""Data: the offline sets every profile can run on, the paper's image data sets read from
their published files, and the cache those files live in.

* :mod:`~alignlib.data.dataset`: the :class:`Dataset` every loader returns, its
  ``one_hot - 0.1`` targets and the authors' held-out splits;
* :mod:`~alignlib.data.synthetic`: scikit-learn's handwritten digits (the offline
  stand-in for KMNIST) and the synthetic Add task;
* :mod:`~alignlib.data.registry`: KMNIST's, CIFAR-10's and ImageNet 32x32's published
  files, URLs and checksums;
* :mod:`~alignlib.data.cache`: the cache folder, checksums, files moved aside, the
  errors, :func:`check_files`;
* :mod:`~alignlib.data.download`: atomic, verified, locked downloads (:func:`fetch_file`);
* :mod:`~alignlib.data.readers`: the file formats and :func:`load_kmnist`,
  :func:`load_cifar10`, :func:`load_imagenet32`;
* :func:`load_dataset`: any of them by name.

The command ``alignbook data list|download NAME|verify [NAME]`` shows, fetches and checks
the files.
"""

from alignlib.data.cache import (
    ChecksumMismatchError,
    CorruptFileError,
    DatasetNotFoundError,
    DownloadError,
    FileCheck,
    UnverifiedFileWarning,
    cache_folder,
    check_files,
    download_command,
)
from alignlib.data.dataset import (
    AUTHORS_HOLDOUT,
    TARGET_OFFSET,
    Dataset,
    one_hot_targets,
    with_target_offset,
)
from alignlib.data.download import fetch_file
from alignlib.data.load import load_dataset
from alignlib.data.readers import load_cifar10, load_imagenet32, load_kmnist, read_idx
from alignlib.data.registry import (
    DATASET_NAMES,
    DATASETS,
    OFFLINE_DATASETS,
    DatasetInfo,
    RemoteFile,
    dataset_info,
)
from alignlib.data.synthetic import ADD_TASK_LAGS, add_task, add_task_targets, load_digits

__all__ = [
    "Dataset", "one_hot_targets", "with_target_offset", "TARGET_OFFSET", "AUTHORS_HOLDOUT",
    "load_digits", "add_task", "add_task_targets", "ADD_TASK_LAGS",
    "DATASETS", "OFFLINE_DATASETS", "DATASET_NAMES", "DatasetInfo", "RemoteFile", "dataset_info",
    "DatasetNotFoundError", "CorruptFileError", "ChecksumMismatchError", "DownloadError",
    "UnverifiedFileWarning", "cache_folder", "download_command", "FileCheck", "check_files",
    "fetch_file", "read_idx", "load_kmnist", "load_cifar10", "load_imagenet32", "load_dataset",
]
