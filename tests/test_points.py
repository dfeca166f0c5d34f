"""Every training sweep is points: the library's serial runner gives the table of a plain
loop, a store-backed runner (what a chapter's cached table uses) gives the same table
from content-addressed point files, resumes after a kill, keeps the points that did not
fail, and a Dask cluster gives the serial numbers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from alignbook import sweep as S
from alignbook.results import RECOMPUTE_ENV, ResultStore
from alignlib.experiments import feedforward as ff
from alignlib.experiments import low_data as ld
from alignlib.experiments import points as P
from alignlib.experiments import recurrent as rec

DEMO = "alignbook.sweep:demo_point"


def csv_text(table: pd.DataFrame) -> str:
    """The text a chapter's store writes for ``table``, without the timing rows."""
    if "metric" in table.columns:
        table = table[table.metric != "seconds"]
    buf = io.StringIO()
    table.reset_index(drop=True).to_csv(buf, index=False)
    return buf.getvalue()


def demo_points(xs, **params):
    return [P.Point(DEMO, {"x": x, **params}) for x in xs]


def tables(results):
    return pd.concat([r.table for r in results], ignore_index=True)


# ------------------------------------------------------------ points and stages


def test_points_run_in_process_by_default():
    results = P.run_points(demo_points([1.0, 2.0]))
    assert [r.table.x.iloc[0] for r in results] == [1.0, 2.0] and results[0].arrays == {}
    assert P.current_runner() is P.serial_runner
    seen = []

    def recording(points, label):
        seen.append((label, [p.params["x"] for p in points]))
        return P.serial_runner(points)

    with P.use_runner(recording):
        P.run_points(demo_points([3.0]), "mine")
    assert seen == [("mine", [3.0])] and P.current_runner() is P.serial_runner
    with pytest.raises(ValueError, match="module:function"):
        P.Point("demo_point", {})
    with pytest.raises(ValueError, match="given twice"):
        P.Point(DEMO, {"x": 1}, options={"x": 2})


def test_stages_of_several_sweeps_run_together_and_can_be_listed():
    def staged(xs):
        first = yield demo_points(xs[:1])
        rest = yield demo_points([x + (0 if first is None else first[0].table.x.iloc[0])
                                  for x in xs[1:]])
        if rest is None:
            return None
        return [r.table.x.iloc[0] for r in first + rest]

    rounds = []

    def recording(points, label):
        rounds.append([p.params["x"] for p in points])
        return P.serial_runner(points)

    with P.use_runner(recording):
        assert P.run_sweeps([staged([1.0, 2.0]), staged([10.0, 20.0, 30.0])]) == [
            [1.0, 3.0], [10.0, 30.0, 40.0]]
    assert rounds == [[1.0, 10.0], [3.0, 30.0, 40.0]]  # one round per stage, both sweeps
    assert [p.params["x"] for p in P.list_points([staged([1.0, 2.0])])] == [1.0, 2.0]
    # listing with the results of the first stage known lists the second as a run makes it
    ran = {p.params["x"]: r for p, r in zip(demo_points([1.0, 10.0]), P.serial_runner(demo_points([1.0, 10.0])))}
    with P.known_results(lambda point: ran.get(point.params["x"])):
        listed = P.list_points([staged([1.0, 2.0]), staged([10.0, 20.0]), staged([5.0, 6.0])])
    # the third sweep's first point is unknown: its second stage is listed without results
    assert [p.params["x"] for p in listed] == [1.0, 10.0, 5.0, 3.0, 30.0, 6.0]


def test_width_sweep_points_are_its_training_calls():
    data = ff.load_benchmark_data("digits", n_train=200)
    common = dict(arch="mlp", widths=[8, 16], rules=["backprop", "align_ada", "fa"],
                  lrs=[0.5, 1.0], seeds=[0, 1, 2], epochs=3, seeds_per_call=2, points_only=True)
    points = ff.width_sweep(data, **common, convergence_tolerance=0.01)
    # 2 widths x 3 rules x 2 seed chunks; the first rule's chunks first (their epochs
    # are the floor of the others)
    assert len(points) == 12
    assert [p.params["rule"] for p in points[:4]] == ["backprop"] * 4
    assert {p.params["rule"] for p in points[4:]} == {"align_ada", "fa"}
    assert all(p.data["data"] is data for p in points)
    assert {tuple(p.params["seeds"]) for p in points} == {(0, 1), (2,)}
    low = ld.sweep(lambda n: ff.load_benchmark_data("digits", n_train=n), [45, 150],
                            width=8, arch="mlp", rules=["backprop"], lrs=[1.0], seeds=[0],
                            epochs=2, points_only=True)
    assert [(p.params["batch_size"], p.data["data"].n_train) for p in low] == [(45, 45), (50, 150)]
    runs = [("intended", r, w) for w in (8, 16) for r in ("align_ada", "backprop")]
    rpoints = rec.sweep(runs, epochs=2, lr=0.001, seeds=[0], points_only=True)
    assert [(p.params["width"], p.params["rule"]) for p in rpoints] == [
        (8, "backprop"), (8, "align_ada"), (16, "backprop"), (16, "align_ada")]


def test_data_fingerprint_and_source():
    a = ff.load_benchmark_data("digits", n_train=100)
    b = ff.load_benchmark_data("digits", n_train=100)
    c = ff.load_benchmark_data("digits", n_train=101)
    assert P.fingerprint(a) == P.fingerprint(b) != P.fingerprint(c)
    source = P.source_of(a)
    assert source is not None and P.fingerprint(source.load()) == P.fingerprint(a)
    assert P.source_of(ff.synthetic_dataset((2,), 2, n_train=4, n_test=2)) is None
    with pytest.raises(TypeError, match="data sets"):
        P.fingerprint(object())


# ------------------------------------------------ the store-backed chapter runner


def cached_demo(store, xs, **params):
    return store.cached("demo", lambda: tables(P.run_points(demo_points(xs, **params))))


def test_the_jax_settings_of_a_point_travel_with_it_fast_compilation_included():
    """A point is keyed and run with the JAX settings of the process that made it. Among
    them is the flag that turns most of XLA's optimisations off (a chapter's fast-compile
    option), which JAX keeps as a plain flag, not an attribute of ``jax.config``, and does
    not key its compiled programs on: it is read, changes the point's key, is applied where
    the point runs (programs compiled before are compiled again) and is undone afterwards."""
    import jax

    from alignbook.sweep.chapters import chapter_sweep_point

    flag = "jax_disable_most_optimizations"
    default = P.jax_settings()
    assert flag not in default  # left out at its default: the keys of other points stay
    jax.config.update(flag, True)
    try:
        fast = P.jax_settings()
    finally:
        jax.config.update(flag, False)
    assert fast == {**default, flag: True}
    point = demo_points([1.0])[0]
    assert chapter_sweep_point(point, fast).key != chapter_sweep_point(point, default).key

    step = jax.jit(lambda x: x + 1.0)
    step(1.0)
    with P.applied_jax_settings(fast):
        assert jax.config.values[flag] is True and P.jax_settings() == fast
        assert step._cache_size() == 0  # not the program compiled with the optimisations
        step(1.0)
    assert jax.config.values[flag] is False and P.jax_settings() == default
    assert step._cache_size() == 0
    # a point made without the flag runs without it in a process that has it
    jax.config.update(flag, True)
    try:
        with P.applied_jax_settings(default):
            assert jax.config.values[flag] is False
        assert jax.config.values[flag] is True
    finally:
        jax.config.update(flag, False)


def test_a_chapter_table_keeps_its_points_and_reuses_them(tmp_path, monkeypatch):
    monkeypatch.delenv(S.ENGINE_ENV, raising=False)
    monkeypatch.delenv(RECOMPUTE_ENV, raising=False)
    log = tmp_path / "computed.log"
    store = ResultStore("chapter", "tiny", {"xs": [1, 2, 3]}, root=tmp_path)
    first = cached_demo(store, [1.0, 2.0, 3.0], log=str(log))
    base = tmp_path / "chapter" / "tiny" / S.POINTS_FOLDER
    assert len(list(base.glob("*/point.csv"))) == 3
    assert sorted(log.read_text().split()) == ["1.0", "2.0", "3.0"]
    # another parameter setting of the chapter shares the points it has in common
    other = ResultStore("chapter", "tiny", {"xs": [1, 2, 3, 4]}, root=tmp_path)
    cached_demo(other, [1.0, 2.0, 3.0, 4.0], log=str(log))
    assert sorted(log.read_text().split()) == ["1.0", "2.0", "3.0", "4.0"]
    # the table is what the library's in-process runner gives
    pd.testing.assert_frame_equal(first, pd.read_csv(io.StringIO(csv_text(
        tables(P.run_points(demo_points([1.0, 2.0, 3.0])))))))
    monkeypatch.setenv(RECOMPUTE_ENV, "1")  # --recompute: every point again
    cached_demo(store, [1.0, 2.0, 3.0], log=str(log))
    assert len(log.read_text().split()) == 7


def test_a_point_that_raises_names_itself_and_the_others_are_kept(tmp_path, monkeypatch):
    monkeypatch.delenv(S.ENGINE_ENV, raising=False)
    store = ResultStore("chapter", "tiny", {}, root=tmp_path)
    points = demo_points([1.0, 2.0]) + [P.Point(DEMO, {"x": 3.0, "fail": True})] \
        + demo_points([4.0])
    with pytest.raises(S.SweepError) as info:
        store.cached("demo", lambda: tables(P.run_points(points)))
    message = str(info.value)
    assert "1 of 4 points failed" in message and "demo_point" in message
    assert '"fail":true' in message and '"x":3' in message
    assert "demo point x=3.0 fails as asked" in message
    assert isinstance(info.value.__cause__, ValueError)
    assert len(list((tmp_path / "chapter" / "tiny" / S.POINTS_FOLDER).glob("*/point.csv"))) == 3
    assert not store.has_table("demo")


DRIVER = textwrap.dedent("""
    import sys, pandas as pd
    from alignbook.results import ResultStore
    from alignlib.experiments import points as P
    root, log = sys.argv[1], sys.argv[2]
    store = ResultStore("chapter", "tiny", {}, root=root)
    points = [P.Point("alignbook.sweep:demo_point", {"x": float(x), "seconds": 0.4, "log": log})
              for x in range(8)]
    store.cached("demo", lambda: pd.concat([r.table for r in P.run_points(points)]))
    print("done")
""")


def trusted(path) -> bool:
    """Whether the store trusts a point's table: recorded with its checksum (a table
    written but not yet recorded when its process died is computed again)."""
    try:
        recorded = json.loads((path.parent / "provenance.json").read_text())["files"][path.name]
    except (OSError, ValueError, KeyError):
        return False
    return recorded["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_killed_chapter_resumes_at_its_first_unfinished_point(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    log = tmp_path / "computed.log"
    env = {k: v for k, v in os.environ.items() if k not in (S.ENGINE_ENV, RECOMPUTE_ENV)}
    base = tmp_path / "results" / "chapter" / "tiny" / S.POINTS_FOLDER
    driver = subprocess.Popen([sys.executable, str(script), str(tmp_path / "results"), str(log)],
                              env=env)
    deadline = time.monotonic() + 120
    while len(list(base.glob("*/point.csv"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    finished = {str(pd.read_csv(f).x.iloc[0]) for f in base.glob("*/point.csv") if trusted(f)}
    assert 2 <= len(finished) < 8
    again = subprocess.run([sys.executable, str(script), str(tmp_path / "results"), str(log)],
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    counts = pd.Series(log.read_text().split()).value_counts()
    # every point computed; those finished before the kill not again
    assert len(counts) == 8 and all(counts[x] == 1 for x in finished)
    assert len(list(base.glob("*/point.csv"))) == 8


def test_store_backed_sweeps_give_the_in_process_tables(tmp_path, monkeypatch):
    """The numbers do not depend on the runner: a staged width sweep (convergence floors,
    seed chunks) and the recurrent sweep (arrays returned by its points)."""
    monkeypatch.delenv(RECOMPUTE_ENV, raising=False)
    data = ff.load_benchmark_data("digits", n_train=200)

    def sweeps():
        width = ff.width_sweep(data, arch="mlp", widths=[4], rules=["backprop", "align_ada"],
                               lrs=[0.5], seeds=[0, 1], epochs=2, convergence_tolerance=0.05,
                               seeds_per_call=1)
        recurrent = rec.sweep([("intended", r, 4) for r in ("backprop", "readout")], epochs=1,
                              lr=0.001, seeds=[0], n_sequences=60, n_train=50, length=5)
        return width, recurrent

    plain = sweeps()
    store = ResultStore("chapter", "tiny", {}, root=tmp_path)
    with P.use_runner(S.chapter_runner(store, engine=S.Engine())):
        stored = sweeps()
        again = sweeps()  # every point reused
    assert len(list((tmp_path / "chapter" / "tiny" / S.POINTS_FOLDER).glob("*/point.npz"))) == 2
    for a, b, c in zip(plain, stored, again):
        assert csv_text(a) == csv_text(b) == csv_text(c)


# ----------------------------------------------------------- the Dask engine


@pytest.mark.ci
@pytest.mark.slow
def test_dask_engine_gives_the_serial_tables_and_survives_a_failing_point(tmp_path, monkeypatch):
    monkeypatch.delenv(RECOMPUTE_ENV, raising=False)
    data = ff.load_benchmark_data("digits", n_train=200)

    def sweep():
        return ff.width_sweep(data, arch="mlp", widths=[4, 8], rules=["backprop", "fa"],
                              lrs=[0.5], seeds=[0, 1], epochs=3, convergence_tolerance=0.05)

    plain = sweep()
    engine = S.Engine("dask", workers=2)
    store = ResultStore("chapter", "tiny", {}, root=tmp_path)
    try:
        with P.use_runner(S.chapter_runner(store, engine=engine)):
            assert csv_text(sweep()) == csv_text(plain)
            log = tmp_path / "log"
            points = demo_points([1.0, 2.0], log=str(log)) + [
                P.Point(DEMO, {"x": 3.0, "fail": True})]
            with pytest.raises(S.SweepError, match="1 of 3 points failed"):
                P.run_points(points)
            assert sorted(log.read_text().split()) == ["1.0", "2.0"]
    finally:
        S._close_clients()
