"""The sweep runner: points and keys, the atomic per-point store, resuming, and the Dask
engine (a local cluster gives the serial results; a killed worker loses nothing)."""

from __future__ import annotations

import os
import signal

import pandas as pd
import pytest

from alignbook import results as R
from alignbook import sweep as S
from alignbook.sweep import Point, demo_point, grid, run_sweep, train_point


def expected_table(xs):
    """What the serial runner returns for demo points at ``xs``, built by hand."""
    frames = []
    for x in xs:
        point = Point(demo_point, {"x": x})
        t = demo_point(**point.params)  # canonical parameters: 1.0 arrives as 1
        t.insert(0, "point", point.key)
        frames.append(t)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------ points


def test_point_key_is_canonical_and_names_experiment():
    a = Point("alignbook.sweep:demo_point", {"x": 5.0, "seconds": 0})
    b = Point(demo_point, {"seconds": 0.0, "x": 5})
    assert a == b and a.key == b.key and len(a.key) == 12
    assert a.key == R.params_hash({"experiment": "alignbook.sweep:demo_point",
                                   "params": {"x": 5, "seconds": 0}})
    assert Point(demo_point, {"x": 6}).key != Point(demo_point, {"x": 5}).key
    assert Point(train_point, {"x": 5}).key != Point(demo_point, {"x": 5}).key
    # the package's own experiments keep the names stored keys hash, wherever their code is
    assert Point(train_point, {}).experiment == "alignbook.sweep:train_point"
    assert hash(a) == hash(b)


def test_experiments_must_be_importable():
    with pytest.raises(ValueError, match="not importable"):
        Point(lambda x: x, {})

    def local(x):
        return x

    with pytest.raises(ValueError, match="not importable"):
        Point(local, {})
    with pytest.raises(ValueError, match="not importable"):
        Point("demo_point", {})
    with pytest.raises(TypeError):
        Point(42, {})
    assert S.resolve_experiment("alignbook.sweep:demo_point") is demo_point
    with pytest.raises(TypeError, match="canonical"):
        Point(demo_point, {"x": object()})


def test_grid_products_axes_and_keeps_batched_lists_whole():
    points = grid(train_point, rule=["backprop", "align_ada"], width=[8, 16, 32],
                  batched=dict(seeds=[0, 1, 2], learning_rates=[1.0, 5.0], epochs=2))
    assert len(points) == 6
    assert all(p.params["seeds"] == [0, 1, 2] and p.params["learning_rates"] == [1, 5]
               for p in points)
    assert {(p.params["rule"], p.params["width"]) for p in points} == {
        (r, w) for r in ("backprop", "align_ada") for w in (8, 16, 32)}
    assert len({p.key for p in points}) == 6
    with pytest.raises(ValueError, match="both axes and batched"):
        grid(demo_point, x=[1], batched={"x": 2})
    with pytest.raises(TypeError, match="must be a list"):
        grid(demo_point, x="abc")


# ------------------------------------------------------------ serial engine


def test_serial_sweep_writes_each_point_once_and_reuses_it(tmp_path):
    points = grid(demo_point, x=[0.5, 1.0, 2.0])
    first = run_sweep(points, name="demo", root=tmp_path)
    assert first.computed == [p.key for p in points] and first.reused == []
    pd.testing.assert_frame_equal(first.table, expected_table([0.5, 1.0, 2.0]))
    for p in points:
        folder = tmp_path / "demo" / "default" / p.key
        assert sorted(f.name for f in folder.iterdir() if not f.name.startswith(".")) == [
            "point.csv", "provenance.json"]
        assert R.ResultStore("demo", "default", p.identity, root=tmp_path).has_table("point")
    again = run_sweep(points, name="demo", root=tmp_path)
    assert again.computed == [] and again.reused == [p.key for p in points]
    pd.testing.assert_frame_equal(again.table, first.table)
    forced = run_sweep(points[:1], name="demo", root=tmp_path, recompute=True)
    assert forced.computed == [points[0].key]


def test_interrupted_sweep_resumes_with_nothing_lost(tmp_path):
    points = grid(demo_point, x=[1.0, 2.0, 3.0, 4.0, 5.0])
    seen = []

    def stop_after_two(point, table):
        seen.append(point.key)
        assert table.x.iloc[0] == point.params["x"]
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(points, name="resume", root=tmp_path, on_result=stop_after_two)
    resumed = run_sweep(points, name="resume", root=tmp_path)
    assert resumed.reused == seen
    assert resumed.computed == [p.key for p in points if p.key not in seen]
    pd.testing.assert_frame_equal(resumed.table, expected_table([1.0, 2.0, 3.0, 4.0, 5.0]))


def test_a_point_file_not_recorded_or_edited_is_recomputed(tmp_path):
    points = grid(demo_point, x=[1.0, 2.0])
    run_sweep(points, name="trust", root=tmp_path)
    store = S.SweepStore("trust", root=tmp_path)
    # edited by hand: checksum no longer matches
    path = store.folder(points[0]) / "point.csv"
    path.write_text(path.read_text().replace("square", "squares"))
    # a process killed after writing the table but before recording it
    (store.folder(points[1]) / "provenance.json").unlink()
    assert store.done(points) == []
    again = run_sweep(points, name="trust", root=tmp_path)
    assert again.computed == [p.key for p in points]
    pd.testing.assert_frame_equal(again.table, expected_table([1.0, 2.0]))


def test_sweep_argument_errors(tmp_path):
    points = grid(demo_point, x=[1.0])
    with pytest.raises(ValueError, match="listed twice"):
        run_sweep(points + points, root=tmp_path)
    with pytest.raises(ValueError, match="engine must be one of"):
        run_sweep(points, root=tmp_path, engine="ray")
    with pytest.raises(ValueError, match="engine='dask' only"):
        run_sweep(points, root=tmp_path, resources={"GPU": 1})
    with pytest.raises(TypeError, match="Point objects"):
        run_sweep([("alignbook.sweep:demo_point", {"x": 1})], root=tmp_path)
    with pytest.raises(ValueError, match="plain, non-empty"):
        run_sweep(points, name="a/b", root=tmp_path)
    bad = [Point("alignbook.results:canonical_json", {"params": {}})]  # returns a str
    with pytest.raises(S.SweepError, match="not a pandas DataFrame") as info:
        run_sweep(bad, name="bad", root=tmp_path)
    assert isinstance(info.value.__cause__, TypeError)
    assert not S.SweepStore("bad", root=tmp_path).is_done(bad[0])
    assert run_sweep([], root=tmp_path).table.empty


@pytest.mark.ci
@pytest.mark.slow
def test_train_point_is_tidy_and_batched():
    params = dict(rule="align_zero", width=8, epochs=1, seeds=[0, 1], learning_rates=[1.0],
                  batch_size=50, dataset_kwargs={"n_train": 100})
    a = train_point(**params)
    assert "seconds" not in set(a.metric)
    assert set(a.seed) == {0, 1} and set(a.run) == {0, 1}
    assert {"model", "width", "dataset", "rule", "epoch", "metric", "value"} <= set(a.columns)
    with pytest.raises(ValueError, match="model must be"):
        train_point(**{**params, "model": "vit"})


# --------------------------------------------------------------- dask engine


@pytest.mark.ci
@pytest.mark.slow
def test_dask_local_cluster_gives_the_serial_results(tmp_path):
    points = grid(train_point, rule=["align_ada"], width=[8],
                  batched=dict(epochs=1, seeds=[0, 1], learning_rates=[1.0, 2.0], batch_size=50,
                               dataset_kwargs={"n_train": 100}))
    points += grid(demo_point, x=[1.0, 2.0, 3.0])
    serial = run_sweep(points, name="same", root=tmp_path / "serial")
    # address=None: a LocalCluster of 2 worker processes for this call
    parallel = run_sweep(points, name="same", root=tmp_path / "dask", engine="dask", n_workers=2)
    assert sorted(parallel.computed) == sorted(p.key for p in points)
    pd.testing.assert_frame_equal(parallel.table, serial.table, check_exact=True)
    # the workers wrote the points through the same store
    store = S.SweepStore("same", root=tmp_path / "dask")
    assert store.done(points) == points


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.mark.ci
@pytest.mark.slow
def test_killing_a_worker_mid_sweep_loses_nothing(tmp_path, client):
    xs = [float(i) for i in range(8)]
    log = tmp_path / "computed.log"  # one line per finished computation, from any worker
    points = grid(demo_point, x=xs, seconds=[1.0], log=[str(log)])
    pids = client.run(os.getpid)  # worker address -> process id
    assert len(pids) == 2
    killed = []

    def kill_a_busy_worker(point, table):
        if killed:
            return
        busy = [addr for addr, keys in client.processing().items() if keys and addr in pids]
        victim = busy[0] if busy else next(iter(pids))
        os.kill(pids[victim], signal.SIGKILL)
        killed.append(victim)

    result = run_sweep(points, name="kill", root=tmp_path, engine="dask", address=client,
                       on_result=kill_a_busy_worker)
    assert killed, "no worker was killed"
    # every point present exactly once, with the values of the serial run
    assert sorted(result.computed) == sorted(p.key for p in points) and result.reused == []
    assert result.table.groupby("point").size().to_dict() == {p.key: 3 for p in points}
    expected = expected_table(xs).assign(log=str(log), seconds=1)  # canonical: 1.0 arrives as 1
    expected["point"] = [p.key for p in points for _ in range(3)]
    pd.testing.assert_frame_equal(result.table, expected)
    folders = list((tmp_path / "kill" / "default").iterdir())
    assert sorted(f.name for f in folders) == sorted(p.key for p in points)
    # each point computed once: the killed worker's point was interrupted (it logs when it
    # finishes) and run again elsewhere; at most that one point may have finished on the
    # dying worker just before it was stored, and then run twice
    counts = pd.Series(log.read_text().split()).astype(float).value_counts()
    assert sorted(counts.index) == xs and (counts > 1).sum() <= 1 and counts.max() <= 2
    # the cluster carried on without the dead worker (its nanny restarts it)
    assert len(client.scheduler_info()["workers"]) >= 1


@pytest.mark.ci
@pytest.mark.slow
def test_dask_without_shared_filesystem_and_resume(tmp_path, client):
    points = grid(demo_point, x=[1.0, 2.0, 3.0, 4.0])
    run_sweep(points[:2], name="ship", root=tmp_path)  # two finished already
    result = run_sweep(points, name="ship", root=tmp_path, engine="dask",
                       address=client.scheduler.address, shared_filesystem=False)
    assert result.reused == [p.key for p in points[:2]]
    assert sorted(result.computed) == sorted(p.key for p in points[2:])
    pd.testing.assert_frame_equal(result.table, expected_table([1.0, 2.0, 3.0, 4.0]))
