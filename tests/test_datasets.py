"""Tests for alignlib.data's file-based loaders on small files written here in the real formats.

No dataset can be downloaded on the machines this project is built on; the download path
is exercised against a local HTTP server on 127.0.0.1 only.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import serve_http

from alignlib import data as ds
from alignlib.data import Dataset

# ---------------------------------------------------------------------------------------
# Writers for the real formats
# ---------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """IDX: magic (0, 0, type 0x08, ndim) then big-endian uint32 dims, then uint8 data."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(payload)
    return path


def kmnist_arrays(n: int, seed: int):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


N_KMNIST_TRAIN, N_KMNIST_TEST = 30, 12


@pytest.fixture(scope="module")
def kmnist_files(tmp_path_factory):
    """The four KMNIST files with their published names, plus the arrays written."""
    folder = tmp_path_factory.mktemp("kmnist_src")
    xtr, ytr = kmnist_arrays(N_KMNIST_TRAIN, 0)
    xte, yte = kmnist_arrays(N_KMNIST_TEST, 1)
    write_gz(folder / "train-images-idx3-ubyte.gz", idx_bytes(xtr, 2051))
    write_gz(folder / "train-labels-idx1-ubyte.gz", idx_bytes(ytr, 2049))
    write_gz(folder / "t10k-images-idx3-ubyte.gz", idx_bytes(xte, 2051))
    write_gz(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(yte, 2049))
    sums = {p.name: "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    return dict(folder=folder, xtr=xtr, ytr=ytr, xte=xte, yte=yte, sums=sums)


def copy_files(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


N_CIFAR_PER_BATCH, N_CIFAR_TEST = 4, 3


def cifar_record(label: int, marker: int) -> bytes:
    """R plane all 10, G all 20, B all 30, except R[1, 2] = marker (row 1, column 2)."""
    planes = np.empty((3, 32, 32), dtype=np.uint8)
    planes[0], planes[1], planes[2] = 10, 20, 30
    planes[0, 1, 2] = marker
    return bytes([label]) + planes.tobytes()


@pytest.fixture(scope="module")
def cifar_tarball(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar_src")
    path = folder / "cifar-10-binary.tar.gz"
    labels = []
    with tarfile.open(path, "w:gz") as tar:
        k = 0
        for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
            n = N_CIFAR_TEST if name == "test_batch.bin" else N_CIFAR_PER_BATCH
            payload = b""
            for _ in range(n):
                payload += cifar_record(k % 10, 100 + k)
                labels.append(k % 10)
                k += 1
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    sha = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(path=path, labels=np.array(labels), sha=sha)


def imagenet_npz(path: Path, n: int, start: int) -> None:
    data = np.zeros((n, 3072), dtype=np.uint8)
    data[:, :1024] = 50  # R plane
    data[:, 1024:2048] = 60  # G plane
    data[:, 2048:] = 70  # B plane
    data[:, 32 * 3 + 4] = (start + np.arange(n)) % 256  # R at row 3, column 4: a running index
    labels = ((start + np.arange(n)) % 1000) + 1  # the release numbers classes 1..1000
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, data=data, labels=labels, mean=np.zeros(3072))


N_IMNET_PER_BATCH, N_IMNET_VAL = 3, 4


@pytest.fixture(scope="module")
def imagenet_src(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imnet_src")
    for i in range(1, 11):
        imagenet_npz(folder / f"train_data_batch_{i}.npz", N_IMNET_PER_BATCH, (i - 1) * N_IMNET_PER_BATCH)
    imagenet_npz(folder / "val_data.npz", N_IMNET_VAL, 500)
    return folder


# ---------------------------------------------------------------------------------------
# KMNIST
# ---------------------------------------------------------------------------------------


def load_local_kmnist(kmnist_files, folder, **kw) -> Dataset:
    return ds.load_kmnist(cache_dir=folder, checksums=kmnist_files["sums"], **kw)


def test_idx_reader_round_trip_and_header_checks(tmp_path, kmnist_files):
    x = ds.read_idx(kmnist_files["folder"] / "train-images-idx3-ubyte.gz", expected_magic=2051)
    np.testing.assert_array_equal(x, kmnist_files["xtr"])
    with pytest.raises(ValueError, match="magic number 2051, expected 2049"):
        ds.read_idx(kmnist_files["folder"] / "train-images-idx3-ubyte.gz", expected_magic=2049)
    truncated = write_gz(tmp_path / "t.gz", idx_bytes(kmnist_files["xtr"], 2051)[:-5])
    with pytest.raises(ValueError, match="truncated"):
        ds.read_idx(truncated)
    with pytest.raises(ValueError, match="not an IDX file"):
        ds.read_idx(write_gz(tmp_path / "junk.gz", b"<html>login</html>"))


def test_kmnist_pixels_labels_and_authors_split(kmnist_files):
    xtr, ytr = kmnist_files["xtr"], kmnist_files["ytr"]
    d = load_local_kmnist(kmnist_files, kmnist_files["folder"], holdout=5)
    assert d.name == "kmnist" and d.n_outputs == 10
    assert d.x_train.shape == (N_KMNIST_TRAIN - 5, 28, 28, 1) and d.x_test.shape == (5, 28, 28, 1)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.float32
    assert d.labels_train.dtype == np.int64
    # A known pixel: training example 0 is file example 5 (the first 5 are held out).
    assert d.x_train[0, 3, 7, 0] == np.float32(xtr[5, 3, 7]) / np.float32(255)
    np.testing.assert_array_equal(d.x_test[..., 0] * 255, xtr[:5].astype(np.float32))
    np.testing.assert_array_equal(np.round(d.x_train[..., 0] * 255), xtr[5:])
    np.testing.assert_array_equal(d.labels_test, ytr[:5])
    np.testing.assert_array_equal(d.labels_train, ytr[5:])
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    np.testing.assert_allclose(d.y_train[np.arange(d.n_train), d.labels_train], 0.9, atol=1e-7)
    np.testing.assert_allclose(d.y_train.sum(axis=1), 0.0, atol=1e-6)  # 0.9 + 9 * (-0.1)


def test_kmnist_n_train_cap_is_nested_and_leaves_holdout_alone(kmnist_files):
    folder = kmnist_files["folder"]
    small = load_local_kmnist(kmnist_files, folder, holdout=5, n_train=7)
    large = load_local_kmnist(kmnist_files, folder, holdout=5, n_train=20)
    assert small.n_train == 7 and large.n_train == 20 and small.n_test == 5
    np.testing.assert_array_equal(small.x_train, large.x_train[:7])
    np.testing.assert_array_equal(small.x_test, large.x_test)
    capped = load_local_kmnist(kmnist_files, folder, holdout=5, n_train=3, cap_heldout=True)
    assert capped.n_test == 3
    np.testing.assert_array_equal(capped.labels_test, kmnist_files["ytr"][:3])
    with pytest.raises(ValueError, match="n_train"):
        load_local_kmnist(kmnist_files, folder, holdout=5, n_train=26)
    with pytest.raises(ValueError, match="holdout"):
        load_local_kmnist(kmnist_files, folder, holdout=0)
    with pytest.raises(ValueError, match="split"):
        load_local_kmnist(kmnist_files, folder, split="val")


def test_kmnist_official_test_split(kmnist_files):
    d = load_local_kmnist(kmnist_files, kmnist_files["folder"], holdout=5, split="test")
    assert d.n_train == N_KMNIST_TRAIN - 5 and d.n_test == N_KMNIST_TEST
    np.testing.assert_array_equal(np.round(d.x_test[..., 0] * 255), kmnist_files["xte"])
    np.testing.assert_array_equal(d.labels_test, kmnist_files["yte"])
    full = load_local_kmnist(kmnist_files, kmnist_files["folder"], holdout=0, split="test")
    assert full.n_train == N_KMNIST_TRAIN


# ---------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------


def test_cifar_channel_order_pixels_and_split(tmp_path, cifar_tarball):
    folder = copy_files(cifar_tarball["path"].parent, tmp_path / "c")
    sums = {"cifar-10-binary.tar.gz": cifar_tarball["sha"]}
    n_train_file = 5 * N_CIFAR_PER_BATCH
    d = ds.load_cifar10(cache_dir=folder, checksums=sums, holdout=6)
    assert d.name == "cifar10" and d.x_train.shape == (n_train_file - 6, 32, 32, 3)
    assert d.x_test.shape == (6, 32, 32, 3)
    # Channel order R, G, B, channels last; the marker sits at row 1, column 2 of red.
    first = d.x_train[0]  # file example 6: batch 2, record 2
    assert first[0, 0].tolist() == pytest.approx([10 / 255, 20 / 255, 30 / 255])
    assert first[1, 2, 0] == np.float32(106) / np.float32(255)
    assert first[2, 1, 0] == np.float32(10) / np.float32(255)  # not transposed
    np.testing.assert_array_equal(d.labels_test, cifar_tarball["labels"][:6])
    np.testing.assert_array_equal(d.labels_train, cifar_tarball["labels"][6:n_train_file])
    np.testing.assert_array_equal(np.round(d.x_test[:, 1, 2, 0] * 255), 100 + np.arange(6))
    assert d.x_train.flags["C_CONTIGUOUS"]

    t = ds.load_cifar10(cache_dir=folder, checksums=sums, holdout=6, n_train=5, split="test")
    assert t.n_train == 5 and t.n_test == N_CIFAR_TEST
    np.testing.assert_array_equal(np.round(t.x_test[:, 1, 2, 0] * 255), 100 + n_train_file + np.arange(3))
    c = ds.load_cifar10(cache_dir=folder, checksums=sums, holdout=6, n_train=2, cap_heldout=True)
    assert c.n_train == 2 and c.n_test == 2


# ---------------------------------------------------------------------------------------
# ImageNet 32x32
# ---------------------------------------------------------------------------------------


def test_imagenet32_from_extracted_npz(tmp_path, imagenet_src):
    folder = copy_files(imagenet_src, tmp_path / "flat")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ds.UnverifiedFileWarning)
        d = ds.load_imagenet32(cache_dir=folder)
        h = ds.load_imagenet32(cache_dir=folder, split="heldout", holdout=4, n_train=5)
    assert d.name == "imagenet32" and d.n_outputs == 1000
    assert d.n_train == 10 * N_IMNET_PER_BATCH and d.n_test == N_IMNET_VAL
    assert d.x_train.shape[1:] == (32, 32, 3) and d.y_train.shape == (d.n_train, 1000)
    np.testing.assert_array_equal(d.labels_train, np.arange(d.n_train))  # labels 1.. minus 1
    np.testing.assert_array_equal(d.labels_test, 500 + np.arange(N_IMNET_VAL))
    assert d.x_train[7, 0, 0].tolist() == pytest.approx([50 / 255, 60 / 255, 70 / 255])
    assert d.x_train[7, 3, 4, 0] == np.float32(7) / np.float32(255)
    assert h.n_test == 4 and h.n_train == 5
    np.testing.assert_array_equal(h.labels_test, np.arange(4))
    np.testing.assert_array_equal(h.labels_train, 4 + np.arange(5))


def test_imagenet32_from_zips_and_subfolders(tmp_path, imagenet_src):
    zips = tmp_path / "zips"
    zips.mkdir()
    for zip_name, members in (
        ("Imagenet32_train_npz.zip", [f"train_data_batch_{i}.npz" for i in range(1, 11)]),
        ("Imagenet32_val_npz.zip", ["val_data.npz"]),
    ):
        with zipfile.ZipFile(zips / zip_name, "w") as zf:
            for m in members:
                zf.write(imagenet_src / m, f"{zip_name[:-4]}/{m}")
    sub = tmp_path / "sub"
    copy_files(imagenet_src, sub / "Imagenet32_train_npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ds.UnverifiedFileWarning)
        a = ds.load_imagenet32(cache_dir=zips, n_train=4)
        b = ds.load_imagenet32(cache_dir=sub, split="heldout", holdout=2)
    assert a.n_train == 4 and a.n_test == N_IMNET_VAL
    np.testing.assert_array_equal(a.labels_train, np.arange(4))
    assert b.n_test == 2 and b.n_train == 10 * N_IMNET_PER_BATCH - 2


def test_imagenet32_missing_files_message(tmp_path):
    with pytest.raises(ds.DatasetNotFoundError) as err:
        ds.load_imagenet32(cache_dir=tmp_path / "none")
    msg = str(err.value)
    assert str(tmp_path / "none" / "Imagenet32_train_npz.zip") in msg
    assert "https://image-net.org/data/downsample/Imagenet32_train_npz.zip" in msg
    assert "train_data_batch_1.npz" in msg and "download=True" in msg


def test_imagenet32_zip_that_is_not_a_zip_is_moved_aside(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "Imagenet32_train_npz.zip").write_bytes(b"<html>Please log in</html>")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ds.UnverifiedFileWarning)
        with pytest.raises(ValueError, match="not a zip archive"):
            ds.load_imagenet32(cache_dir=folder, split="heldout", holdout=1)
    assert not (folder / "Imagenet32_train_npz.zip").exists()
    assert len(list(folder.glob("Imagenet32_train_npz.zip.corrupt-*"))) == 1


# ---------------------------------------------------------------------------------------
# Cache folder, missing files, checksums
# ---------------------------------------------------------------------------------------


def test_cache_folder_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("ALIGNBOOK_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ds.cache_folder("kmnist") == tmp_path / "xdg" / "alignbook" / "datasets" / "kmnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if os.name == "posix" and os.uname().sysname == "Linux":
        expected = tmp_path / "home" / ".cache" / "alignbook" / "datasets" / "cifar10"
        assert ds.cache_folder("cifar10") == expected
    monkeypatch.setenv("ALIGNBOOK_DATA", str(tmp_path / "env"))
    assert ds.cache_folder("kmnist") == tmp_path / "env" / "kmnist"
    assert ds.cache_folder("kmnist", cache_dir=tmp_path / "arg") == tmp_path / "arg"


def test_missing_file_message_names_file_path_url_and_fixes(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNBOOK_DATA", str(tmp_path / "root"))
    with pytest.raises(FileNotFoundError) as err:
        ds.load_kmnist()
    e = err.value
    assert isinstance(e, ds.DatasetNotFoundError)
    msg = str(e)
    path = tmp_path / "root" / "kmnist" / "train-images-idx3-ubyte.gz"
    assert str(path) in msg and str(path.with_name("train-labels-idx1-ubyte.gz")) in msg
    assert "https://codh.rois.ac.jp/kmnist/dataset/kmnist/train-images-idx3-ubyte.gz" in msg
    assert "download=True" in msg and "ALIGNBOOK_DATA" in msg and "cache_dir" in msg
    assert not (tmp_path / "root" / "kmnist").exists()  # offline loading creates nothing


def test_env_var_locates_files(tmp_path, monkeypatch, kmnist_files):
    copy_files(kmnist_files["folder"], tmp_path / "root" / "kmnist")
    monkeypatch.setenv("ALIGNBOOK_DATA", str(tmp_path / "root"))
    d = ds.load_dataset("kmnist", holdout=5, checksums=kmnist_files["sums"])
    assert d.n_train == N_KMNIST_TRAIN - 5


def test_wrong_checksum_moves_file_aside_and_names_both_digests(tmp_path, kmnist_files):
    folder = copy_files(kmnist_files["folder"], tmp_path / "k")
    original = (folder / "train-images-idx3-ubyte.gz").read_bytes()
    actual = hashlib.sha256(original).hexdigest()
    wrong = dict(kmnist_files["sums"], **{"train-images-idx3-ubyte.gz": "sha256:" + "0" * 64})
    with pytest.raises(ds.ChecksumMismatchError) as err:
        ds.load_kmnist(cache_dir=folder, holdout=5, checksums=wrong)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "0" * 64 in msg and actual in msg
    assert not (folder / "train-images-idx3-ubyte.gz").exists()
    aside = list(folder.glob("train-images-idx3-ubyte.gz.corrupt-*"))
    assert len(aside) == 1 and aside[0] == err.value.moved_to
    assert aside[0].read_bytes() == original  # moved, not deleted or altered
    # The moved-aside file is never picked up again: the next load reports the file missing.
    with pytest.raises(ds.DatasetNotFoundError):
        ds.load_kmnist(cache_dir=folder, holdout=5, checksums=kmnist_files["sums"])


def test_md5_checksums_are_supported(tmp_path, kmnist_files):
    folder = copy_files(kmnist_files["folder"], tmp_path / "k")
    sums = {p.name: "md5:" + hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert ds.load_kmnist(cache_dir=folder, holdout=5, checksums=sums).n_test == 5
    bare = {k: v.split(":")[1] for k, v in sums.items()}  # a 32-digit hex string means md5
    assert ds.load_kmnist(cache_dir=folder, holdout=5, checksums=bare).n_test == 5
    with pytest.raises(ds.ChecksumMismatchError, match="md5"):
        ds.load_kmnist(cache_dir=folder, holdout=5,
                       checksums=dict(sums, **{"train-labels-idx1-ubyte.gz": "md5:" + "f" * 32}))


def test_unverifiable_file_warns_once(tmp_path, kmnist_files):
    folder = copy_files(kmnist_files["folder"], tmp_path / "k")
    sums = dict(kmnist_files["sums"], **{"train-labels-idx1-ubyte.gz": None})
    with pytest.warns(ds.UnverifiedFileWarning, match="train-labels-idx1-ubyte.gz"):
        ds.load_kmnist(cache_dir=folder, holdout=5, checksums=sums)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ds.UnverifiedFileWarning)
        ds.load_kmnist(cache_dir=folder, holdout=5, checksums=sums)


def test_registry_records_published_checksums_with_sources():
    for name in ("kmnist", "cifar10"):
        for f in ds.DATASETS[name].files:
            assert f.checksum is not None and f.checksum[0] == "sha256" and len(f.sha256) == 64
            assert len(f.md5) == 32 and "tensorflow/datasets" in f.source and f.size > 0
            assert ds.DATASETS[name].url(f.filename).startswith("https://")
    assert [f.filename for f in ds.DATASETS["kmnist"].files] == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert ds.DATASETS["cifar10"].url("cifar-10-binary.tar.gz") == \
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    assert all(f.checksum is None for f in ds.DATASETS["imagenet32"].files)


def test_load_dataset_dispatch():
    d = ds.load_dataset("digits", holdout=97)
    assert d.name == "digits" and d.n_test == 97
    assert ds.load_dataset("add", n_sequences=10, length=6, n_train=8).n_test == 2
    with pytest.raises(ValueError) as err:
        ds.load_dataset("mnist")
    for name in ("digits", "kmnist", "cifar10", "imagenet32"):
        assert name in str(err.value)


# ---------------------------------------------------------------------------------------
# Downloads from a local server on 127.0.0.1
# ---------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (http.server's naming)
        mode, _, name = self.path.lstrip("/").partition("/")
        data = self.files.get(name)
        if data is None or mode not in ("ok", "truncated"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if mode == "ok":
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:  # promise more than is sent, then drop the connection
            self.send_header("Content-Length", str(len(data) + 1000))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(kmnist_files, cifar_tarball):
    _Handler.files = {p.name: p.read_bytes() for p in kmnist_files["folder"].iterdir()}
    _Handler.files[cifar_tarball["path"].name] = cifar_tarball["path"].read_bytes()
    with serve_http(_Handler) as url:
        yield url


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part") or p.name.startswith("."))


def test_download_verifies_and_saves(tmp_path, server, kmnist_files, cifar_tarball):
    folder = tmp_path / "dl"
    d = ds.load_kmnist(cache_dir=folder, download=True, base_url=server + "/ok/", holdout=5,
                       split="test", checksums=kmnist_files["sums"], progress=False)
    assert d.n_test == N_KMNIST_TEST
    assert sorted(p.name for p in folder.iterdir()) == sorted(kmnist_files["sums"])
    for p in folder.iterdir():
        assert p.read_bytes() == (kmnist_files["folder"] / p.name).read_bytes()
    # Present files are not fetched again (a dead base_url does not matter).
    again = ds.load_kmnist(cache_dir=folder, download=True, base_url="http://127.0.0.1:9/", holdout=5,
                           checksums=kmnist_files["sums"], progress=False)
    np.testing.assert_array_equal(again.x_train, d.x_train)
    c = ds.load_cifar10(cache_dir=tmp_path / "c", download=True, base_url=server + "/ok",
                        checksums={"cifar-10-binary.tar.gz": cifar_tarball["sha"]}, holdout=6, progress=True)
    assert c.n_test == 6 and leftovers(tmp_path / "c") == []


def test_download_with_wrong_checksum_keeps_nothing_under_final_name(tmp_path, server, kmnist_files):
    folder = tmp_path / "dl"
    wrong = dict(kmnist_files["sums"], **{"train-images-idx3-ubyte.gz": "sha256:" + "a" * 64})
    with pytest.raises(ds.ChecksumMismatchError) as err:
        ds.load_kmnist(cache_dir=folder, download=True, base_url=server + "/ok", holdout=5,
                       checksums=wrong, progress=False)
    assert "a" * 64 in str(err.value)
    assert not (folder / "train-images-idx3-ubyte.gz").exists()
    assert leftovers(folder) == []
    aside = list(folder.glob("train-images-idx3-ubyte.gz.corrupt-*"))  # kept for inspection
    assert len(aside) == 1
    assert aside[0].read_bytes() == (kmnist_files["folder"] / "train-images-idx3-ubyte.gz").read_bytes()


def test_interrupted_download_leaves_no_file(tmp_path, server, kmnist_files):
    folder = tmp_path / "dl"
    with pytest.raises(ds.DownloadError, match="ended after"):
        ds.fetch_file("kmnist", "train-images-idx3-ubyte.gz", cache_dir=folder, download=True,
                      base_url=server + "/truncated", checksums=kmnist_files["sums"], progress=False)
    assert not (folder / "train-images-idx3-ubyte.gz").exists()
    assert list(folder.iterdir()) == []
    # Without a checksum the length check alone catches the truncation.
    with pytest.raises(ds.DownloadError):
        ds.fetch_file("kmnist", "train-labels-idx1-ubyte.gz", cache_dir=folder, download=True,
                      base_url=server + "/truncated", checksums={"train-labels-idx1-ubyte.gz": None},
                      progress=False)
    assert list(folder.iterdir()) == []
    with pytest.raises(ds.DownloadError, match="404"):
        ds.fetch_file("kmnist", "train-images-idx3-ubyte.gz", cache_dir=folder, download=True,
                      base_url=server + "/missing", progress=False)
    assert list(folder.iterdir()) == []


def test_exception_mid_download_removes_temp_file(tmp_path, monkeypatch, kmnist_files):
    class DyingResponse:
        headers = {"Content-Length": "100000"}

        def __init__(self):
            self.calls = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            self.calls += 1
            if self.calls > 1:
                raise KeyboardInterrupt  # e.g. the user pressed Ctrl-C
            return b"x" * 100

    monkeypatch.setattr(ds.download.urllib.request, "urlopen", lambda *a, **k: DyingResponse())
    folder = tmp_path / "dl"
    with pytest.raises(KeyboardInterrupt):
        ds.fetch_file("kmnist", "train-images-idx3-ubyte.gz", cache_dir=folder, download=True,
                      checksums=kmnist_files["sums"], progress=False)
    assert list(folder.iterdir()) == []
