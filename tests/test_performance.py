"""The rule-cost benchmark: problems, compiled steps, HLO statistics, timing tables,
the ``alignbook bench`` command and the performance chapter."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import cpu_only

import alignlib as al
from alignbook import cli
from alignbook.cli import save_benchmark
from alignlib.experiments import performance


@pytest.mark.parametrize("kind, x_shape, y_shape", [
    ("mlp", (100, 8, 8), (100, 10)),
    ("convnet", (100, 8, 8, 1), (100, 10)),
    ("rnn", (50, 100, 1), (50, 100, 1)),
])
def test_bench_problem_shapes(kind, x_shape, y_shape):
    p = performance.bench_problem(kind, 8)
    assert p.x.shape == x_shape and p.y.shape == y_shape
    assert p.model(p.x).shape == y_shape
    assert p.batch_size == x_shape[0]
    assert p.loss_fn is (al.sequence_mse if kind == "rnn" else al.mse)


def test_bench_problem_options_and_errors():
    p = performance.bench_problem("convnet", 4, batch_size=10, input_shape=(32, 32, 3),
                            strides=(1, 1, 1, 2, 1, 2, 1))
    assert p.x.shape == (10, 32, 32, 3) and len(p.model.convs) == 7
    # the RNN's targets are the Add task's targets of its bits
    r = performance.bench_problem("rnn", 4, batch_size=3, seq_len=12)
    expected = 0.5 + 0.5 * np.roll(r.x[..., 0], 2, axis=1) - 0.25 * np.roll(r.x[..., 0], 5, axis=1)
    expected[:, :2] -= 0.5 * np.asarray(r.x[:, -2:, 0])
    expected[:, :5] += 0.25 * np.asarray(r.x[:, -5:, 0])
    np.testing.assert_allclose(r.y[..., 0], expected, atol=1e-6)
    with pytest.raises(ValueError, match="kind must be one of"):
        performance.bench_problem("transformer", 8)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        performance.bench_problem("mlp", 0)
    with pytest.raises(ValueError, match="batch_size"):
        performance.bench_problem("mlp", 8, batch_size=0)


@pytest.mark.ci
@pytest.mark.slow
def test_compiled_step_trains_and_feeds_state_back():
    p = performance.bench_problem("mlp", 32)
    program = performance.compile_step(p, "align_ada", lr=0.5)
    losses = [float(program.run()[2]) for _ in range(30)]
    assert losses[-1] < 0.8 * losses[0]
    # the first step equals one step of the rule written out by hand
    fresh = performance.compile_step(p, "backprop", lr=0.5)
    _, grads = al.backprop.gradient(p.model, None, p.x, p.y, p.loss_fn)
    model_arrays, _, loss = fresh.run()
    w = model_arrays.layers[0].weight
    np.testing.assert_allclose(w, p.model.layers[0].weight - 0.5 * grads.layers[0].weight,
                               rtol=1e-5, atol=1e-6)
    assert float(loss) == pytest.approx(float(p.loss_fn(p.model(p.x), p.y)), rel=1e-6)


@pytest.mark.slow
@cpu_only  # counts XLA:CPU's dot / convolution ops; GPUs compile to library calls and fusions
def test_hlo_op_counts_match_the_rules_arithmetic():
    """MLP with 2 hidden layers: backprop = 3 forward + 3 weight-gradient + 2 input-gradient
    products; Align-zero/ada add the initial network's 3 forward products; readout-only
    is a forward pass plus the readout's gradient. ConvNet: the same for convolutions."""
    p = performance.bench_problem("mlp", 64)
    stats = {r: performance.hlo_stats(performance.compile_step(p, r).compiled)
             for r in ("backprop", "align_zero", "align_ada", "align_prop", "readout")}
    assert stats["backprop"]["dot_ops"] == 8
    assert stats["align_zero"]["dot_ops"] == stats["align_ada"]["dot_ops"] == 11
    assert stats["align_prop"]["dot_ops"] == 8
    assert stats["readout"]["dot_ops"] == 4
    for r, s in stats.items():
        assert s["host_ops"] == 0 and s["conv_ops"] == 0 and s["while_ops"] == 0, r
    for r in ("align_zero", "align_ada"):
        assert 1.30 < stats[r]["flops"] / stats["backprop"]["flops"] < 1.45
    assert stats["align_prop"]["flops"] == stats["backprop"]["flops"]

    # two conv layers: 2 forward + 1 input-gradient convolutions (on CPU each weight
    # gradient is 9 tap products, alignlib.layers.conv_same); Align-zero adds the initial
    # network's 2 forward convolutions
    c = performance.bench_problem("convnet", 4, batch_size=8, input_shape=(4, 4, 1), strides=(1, 2))
    conv = {r: performance.hlo_stats(performance.compile_step(c, r).compiled)
            for r in ("backprop", "align_zero")}
    assert conv["backprop"]["conv_ops"] == 3 and conv["align_zero"]["conv_ops"] == 5

    r = performance.bench_problem("rnn", 8, seq_len=5)
    assert performance.hlo_stats(performance.compile_step(r, "backprop").compiled)["while_ops"] >= 1


def test_hlo_stats_sees_host_callbacks():
    def f(x):
        jax.debug.callback(lambda v: None, x)
        return x + 1

    compiled = jax.jit(f).lower(jnp.ones(3)).compile()
    assert performance.hlo_stats(compiled)["host_ops"] >= 1


def test_time_programs_interleaves_rounds():
    p = performance.bench_problem("mlp", 16)
    programs = {r: performance.compile_step(p, r) for r in ("backprop", "readout")}
    times = performance.time_programs(programs, warmup=1, repeats=4)
    assert set(times) == {"backprop", "readout"}
    assert all(t.shape == (4,) and np.all(t > 0) for t in times.values())
    with pytest.raises(ValueError):
        performance.time_programs(programs, repeats=0)


@pytest.mark.ci
@pytest.mark.slow
def test_time_rule_steps_table():
    p = performance.bench_problem("mlp", 16)
    table = performance.time_rule_steps(p.model, p.x, p.y, ["align_zero", "readout"], repeats=3,
                                  warmup=1)
    assert list(table.rule) == ["backprop", "align_zero", "readout"]
    bp = table.set_index("rule").loc["backprop"]
    assert bp.ratio_to_backprop == 1.0 and bp.flops_ratio == 1.0
    assert {"median_s", "q25_s", "q75_s", "ratio_q25", "ratio_q75", "dot_ops", "flops",
            "bytes_ratio", "compile_s"} <= set(table.columns)
    assert table.set_index("rule").loc["readout"].flops_ratio < 0.6
    with pytest.raises(ValueError, match="must not repeat"):
        performance.time_rule_steps(p.model, p.x, p.y, ["fa", "fa"], repeats=1)
    with pytest.raises(ValueError, match="unknown learning rule"):
        performance.time_rule_steps(p.model, p.x, p.y, ["sgd"], repeats=1)
    # the older entry point still works
    old = performance.benchmark({"m": lambda: p.model}, p.x, p.y, [], repeats=2, warmup=1)
    assert list(old.model.unique()) == ["m"] and list(old.rule) == ["backprop"]


@pytest.mark.ci
@pytest.mark.slow
def test_benchmark_rules_is_tidy_and_cost_table_pivots():
    tidy = performance.benchmark_rules({"mlp": [8, 16], "rnn": [4]},
                                 {"mlp": ["readout"], "rnn": []},
                                 repeats=2, warmup=1, problem_kwargs={"rnn": {"seq_len": 4}})
    assert list(tidy.columns) == ["experiment", "model", "width", "batch_size", "rule", "device",
                                  "metric", "value"]
    assert set(tidy.experiment) == {"rule_cost"}
    # one row per (model, width, rule, metric)
    assert not tidy.duplicated(["model", "width", "rule", "metric"]).any()
    wide = performance.cost_table(tidy)
    assert len(wide) == 2 * 2 + 1
    assert list(wide[wide.model == "rnn"].rule) == ["backprop"]
    assert (wide[wide.rule == "backprop"].ratio_to_backprop == 1).all()
    sub = performance.cost_table(tidy, ["ratio_to_backprop", "dot_ops"])
    assert list(sub.columns) == ["model", "width", "rule", "batch_size", "ratio_to_backprop",
                                 "dot_ops"]
    with pytest.raises(ValueError, match="unknown model kinds"):
        performance.benchmark_rules({"vit": [8]})


@pytest.mark.ci
@pytest.mark.slow
def test_batching_gain_table():
    table = performance.batching_gain("mlp", 8, 3, rule="align_zero", warmup=1, repeats=3)
    values = table.set_index("metric").value
    assert set(values.index) == {"single_run_s", "vmapped_s", "per_run_s", "speedup"}
    assert values.per_run_s == pytest.approx(values.vmapped_s / 3)
    assert values.speedup == pytest.approx(3 * values.single_run_s / values.vmapped_s)
    assert (table.n_runs == 3).all() and (table.rule == "align_zero").all()
    with pytest.raises(ValueError):
        performance.batching_gain("mlp", 8, 0)


def test_bench_point_and_save(tmp_path):
    tidy = performance.bench_point(model="mlp", width=8, rules=[], repeats=2, warmup=1)
    assert set(tidy.rule) == {"backprop"} and set(tidy.width) == {8}
    paths = save_benchmark(tidy, tmp_path / "out", settings={"widths": [8]})
    for kind in ("csv", "png", "pdf", "json"):
        assert paths[kind].is_file() and paths[kind].stat().st_size > 0
    pd.testing.assert_frame_equal(pd.read_csv(paths["csv"]), tidy, check_dtype=False)
    meta = json.loads(paths["json"].read_text())
    assert meta["settings"] == {"widths": [8]} and "jax" in meta["packages"]
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "out").glob(".tmp-*"))


def test_cli_bench_widths_parsing():
    assert cli._bench_widths(["mlp", "rnn"], []) == {"mlp": [256, 1024], "rnn": [64, 256]}
    assert cli._bench_widths(["mlp", "rnn"], ["8,16"]) == {"mlp": [8, 16], "rnn": [8, 16]}
    assert cli._bench_widths(["mlp", "rnn"], ["8", "rnn=4"]) == {"mlp": [8], "rnn": [4]}


@pytest.mark.ci
@pytest.mark.slow
def test_cli_bench_writes_table_and_figure(tmp_path, capsys):
    out = tmp_path / "bench"
    rc = cli.main(["bench", "--models", "mlp", "--widths", "mlp=8", "--rules", "readout",
                   "--repeats", "2", "--warmup", "1", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "readout" in text and "rule_cost.csv" in text
    tidy = pd.read_csv(out / "rule_cost.csv")
    assert set(zip(tidy.model, tidy.width)) == {("mlp", 8)}
    assert set(tidy.rule) == {"backprop", "readout"}
    assert (out / "rule_cost.png").is_file() and (out / "rule_cost.pdf").is_file()


@pytest.mark.parametrize("args, message", [
    (["--models", "vit"], "unknown model"),
    (["--rules", "sgd"], "unknown rule"),
    (["--models", "mlp", "--widths", "conv=8"], "not one of --models"),
    (["--widths", "8,x"], "must be integers"),
    (["--widths", "0"], "positive integer"),
    (["--repeats", "0"], "--repeats"),
])
def test_cli_bench_rejects_bad_arguments(args, message, capsys, tmp_path):
    rc = cli.main(["bench", *args, "--out", str(tmp_path)])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "rule_cost.csv").exists()


@pytest.mark.slow
def test_performance_chapter_in_the_tiny_profile(tiny_book):
    executed = tiny_book.chapter("performance")
    folder = executed.results / "performance" / "tiny"
    tidy = pd.read_csv(next(folder.glob("*/rule_cost.csv")))
    assert {"mlp", "convnet", "rnn"} == set(tidy.model)
    # the Add-task epochs timed against the authors' script, one row per rule, width and epoch
    timing = pd.read_csv(next(folder.glob("*/timing.csv")))
    assert set(timing.rule) == {"backprop", "align_ada"} and set(timing.width) == {8}
    # the benchmark's points went through the sweep store, one folder per (model, width)
    points = list((folder / "points" / "bench").glob("*/point.csv"))
    assert len(points) == tidy.groupby(["model", "width"]).ngroups
    # the chapter's claim: the largest Align-zero / Align-ada ratio at each model's widest
    # width, its quartiles as the interval, the verdict in the library's words
    from alignlib import claims

    (cost,) = executed.claims().values()
    wide = performance.cost_table(tidy)
    wide = wide[wide.rule.isin(["align_zero", "align_ada"])
                & (wide.width == wide.groupby("model").width.transform("max"))]
    worst = wide.loc[wide.ratio_to_backprop.idxmax()]
    assert cost.claim == "align-step-cost" and cost.figure == "fig-performance-rule-cost"
    assert cost.value == pytest.approx(worst.ratio_to_backprop)
    assert (cost.low, cost.high) == pytest.approx((worst.ratio_q25, worst.ratio_q75))
    below = (wide.ratio_q75 < performance.ALIGN_TARGET).all()
    above = (wide.ratio_q25 > performance.ALIGN_TARGET).any()
    assert cost.verdict in claims.VERDICTS and cost.verdict != claims.NOT_TESTED
    assert (cost.verdict == claims.HOLDS) == below
    assert (cost.verdict in (claims.HOLDS_IN_PART, claims.DOES_NOT_HOLD)) == (above and not below)
    assert executed.glued()["verdict_align_step_cost"] == cost.verdict


# ------------------------------------------------ the chapter's reading of the benchmark


def _wide_table(ratio: float = 1.3, spread: float = 0.02) -> pd.DataFrame:
    """A hand-made :func:`performance.cost_table`: every model at two widths, backprop,
    Align-zero and Align-ada, the Align rules at ``ratio`` of backprop's step time with
    quartiles ``ratio -/+ spread``."""
    rows = []
    for model, widths in (("mlp", (16, 256)), ("convnet", (8, 32)), ("rnn", (32, 64))):
        for width in widths:
            for rule in ("backprop", "align_zero", "align_ada"):
                r = 1.0 if rule == "backprop" else ratio + (0.01 if rule == "align_ada" else 0)
                rows.append(dict(model=model, width=width, rule=rule, median_s=1e-3 * r,
                                 ratio_to_backprop=r, ratio_q25=r - spread * (r != 1),
                                 ratio_q75=r + spread * (r != 1), ratio_of_minima=r,
                                 flops_ratio=4 / 3 if r != 1 else 1.0, bytes_ratio=1.2,
                                 dot_ops=8 if rule == "backprop" else 11, conv_ops=0,
                                 fusion_ops=10, host_ops=0))
    return pd.DataFrame(rows)


def test_the_chapters_numbers_and_claim_from_a_hand_made_table():
    from alignlib import claims
    from alignlib.experiments import performance_report as report

    wide = _wide_table()
    numbers = report.rule_cost_numbers(wide)
    assert numbers["mlp_width"] == (256, None) and numbers["n_checks"] == (6, None)
    assert numbers["n_met"] == (6, None) and numbers["worst_ratio"][0] == pytest.approx(1.31)
    assert numbers["mlp_dots_align"] == (11, None) and numbers["narrow_width"] == (16, None)
    assert numbers["narrow_kernel_ratio"][0] == pytest.approx(21 / 18)
    assert report.worst_case_text(wide) == "Align-ada on the MLP of width 256"
    claim = report.align_step_cost_claim(wide, "cpu")
    assert claim.verdict == claims.HOLDS and claim.value == pytest.approx(1.31)
    assert claim.measured.startswith("MLP (256) 1.30 [1.28, 1.32] / 1.31 [1.29, 1.33]")
    assert report.align_step_cost_claim(_wide_table(1.4), "cpu").verdict == claims.DOES_NOT_HOLD
    assert report.align_step_cost_claim(_wide_table(1.34, 0.1), "cpu").verdict \
        == claims.INCONCLUSIVE
    table = report.rule_cost_markdown(wide)
    assert "| MLP | 256 | Align-ada |" in table and "quartiles of the ratio" in table
    params = report.bench_point_params({"mlp": [16], "rnn": [8, 32]}, {"mlp": ["fa"], "rnn": []},
                                       warmup=1, repeats=2, conv_input=[8, 8, 1],
                                       conv_strides=[1, 2], rnn_length=5)
    assert [(p["model"], p["width"]) for p in params] == [("mlp", 16), ("rnn", 8), ("rnn", 32)]
    assert params[1]["problem_kwargs"] == {"seq_len": 5} and params[0]["rules"] == ["fa"]
    with pytest.raises(ValueError, match="must include"):
        report.check_add_task_rules(["backprop"])


def test_the_stored_gpu_plan_as_the_chapter_shows_it():
    from helpers import REPO

    from alignlib.experiments import performance_report as report

    plan, provenance = report.read_plan(REPO / "book" / "data" / "plan_gpu.csv")
    numbers = report.plan_numbers(plan, provenance)
    assert numbers["plan_points"][0] == plan.points.sum() > 0
    assert numbers["plan_hours"][0] == pytest.approx(plan.seconds.sum() / 3600)
    texts = report.plan_texts(plan, provenance)
    assert texts["plan_longest_chapter"] in set(plan.chapter) and len(texts["plan_date"]) == 10
    table = report.plan_markdown(plan)
    assert table.count("\n") == len(plan) + 2 and "| total |" in table
