"""Reliability: concurrent and interrupted builds, parameter constraints, file permissions,
bad training data, damaged dataset files, tiny alignment updates.

Each test here failed before the fix it guards.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

import fakedata
from helpers import run_cli
from alignlib import data as ds

# ---------------------------------------------------------------------------------------
# Files keep the permissions the umask allows
# ---------------------------------------------------------------------------------------


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_results_provenance_and_timings_respect_the_umask(tmp_path, umask_022, monkeypatch):
    import pandas as pd

    from alignbook import results as R

    monkeypatch.setenv(R.RESULTS_ENV, str(tmp_path / "results"))
    store = R.ResultStore("c", "cpu", {"a": 1})
    table = store.save_table(pd.DataFrame({"x": [1, 2]}), "t")
    R._write_text_atomic(tmp_path / "timings.json", "{}\n")
    for path in (table, store.path / R.PROVENANCE, tmp_path / "timings.json"):
        assert mode(path) == 0o644, (path, oct(mode(path)))
    os.umask(0o077)
    private = store.save_json({"b": 2}, "private")
    assert mode(private) == 0o600


def serve_bytes(monkeypatch, payload: bytes) -> None:
    """urlopen answers every request with ``payload``."""
    import io

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

    monkeypatch.setattr(ds.download.urllib.request, "urlopen", lambda *a, **k: Response(payload))


def test_downloaded_dataset_respects_the_umask(tmp_path, umask_022, monkeypatch):
    sums = fakedata.fake_kmnist(tmp_path / "src", 12)
    name = "train-labels-idx1-ubyte.gz"
    serve_bytes(monkeypatch, (tmp_path / "src" / name).read_bytes())
    path = ds.fetch_file("kmnist", name, cache_dir=tmp_path / "dl", download=True, checksums=sums,
                         progress=False)
    assert mode(path) == 0o644


# ---------------------------------------------------------------------------------------
# Damaged dataset files
# ---------------------------------------------------------------------------------------


def truncate(path: Path, keep: float = 0.5) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return data[: int(len(data) * keep)]


def test_truncated_imagenet_npz_names_the_file_and_is_moved_aside(tmp_path):
    folder = tmp_path / "imnet"
    fakedata.fake_imagenet32(folder, per_batch=3, n_val=2)
    bad = folder / "train_data_batch_1.npz"
    kept = truncate(bad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ds.UnverifiedFileWarning)
        with pytest.raises(ds.CorruptFileError) as err:
            ds.load_imagenet32(cache_dir=folder)
    msg = str(err.value)
    assert str(bad) in msg and "cannot be read" in msg
    assert not bad.exists() and err.value.moved_to.read_bytes() == kept
    assert err.value.moved_to.name.startswith("train_data_batch_1.npz.corrupt-")


def test_damaged_member_of_imagenet_zip_is_reported_with_the_zip(tmp_path):
    import zipfile

    src = tmp_path / "src"
    fakedata.fake_imagenet32(src, per_batch=3, n_val=2)
    folder = tmp_path / "zips"
    folder.mkdir()
    zpath = folder / "Imagenet32_train_npz.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(1, 11):
            zf.write(src / f"train_data_batch_{i}.npz", f"Imagenet32_train_npz/train_data_batch_{i}.npz")
    raw = bytearray(zpath.read_bytes())
    raw[200] ^= 0xFF  # inside the first member's compressed data: a CRC or inflate error
    zpath.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ds.UnverifiedFileWarning)
        with pytest.raises(ds.CorruptFileError) as err:
            ds.load_imagenet32(cache_dir=folder, split="heldout", holdout=1)
    assert str(zpath) in str(err.value) and "train_data_batch_1.npz" in str(err.value)
    assert not zpath.exists() and err.value.moved_to.is_file()


def test_truncated_gz_without_checksum_names_the_file(tmp_path):
    folder = tmp_path / "k"
    fakedata.fake_kmnist(folder, 20)
    bad = folder / "train-images-idx3-ubyte.gz"
    truncate(bad)
    sums = {"train-images-idx3-ubyte.gz": None, "train-labels-idx1-ubyte.gz": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ds.UnverifiedFileWarning)
        with pytest.raises(ds.CorruptFileError) as err:
            ds.load_kmnist(cache_dir=folder, holdout=5, checksums=sums,
                           base_url="https://mirror.example/kmnist/")
    msg = str(err.value)
    assert str(bad) in msg and "EOFError" in msg
    assert "https://mirror.example/kmnist/train-images-idx3-ubyte.gz" in msg
    assert not bad.exists() and err.value.moved_to.is_file()


def test_truncated_cifar_tarball_is_moved_aside(tmp_path):
    folder = tmp_path / "c"
    fakedata.fake_cifar10(folder, per_batch=20)
    bad = folder / "cifar-10-binary.tar.gz"
    truncate(bad, 0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ds.UnverifiedFileWarning)
        with pytest.raises(ds.CorruptFileError, match="cifar-10-binary.tar.gz"):
            ds.load_cifar10(cache_dir=folder, holdout=5, checksums={bad.name: None})
    assert not bad.exists()


def test_checksum_mismatch_names_the_given_base_url(tmp_path):
    folder = tmp_path / "k"
    sums = fakedata.fake_kmnist(folder, 12)
    wrong = dict(sums, **{"train-labels-idx1-ubyte.gz": "sha256:" + "0" * 64})
    with pytest.raises(ds.ChecksumMismatchError) as err:
        ds.load_kmnist(cache_dir=folder, holdout=5, checksums=wrong, base_url="https://mirror.example/k")
    assert "https://mirror.example/k/train-labels-idx1-ubyte.gz" in str(err.value)
    assert "codh.rois.ac.jp" not in str(err.value)
    assert isinstance(err.value, ds.CorruptFileError)


def test_part_files_of_a_killed_download_are_cleaned_up(tmp_path, monkeypatch):
    import subprocess
    import sys

    sums = fakedata.fake_kmnist(tmp_path / "src", 12)
    name = "train-labels-idx1-ubyte.gz"
    folder = tmp_path / "dl"
    folder.mkdir()
    # a download killed midway: its .part file stays behind
    stale = folder / f".{name}.abc123.part"
    stale.write_bytes(b"half a file")
    # a download still running in another process holds a lock on its .part file
    running = folder / f".{name}.live99.part"
    running.write_bytes(b"in progress")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time\n"
         f"f = open({str(running)!r}, 'rb+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
         "print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        serve_bytes(monkeypatch, (tmp_path / "src" / name).read_bytes())
        ds.fetch_file("kmnist", name, cache_dir=folder, download=True, checksums=sums, progress=False)
        assert not stale.exists()
        assert running.exists()  # not ours to remove
        assert sorted(p.name for p in folder.iterdir()) == sorted([name, running.name])
    finally:
        holder.kill()
        holder.wait()
    # once its owner is gone, the next fetch of that file (already present) removes it
    ds.fetch_file("kmnist", name, cache_dir=folder, checksums=sums)
    assert [p.name for p in folder.iterdir()] == [name]


# ---------------------------------------------------------------------------------------
# The alignment score of tiny updates
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e-40, 1e30])
def test_alignment_score_of_tiny_or_huge_updates_is_the_scale_free_score(scale):
    import jax.numpy as jnp

    from alignlib.alignment import alignment_score

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    expected = alignment_score(a, b)
    assert 0 < expected < 1
    assert alignment_score(a * scale, b * scale) == pytest.approx(expected, rel=1e-5)
    if 1e-37 < scale < 1e37:  # representable in float32: JAX arrays too
        got = alignment_score(jnp.asarray(a * scale, jnp.float32), jnp.asarray(b * scale, jnp.float32))
        assert got == pytest.approx(expected, rel=1e-5)
    w = rng.normal(size=(3, 3, 2, 4))
    v = 0.5 * w + rng.normal(size=w.shape)
    conv = alignment_score(w, v, input_shape=(6, 6, 2))
    assert alignment_score(w * scale, v * scale, input_shape=(6, 6, 2)) == pytest.approx(conv, rel=1e-5)


def test_probe_alignment_score_of_tiny_updates_is_finite():
    import jax

    from alignlib.alignment import probe_alignment_score

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    key = jax.random.PRNGKey(0)
    expected = float(probe_alignment_score(a, b, key, n_batches=4))
    got = float(probe_alignment_score(a * 1e-30, b * 1e-30, key, n_batches=4))
    assert np.isfinite(got) and got == pytest.approx(expected, rel=1e-4)


def test_alignment_score_of_updates_flushed_to_zero_raises_the_zero_error():
    import jax.numpy as jnp

    from alignlib.alignment import alignment_score

    b = np.random.default_rng(0).normal(size=(5, 7))
    for zero in (np.zeros((5, 7)), jnp.full((5, 7), 1e-44, jnp.float32)):
        with pytest.raises(ValueError, match="identically zero"):
            alignment_score(zero, b)


# ---------------------------------------------------------------------------------------
# train() refuses bad data up front and takes NumPy scalars
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_digits():
    from alignlib.data import load_digits

    return load_digits(n_train=60, holdout=30)


def tiny_mlp(key):
    import alignlib as al

    return al.MLP((8, 8, 1), 8, 1, 10, key=key)


def replaced(data, **arrays):
    import dataclasses

    return dataclasses.replace(data, **arrays)


def with_value(array, index, value):
    out = np.array(array, copy=True)
    out[index] = value
    return out


@pytest.mark.parametrize("name, index, value, expected", [
    ("x_train", (3, 2, 2, 0), np.nan, r"data\.x_train contains 1 NaN value\(s\) \(the first in row 3 of 60\)"),
    ("y_train", (7, 1), np.inf, r"data\.y_train contains 1 infinite value\(s\) \(the first in row 7"),
    ("x_test", (0, 0, 0, 0), np.nan, r"data\.x_test contains 1 NaN"),
    ("y_test", (5, 0), -np.inf, r"data\.y_test contains 1 infinite"),
])
def test_train_refuses_non_finite_data(small_digits, name, index, value, expected):
    import alignlib as al

    bad = replaced(small_digits, **{name: with_value(getattr(small_digits, name), index, value)})
    with pytest.raises(ValueError, match=expected):
        al.train(tiny_mlp, "backprop", bad, epochs=1, batch_size=20, progress=False)


def test_train_refuses_row_count_mismatch(small_digits):
    import alignlib as al

    bad = replaced(small_digits, y_train=small_digits.y_train[:-1])
    with pytest.raises(ValueError, match=r"data\.x_train has 60 rows but data\.y_train has 59"):
        al.train(tiny_mlp, "backprop", bad, epochs=1, batch_size=20, progress=False)
    bad = replaced(small_digits, x_test=small_digits.x_test[:, :4])
    with pytest.raises(ValueError, match=r"data\.x_train has examples of shape \(8, 8, 1\) but data\.x_test"):
        al.train(tiny_mlp, "backprop", bad, epochs=1, batch_size=20, progress=False)


def test_train_and_models_take_numpy_scalars(small_digits):
    import alignlib as al

    def model(key):
        return al.MLP((np.int64(8), 8, 1), np.int64(16), np.int32(1), np.int64(10), key=key)

    kw = dict(epochs=np.int64(1), batch_size=np.int64(20), progress=False)
    res = al.train(model, "backprop", small_digits, learning_rates=np.float32(0.5), seeds=np.int64(2), **kw)
    assert res.runs.lr.tolist() == [0.5] and res.runs.seed.tolist() == [2]
    same = al.train(model, "backprop", small_digits, learning_rates=0.5, seeds=2, epochs=1, batch_size=20,
                    progress=False)
    a = res.history.query("metric == 'heldout_loss'").value.to_numpy()
    np.testing.assert_allclose(a, same.history.query("metric == 'heldout_loss'").value.to_numpy())
    res = al.train(model, "backprop", small_digits, learning_rates=np.array([0.5, 1.0]), seeds=[np.int64(0)], **kw)
    assert res.runs.lr.tolist() == [0.5, 1.0]
    conv = al.ConvNet((8, 8, 1), np.int64(4), np.int64(10), strides=(np.int64(1), np.int64(2)),
                      key=__import__("jax").random.PRNGKey(0))
    assert conv.convs[1].stride == 2 and type(conv.convs[1].stride) is int
    rnn = al.RNN(np.int64(1), np.int64(8), key=__import__("jax").random.PRNGKey(0))
    assert rnn.recurrent.weight.shape == (8, 8)
    for bad in (16.0, True, np.float64(16), 0):
        with pytest.raises(ValueError, match="width must be a positive integer"):
            al.MLP(4, bad, 1, 1, key=__import__("jax").random.PRNGKey(0))
    for bad in (np.nan, np.float32("inf"), -1.0, [0.5, 0.0], "fast", True):
        with pytest.raises(ValueError, match="learning_rates must be positive finite numbers"):
            al.train(model, "backprop", small_digits, learning_rates=bad, **kw)
    with pytest.raises(ValueError, match="epochs must be an integer"):
        al.train(model, "backprop", small_digits, learning_rates=0.5, epochs=1.5, progress=False)


# ---------------------------------------------------------------------------------------
# Packaging metadata
# ---------------------------------------------------------------------------------------


def test_license_is_an_spdx_expression_with_its_file():
    """setuptools stops accepting ``license = {text = ...}`` in February 2027; the SPDX
    string and ``license-files`` (PEP 639) need setuptools >= 77."""
    import re
    import tomllib

    from helpers import REPO

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = meta["project"]
    assert isinstance(project["license"], str) and project["license"] == "MIT"
    assert project["license-files"] and all((REPO / f).is_file() for f in project["license-files"])
    assert "MIT License" in (REPO / "LICENSE").read_text()
    (setuptools,) = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert int(re.search(r">=\s*(\d+)", setuptools).group(1)) >= 77


# ---------------------------------------------------------------------------------------
# Two builds of one profile take turns
# ---------------------------------------------------------------------------------------


@pytest.fixture
def book_env(tmp_path, monkeypatch):
    """Results and build folders of a test book, never the reader's."""
    from alignbook import results as R

    monkeypatch.setenv(R.RESULTS_ENV, str(tmp_path / "results"))
    monkeypatch.delenv(R.RECOMPUTE_ENV, raising=False)
    monkeypatch.delenv("ALIGNBOOK_BUILD", raising=False)
    return tmp_path


def test_builds_of_one_profile_take_turns(book_env, monkeypatch):
    """Two builds of one profile at once: the second waits for the first (saying once
    which process it waits for) instead of deleting the staging folder under it."""
    import threading
    import time

    import alignbook as B
    from alignbook import pipeline, site
    from test_book_pipeline import make_book

    root = make_book(book_env / "b")
    spans: list[tuple[str, float, float]] = []

    def fake_execute(job):
        start = time.monotonic()
        time.sleep(0.3)
        Path(job["output"]).parent.mkdir(parents=True, exist_ok=True)
        Path(job["output"]).write_text("{}")
        spans.append(("execute", start, time.monotonic()))
        return {"ok": True, "seconds": 0.3, "stores": []}

    def fake_render(book, profile, echo=print):
        start = time.monotonic()
        staging = book.build_dir / "staging" / profile
        staging.mkdir(parents=True, exist_ok=True)
        time.sleep(0.3)
        assert staging.is_dir()  # nobody removed it meanwhile
        spans.append(("site", start, time.monotonic()))
        return book.html_dir(profile)

    monkeypatch.setattr(pipeline, "_execute_job", fake_execute)
    monkeypatch.setattr(site, "render_site", fake_render)
    logs: list[list[str]] = [[], []]
    errors: list[BaseException] = []

    def one_build(i):
        try:
            B.build(B.Book(root), "tiny", echo=logs[i].append)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one_build, args=(i,)) for i in range(2)]
    threads[0].start()
    time.sleep(0.1)
    threads[1].start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    # one build's execute and site, then the other's: never interleaved
    assert [kind for kind, *_ in spans] == ["execute", "site", "execute", "site"]
    assert spans[1][2] <= spans[2][1]
    waiting = [line for log in logs for line in log if "waiting for another build" in line]
    assert len(waiting) == 1
    assert f"waiting for another build of profile 'tiny' (pid {os.getpid()})" in waiting[0]
    assert str(B.Book(root).lock_path("tiny")) in waiting[0]
    # a build of another profile does not wait
    logs[0].clear()
    with pipeline.profile_lock(B.Book(root), "tiny", echo=logs[0].append):
        B.build(B.Book(root), "cpu", echo=logs[0].append, site=False)
    assert not [line for line in logs[0] if "waiting" in line]


def test_lock_names_the_process_holding_it(book_env, capfd):
    """Another process holds the profile's lock: the build waits, naming that process."""
    import subprocess
    import sys
    import time

    import alignbook as B
    from test_book_pipeline import make_book

    root = make_book(book_env / "b")
    lock = B.Book(root).lock_path("tiny")
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); os.write(fd, f'{os.getpid()}\\n'.encode())\n"
         "print('locked', flush=True); time.sleep(1.5)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        lines: list[str] = []
        t0 = time.monotonic()
        from alignbook import pipeline

        with pipeline.profile_lock(B.Book(root), "tiny", echo=lines.append):
            waited = time.monotonic() - t0
            assert lock.read_text().strip() == str(os.getpid())
    finally:
        holder.kill()
        holder.wait()
    assert waited > 0.5
    assert lines == [f"  waiting for another build of profile 'tiny' (pid {holder.pid}) to finish; "
                     f"lock file: {lock}"]


@pytest.mark.ci
@pytest.mark.slow
def test_two_build_processes_of_one_profile_both_succeed(book_env):
    """The reported collision, with two real ``alignbook build`` processes and the site."""
    import subprocess
    import sys
    import time

    from test_book_pipeline import make_book

    root = make_book(book_env / "b")
    cmd = [sys.executable, "-m", "alignbook.cli", "--root", str(root), "build", "--profile", "tiny"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0, outs[0]
    assert second.returncode == 0, outs[1]
    assert f"waiting for another build of profile 'tiny' (pid {first.pid})" in outs[1][0]
    assert (root / "_build" / "tiny" / "html" / "book" / "mini.html").is_file()


# ---------------------------------------------------------------------------------------
# A stopped build stops its processes
# ---------------------------------------------------------------------------------------


SLEEPER = ('import os, pathlib, time\n'
           'pathlib.Path(os.environ["STAMPS"], "{name}").write_text(f"{{os.getpid()}} {{os.getppid()}}")\n'
           'time.sleep(60)\n'
           'pathlib.Path(os.environ["STAMPS"], "{name}.finished").write_text("")')


def start_sleeping_build(book_env, jobs: int = 2):
    """``alignbook build --jobs 2 --no-site --recompute`` of two chapters that sleep a
    minute, once both kernels are running: (process, stamps folder, kernel pids)."""
    import subprocess
    import sys
    import time

    from test_book_pipeline import make_book

    chapters = {name: [("code", SLEEPER.format(name=name))] for name in ("a", "b")}
    root = make_book(book_env / "b", chapters=chapters)
    stamps = book_env / "stamps"
    stamps.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "alignbook.cli", "--root", str(root), "build", "--profile", "tiny",
         "--jobs", str(jobs), "--no-site", "--recompute"],
        env={**os.environ, "STAMPS": str(stamps)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + 180
    while not all((stamps / n).is_file() and (stamps / n).read_text() for n in ("a", "b")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the kernels did not start"
        time.sleep(0.2)
    kernels = [int((stamps / n).read_text().split()[0]) for n in ("a", "b")]
    return proc, stamps, kernels


def wait_gone(pids, seconds: float) -> list[int]:
    import time

    from alignbook._procs import alive

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


@pytest.mark.ci
@pytest.mark.slow
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_stopping_a_parallel_build_stops_its_workers_and_kernels(book_env, signum):
    import signal

    from alignbook._procs import descendants

    proc, stamps, kernels = start_sleeping_build(book_env)
    tree = descendants(proc.pid)
    assert set(kernels) <= set(tree) and len(tree) >= 4  # two workers, two kernels
    try:
        proc.send_signal(getattr(signal, signum))
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + getattr(signal, signum), (out, err)
    assert f"interrupted by {signum}" in err
    assert wait_gone(tree, 5) == []
    assert not list(stamps.glob("*.finished"))


@pytest.mark.ci
@pytest.mark.slow
def test_stopping_a_single_run_stops_its_kernel(book_env):
    """``alignbook run`` executes in the main process: its kernel is stopped too, without
    the kernel's own tracebacks, and no half-written notebook is left."""
    import signal
    import subprocess
    import sys
    import time

    from alignbook._procs import descendants
    from test_book_pipeline import make_book

    root = make_book(book_env / "b", chapters={"a": [("code", SLEEPER.format(name="a"))]})
    stamps = book_env / "stamps"
    stamps.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "alignbook.cli", "--root", str(root), "run", "a", "--profile", "tiny"],
        env={**os.environ, "STAMPS": str(stamps)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not ((stamps / "a").is_file() and (stamps / "a").read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the kernel did not start"
        time.sleep(0.2)
    tree = descendants(proc.pid)
    assert int((stamps / "a").read_text().split()[0]) in tree
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.strip() == "alignbook: interrupted by SIGTERM"
    assert "stopped 1 process(es) of the build" in out
    assert wait_gone(tree, 5) == []
    assert list((root / "_build" / "runs" / "tiny").iterdir()) == []


@pytest.mark.ci
@pytest.mark.slow
def test_workers_of_a_killed_build_exit_with_their_kernels(book_env):
    """SIGKILL leaves the main process no chance to clean up: the workers notice that they
    were re-parented, stop their kernels and exit."""
    import signal

    from alignbook._procs import descendants

    proc, stamps, kernels = start_sleeping_build(book_env)
    tree = descendants(proc.pid)
    assert set(kernels) <= set(tree)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert wait_gone(tree, 10) == []
    assert not list(stamps.glob("*.finished"))


# ---------------------------------------------------------------------------------------
# Parameter constraints, checked before any kernel starts
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, raw, expected", [
    ("lr", "inf", "parameter 'lr' of chapter 'theory' is inf: parameter values must be finite"),
    ("lr", ".nan", "parameter 'lr' of chapter 'theory' is nan: parameter values must be finite"),
    ("lr", "-1", "parameter 'lr' of chapter 'theory' is -1.0, which breaks the constraint 'positive'"),
    ("widths", "[]", "parameter 'widths' of chapter 'theory' is [], which breaks the constraint 'non_empty'"),
    ("widths", "[0]", "parameter 'widths' of chapter 'theory' is [0], which breaks the constraint 'positive'"),
    ("widths", "[16, 16]", "is [16, 16], which breaks the constraint 'unique' (no item twice in a list): "
                           "16 appears twice"),
    ("n_examples", "0", "parameter 'n_examples' of chapter 'theory' is 0, which breaks the constraint "
                        "'positive'"),
    ("rules", "[nosuchrule]", "parameter 'rules' of chapter 'theory' is [nosuchrule], which breaks the "
                              "constraint 'rule'"),
])
def test_bad_values_of_the_real_chapters_stop_before_a_kernel(book_env, monkeypatch, capfd, no_execution,
                                                             name, raw, expected):
    from helpers import REPO

    monkeypatch.setenv("ALIGNBOOK_BUILD", str(book_env / "build"))
    rc, out, err = run_cli(capfd, "--root", str(REPO), "run", "theory", "--profile", "tiny", "-p", name, raw)
    assert rc == 2, (out, err)
    assert expected in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback
    assert not (book_env / "build" / "runs").exists()


def test_chapter_constraints_from_notebook_metadata(book_env, capfd, no_execution):
    import re

    import nbformat

    import alignbook as B
    from test_book_pipeline import make_book

    root = make_book(book_env / "b", profiles={"profiles": {
        "tiny": {"chapters": {"mini": {"n": 4}}}, "bad": {"chapters": {"mini": {"widths": [8, 8]}}},
        "nonfinite": {"chapters": {"mini": {"scale": float("inf")}}}}})
    path = root / "book" / "mini.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.metadata["alignbook"] = {"constraints": {
        "n": ["positive", {"at_most": 10}], "scale": ["positive"], "widths": ["non_empty", "unique"],
        "label": [{"one_of": ["squares", "cubes"]}]}}
    nbformat.write(nb, path)
    book = B.Book(root)
    assert B.resolve_parameters(book, "mini", "tiny", cli=[("n", "10"), ("label", "cubes")])["n"] == 10
    for name, raw, constraint in [("n", "0", "positive"), ("n", "11", "at_most 10"),
                                  ("label", "circles", "one_of [squares, cubes]"), ("widths", "[]", "non_empty")]:
        with pytest.raises(B.ParameterError, match=re.escape(f"breaks the constraint '{constraint}'")):
            B.resolve_parameters(book, "mini", "tiny", cli=[(name, raw)])
    # profile values are checked too, and every chapter of a profile before anything runs
    rc, out, err = run_cli(capfd, "--root", str(root), "build", "--profile", "bad")
    assert rc == 2 and "profiles.yml (profile 'bad'): parameter 'widths'" in err and "'unique'" in err
    rc, out, err = run_cli(capfd, "--root", str(root), "build", "--profile", "nonfinite")
    assert rc == 2 and "parameter 'scale' of chapter 'mini' is inf" in err
    # alignbook params shows them, with the vocabulary's meanings
    rc, out, err = run_cli(capfd, "--root", str(root), "params", "mini", "--profile", "tiny")
    assert rc == 0, err
    assert "must be: positive, at_most 10" in out and "must be: non_empty, unique" in out
    assert "at_most       every number <= the argument" in out


@pytest.mark.parametrize("constraints, expected", [
    ({"n": ["positiv"]}, "unknown constraint 'positiv'"),
    ({"m": ["positive"]}, "'m' is not a parameter of the notebook"),
    ({"n": [{"at_most": "ten"}]}, "constraint 'at_most' takes a number"),
    ({"n": [{"positive": 1, "unique": 2}]}, "a constraint is a name or a one-key mapping"),
])
def test_constraint_declarations_are_checked(book_env, capfd, no_execution, constraints, expected):
    import nbformat

    from test_book_pipeline import make_book

    root = make_book(book_env / "b")
    path = root / "book" / "mini.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.metadata["alignbook"] = {"constraints": constraints}
    nbformat.write(nb, path)
    rc, out, err = run_cli(capfd, "--root", str(root), "run", "mini", "--profile", "tiny")
    assert rc == 2 and expected in err and "mini.ipynb" in err


def test_every_chapter_declares_constraints_that_its_defaults_and_profiles_meet():
    import alignbook as B
    from alignbook import parameters
    from helpers import REPO

    book = B.Book(REPO)
    profiles = B.load_profiles(book)
    for chapter in book.chapters():
        constraints = book.constraints(chapter)
        for name, param in book.parameters(chapter).items():
            if param.type in ("int", "float", "list", "dict"):
                assert constraints.get(name), f"{chapter}: no constraints for {name}"
            parameters.check_constraints(chapter, name, param.default, constraints.get(name, ()), "default")
        for profile in profiles:
            B.resolve_parameters(book, chapter, profile, profiles)  # raises on a broken constraint
