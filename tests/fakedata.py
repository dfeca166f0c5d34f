"""Small data files in the published formats of KMNIST, CIFAR-10 and ImageNet32, with
random pixels, for testing the real-data code paths offline (nothing is downloaded).

Each writer returns the checksums of what it wrote (``{file name: "sha256:..."}``), in
the form the loaders of :mod:`alignlib.data` accept as ``checksums``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def idx_gz(path: Path, array: np.ndarray, magic: int) -> None:
    """``array`` as a gzipped IDX file (big-endian magic number and dimensions, uint8)."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def fake_kmnist(folder: Path, n: int) -> dict:
    """The two KMNIST training files in their IDX format: ``n`` random 28x28 images,
    labels cycling through 0..9."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    idx_gz(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), 2051)
    idx_gz(folder / "train-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)
    return {p.name: sha256(p) for p in folder.iterdir()}


def fake_cifar10(folder: Path, per_batch: int, *, random_labels: bool = False) -> dict:
    """``cifar-10-binary.tar.gz`` with ``per_batch`` random records in each of the five
    training batches and the test batch; labels cycle through 0..9, or are drawn at
    random with ``random_labels=True``."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar-10-binary.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
            labels = (rng.integers(0, 10, per_batch) if random_labels
                      else np.arange(per_batch) % 10).astype(np.uint8)
            pixels = rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8)
            payload = np.concatenate([labels[:, None], pixels], axis=1).tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return {path.name: sha256(path)}


def fake_imagenet32(folder: Path, per_batch: int, n_val: int) -> dict:
    """The ten ImageNet32 training batches and the validation file (``.npz``, flattened
    3072-byte images, labels 1..1000)."""
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"train_data_batch_{i}.npz" for i in range(1, 11)] + ["val_data.npz"]
    for name in names:
        n = n_val if name == "val_data.npz" else per_batch
        np.savez(folder / name, data=rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                 labels=rng.integers(1, 1001, n))
    return {name: sha256(folder / name) for name in names}
