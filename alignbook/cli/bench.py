"""``alignbook bench``: one compiled training step of every rule, timed against backprop.

:func:`_cmd_bench` checks ``--models``, ``--widths`` (:func:`_bench_widths`), ``--rules``
and the repeat counts, times the steps with
:func:`alignlib.experiments.performance.benchmark_rules` and writes the tidy table, the
figure and the settings with :func:`save_benchmark`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

from alignbook import pipeline as _book
from alignbook import results as _results


#: Widths each model kind is timed at when --widths does not name it.
_BENCH_WIDTHS = {"mlp": [256, 1024], "convnet": [32, 64], "rnn": [64, 256]}


def _fmt_widths(widths) -> str:
    return ",".join(str(w) for w in widths)


def _bench_widths(models: list[str], specs: list[str]) -> dict[str, list[int]]:
    widths = {m: list(_BENCH_WIDTHS.get(m, [])) for m in models}
    for spec in specs:
        target, sep, values = spec.rpartition("=")
        kinds = [target.strip()] if sep else models
        try:
            parsed = [int(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise _book.BookError(f"--widths {spec!r}: widths must be integers, e.g. 256,1024") from None
        if not parsed or any(w < 1 for w in parsed):
            raise _book.BookError(f"--widths {spec!r}: give positive integer widths, e.g. 256,1024")
        for kind in kinds:
            if kind not in widths:
                raise _book.BookError(f"--widths {spec!r}: {kind!r} is not one of --models {','.join(models)}")
            widths[kind] = parsed
    return widths


def _cmd_bench(args) -> int:
    from alignlib.experiments import performance as _performance
    from alignlib.rules import RULES

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in _performance.BENCH_MODELS]
    if not models or bad:
        raise _book.BookError(f"--models: unknown model(s) {bad or models}; choose from "
                              f"{', '.join(_performance.BENCH_MODELS)}")
    widths = _bench_widths(models, args.widths)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()] if args.rules else list(RULES)
    unknown = [r for r in rules if r not in RULES]
    if not rules or unknown:
        raise _book.BookError(f"--rules: unknown rule(s) {unknown or rules}; choose from {', '.join(RULES)}")
    if args.repeats < 1 or args.warmup < 0:
        raise _book.BookError("--repeats must be at least 1 and --warmup at least 0")
    if args.batch_size is not None and args.batch_size < 1:
        raise _book.BookError("--batch-size must be at least 1")
    root = getattr(args, "root", None)
    out = args.out if args.out is not None else (root or _results.project_root()) / "results" / "bench"

    import matplotlib

    matplotlib.use("Agg")
    t0 = time.perf_counter()
    tidy = _performance.benchmark_rules(widths, rules, batch_size=args.batch_size, warmup=args.warmup,
                                  repeats=args.repeats, progress=True)
    settings = {"models": widths, "rules": rules, "batch_size": args.batch_size,
                "warmup": args.warmup, "repeats": args.repeats}
    paths = save_benchmark(tidy, out, settings=settings)
    table = _performance.cost_table(tidy, ["median_s", "ratio_to_backprop", "flops_ratio", "dot_ops", "conv_ops"])
    import pandas as pd

    with pd.option_context("display.width", 120, "display.max_rows", 500):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"Done in {time.perf_counter() - t0:.1f} s.")
    for kind in ("csv", "png", "pdf", "json"):
        print(f"  {kind}: {paths[kind]}")
    return 0


def save_benchmark(tidy, out: str | Path, *, name: str = "rule_cost",
                   settings: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write the benchmark into folder ``out``: ``<name>.csv`` (the tidy table),
    ``<name>.png`` / ``.pdf`` (:func:`alignlib.experiments.performance.plot_rule_costs`) and ``<name>.json`` (settings,
    package versions, device, git revision), each file written atomically."""
    import matplotlib.pyplot as plt

    from alignlib.experiments import performance as _performance

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{name}.csv", "png": out / f"{name}.png",
             "pdf": out / f"{name}.pdf", "json": out / f"{name}.json"}
    with _results._atomic_path(paths["csv"]) as tmp:
        tidy.to_csv(tmp, index=False)
    fig = _performance.plot_rule_costs(tidy)
    for kind in ("png", "pdf"):
        with _results._atomic_path(paths[kind]) as tmp:
            fig.savefig(tmp, format=kind, dpi=150, bbox_inches="tight")
    plt.close(fig)
    meta = {"settings": _results._jsonable(dict(settings or {})),
            "packages": _results._package_versions(), "device": _results._device_info(),
            "git": _results._git_info(_results.project_root()), "timestamp": _results._now(),
            "files": {k: p.name for k, p in paths.items() if k != "json"}}
    with _results._atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return paths
