"""The image data sets read from their published files: KMNIST, CIFAR-10, ImageNet 32x32.

The file formats (IDX, the CIFAR-10 binary records, the ImageNet32 npz release) and one
loader per data set. Every loader returns the same :class:`~alignlib.data.Dataset` as the
offline sets and follows the authors' conventions:

* images NHWC ``float32`` scaled to ``[0, 1]`` (the authors compute ``x / 255 - 0.5`` in
  ``setup_*.py`` and add the ``0.5`` back in ``train_*.py``);
* targets ``one_hot - 0.1`` (:func:`~alignlib.data.one_hot_targets`), integer ``labels_*``;
* the reported split is a held-out part of the *training* file: the first ``holdout``
  (5,000) training examples in file order, the rest train (see :func:`load_kmnist`).

The files come from the data cache (:mod:`alignlib.data.cache`); ``download=True``
fetches missing ones (:mod:`alignlib.data.download`), as ``alignbook data download NAME``
does.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from alignlib.data.cache import (
    _UNREADABLE,
    CorruptFileError,
    _BadFormat,
    _expected_checksum,
    _move_aside,
    _read_or_move_aside,
    _unreadable,
    _verify,
    cache_folder,
)
from alignlib.data.dataset import AUTHORS_HOLDOUT, Dataset, assemble, check_split
from alignlib.data.download import _fetch_all, _missing_error, fetch_file
from alignlib.data.registry import (
    DATASETS,
    IMAGENET_TRAIN_NPZ,
    IMAGENET_TRAIN_ZIP,
    IMAGENET_VAL_NPZ,
    IMAGENET_VAL_ZIP,
    NEEDED,
    DatasetInfo,
)
from alignlib.validation import integer

__all__ = ["read_idx", "load_kmnist", "load_cifar10", "load_imagenet32"]

# ---------------------------------------------------------------------------------------
# File formats
# ---------------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike, *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST/KMNIST format), gzip-compressed if it ends in ``.gz``.

    Header: two zero bytes, a type byte (0x08 = uint8), the number of dimensions, then each
    dimension as a big-endian uint32. Images are magic 2051 (uint8, 3 dims), labels 2049
    (uint8, 1 dim).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise _BadFormat(f"{path} is not an IDX file (bad header {data[:4]!r}).")
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: IDX magic number {magic}, expected {expected_magic}.")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    n = int(np.prod(dims)) if dims else 0
    if len(data) != header + n * dtype.itemsize:
        raise _BadFormat(
            f"{path}: header promises {dims} ({n * dtype.itemsize} bytes of data), "
            f"file has {len(data) - header}; truncated or corrupt."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


_CIFAR_RECORD = 1 + 32 * 32 * 3
_CIFAR_FOLDER = "cifar-10-batches-bin"
_CIFAR_TRAIN = tuple(f"{_CIFAR_FOLDER}/data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST = f"{_CIFAR_FOLDER}/test_batch.bin"


def _parse_cifar_records(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 binary records -> (uint8 images NHWC, int64 labels)."""
    if len(raw) % _CIFAR_RECORD:
        raise _BadFormat(f"{where}: {len(raw)} bytes is not a whole number of {_CIFAR_RECORD}-byte records.")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.size and labels.max() > 9:
        raise ValueError(f"{where}: label {labels.max()} out of range 0..9.")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # R, G, B planes -> HWC
    return images, labels


def _read_cifar_tar(path: Path, members: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    with tarfile.open(path, "r:gz") as tar:
        for member in members:
            try:
                f = tar.extractfile(member)
            except KeyError:
                f = None
            if f is None:
                raise ValueError(f"{path} has no member '{member}'; is it the CIFAR-10 binary version?")
            x, y = _parse_cifar_records(f.read(), f"{path}:{member}")
            images.append(x)
            labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


# ---------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------


def load_kmnist(
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    holdout: int = AUTHORS_HOLDOUT,
    n_train: int | None = None,
    split: str = "heldout",
    cap_heldout: bool = False,
    base_url: str | None = None,
    checksums: Mapping[str, str | None] | None = None,
    progress: bool = True,
) -> Dataset:
    """Kuzushiji-MNIST from its four published IDX files (28x28 grey, 10 classes).

    Returns images ``(N, 28, 28, 1)`` float32 in ``[0, 1]``, targets ``one_hot - 0.1``.

    The authors' split (FieteLab/Wide-Network-Alignment, ``setup_kmnist.py``): of the 60,000
    training images, in file order, the **first** 5,000 are the validation set
    (``train_data[:VALIDATION_SIZE]``) and the remaining 55,000 train; the accuracy their
    ``train_kmnist.py`` prints as "test" is measured on those 5,000 (``x_test =
    data.validation_data + 0.5``). No shuffle. That is the default here.

    Args:
        cache_dir: folder holding the files (default: see :func:`~alignlib.data.cache_folder`).
        download: fetch missing files from ``base_url`` (verified; see :mod:`alignlib.data.download`).
        holdout: number of training-file examples held out, taken from the start of the
            file (default 5,000, the authors'). ``0`` is allowed with ``split="test"``.
        n_train: keep only the first ``n_train`` training examples after the held-out ones
            (low-data runs; nested: a smaller ``n_train`` is a prefix of a larger one, as
            the authors' ``train_data[:data_limit]``).
        split: ``"heldout"`` (``x_test`` is the held-out part of the training file, what
            the paper reports) or ``"test"`` (``x_test`` is the official 10,000-image test
            file; the training part is unchanged).
        cap_heldout: also cut the evaluation split to its first ``n_train`` examples, as the
            authors' CIFAR script does (``validation_data[:data_limit]``); default off.
        base_url: download from here instead of the registry's URL (``base_url/<file>``).
        checksums: ``{filename: "sha256:<hex>" | "md5:<hex>" | None}`` overriding
            :data:`~alignlib.data.DATASETS` (``None`` skips verification, with a warning).
        progress: show a tqdm progress bar while downloading.
    """
    split = check_split(split)
    names = [*NEEDED["kmnist"]["heldout"], *(NEEDED["kmnist"]["test"] if split == "test" else ())]
    paths = _fetch_all("kmnist", names, loader="load_kmnist", cache_dir=cache_dir, download=download,
                       base_url=base_url, checksums=checksums, progress=progress)

    info = DATASETS["kmnist"]

    def read(path: Path, magic: int) -> np.ndarray:
        return read_idx(path, expected_magic=magic)

    def pair(images_file: str, labels_file: str) -> tuple[np.ndarray, np.ndarray]:
        x = _read_or_move_aside(info, paths[images_file], base_url, read, 2051)
        y = _read_or_move_aside(info, paths[labels_file], base_url, read, 2049).astype(np.int64)
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(f"{paths[images_file]}: images of shape {x.shape[1:]}, expected (28, 28).")
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{images_file} has {x.shape[0]} images but {labels_file} has {y.shape[0]} labels."
            )
        if y.size and (y.min() < 0 or y.max() > 9):
            raise ValueError(f"{paths[labels_file]}: labels outside 0..9.")
        return x[..., None], y

    x_all, y_all = pair(names[0], names[1])
    return assemble("kmnist", 10, x_all, y_all, holdout=holdout, n_train=n_train, split=split,
                    cap_heldout=cap_heldout, test=lambda: pair(names[2], names[3]))


def load_cifar10(
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    holdout: int = AUTHORS_HOLDOUT,
    n_train: int | None = None,
    split: str = "heldout",
    cap_heldout: bool = False,
    base_url: str | None = None,
    checksums: Mapping[str, str | None] | None = None,
    progress: bool = True,
) -> Dataset:
    """CIFAR-10 from the binary-version tarball ``cifar-10-binary.tar.gz`` (32x32 RGB).

    The tarball is read in place (not extracted): ``cifar-10-batches-bin/data_batch_1..5.bin``
    (training order: batch 1 first) and ``test_batch.bin``; each record is one label byte
    then 3,072 bytes, the red, green and blue 32x32 planes in turn (row-major). Images come
    back ``(N, 32, 32, 3)`` float32 in ``[0, 1]``, channels last in R, G, B order.

    The authors' split (``setup_cifar.py``): of the 50,000 training images in that order,
    the **first** 5,000 are the validation set and the remaining 45,000 train; the "test"
    accuracy of ``train_cifar.py`` is measured on those 5,000. Their low-data runs (45 ...
    45,000 images) use ``train_data[:data_limit]`` (``n_train`` here) and also cut the
    validation set to ``validation_data[:data_limit]`` (``cap_heldout=True`` here).

    Arguments as in :func:`load_kmnist`; with ``split="test"``, ``x_test`` is the official
    10,000-image test batch.
    """
    split = check_split(split)
    (tarball,) = NEEDED["cifar10"]["heldout"]
    paths = _fetch_all("cifar10", [tarball], loader="load_cifar10", cache_dir=cache_dir, download=download,
                       base_url=base_url, checksums=checksums, progress=progress)
    info = DATASETS["cifar10"]
    x_all, y_all = _read_or_move_aside(info, paths[tarball], base_url, _read_cifar_tar, _CIFAR_TRAIN)

    def test() -> tuple[np.ndarray, np.ndarray]:
        return _read_or_move_aside(info, paths[tarball], base_url, _read_cifar_tar, (_CIFAR_TEST,))

    return assemble("cifar10", 10, x_all, y_all, holdout=holdout, n_train=n_train, split=split,
                    cap_heldout=cap_heldout, test=test)


def _npz_arrays(source, where: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(source, allow_pickle=False) as z:
        if "data" not in z or "labels" not in z:
            raise ValueError(f"{where}: expected keys 'data' and 'labels', found {sorted(z.files)}.")
        data = np.asarray(z["data"])
        labels = np.asarray(z["labels"]).astype(np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{where}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072).")
    if data.shape[0] != labels.shape[0]:
        raise ValueError(f"{where}: {data.shape[0]} images but {labels.shape[0]} labels.")
    if labels.size and (labels.min() < 1 or labels.max() > 1000):
        raise ValueError(f"{where}: labels outside 1..1000 (the release numbers classes from 1).")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels - 1


class _ImagenetSource:
    """Finds each ImageNet32 npz file: extracted in the cache folder, else inside its zip."""

    def __init__(self, folder: Path, info: DatasetInfo, *, download: bool, base_url, checksums,
                 cache_dir, progress: bool):
        self.folder, self.info = folder, info
        self.download, self.base_url, self.checksums = download, base_url, checksums
        self.kw = dict(cache_dir=cache_dir, download=download, base_url=base_url, checksums=checksums,
                       progress=progress)
        self._zips: dict[str, Path] = {}

    def _extracted(self, npz: str, zip_name: str) -> Path | None:
        for candidate in (self.folder / npz, self.folder / zip_name[: -len(".zip")] / npz):
            if candidate.exists():
                return candidate
        return None

    def _zip(self, zip_name: str) -> Path:
        if zip_name not in self._zips:
            path = fetch_file(self.info.name, zip_name, **self.kw)
            if not zipfile.is_zipfile(path):  # no checksum to catch e.g. a saved login page
                moved = _move_aside(path, path)
                raise CorruptFileError(
                    f"{path} is not a zip archive (a login or error page saved instead?); it was "
                    f"moved aside to {moved}. Get {zip_name} from {self.info.url(zip_name, self.base_url)}.",
                    path=path, moved_to=moved,
                )
            self._zips[zip_name] = path
        return self._zips[zip_name]

    def check_available(self, npz_names: tuple[str, ...], zip_name: str) -> None:
        if self.download or (self.folder / zip_name).exists():
            return
        missing = [n for n in npz_names if self._extracted(n, zip_name) is None]
        if missing:
            raise _missing_error(
                self.info, self.folder, [zip_name], self.base_url, "load_imagenet32(download=True)",
                extra=(f"  ...or the extracted npz files ({', '.join(missing[:3])}"
                       f"{', ...' if len(missing) > 3 else ''}) in {self.folder} "
                       f"or {self.folder / zip_name[:-4]}."),
            )

    def read(self, npz: str, zip_name: str) -> tuple[np.ndarray, np.ndarray]:
        path = self._extracted(npz, zip_name)
        if path is not None:
            _verify(self.info, path, _expected_checksum(self.info, npz, self.checksums), self.base_url)
            return _read_or_move_aside(self.info, path, self.base_url, lambda p: _npz_arrays(p, str(p)))
        zpath = self._zip(zip_name)
        member = None
        try:
            with zipfile.ZipFile(zpath) as zf:
                members = [m for m in zf.namelist() if m.rsplit("/", 1)[-1] == npz]
                if not members:
                    raise ValueError(f"{zpath} has no member '{npz}'; is it {zip_name} from the npz release?")
                member = members[0]
                raw = zf.read(member)
            return _npz_arrays(io.BytesIO(raw), f"{zpath}:{member}")
        except _UNREADABLE as err:
            self._zips.pop(zip_name, None)
            raise _unreadable(self.info, zpath, err, self.base_url, member) from err


def load_imagenet32(
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    holdout: int | None = None,
    n_train: int | None = None,
    split: str = "test",
    cap_heldout: bool = False,
    base_url: str | None = None,
    checksums: Mapping[str, str | None] | None = None,
    progress: bool = True,
) -> Dataset:
    """Downsampled ImageNet 32x32 (Chrabaszcz, Loshchilov & Hutter 2017), npz release.

    Reads ``train_data_batch_1.npz`` ... ``_10.npz`` and ``val_data.npz`` (keys ``data``:
    ``(N, 3072)`` uint8, R, G, B planes; ``labels``: 1..1000), either extracted in the cache
    folder (directly or under ``Imagenet32_train_npz/`` / ``Imagenet32_val_npz/``) or inside
    ``Imagenet32_train_npz.zip`` / ``Imagenet32_val_npz.zip``. Images ``(N, 32, 32, 3)``
    float32 in ``[0, 1]``; ``labels_*`` are 0..999 (the release's labels minus 1); 1,000
    outputs.

    This is a stand-in: the authors' ``train_imagenet.py`` trains on full-resolution
    ImageNet (``ImageFolder('../train/')``, random 224 crops and flips, mean/std
    normalisation) and reports accuracy on the official validation folder, so the default
    here is ``split="test"`` (``x_test`` = ``val_data.npz``, 50,000 images) with no
    held-out part. No checksum with a citable source is known for these files: they load
    with an :class:`~alignlib.data.UnverifiedFileWarning`.

    Memory: the full training set is 1.28 M images, about 15.7 GB as float32; ``n_train``
    reads only the batches it needs.

    Args:
        holdout: held-out examples from the start of the training order; default 0 with
            ``split="test"`` and 5,000 with ``split="heldout"``.
        Others as in :func:`load_kmnist`.
    """
    split = check_split(split)
    if holdout is None:
        holdout = AUTHORS_HOLDOUT if split == "heldout" else 0
    holdout = integer("holdout", holdout, low=1 if split == "heldout" else 0)
    if n_train is not None:
        n_train = integer("n_train", n_train, low=1)
    info = DATASETS["imagenet32"]
    folder = cache_folder(info.name, cache_dir)
    source = _ImagenetSource(folder, info, download=download, base_url=base_url, checksums=checksums,
                             cache_dir=cache_dir, progress=progress)
    source.check_available(IMAGENET_TRAIN_NPZ, IMAGENET_TRAIN_ZIP)
    if split == "test":
        source.check_available((IMAGENET_VAL_NPZ,), IMAGENET_VAL_ZIP)

    need = None if n_train is None else holdout + n_train
    xs, ys, have = [], [], 0
    for npz in IMAGENET_TRAIN_NPZ:
        if need is not None and have >= need:
            break
        x, y = source.read(npz, IMAGENET_TRAIN_ZIP)
        if need is not None:
            x, y = x[: need - have], y[: need - have]
        xs.append(x)
        ys.append(y)
        have += x.shape[0]
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    if need is not None and have < need:
        raise ValueError(f"`n_train`={n_train} exceeds the {have - holdout} training images left after "
                         f"holding out {holdout}.")

    def test() -> tuple[np.ndarray, np.ndarray]:
        return source.read(IMAGENET_VAL_NPZ, IMAGENET_VAL_ZIP)

    return assemble("imagenet32", 1000, x_all, y_all, holdout=holdout, n_train=n_train, split=split,
                    cap_heldout=cap_heldout, test=test)
