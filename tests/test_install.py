"""Installing and running where readers are: ``alignbook doctor``, the data checks it
uses (:func:`alignlib.data.check_files`), the README's GPU commands and the
``cpu_only`` decorator. Nothing here needs a GPU, and nothing is downloaded."""

from __future__ import annotations

import ast
import json
import platform
import re
import shlex
import sys
import tomllib
import zipfile

import jax
import pytest
from fakedata import fake_cifar10, fake_imagenet32, fake_kmnist
from helpers import REPO, cpu_only

from alignbook import cli
from alignbook.cli import doctor as cli_doctor  # where doctor_report finds _doctor_jax
from alignlib import data as ds

GPU_DATA = ["kmnist", "cifar10", "imagenet32"]  # what book/profiles.yml's gpu profile reads


@pytest.fixture
def data_cache(tmp_path, monkeypatch):
    """An empty data cache in a temporary folder ($ALIGNBOOK_DATA)."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("ALIGNBOOK_DATA", str(root))
    return root


@pytest.fixture
def fake_cache(data_cache):
    """The cache holding every file the gpu profile reads, in the real formats but with
    random pixels (so KMNIST's and CIFAR-10's published checksums do not match)."""
    fake_kmnist(data_cache / "kmnist", 12)
    fake_cifar10(data_cache / "cifar10", per_batch=2)
    fake_imagenet32(data_cache / "imagenet32", per_batch=2, n_val=2)
    return data_cache


def doctor(capsys, *args: str) -> str:
    assert cli.main(["--root", str(REPO), "doctor", *args]) == 0
    return capsys.readouterr().out


def doctor_json(capsys, *args: str) -> dict:
    return json.loads(doctor(capsys, "--json", *args))


@cpu_only
def test_doctor_on_cpu_says_the_gpu_profile_cannot_run_and_why(data_cache, capsys):
    out = doctor(capsys)
    lines = out.splitlines()
    assert lines[0].startswith(f"Python      {platform.python_version()}")
    assert f"jax {jax.__version__}" in lines[1] and "equinox" in lines[1] and "optax" in lines[1]
    assert "Backend     cpu" in lines
    assert re.search(r"^Device 0 +cpu: ", out, re.MULTILINE)
    assert re.search(r"^64-bit +(on|off) ", out, re.MULTILINE)
    assert f"Data cache  {data_cache}" in lines
    for name in GPU_DATA:
        assert re.search(rf"^  {name} \(.*\): NOT READY  in {re.escape(str(data_cache / name))}$", out, re.MULTILINE)
    assert "train-images-idx3-ubyte.gz       missing" in out
    assert "to fetch: alignbook data download kmnist" in out  # how to get them
    assert lines[-1].startswith("gpu profile: cannot run here. No GPU or TPU: JAX's backend is cpu")
    assert lines[-1].endswith("Data missing or bad: kmnist, cifar10, imagenet32 (see above).")


@cpu_only
def test_doctor_json_holds_the_same(data_cache, capsys):
    report = doctor_json(capsys)
    assert report["python"] == {"version": platform.python_version(), "executable": sys.executable}
    assert report["packages"]["jax"] == jax.__version__
    assert report["jax"]["backend"] == "cpu" and report["jax"]["error"] is None
    assert [d["platform"] for d in report["jax"]["devices"]] == ["cpu"] * len(jax.devices())
    assert report["jax"]["x64"] == bool(jax.config.jax_enable_x64)
    assert report["environment"]["ALIGNBOOK_DATA"] == str(data_cache)
    assert report["data"]["root"] == str(data_cache) and report["data"]["note"] is None
    assert [d["name"] for d in report["data"]["datasets"]] == GPU_DATA
    gpu = report["gpu_profile"]
    assert gpu["can_run"] is False and gpu["accelerator"] is False
    assert gpu["missing_data"] == GPU_DATA
    assert gpu["reasons"][0].startswith("No GPU or TPU")
    assert gpu["summary"].startswith("gpu profile: cannot run here.")


def test_doctor_reports_the_files_of_a_filled_cache(fake_cache, capsys):
    report = doctor_json(capsys, "--no-verify")
    data = {d["name"]: d for d in report["data"]["datasets"]}
    assert list(data) == GPU_DATA and all(d["ok"] and d["fetch"] is None for d in data.values())
    assert {f["filename"]: f["status"] for f in data["kmnist"]["files"]} == {
        "train-images-idx3-ubyte.gz": "unchecked", "train-labels-idx1-ubyte.gz": "unchecked"}
    assert [f["filename"] for f in data["imagenet32"]["files"]] == \
        [f"train_data_batch_{i}.npz" for i in range(1, 11)] + ["val_data.npz"]
    gpu = report["gpu_profile"]
    assert gpu["missing_data"] == []
    assert gpu["can_run"] == gpu["accelerator"]  # only an accelerator can be missing now
    text = doctor(capsys, "--no-verify")
    assert "kmnist (Kuzushiji-MNIST): present" in text and "NOT READY" not in text
    assert "Data missing" not in text.splitlines()[-1]


def test_doctor_reports_files_with_the_wrong_checksum_and_leaves_them_alone(fake_cache, capsys):
    before = sorted(p.relative_to(fake_cache) for p in fake_cache.rglob("*"))
    report = doctor_json(capsys)
    data = {d["name"]: d for d in report["data"]["datasets"]}
    statuses = {n: {f["status"] for f in d["files"]} for n, d in data.items()}
    assert statuses == {"kmnist": {"bad"}, "cifar10": {"bad"}, "imagenet32": {"unverifiable"}}
    assert "published " + ds.DATASETS["cifar10"].files[0].sha256 in data["cifar10"]["files"][0]["detail"]
    assert report["gpu_profile"]["missing_data"] == ["kmnist", "cifar10"]
    assert sorted(p.relative_to(fake_cache) for p in fake_cache.rglob("*")) == before  # nothing moved


def test_doctor_with_a_gpu_and_the_data_says_the_gpu_profile_can_run(fake_cache, capsys, monkeypatch):
    """What a GPU machine would report (JAX's answer stubbed: no GPU here)."""
    h200 = {"id": 0, "platform": "gpu", "kind": "NVIDIA H200",
            "memory_limit_bytes": 105 * 2**30, "memory_in_use_bytes": 2**29}
    monkeypatch.setattr(cli_doctor, "_doctor_jax", lambda: {"backend": "gpu", "devices": [h200],
                                                            "x64": False, "error": None})
    out = doctor(capsys, "--no-verify")
    assert "Device 0    gpu: NVIDIA H200, memory for JAX 105.0 GiB (0.5 GiB in use)" in out
    assert out.splitlines()[-1] == ("gpu profile: can run here (1 x NVIDIA H200; every data file "
                                    "present, checksums not checked).")
    assert doctor_json(capsys, "--no-verify")["gpu_profile"]["can_run"] is True


def test_doctor_reports_a_jax_that_fails_to_start(data_cache, capsys, monkeypatch):
    monkeypatch.setattr(cli_doctor, "_doctor_jax", lambda: {
        "backend": None, "devices": [], "x64": None, "error": "RuntimeError: no plugin"})
    lines = doctor(capsys, "--no-verify").splitlines()
    assert "JAX         failed to start: RuntimeError: no plugin" in lines
    assert lines[-1].startswith("gpu profile: cannot run here. No GPU or TPU: JAX failed to start "
                                "(RuntimeError: no plugin)")


def test_doctor_outside_a_book_lists_every_data_set(data_cache, tmp_path, capsys):
    assert cli.main(["doctor", "--root", str(tmp_path), "--json", "--no-verify"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "not a book folder" in report["data"]["note"]
    assert [d["name"] for d in report["data"]["datasets"]] == list(ds.DATASETS)


def test_doctor_refuses_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["doctor", "--no-such-option"])
    assert exc.value.code == 2


def test_check_files_follows_the_loaders(data_cache):
    assert ds.check_files("digits") == [] and ds.check_files("add") == []
    with pytest.raises(ValueError, match="Unknown dataset"):
        ds.check_files("mnist")
    names = [c.filename for c in ds.check_files("kmnist", split="test")]
    assert names == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    # ImageNet32: npz files extracted into the zip's own folder count; a partial set does not
    folder = data_cache / "imagenet32"
    fake_imagenet32(folder / "Imagenet32_train_npz", per_batch=2, n_val=2)
    (folder / "Imagenet32_train_npz" / "val_data.npz").rename(folder / "val_data.npz")
    (folder / "Imagenet32_train_npz" / "train_data_batch_3.npz").unlink()
    checks = ds.check_files("imagenet32")
    assert [(c.filename, c.status) for c in checks] == [
        ("Imagenet32_train_npz.zip", "missing"), ("val_data.npz", "unverifiable")]
    assert checks[0].detail == "or its 10 npz file(s) extracted: 9 found" and not checks[0].ok
    # a zip that is not one (a saved login page) is bad; with verify=False only presence counts
    (folder / "Imagenet32_train_npz.zip").write_text("<html>please log in</html>")
    assert ds.check_files("imagenet32")[0].status == "bad"
    assert ds.check_files("imagenet32", verify=False)[0].status == "unchecked"
    with zipfile.ZipFile(folder / "Imagenet32_train_npz.zip", "w") as zf:
        zf.writestr("train_data_batch_1.npz", b"")
    assert ds.check_files("imagenet32")[0].status == "unverifiable"


def readme_gpu_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Running on a GPU\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no 'Running on a GPU' section"
    return match.group(1)


def test_readme_gpu_commands_parse():
    """Every shell command of the README's GPU section is accepted as written (nothing is
    run): `alignbook` arguments by the parser, pip extras by pyproject.toml, `python -c`
    code by the compiler, `make` targets by the Makefile."""
    section = readme_gpu_section()
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines() if line.strip()]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    extras = set(pyproject["project"]["optional-dependencies"])
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    seen = []
    for line in lines:
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
            words.pop(0)
        program = words[0].rsplit("/", 1)[-1]
        if program == "alignbook":
            args = cli._parser().parse_args(words[1:])
            seen.append((args.command, getattr(args, "profile", None), getattr(args, "jobs", None)))
        elif program == "pip":
            (spec,) = [w for w in words if w.startswith(".[")]
            assert set(spec[2:-1].split(",")) <= extras, line
        elif program == "python":
            assert words[1] == "-c", line
            ast.parse(words[2])
        elif program == "make":
            assert re.search(rf"^{words[1]}:", makefile, re.MULTILINE), line
        else:
            raise AssertionError(f"unexpected command in the README's GPU section: {line}")
    assert ("doctor", None, None) in seen
    assert ("build", "gpu", 1) in seen


def test_readme_gpu_section_names_the_settings_and_the_data_folders():
    section = readme_gpu_section()
    for text in ("XLA_PYTHON_CLIENT_PREALLOCATE=false", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                 "jax.devices()", "alignbook doctor", "ALIGNBOOK_DATA", "~/.cache/alignbook/datasets"):
        assert text in section, text
    for name in GPU_DATA:
        assert f"`{name}/`" in section, name
        for check in ds.check_files(name, cache_dir=REPO / "no-such-folder"):
            assert f"`{check.filename}`" in section, check.filename


def test_cpu_only_skips_on_other_backends(monkeypatch):
    calls = []

    @cpu_only
    def probe(x):
        calls.append(x)

    assert [m.name for m in probe.pytestmark] == ["cpu_only"]
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with pytest.raises(pytest.skip.Exception, match="JAX's backend is gpu"):
        probe(1)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    probe(2)
    assert calls == [2]
