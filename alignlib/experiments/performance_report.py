"""The performance chapter's reading of its measurements: the rule-cost table, the numbers
its prose quotes, its scorecard record, the Add-task timing table and the cost plan of
the gpu profile.

The measurements themselves are :mod:`alignlib.experiments.performance` (the compiled
steps, their timing and the benchmark's tidy table; :func:`~alignlib.experiments.
performance.cost_table` makes it one row per model, width and rule, the ``wide`` table
here) and :func:`alignlib.experiments.recurrent.time_epochs`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from alignlib.claims import Claim, verdict_of_intervals
from alignlib.experiments.performance import ALIGN_TARGET
from alignlib.experiments.plotting import RULE_LABELS
from alignlib.experiments.tables import markdown_table

__all__ = ["MODEL_NAMES", "bench_point_params", "rule_cost_markdown", "rule_cost_numbers",
           "worst_case_text", "align_step_cost_claim", "batching_numbers",
           "check_add_task_rules", "add_task_timing", "add_task_markdown", "add_task_numbers",
           "add_task_ratios_text", "default_dtype", "device_text", "read_plan", "plan_markdown",
           "plan_numbers", "plan_texts"]

#: The models' names in the page's prose and tables.
MODEL_NAMES = {"mlp": "MLP", "convnet": "ConvNet", "rnn": "RNN"}
_ALIGN = {"align_zero": "zero", "align_ada": "ada"}


# ------------------------------------------------------------------ the benchmark


def bench_point_params(widths: Mapping[str, Sequence[int]], rules: Mapping[str, Sequence[str]],
                       *, warmup: int, repeats: int, conv_input, conv_strides,
                       rnn_length: int) -> list[dict]:
    """The parameters of the benchmark's points
    (:func:`~alignlib.experiments.performance.bench_point`), one per model kind and
    width of ``widths``: ``model, width, rules, warmup, repeats, problem_kwargs``."""
    problem_kwargs = {"mlp": {}, "convnet": {"input_shape": conv_input, "strides": conv_strides},
                      "rnn": {"seq_len": rnn_length}}
    return [dict(model=kind, width=width, rules=rules[kind], warmup=warmup, repeats=repeats,
                 problem_kwargs=problem_kwargs[kind])
            for kind in widths for width in widths[kind]]


def rule_cost_markdown(wide: pd.DataFrame) -> str:
    """The benchmark's full table for the page: step time, the paired ratio to backprop's
    with its quartiles, the ratio of fastest steps, XLA's FLOP and byte ratios and the
    compiled step's op counts, one row per model, width and rule."""
    shown = wide.assign(
        ms_per_step=1e3 * wide.median_s, ratio=wide.ratio_to_backprop,
        ratio_iqr=[f"{a:.2f}–{b:.2f}" for a, b in zip(wide.ratio_q25, wide.ratio_q75)],
    )[["model", "width", "rule", "ms_per_step", "ratio", "ratio_iqr", "ratio_of_minima",
       "flops_ratio", "bytes_ratio", "dot_ops", "conv_ops", "fusion_ops", "host_ops"]]
    shown = shown.assign(model=shown.model.map(MODEL_NAMES),
                         rule=shown.rule.map(RULE_LABELS).fillna(shown.rule))
    return markdown_table(shown.rename(columns={
        "ms_per_step": "step (ms, median)", "ratio": "time / backprop's (median)",
        "ratio_iqr": "quartiles of the ratio", "ratio_of_minima": "fastest / backprop's fastest",
        "flops_ratio": "FLOPs / backprop's (XLA)", "bytes_ratio": "bytes moved / backprop's (XLA)",
        "dot_ops": "matrix products", "conv_ops": "convolutions", "fusion_ops": "fused kernels",
        "host_ops": "host transfers"}), {
        "width": "d", "step (ms, median)": ".3f", "time / backprop's (median)": ".2f",
        "fastest / backprop's fastest": ".2f", "FLOPs / backprop's (XLA)": ".2f",
        "bytes moved / backprop's (XLA)": ".2f", "matrix products": ".0f", "convolutions": ".0f",
        "fused kernels": ".0f", "host transfers": ".0f"})


def _row(wide: pd.DataFrame, kind: str, rule: str, width: int | None = None) -> pd.Series:
    """The row of ``kind`` and ``rule`` at ``width`` (default: the widest of ``kind``)."""
    part = wide[(wide.model == kind) & (wide.rule == rule)]
    width = part.width.max() if width is None else width
    return part[part.width == width].iloc[0]


def _widest_align_rows(wide: pd.DataFrame) -> list[pd.Series]:
    """Align-zero's and Align-ada's rows at each model's widest width."""
    return [_row(wide, kind, rule) for kind in MODEL_NAMES for rule in _ALIGN]


def rule_cost_numbers(wide: pd.DataFrame) -> dict[str, tuple[Any, str | None]]:
    """``{glue key: (value, format)}`` of the numbers the page quotes from the benchmark:
    per model its widest width, backprop's step time and Align-zero's and Align-ada's
    ratios (median, fastest, FLOPs, bytes); the op counts of the compiled steps; the
    target and how many median and fastest-step ratios meet it; the narrowest MLP's
    kernels and ratios (where fixed costs weigh as much as arithmetic)."""
    out: dict[str, tuple[Any, str | None]] = {}
    for kind in MODEL_NAMES:
        out[f"{kind}_width"] = (int(wide[wide.model == kind].width.max()), None)
        out[f"{kind}_backprop_ms"] = (1e3 * _row(wide, kind, "backprop").median_s, ".3g")
        for rule, short in _ALIGN.items():
            r = _row(wide, kind, rule)
            for name, column in (("ratio", "ratio_to_backprop"), ("min", "ratio_of_minima"),
                                 ("flops", "flops_ratio"), ("bytes", "bytes_ratio")):
                out[f"{kind}_{short}_{name}"] = (r[column], ".2f")
    # op counts of the compiled step (widest width; counts do not depend on width)
    out["mlp_dots_backprop"] = (int(_row(wide, "mlp", "backprop").dot_ops), None)
    out["mlp_dots_align"] = (int(_row(wide, "mlp", "align_zero").dot_ops), None)
    out["convnet_convs_backprop"] = (int(_row(wide, "convnet", "backprop").conv_ops), None)
    out["convnet_convs_align"] = (int(_row(wide, "convnet", "align_zero").conv_ops), None)
    out["host_ops_max"] = (int(wide.host_ops.max()), None)
    widest = _widest_align_rows(wide)
    medians = [r.ratio_to_backprop for r in widest]
    minima = [r.ratio_of_minima for r in widest]
    flops = [r.flops_ratio for r in widest]
    out.update(target=(ALIGN_TARGET, ".2f"), worst_ratio=(max(medians), ".2f"),
               n_checks=(len(widest), None),
               n_met=(sum(m <= ALIGN_TARGET for m in medians), None),
               flops_min=(min(flops), ".2f"), flops_max=(max(flops), ".2f"),
               minima_max=(max(minima), ".2f"),
               n_minima_met=(sum(m <= ALIGN_TARGET for m in minima), None))
    narrow = int(wide[wide.model == "mlp"].width.min())
    bp, zero, ada = (_row(wide, "mlp", r, narrow) for r in ("backprop", "align_zero", "align_ada"))

    def kernels(r):
        return r.dot_ops + r.fusion_ops + r.conv_ops

    out.update(narrow_width=(narrow, None), narrow_backprop_ms=(1e3 * bp.median_s, ".3f"),
               narrow_zero_ratio=(zero.ratio_to_backprop, ".2f"),
               narrow_ada_ratio=(ada.ratio_to_backprop, ".2f"),
               narrow_kernels_backprop=(int(kernels(bp)), None),
               narrow_kernels_align=(int(kernels(zero)), None),
               narrow_kernel_ratio=(kernels(zero) / kernels(bp), ".2f"),
               narrow_flops_ratio=(zero.flops_ratio, ".2f"))
    return out


def worst_case_text(wide: pd.DataFrame) -> str:
    """Which rule, model and width has the largest median ratio at the widest widths."""
    worst = max(_widest_align_rows(wide), key=lambda r: r.ratio_to_backprop)
    return f"{RULE_LABELS[worst.rule]} on the {MODEL_NAMES[worst.model]} of width {int(worst.width)}"


def align_step_cost_claim(wide: pd.DataFrame, profile: str) -> Claim:
    """The scorecard record of the 1.35x target: Align-zero's and Align-ada's step time
    over backprop's at each model's widest width; value: the largest median, interval:
    its quartiles; met when every interquartile range lies below the target."""
    widest = _widest_align_rows(wide)
    worst = max(widest, key=lambda r: r.ratio_to_backprop)
    measured = "; ".join(
        f"{MODEL_NAMES[kind]} ({int(_row(wide, kind, 'align_zero').width)}) "
        + " / ".join(f"{r.ratio_to_backprop:.2f} [{r.ratio_q25:.2f}, {r.ratio_q75:.2f}]"
                     for r in (_row(wide, kind, rule) for rule in _ALIGN))
        for kind in MODEL_NAMES) + " (Align-zero / Align-ada)"
    return Claim(
        chapter="performance", claim="align-step-cost",
        statement="An Align-zero or Align-ada training step costs one backprop step plus one "
                  "forward pass of the initial network: at most "
                  f"{ALIGN_TARGET:g} backprop steps",
        quantity="step time over backprop's in the same round at each model's widest width: "
                 "median over rounds, interval: quartiles over rounds; the largest median",
        value=worst.ratio_to_backprop, low=worst.ratio_q25, high=worst.ratio_q75,
        measured=measured,
        expectation=f"at most {ALIGN_TARGET:.2f} (the quartiles below it: met; above it: "
                    "missed; on both sides: undecided)",
        verdict=verdict_of_intervals([(r.ratio_q25, r.ratio_q75) for r in widest],
                                     ALIGN_TARGET, above=False),
        profile=profile, figure="fig-performance-rule-cost")


def batching_numbers(batching: pd.DataFrame, runs: int, width: int) -> dict[str, tuple]:
    """``{glue key: (value, format)}`` of the ``vmap`` measurement
    (:func:`~alignlib.experiments.performance.batching_gain`)."""
    gain = batching.set_index("metric").value
    return {"vmap_runs": (runs, None), "vmap_width": (width, None),
            "vmap_single_ms": (1e3 * gain.single_run_s, ".3f"),
            "vmap_stacked_ms": (1e3 * gain.vmapped_s, ".3f"),
            "vmap_per_run_ms": (1e3 * gain.per_run_s, ".3f"),
            "vmap_speedup": (gain.speedup, ".1f")}


# ------------------------------------------------------------------- the Add task

_TIMING_LABELS = {**RULE_LABELS, "backprop": "BPTT"}


def check_add_task_rules(rules: Sequence[str]) -> None:
    """The Add-task timing sets BPTT and Align-ada beside the authors' times: both must be
    timed."""
    if not {"backprop", "align_ada"} <= set(rules):
        raise ValueError(f"add_task_rules must include 'backprop' and 'align_ada' (the page "
                         f"sets both beside the authors' times), got {list(rules)}")


def add_task_timing(timing: pd.DataFrame) -> pd.DataFrame:
    """:func:`alignlib.experiments.recurrent.timing_summary` of a
    :func:`~alignlib.experiments.recurrent.time_epochs` table, with the arithmetic rate of
    an epoch (``gflop_per_cpu_s``: its recurrent matrix products,
    :func:`~alignlib.experiments.recurrent.epoch_flops`, per CPU second) beside that of one
    large product of the same width on this machine (``matmul_gflop_per_cpu_s``)."""
    from alignlib.experiments import recurrent as rec

    table = rec.timing_summary(timing)
    table["gflop_per_cpu_s"] = [rec.epoch_flops(w, r) / c / 1e9 for w, r, c in zip(
        table.width, table.rule, table.cpu_seconds_per_epoch)]
    reference = {w: rec.matmul_gflops(w) for w in sorted(set(table.width))}
    table["matmul_gflop_per_cpu_s"] = table.width.map(reference)
    return table


_TIMING_COLUMNS = {
    "rule": ("rule", None), "width": ("width", "d"), "seconds_per_epoch": ("s / epoch", ".3f"),
    "train_eval_seconds_per_epoch": ("training-set pass (s)", ".3f"),
    "cores_busy": ("cores busy", ".2f"), "load_average": ("load", ".1f"),
    "first_epoch_seconds": ("epoch 1 (s)", ".2f"),
    "extrapolated_200_epochs_s": ("200 epochs (s)", ".0f"),
    "extrapolated_200_epochs_with_train_eval_s": ("200 epochs with training-set pass (s)", ".0f"),
    "authors_tf_s": ("authors' TF, 200 epochs (s)", ".0f"),
    "ratio_to_authors": ("ours / theirs", ".2f"),
    "ratio_to_authors_with_train_eval": ("ours / theirs, with training-set pass", ".2f"),
    "gflop_per_cpu_s": ("GFLOP / CPU s", ".0f"),
    "matmul_gflop_per_cpu_s": ("one product, GFLOP / CPU s", ".0f"),
}


def add_task_markdown(table: pd.DataFrame) -> str:
    """:func:`add_task_timing` as the page's Markdown table."""
    shown = table.assign(rule=table.rule.map(_TIMING_LABELS))[list(_TIMING_COLUMNS)]
    shown = shown.rename(columns={k: label for k, (label, _) in _TIMING_COLUMNS.items()})
    return markdown_table(shown, formats={label: fmt for label, fmt in _TIMING_COLUMNS.values()
                                          if fmt}, default=".3g")


def add_task_numbers(table: pd.DataFrame, epochs: int) -> dict[str, tuple]:
    """``{glue key: (value, format)}``: the authors' TensorFlow times
    (``tf_<rule>_<width>``), the epochs timed and the largest load average while timing."""
    from alignlib.experiments import recurrent as rec

    out = {f"tf_{rule}_{width}": (seconds, ".0f")
           for (rule, width), seconds in rec.AUTHORS_SECONDS_200_EPOCHS.items()}
    out.update(timing_epochs=(epochs, "d"), t_load=(table.load_average.max(), ".1f"))
    return out


def add_task_ratios_text(table: pd.DataFrame) -> str:
    """Our time for 200 epochs over the authors', per rule and width they timed."""
    compared = table.dropna(subset=["ratio_to_authors"])
    return "; ".join(
        f"{_TIMING_LABELS[r.rule]} at width {r.width}: {r.ratio_to_authors:.2f} "
        f"({r.ratio_to_authors_with_train_eval:.2f} with the training-set pass)"
        for r in compared.itertuples()) or "no timed width has a time of the authors"


def default_dtype() -> str:
    """The dtype of JAX's floating-point arrays here (``float32`` unless 64-bit is on)."""
    import jax.numpy as jnp

    return str(jnp.zeros(()).dtype)


def device_text() -> str:
    """The JAX device this process computes on, and the CPU cores it sees."""
    import jax

    device = jax.devices()[0]
    return f"{device.device_kind} ({device.platform}, {os.cpu_count()} CPU cores visible)"


# --------------------------------------------------------------- the stored cost plan


def read_plan(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """A cost plan stored by ``alignbook plan --save``: its per-chapter table (``chapter,
    points, runs, steps_per_run, flops, sweep_seconds, extra_seconds, page_seconds,
    seconds, longest_seconds``) and its provenance (the ``.json`` beside it)."""
    path = Path(path)
    provenance = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    return pd.read_csv(path), provenance


def plan_markdown(chapters: pd.DataFrame) -> str:
    """The plan's chapters as the page's table, times in device-hours, with the total."""
    shown = pd.DataFrame({
        "chapter": chapters.chapter, "points": chapters.points, "networks trained": chapters.runs,
        "SGD steps per network (at most, mean)": chapters.steps_per_run,
        "FLOPs": [f"{f:.2g}" for f in chapters.flops],
        "device-hours": chapters.seconds / 3600,
        "longest point (h)": chapters.longest_seconds / 3600})
    total = {"chapter": "total", "points": chapters.points.sum(),
             "networks trained": chapters.runs.sum(),
             "SGD steps per network (at most, mean)": np.nan,
             "FLOPs": f"{chapters.flops.sum():.2g}", "device-hours": chapters.seconds.sum() / 3600,
             "longest point (h)": chapters.longest_seconds.max() / 3600}
    shown = pd.concat([shown, pd.DataFrame([total])], ignore_index=True)
    return markdown_table(shown, {"points": "d", "networks trained": "d",
                                  "SGD steps per network (at most, mean)": ",.0f",
                                  "device-hours": ".3g", "longest point (h)": ".2g"})


def plan_numbers(chapters: pd.DataFrame, provenance: dict) -> dict[str, tuple]:
    """``{glue key: (value, format)}`` of a stored plan: its totals (points, FLOPs,
    device-hours, the longest point) and the throughput it assumed."""
    return {"plan_points": (int(chapters.points.sum()), ",d"),
            "plan_flops": (float(chapters.flops.sum()), ".2g"),
            "plan_hours": (float(chapters.seconds.sum()) / 3600, ".0f"),
            "plan_longest_hours": (float(chapters.longest_seconds.max()) / 3600, ".1f"),
            "plan_tflops": (float(provenance["assumptions"]["device_tflops"]), "g")}


def plan_texts(chapters: pd.DataFrame, provenance: dict) -> dict[str, str]:
    """``{glue key: text}`` of a stored plan: the chapter of its longest point, the CPU
    its programs were compiled on, the date and commit that wrote it."""
    git = provenance.get("git") or {}
    commit = (git.get("revision") or "unknown")[:10] + (" with local changes" if git.get("dirty")
                                                        else "")
    return {"plan_longest_chapter": str(chapters.loc[chapters.longest_seconds.idxmax(), "chapter"]),
            "plan_device": str(provenance["device"].get("cpu") or provenance["assumptions"]["device"]),
            "plan_date": str(provenance["written"])[:10], "plan_commit": commit}
