"""The cost plan knows which sweep points are already stored (alignbook.plan_stored): a
stored point is priced at the epochs its runs trained, and a build that resumes does not
run it again. Tiny profile, rules chapter, a results folder of its own. The two tests
that build plans (about 20 s of compiling) run in ``.ci/run`` (marked ``ci``); how a
staged sweep is listed from known results is tested in tests/test_points.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import alignbook as B
from alignbook import plan as PL
from alignbook import sweep as S
from alignbook.plan_stored import at_epochs, points_store, recorded_epochs
from alignbook.plan_work import chapter_points
from alignbook.results import RECOMPUTE_ENV, RESULTS_ENV, ResultStore
from alignbook.sweep.chapters import chapter_sweep_point
from alignlib.experiments import points as P
from helpers import REPO

#: Stated assumptions: no device measurement, and seconds that follow the counts.
STATED = dict(device_tflops=1.0, step_overhead=1e-5, epoch_overhead=1e-3, startup=(0.5, 2.0))
#: What names a point of the tiny rules chapter in the plan's table.
NAME = ["optimizer", "rule", "width"]


def _rules_plan(book) -> PL.Plan:
    return PL.plan(book, "tiny", ["rules"], **STATED)


def _stored_tables(root) -> pd.DataFrame:
    """Each stored point of the tiny rules chapter, read from its files: what it trains
    (from its provenance) and the largest epoch of its table."""
    rows = []
    for folder in sorted((root / "rules" / "tiny" / S.POINTS_FOLDER).iterdir()):
        params = json.loads((folder / "provenance.json").read_text())["params"]["params"]
        p = params["params"]
        rows.append({"optimizer": p["optimizer"], "rule": p["rule"], "width": p["width"],
                     "table_epochs": int(pd.read_csv(folder / "point.csv").epoch.max())})
    return pd.DataFrame(rows)


def test_recorded_epochs_and_a_point_at_them():
    table = pd.DataFrame({"run": [0, 0, 0, 1, 1], "epoch": [0, 1, 2, 0, 1]})
    assert recorded_epochs(table) == 2  # the runs of a point stop together: its largest
    assert recorded_epochs(table.drop(columns="epoch")) is None
    point = P.Point("alignlib.experiments.feedforward:_width_point", {"epochs": 5, "width": 8})
    assert at_epochs(point, 2).params == {"epochs": 2, "width": 8}
    assert at_epochs(point, 5) is point and at_epochs(point, None) is point


@pytest.fixture(scope="module")
def empty_plan(tmp_path_factory):
    """The tiny rules plan with nothing stored, and its (empty) results folder."""
    root = tmp_path_factory.mktemp("empty") / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(RESULTS_ENV, str(root))
        return _rules_plan(B.Book(REPO)), root


@pytest.mark.ci
@pytest.mark.slow
def test_with_nothing_stored_every_point_is_priced_at_its_cap(empty_plan):
    result, root = empty_plan
    points, chapter = result.points, result.chapters.iloc[0]
    assert result.results == str(root)
    assert not points.stored.any() and points.looked_up.all()
    assert (points.epochs_priced == points.epochs).all() and (points.epochs == 3).all()
    # the old upper bound: every SGD step of the cap
    assert (points.steps == points.epochs * (points.n_train // points.batch_size)).all()
    assert (points.run_seconds == points.seconds).all()
    assert chapter.stored_points == 0 and chapter.run_seconds == chapter.seconds
    assert f"No point is stored in {root}/<chapter>/tiny/points" in result.report()


@pytest.mark.ci
@pytest.mark.slow
def test_stored_points_are_priced_at_the_epochs_they_trained(empty_plan, tmp_path,
                                                             monkeypatch):
    monkeypatch.delenv(RECOMPUTE_ENV, raising=False)
    book = B.Book(REPO)
    root = tmp_path / "results"
    # two of the chapter's points run through its store-backed runner, as a build runs
    # them; a third stored as a run that stopped (converged) after 1 of its 3 epochs
    points = chapter_points(book, "tiny", "rules", measured=True)
    ran, stopped = points[:2], points[-1]
    with P.use_runner(S.chapter_runner(ResultStore("rules", "tiny", {}, root=root),
                                       engine=S.Engine())):
        tables = P.run_points(ran)
    early = tables[0].table.assign(**{k: stopped.params[k] for k in (
        "rule", "width", "optimizer", "experiment", "parameterization")})
    points_store(root, "rules", "tiny").save(
        chapter_sweep_point(stopped, P.jax_settings()), early[early.epoch <= 1])
    monkeypatch.setenv(RESULTS_ENV, str(root))
    result = _rules_plan(book)

    found = result.points.merge(_stored_tables(root), on=NAME, how="left")
    assert len(found) == len(result.points) == len(points) and found.stored.sum() == 3
    stored = found[found.stored]
    assert stored.table_epochs.notna().all()  # the plan's stored points are the folder's
    assert (stored.epochs_priced == stored.table_epochs).all()
    assert sorted(stored.epochs_priced) == [1, 3, 3]
    assert not found[~found.stored].table_epochs.notna().any()
    assert (found[~found.stored].epochs_priced == 3).all()
    # fewer epochs, fewer steps and seconds; as many, the same (besides compile times,
    # measured afresh by each plan)
    cap = empty_plan[0].points.set_index(NAME)
    for row in stored.itertuples():
        at_cap = cap.loc[tuple(getattr(row, n) for n in NAME)]
        assert row.runs == at_cap.runs
        assert row.steps == at_cap.steps * row.epochs_priced // 3
        work = row.compute_seconds + row.overhead_seconds
        if row.epochs_priced < 3:
            assert row.flops < at_cap.flops
            assert work < at_cap.compute_seconds + at_cap.overhead_seconds
        else:
            assert row.flops == pytest.approx(at_cap.flops)
            assert work == pytest.approx(at_cap.compute_seconds + at_cap.overhead_seconds)
    # a build that resumes runs the other points only
    assert (stored.run_seconds == 0).all() and (found[~found.stored].run_seconds > 0).all()
    chapter = result.chapters.iloc[0]
    assert chapter.stored_points == 3 and chapter.unknown_points == 0
    assert chapter.run_sweep_seconds == pytest.approx(result.points.run_seconds.sum())
    assert chapter.run_sweep_seconds < chapter.sweep_seconds
    page = chapter.page_seconds if np.isfinite(chapter.page_seconds) else 0.0
    assert chapter.run_seconds == pytest.approx(chapter.run_sweep_seconds
                                                + chapter.extra_seconds + page)
    text = result.report()
    assert f"Priced from stored runs: 3 of {len(points)} points (stored in {root}/" in text
    assert "7 epochs in all, of at most 9" in text
