"""One switch to distribute, and a cost plan: the engine of ``alignbook build|run
--engine`` and of a profile's ``engine:`` key reaches the chapters' kernels, the SLURM
examples hold together, a tiny chapter gives the same tables on a Dask cluster as in its
kernel, and ``alignbook plan`` counts the points, steps and FLOPs of a profile."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import alignbook as B
from alignbook import cli
from alignbook import plan as PL
from alignbook import sweep as S
from alignbook.results import RECOMPUTE_ENV, RESULTS_ENV
from helpers import REPO, run_cli
from test_book_pipeline import make_book

ENGINE_VARIABLES = (S.ENGINE_ENV, S.WORKERS_ENV, S.ADDRESS_ENV)


@pytest.fixture
def clean_engine_env(monkeypatch):
    for name in ENGINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------- the engine


def test_engine_choices_are_checked_and_carried_by_environment_variables():
    assert S.Engine() == S.Engine.from_env({})
    local = S.Engine("local", workers=4)
    assert local.env() == {S.ENGINE_ENV: "local", S.WORKERS_ENV: "4", S.ADDRESS_ENV: ""}
    assert S.Engine.from_env(local.env()) == local
    remote = S.Engine("dask", address="tcp://10.0.0.5:8786")
    assert S.Engine.from_env(remote.env()) == remote
    for bad, match in [(dict(engine="ray"), "engine must be one of"),
                       (dict(engine="serial", workers=2), "not serial"),
                       (dict(engine="local", address="tcp://x:1"), "dask engine"),
                       (dict(engine="dask", workers=2, address="tcp://x:1"), "not both"),
                       (dict(engine="local", workers=0), "positive integer")]:
        with pytest.raises(ValueError, match=match):
            S.Engine(**bad)
    with pytest.raises(ValueError, match="positive integer"):
        S.Engine.from_env({S.ENGINE_ENV: "local", S.WORKERS_ENV: "two"})


def test_visible_gpus_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    assert S.visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert S.visible_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert S.visible_gpus() == []


def test_a_local_cluster_pins_one_worker_to_each_gpu():
    distributed = pytest.importorskip("distributed")
    specs = S.gpu_worker_specs(["0", "1"], workers=3)
    assert sorted(spec["options"]["env"]["CUDA_VISIBLE_DEVICES"] for spec in specs.values()) == [
        "0", "0", "1"]
    assert all(spec["options"]["nthreads"] == 1 and spec["options"]["resources"] == {"GPU": 1}
               and spec["options"]["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
               and spec["cls"] is distributed.Nanny for spec in specs.values())
    assert len(S.gpu_worker_specs(["3", "5"])) == 2  # one per GPU by default


def job_env(book, profile, monkeypatch, **environ):
    from alignbook import pipeline

    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return pipeline._job(book, "mini", {"profile": profile, "n": 2}, Path("/tmp/x.ipynb"), False)["env"]


def test_the_job_env_carries_the_command_line_or_the_profiles_engine(tmp_path, monkeypatch,
                                                                     clean_engine_env):
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    profiles = {"profiles": {"tiny": {"chapters": {}},
                             "gpu": {"engine": {"engine": "local", "workers": 2}, "chapters": {}}}}
    book = B.Book(make_book(tmp_path / "book", profiles=profiles))
    env = job_env(book, "tiny", monkeypatch)
    assert env[S.ENGINE_ENV] == "serial" and "XLA_PYTHON_CLIENT_PREALLOCATE" not in env
    env = job_env(book, "gpu", monkeypatch)
    assert (env[S.ENGINE_ENV], env[S.WORKERS_ENV]) == ("local", "2")
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    # the command line's choice (carried in this process's environment) wins
    env = job_env(book, "gpu", monkeypatch, **{S.ENGINE_ENV: "dask",
                                              S.ADDRESS_ENV: "tcp://10.0.0.5:8786"})
    assert (env[S.ENGINE_ENV], env[S.WORKERS_ENV], env[S.ADDRESS_ENV]) == (
        "dask", "", "tcp://10.0.0.5:8786")


@pytest.mark.parametrize("engine, match", [
    ("ray", "must be one of"), ({"engine": "local", "address": "tcp://x:1"}, "dask engine"),
    ({"workers": 2}, "must be one of"), ({"engine": "dask", "extra": 1}, "must be one of")])
def test_a_profiles_engine_key_is_checked(tmp_path, engine, match):
    profiles = {"profiles": {"tiny": {"engine": engine, "chapters": {}}}}
    book = B.Book(make_book(tmp_path / "book", profiles=profiles))
    with pytest.raises(B.BookError, match=match):
        B.load_profiles(book)


def test_the_books_profiles_run_their_points_in_the_kernel_unless_told():
    from alignbook.parameters import profile_engine

    book = B.Book(REPO)
    assert all(profile_engine(book, p) is None for p in B.load_profiles(book))


def test_engine_options_parse_and_reach_the_pipeline(monkeypatch, capfd, clean_engine_env):
    from alignbook import pipeline

    parser = cli._parser()
    args = parser.parse_args(["build", "--profile", "gpu", "--engine", "local", "--workers", "4"])
    assert (args.engine, args.workers, args.address) == ("local", 4, None)
    args = parser.parse_args(["run", "rules", "--address", "tcp://h:8786"])
    assert (args.engine, args.address) == (None, "tcp://h:8786")
    seen = {}

    def fake_run_chapter(book, chapter, **kwargs):
        seen.update({k: os.environ.get(k) for k in ENGINE_VARIABLES})
        raise B.BookError("stop here")

    monkeypatch.setattr(pipeline, "run_chapter", fake_run_chapter)
    rc, _, err = run_cli(capfd, "run", "rules", "--address", "tcp://h:8786")
    assert rc == 2 and "stop here" in err
    assert seen == {S.ENGINE_ENV: "dask", S.WORKERS_ENV: "", S.ADDRESS_ENV: "tcp://h:8786"}
    assert all(name not in os.environ for name in ENGINE_VARIABLES)  # restored afterwards
    rc, _, err = run_cli(capfd, "run", "rules", "--workers", "2")
    assert rc == 2 and "--workers needs --engine" in err
    rc, _, err = run_cli(capfd, "run", "rules", "--engine", "serial", "--workers", "2")
    assert rc == 2 and "not serial" in err


# ---------------------------------------------------------------- SLURM examples


def test_the_sbatch_example_starts_a_scheduler_gpu_workers_and_the_build(tmp_path):
    script = REPO / "examples" / "slurm_dask.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "DRY_RUN": "1", "BOOK": str(tmp_path)}, check=True).stdout
    lines = out.splitlines()
    scheduler = next(line for line in lines if " scheduler " in line)
    workers = next(line for line in lines if line.startswith("srun "))
    build = next(line for line in lines if "alignbook build" in line)
    assert "--scheduler-file" in scheduler
    for option in ("--gpus-per-task=1", "--nthreads 1", "--resources GPU=1",
                   "XLA_PYTHON_CLIENT_PREALLOCATE=false", " worker "):
        assert option in workers
    argv = shlex.split(build)[1:]
    args = cli._parser().parse_args(argv)
    assert (args.command, args.profile, args.address) == ("build", "gpu", "tcp://scheduler-host:8786")
    assert not (tmp_path / "_build" / "dask-scheduler.json").exists()  # a dry run starts nothing


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dask_jobqueue_example_asks_for_one_gpu_worker_per_job(capsys):
    example = load_example("slurm_cluster")
    options = example.cluster_options(example.parse_args(["--partition", "gpu", "--account", "a"]))
    assert options["processes"] == 1 and options["job_extra_directives"] == ["--gres=gpu:1"]
    assert options["worker_extra_args"] == ["--nthreads", "1", "--resources", "GPU=1"]
    assert options["queue"] == "gpu" and options["account"] == "a"
    assert example.main(["--dry-run", "--partition", "gpu"]) == 0
    out = capsys.readouterr().out
    if importlib.util.find_spec("dask_jobqueue") is None:
        assert "job_extra_directives" in out
    else:  # the job script it would submit
        assert "#SBATCH --gres=gpu:1" in out and "--resources GPU=1" in out


# ----------------------------------------------------------------- the cost plan


def test_the_plan_lists_the_gpu_profiles_points_without_data_or_training():
    book = B.Book(REPO)
    p = PL.chapter_parameters(book, "gpu", "recurrent")
    points = PL.chapter_points(book, "gpu", "recurrent")
    assert len(points) == len(p["widths"]) * len(p["rules"])
    rules = PL.chapter_parameters(book, "gpu", "rules")
    points = PL.chapter_points(book, "gpu", "rules")
    # every width and rule for every seed chunk (one seed per call), and the Adam runs
    assert len(points) == len(rules["seeds"]) * (
        len(set(rules["widths"]) | set(rules["lr_sweep_widths"])) * len(rules["rules"])
        + len(rules["adam_widths"]) * len(rules["adam_rules"]))
    work = next(p for p in points if p.params["width"] == 16).workload()
    assert work.runs == 3 and work.steps == 100 * (55000 // 100)  # 3 lrs x 1 seed, 100 epochs
    imagenet = PL.chapter_points(book, "gpu", "imagenet")
    assert imagenet[0].data["data"].n_train == 1281167 and imagenet[0].data["data"].n_test == 50000
    alignment = PL.chapter_points(book, "gpu", "alignment")
    a = PL.chapter_parameters(book, "gpu", "alignment")
    assert len(alignment) == len(a["datasets"]) * (len(a["mlp_widths"]) + len(a["conv_widths"]))
    # and the work besides the sweeps: a stable learning rate per width (rules), per batch
    # size (low data); the recurrent check at initialisation (backprop and four Align
    # cases) and a run from the authors' seed per rule and width
    extras = PL.chapter_extras(book, "gpu", "rules")
    assert len(extras) == len(set(rules["widths"]) | set(rules["lr_sweep_widths"]))
    assert all(e.workload.steps == 100 and e.workload.runs == 1 for e in extras)
    assert len({e.workload.x.shape[0] for e in PL.chapter_extras(book, "gpu", "low_data")}) \
        == len(PL.chapter_extras(book, "gpu", "low_data"))
    extras = PL.chapter_extras(book, "gpu", "recurrent")
    assert len(extras) == 5 + len(p["authors_widths"]) * (
        len(p["authors_rules"]) + len(p["defined_rules"]))
    assert PL.chapter_extras(book, "gpu", "imagenet") == []
    # the alignment chapter's points also run its scores: every epoch at a curve width
    from alignbook.plan_work import point_programs

    curve = next(q for q in alignment if q.params["curve"] and q.params["probe"])
    programs = point_programs(curve)
    assert programs[0].calls == curve.params["epochs"] + 1
    assert {g.loop_trips for g in programs[1:]} == {a["probe_batches"]}


def test_a_chapter_without_a_sweep_has_no_plan(capfd):
    rc, _, err = run_cli(capfd, "plan", "--profile", "tiny", "--chapters", "theory")
    assert rc == 2 and "no sweep to plan" in err


@pytest.mark.ci
@pytest.mark.slow
def test_the_plan_of_the_tiny_profile(capfd, tmp_path, monkeypatch):
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "results"))  # nothing stored
    book = B.Book(REPO)
    result = PL.plan(book, "tiny", device_tflops=1.0, step_overhead=1e-5, epoch_overhead=1e-3,
                     startup=(0.5, 2.0))
    assert list(result.chapters.chapter) == list(PL.PLANNED_CHAPTERS)
    for chapter in PL.PLANNED_CHAPTERS:
        rows = result.points[result.points.chapter == chapter]
        assert len(rows) == len(PL.chapter_points(book, "tiny", chapter)) > 0
    assert (result.points.step_flops > 0).all() and (result.points.flops > 0).all()
    assert result.measured == ()
    # flops = runs x (steps x step + evaluated batches x forward pass) + the scores
    row = result.points.iloc[0]
    assert row.chapter == "alignment" and row.program_flops > 0
    assert row.flops >= row.runs * row.steps * row.step_flops + row.program_flops
    assert abs(result.total_seconds - result.chapters.seconds.sum()) < 1e-9
    # a recurrent point: flops = runs x time steps x (steps x step + evaluated batches x
    # forward pass); seconds = compute + overheads + start-up + 2 x compile time
    row = result.points[result.points.chapter == "recurrent"].iloc[0]
    assert row.loop_trips == 10 and row.flops > row.runs * row.steps * row.step_flops
    eval_batches = round((row.flops / row.runs - row.steps * row.step_flops) / row.forward_flops)
    assert row.overhead_seconds == pytest.approx(
        row.loop_trips * (row.steps + eval_batches) * 1e-5 + row.epochs * 1e-3)
    assert row.seconds == pytest.approx(row.flops / 1e12 + row.overhead_seconds
                                        + 0.5 + 2 * row.compile_seconds)
    # work besides the sweep pays its compile time, no start-up
    extra = result.extras[result.extras.chapter == "recurrent"].iloc[0]
    assert extra.seconds == pytest.approx(extra.flops / 1e12 + extra.overhead_seconds
                                          + extra.compile_seconds)
    for chapter in result.chapters.itertuples():
        page = chapter.page_seconds if np.isfinite(chapter.page_seconds) else 0.0
        assert chapter.seconds == pytest.approx(
            result.points[result.points.chapter == chapter.chapter].seconds.sum()
            + result.extras[result.extras.chapter == chapter.chapter].seconds.sum() + page)
    text = result.report()
    assert "total" in text and "1 TFLOP/s (stated)" in text
    # measured here: every step timed, the rest measured; saved with its provenance
    saved = tmp_path / "plan_tiny.csv"
    rc, out, _ = run_cli(capfd, "plan", "--profile", "tiny", "--chapters", "recurrent",
                         "--json", "--save", str(saved))
    assert rc == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 4 and {r["rule"] for r in rows} == {
        "backprop", "align_ada", "align_zero", "readout"}
    assert all(r["seconds"] > r["compute_seconds"] > 0 for r in rows)
    provenance = json.loads(PL.provenance_path(saved).read_text())
    assert provenance["assumptions"]["timed"] and provenance["profile"] == "tiny"
    assert provenance["command"].startswith("alignbook plan --profile tiny")
    assert len(pd.read_csv(saved.with_name("plan_tiny_points.csv"))) == 4
    assert PL.check_stored_plan(book, saved) == []


GPU_PLAN = REPO / "book" / "data" / "plan_gpu.csv"


def test_the_stored_gpu_plan_is_the_gpu_profiles():
    """The performance chapter shows the stored plan of the gpu profile: written again
    (``alignbook plan --profile gpu --device-tflops 50 --save book/data/plan_gpu.csv``,
    minutes of CPU) whenever a parameter it reads, or a chapter's number of points,
    changes."""
    book = B.Book(REPO)
    problems = PL.check_stored_plan(book, GPU_PLAN)
    assert problems == [], ("book/data/plan_gpu.csv is stale; write it again with `alignbook "
                            "plan --profile gpu --device-tflops 50 --save "
                            "book/data/plan_gpu.csv`: " + "; ".join(problems))
    chapters = pd.read_csv(GPU_PLAN)
    points = pd.read_csv(GPU_PLAN.with_name("plan_gpu_points.csv"))
    assert list(chapters.chapter) == list(PL.PLANNED_CHAPTERS)
    assert points.groupby("chapter").size().reindex(chapters.chapter).tolist() \
        == chapters.points.tolist()
    assert chapters.seconds.sum() == pytest.approx(points.seconds.sum() + pd.read_csv(
        GPU_PLAN.with_name("plan_gpu_extras.csv")).seconds.sum())  # no gpu page measured
    provenance = json.loads(PL.provenance_path(GPU_PLAN).read_text())
    assert provenance["profile"] == "gpu" and not provenance["assumptions"]["timed"]
    assert provenance["git"]["revision"] and provenance["written"]


def test_a_stale_stored_plan_is_found(tmp_path):
    stored = tmp_path / "plan_gpu.csv"
    chapters = pd.read_csv(GPU_PLAN)
    chapters.loc[chapters.chapter == "imagenet", "points"] += 1
    chapters.to_csv(stored, index=False)
    provenance = json.loads(PL.provenance_path(GPU_PLAN).read_text())
    provenance["parameters"]["recurrent"]["widths"] = [8]  # written for other widths
    provenance["parameters_sha256"] = PL.parameters_hash(provenance["parameters"])
    PL.provenance_path(stored).write_text(json.dumps(provenance))
    problems = PL.check_stored_plan(B.Book(REPO), stored)
    assert any(p.startswith("recurrent.widths: [8] -> ") for p in problems)
    assert any(p.startswith("imagenet: ") and "points stored" in p for p in problems)


def test_a_pages_time_is_its_last_notebook_less_its_computations(tmp_path, monkeypatch):
    import nbformat

    from alignbook.plan_costs import page_seconds

    monkeypatch.setenv(B.BUILD_ENV, str(tmp_path / "build"))
    book = B.Book(REPO)
    assert np.isnan(page_seconds(book, "tiny", "imagenet")[0])
    nb = nbformat.v4.new_notebook(metadata={"papermill": {"duration": 30.0}})
    for source, seconds in (("import jax", 5.0), ("runs = store.cached('runs', f)", 20.0),
                            ("glue_figure(store, 'x', fig)", 4.0)):
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["papermill"] = {"duration": seconds}
        nb.cells.append(cell)
    path = book.build_dir / "runs" / "tiny" / "imagenet.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    assert page_seconds(book, "tiny", "imagenet") == (10.0, str(path))


# ------------------------------------------------ a tiny chapter on a Dask cluster


@pytest.mark.ci
@pytest.mark.slow
def test_a_tiny_chapter_gives_the_same_tables_on_dask_workers(tmp_path):
    """``alignbook run low_data --profile tiny``, in the kernel and with ``--engine dask
    --workers 2``: the same sweep table, the same derived tables and claims."""
    def run(name, *extra):
        env = {**os.environ, RESULTS_ENV: str(tmp_path / name / "results"),
               B.BUILD_ENV: str(tmp_path / name / "build")}
        for variable in (*ENGINE_VARIABLES, RECOMPUTE_ENV):
            env.pop(variable, None)
        done = subprocess.run([sys.executable, "-m", "alignbook.cli", "run", "low_data",
                               "--profile", "tiny", *extra], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
        (folder,) = [p for p in (tmp_path / name / "results" / "low_data" / "tiny").iterdir()
                     if (p / "provenance.json").is_file()]
        return folder

    serial = run("serial", "--engine", "serial")
    dask = run("dask", "--engine", "dask", "--workers", "2")
    points = tmp_path / "dask" / "results" / "low_data" / "tiny" / S.POINTS_FOLDER
    assert len(list(points.glob("*/point.csv"))) == 6
    for table in sorted(p.name for p in serial.glob("*.csv")):
        a, b = pd.read_csv(serial / table), pd.read_csv(dask / table)
        if "metric" in a.columns:
            a, b = a[a.metric != "seconds"], b[b.metric != "seconds"]
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True),
                                      check_exact=True, obj=table)
    claims = [json.loads((f / "claims.json").read_text()) for f in (serial, dask)]
    for c in claims:
        c.pop("written")
    assert claims[0] == claims[1]
    assert yaml.safe_load((REPO / "book" / "profiles.yml").read_text())  # unchanged
