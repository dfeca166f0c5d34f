"""Reliability: concurrent and interrupted builds, parameter constraints, file permissions,
bad training data, damaged dataset files, tiny alignment updates.

Each test here failed before the fix it guards.
"""

from __future__ import annotations

import gzip
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

import fakedata
from alignlib import datasets as ds

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

    monkeypatch.setattr(ds.urllib.request, "urlopen", lambda *a, **k: Response(payload))


def test_downloaded_dataset_respects_the_umask(tmp_path, umask_022, monkeypatch):
    sums = fakedata.fake_kmnist(tmp_path / "src", 12)
    name = "train-labels-idx1-ubyte.gz"
    serve_bytes(monkeypatch, (tmp_path / "src" / name).read_bytes())
    path = ds.fetch_file("kmnist", name, cache_dir=tmp_path / "dl", download=True, checksums=sums,
                         progress=False)
    assert mode(path) == 0o644
