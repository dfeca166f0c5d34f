"""``alignbook data list|download|verify``: run in this process against an empty data
cache in a temporary folder and a local HTTP server on 127.0.0.1 serving small files in
the real formats (nothing leaves the machine)."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import re

import numpy as np
import pytest
from fakedata import fake_imagenet32, fake_kmnist, idx_gz, sha256
from helpers import REPO, run_cli, serve_http

from alignlib import data as ds

KMNIST_FILES = [f.filename for f in ds.DATASETS["kmnist"].files]


@pytest.fixture
def data_cache(tmp_path, monkeypatch):
    """An empty data cache ($ALIGNBOOK_DATA) in a temporary folder."""
    root = tmp_path / "cache"
    monkeypatch.setenv("ALIGNBOOK_DATA", str(root))
    return root


@pytest.fixture
def kmnist_mirror(tmp_path, monkeypatch):
    """The four KMNIST files (small, random) served over HTTP, and the registry's
    checksums and sizes replaced by theirs: ``(base URL, source folder)``."""
    src = tmp_path / "mirror"
    fake_kmnist(src, 12)
    rng = np.random.default_rng(3)
    idx_gz(src / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (5, 28, 28)), 2051)
    idx_gz(src / "t10k-labels-idx1-ubyte.gz", np.arange(5) % 10, 2049)
    info = ds.DATASETS["kmnist"]
    files = tuple(dataclasses.replace(f, sha256=sha256(src / f.filename).split(":")[1],
                                      size=(src / f.filename).stat().st_size) for f in info.files)
    monkeypatch.setitem(ds.DATASETS, "kmnist", dataclasses.replace(info, files=files))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    with serve_http(functools.partial(Quiet, directory=str(src))) as url:
        yield url, src


def data(capfd, *args: str) -> tuple[int, str, str]:
    return run_cli(capfd, "--root", str(REPO), "data", *args)


def block(out: str, name: str) -> str:
    """The lines ``alignbook data list`` prints for data set ``name``."""
    match = re.search(rf"^{name} .*?(?=^\S|\Z)", out, re.MULTILINE | re.DOTALL)
    assert match, f"no entry for {name}:\n{out}"
    return match.group(0)


def test_list_names_every_data_set_its_profiles_files_and_folder(data_cache, capfd):
    rc, out, err = data(capfd, "list")
    assert rc == 0, err
    assert out.splitlines()[0].startswith(f"Data cache  {data_cache}  ")
    for name in ds.DATASET_NAMES:
        block(out, name)
    assert re.search(r"profiles +tiny, cpu$", block(out, "digits"), re.MULTILINE)
    assert "none (offline)" in block(out, "add")
    kmnist = block(out, "kmnist")
    assert re.search(r"profiles +gpu$", kmnist, re.MULTILINE)
    assert f"folder    {data_cache / 'kmnist'}" in kmnist
    for filename in KMNIST_FILES:
        assert re.search(rf"{filename} +\S+ [KM]iB  missing", kmnist), filename
    assert "17.3 MiB" in kmnist and "get it    alignbook data download kmnist" in kmnist
    assert "162.2 MiB" in block(out, "cifar10")
    assert "by hand" in block(out, "imagenet32")
    assert not data_cache.exists()  # listing creates nothing


def test_list_reports_present_verified_and_bad_files(data_cache, kmnist_mirror, capfd):
    _, src = kmnist_mirror
    folder = data_cache / "kmnist"
    folder.mkdir(parents=True)
    (folder / KMNIST_FILES[0]).write_bytes((src / KMNIST_FILES[0]).read_bytes())
    (folder / KMNIST_FILES[1]).write_bytes(b"not the published file")
    rc, out, _ = data(capfd, "list", "kmnist")
    assert rc == 0 and "cifar10" not in out
    kmnist = block(out, "kmnist")
    assert re.search(rf"{KMNIST_FILES[0]} .* verified \(sha256\)", kmnist)
    assert re.search(rf"{KMNIST_FILES[1]} .* bad \(sha256 ", kmnist)
    assert re.search(rf"{KMNIST_FILES[1]} .* unchecked", data(capfd, "list", "kmnist", "--no-verify")[1])


def test_download_from_a_mirror_fetches_verifies_and_saves_every_file(tmp_path, kmnist_mirror, capfd):
    url, src = kmnist_mirror
    dest = tmp_path / "kmnist here"
    rc, out, err = data(capfd, "download", "kmnist", "--cache-dir", str(dest), "--base-url", url,
                        "--no-progress")
    assert rc == 0, err
    assert sorted(p.name for p in dest.iterdir()) == sorted(KMNIST_FILES)  # no .part left over
    for filename in KMNIST_FILES:
        assert (dest / filename).read_bytes() == (src / filename).read_bytes()
        assert f"  {filename}: downloaded, sha256 verified" in out
    rc, out, err = data(capfd, "verify", "kmnist", "--cache-dir", str(dest))
    assert rc == 0, err
    assert out.count("verified") == 4
    # files already there are checked, not fetched again (the server is not asked)
    rc, out, err = data(capfd, "download", "kmnist", "--cache-dir", str(dest),
                        "--base-url", "http://127.0.0.1:9/")
    assert rc == 0, err
    assert out.count("already there, sha256 verified") == 4


def test_download_into_the_data_cache_with_a_progress_bar(data_cache, kmnist_mirror, capfd):
    url, _ = kmnist_mirror
    rc, _, err = data(capfd, "download", "kmnist", "--base-url", url)
    assert rc == 0, err
    assert sorted(p.name for p in (data_cache / "kmnist").iterdir()) == sorted(KMNIST_FILES)


def test_a_download_with_the_wrong_checksum_keeps_nothing(tmp_path, kmnist_mirror, capfd, monkeypatch):
    url, _ = kmnist_mirror
    info = ds.DATASETS["kmnist"]
    wrong = (dataclasses.replace(info.files[0], sha256="0" * 64), *info.files[1:])
    monkeypatch.setitem(ds.DATASETS, "kmnist", dataclasses.replace(info, files=wrong))
    dest = tmp_path / "k"
    rc, _, err = data(capfd, "download", "kmnist", "--cache-dir", str(dest), "--base-url", url,
                      "--no-progress")
    assert rc == 1
    assert "wrong sha256 checksum" in err and KMNIST_FILES[0] in err
    assert not (dest / KMNIST_FILES[0]).exists()


def test_verify_names_a_corrupt_or_missing_file_and_changes_nothing(tmp_path, kmnist_mirror, capfd):
    url, src = kmnist_mirror
    dest = tmp_path / "k"
    assert data(capfd, "download", "kmnist", "--cache-dir", str(dest), "--base-url", url,
                "--no-progress")[0] == 0
    bad = dest / KMNIST_FILES[1]
    corrupt = bytearray(bad.read_bytes())
    corrupt[-1] ^= 0xFF
    bad.write_bytes(bytes(corrupt))
    rc, out, err = data(capfd, "verify", "kmnist", "--cache-dir", str(dest))
    assert rc == 1
    assert f"bad: {bad}" in err and "1 file(s) missing or corrupt" in err
    assert f"alignbook data download kmnist --cache-dir {dest}" in err
    assert KMNIST_FILES[0] not in err
    assert bad.read_bytes() == bytes(corrupt)  # verify moves nothing
    (dest / KMNIST_FILES[0]).unlink()
    rc, _, err = data(capfd, "verify", "kmnist", "--cache-dir", str(dest))
    assert rc == 1 and f"missing: {dest / KMNIST_FILES[0]}" in err and f"bad: {bad}" in err
    # download repairs both: the corrupt copy is moved aside and fetched again
    rc, out, err = data(capfd, "download", "kmnist", "--cache-dir", str(dest), "--base-url", url,
                        "--no-progress")
    assert rc == 0, err
    assert f"{KMNIST_FILES[1]}: the copy there was corrupt, moved aside" in out
    assert bad.read_bytes() == (src / KMNIST_FILES[1]).read_bytes()
    assert len(list(dest.glob(f"{KMNIST_FILES[1]}.corrupt-*"))) == 1
    assert data(capfd, "verify", "kmnist", "--cache-dir", str(dest))[0] == 0


def test_verify_of_every_data_set_fails_on_an_empty_cache(data_cache, capfd):
    rc, out, err = data(capfd, "verify")
    assert rc == 1
    for name in ds.DATASETS:
        assert f"{name}: {data_cache / name}" in out
    assert f"missing: {data_cache / 'cifar10' / 'cifar-10-binary.tar.gz'}" in err
    assert "(fix: alignbook data download cifar10)" in err


@pytest.mark.parametrize("args", [["download", "mnist"], ["verify", "mnist"], ["list", "mnist"]])
def test_an_unknown_name_lists_the_valid_ones(args, capfd):
    rc, _, err = data(capfd, *args)
    assert rc == 2
    assert "unknown data set 'mnist'" in err
    assert f"valid names: {', '.join(ds.DATASET_NAMES)}" in err


def test_cache_dir_names_one_data_set(capfd, tmp_path):
    rc, _, err = data(capfd, "list", "--cache-dir", str(tmp_path))
    assert rc == 2 and "--cache-dir" in err


def test_offline_sets_need_no_download(data_cache, capfd):
    rc, out, _ = data(capfd, "download", "digits")
    assert rc == 0 and "nothing to download" in out
    assert not data_cache.exists()


def test_imagenet32_download_says_how_to_place_the_files_by_hand(data_cache, capfd):
    rc, out, err = data(capfd, "download", "imagenet32")
    assert rc == 1
    assert "no public download URL" in out and "registered users" in out
    assert f"put them in {data_cache / 'imagenet32'}/" in out
    assert "Imagenet32_train_npz.zip and Imagenet32_val_npz.zip" in out
    assert "alignbook data verify imagenet32" in out
    assert "cannot be downloaded" in err
    assert not data_cache.exists()
    fake_imagenet32(data_cache / "imagenet32", per_batch=2, n_val=2)  # placed by hand, unzipped
    rc, out, _ = data(capfd, "download", "imagenet32")
    assert rc == 0 and "every file is in" in out
    rc, out, _ = data(capfd, "verify", "imagenet32")
    assert rc == 0 and out.count("unverifiable") == 11


def test_doctor_and_the_library_point_at_the_command(data_cache, capfd):
    with pytest.raises(ds.DatasetNotFoundError) as err:
        ds.load_kmnist()
    assert "`alignbook data download kmnist`" in str(err.value)
    with pytest.raises(ds.DatasetNotFoundError) as err:
        ds.load_cifar10(cache_dir=data_cache / "elsewhere")
    assert f"`alignbook data download cifar10 --cache-dir {data_cache / 'elsewhere'}`" in str(err.value)
