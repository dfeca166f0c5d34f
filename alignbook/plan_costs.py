"""What work costs on this machine, for the cost plan (:mod:`alignbook.plan`): the
device's rates, the compiled programs' FLOPs and compile times, and a chapter page's own
time.

**The clock.** On a CPU every time here is this process's CPU time (all its threads): the
wall time the work takes on cores it has to itself, whatever else the machine runs (a
build shares two cores between two chapters at a time, and other processes come and go).
On an accelerator it is wall time (the device's work is not this process's CPU time).

* :func:`measure_device`: the float32 throughput of a matrix product, the per-step and
  per-epoch cost of :func:`alignlib.train`'s loop besides arithmetic, and its start-up as
  a line in the compile time of the networks it trains;
* :func:`step_costs`: XLA's FLOPs of one SGD step and one forward pass of a
  :class:`~alignlib.experiments.points.Workload`, and their compile time;
* :func:`program_costs`: the same for any other compiled program (``jax.jit(f).lower``);
* :func:`page_seconds`: what a chapter's page takes besides its computations (kernel,
  imports, analysis, tables, figures), read from its last executed notebook.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["clock", "measure_device", "step_costs", "program_costs", "page_seconds",
           "COMPUTING_CELL"]


def clock() -> Callable[[], float]:
    """The clock of every measurement here (module docstring): ``time.process_time`` on a
    CPU, ``time.perf_counter`` on an accelerator."""
    import jax

    return time.process_time if jax.default_backend() == "cpu" else time.perf_counter


def _train_seconds(arch: str, shape: tuple, n: int, epochs: int) -> float:
    """Seconds of :func:`alignlib.train` on ``n`` examples of a width-2 network (batch 1,
    one held-out example), start-up included."""
    from alignlib.data import Dataset
    from alignlib.models import model_factory
    from alignlib.training import train

    x = np.zeros((n, *shape), np.float32)
    y = np.zeros((n, 2), np.float32)
    data = Dataset("overhead", x, y, x[:1], y[:1], None, None, 2)
    now = clock()
    start = now()
    train(model_factory(arch, shape, 2, 2), "backprop", data, epochs=epochs, batch_size=1,
          progress=False)
    return now() - start


def measure_device(size: int = 1024, repeats: int = 10) -> dict[str, float]:
    """This machine's default JAX device, with :func:`clock`:

    * ``tflops``: the float32 rate of a ``size``-square matrix product (its fastest of
      ``repeats``);
    * ``call_seconds``: calling a compiled step of a negligible network from Python (the
      part of a step timed by :func:`step_costs` that a step inside a loop does not pay);
    * ``step_overhead``: what an SGD step of :func:`alignlib.train`'s loop costs besides
      its arithmetic: the growth of a negligible network's (width 2, batch 1, 2000
      examples) training time from one epoch to three, per step;
    * ``epoch_overhead``: what an epoch costs besides its steps (launching it, the
      evaluation of one held-out example, the host's bookkeeping): the growth from 2 to
      52 epochs of one step each, per epoch, less a step;
    * ``startup_seconds`` and ``compile_factor``: the line through two small networks'
      (an MLP and a ConvNet) whole start-up in :func:`alignlib.train` (building networks
      and states, compiling the epoch and evaluation; their first run less its epochs)
      against the compile time of their step and forward programs (:func:`step_costs`).

    The second and later runs of a network reuse its compiled programs, so differences of
    them hold no compilation.
    """
    import jax
    import jax.numpy as jnp

    from alignlib.data import Dataset  # noqa: F401  (imported before timing)
    from alignlib.experiments.points import Workload
    from alignlib.models import model_factory
    from alignlib.rules import mse

    jax.clear_caches()  # start-ups compile, even where this process compiled them before
    now = clock()
    a = jnp.ones((size, size), jnp.float32)
    product = jax.jit(lambda x: x @ x)
    product(a).block_until_ready()
    fastest = np.inf
    for _ in range(repeats):
        start = now()
        product(a).block_until_ready()
        fastest = min(fastest, now() - start)
    tflops = 2 * size ** 3 / fastest / 1e12
    mlp = ("mlp", (2,))
    found = []
    for arch, shape in (mlp, ("convnet", (4, 4, 1))):
        first = _train_seconds(arch, shape, 1, 2)  # compiles
        short, long = _train_seconds(arch, shape, 1, 2), _train_seconds(arch, shape, 1, 52)
        per_epoch = (long - short) / 50
        x = np.zeros((1, *shape), np.float32)
        y = np.zeros((1, 2), np.float32)
        compiled = step_costs(Workload(model_factory(arch, shape, 2, 2), "backprop", x, y, mse,
                                       1, 1, 1))
        found.append((compiled["compile_seconds"], max(0.0, first - 2 * per_epoch), per_epoch))
    (c1, s1, epoch), (c2, s2, _) = found
    _train_seconds(*mlp, 2000, 1)  # compiles for 2000 examples
    step = (_train_seconds(*mlp, 2000, 3) - _train_seconds(*mlp, 2000, 1)) / (2 * 2000)
    factor = max(1.0, (s2 - s1) / (c2 - c1)) if c2 > c1 else 1.0
    x, y = np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32)
    call = step_costs(Workload(model_factory("mlp", (2,), 2, 2), "backprop", x, y, mse, 1, 1, 1),
                      timed=True)["step_seconds"]
    return {"tflops": tflops, "call_seconds": call, "step_overhead": max(0.0, step),
            "epoch_overhead": max(0.0, epoch - step),
            "startup_seconds": max(0.0, s1 - factor * c1), "compile_factor": factor}


def _zeros(args):
    """``args`` with every :class:`jax.ShapeDtypeStruct` replaced by zeros of its shape."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype)
                        if isinstance(a, jax.ShapeDtypeStruct) else a, args)


def _seconds_per_call(compiled, args, repeats: int = 3) -> float:
    """The fastest of ``repeats`` calls of ``compiled(*args)`` after one warm-up, by
    :func:`clock`."""
    import jax

    now = clock()
    jax.block_until_ready(compiled(*args))
    fastest = float("inf")
    for _ in range(repeats):
        start = now()
        jax.block_until_ready(compiled(*args))
        fastest = min(fastest, now() - start)
    return fastest


def program_costs(fn, args: tuple, *, timed: bool = False) -> dict[str, float]:
    """``flops`` (XLA's cost analysis, a loop body counted once) and ``compile_seconds``
    (lowering and compiling, :func:`clock`) of the jitted ``fn`` on ``args`` (arrays or
    :class:`jax.ShapeDtypeStruct`); with ``timed``, also ``seconds`` per call, run here on
    zeros."""
    from alignlib.experiments.performance import hlo_stats

    now = clock()
    start = now()
    compiled = fn.lower(*args).compile()
    out = {"flops": hlo_stats(compiled)["flops"], "compile_seconds": now() - start}
    if timed:
        out["seconds"] = _seconds_per_call(compiled, _zeros(args))
    return out


def step_costs(workload, *, timed: bool = False) -> dict[str, float]:
    """FLOPs of one SGD step of ``workload`` (per network, every rule of the workload:
    ``step_flops``) and of one forward pass of a batch (``forward_flops``), from XLA's
    cost analysis of the compiled programs; ``compile_seconds``: compiling them (and the
    rules' state), :func:`clock` (``step_compile_seconds`` and ``forward_compile_seconds``
    its parts); ``batch``: the batch size. With ``timed``, the programs
    are those of the workload's ``runs`` networks stacked, as :func:`alignlib.train` runs
    them (FLOPs still per network), and ``step_seconds`` and ``forward_seconds`` are
    their times per call here (:func:`clock`, the fastest of three)."""
    import equinox as eqx
    import jax

    from alignlib.experiments.performance import Problem, compile_step, hlo_stats

    now = clock()
    model = eqx.filter_jit(workload.make)(jax.random.key(0, impl="rbg"))
    x, y = jax.numpy.asarray(workload.x), jax.numpy.asarray(workload.y)
    problem = Problem("plan", 0, model, x, y, workload.loss_fn)
    runs = workload.runs if timed else None
    out = {"step_flops": 0.0, "step_seconds": 0.0, "step_compile_seconds": 0.0,
           "batch": int(x.shape[0])}
    for rule in (workload.rule, *workload.extra_rules):
        start = now()
        program = compile_step(problem, rule, runs=runs)
        out["step_compile_seconds"] += now() - start
        out["step_flops"] += hlo_stats(program.compiled)["flops"] / (runs or 1)
        if timed:
            out["step_seconds"] += _seconds_per_call(program.compiled, (program.args,))
            program.args = None  # the stacked networks' memory
    arrays, static = eqx.partition(model, eqx.is_array)

    def forward(a, xb):
        return eqx.combine(a, static)(xb)

    if timed:
        arrays = jax.tree.map(lambda a: jax.numpy.repeat(a[None], runs, 0), arrays)
        forward = jax.vmap(forward, in_axes=(0, None))
    found = program_costs(jax.jit(forward), (arrays, x), timed=timed)
    out.update(forward_flops=found["flops"] / (runs or 1),
               forward_compile_seconds=found["compile_seconds"],
               compile_seconds=out["step_compile_seconds"] + found["compile_seconds"],
               forward_seconds=found.get("seconds", 0.0))
    return out


#: What marks a cell of a chapter that computes something the plan estimates: every
#: computation of a chapter is a table its result store caches.
COMPUTING_CELL = "store.cached("


def page_seconds(book, profile: str, chapter: str) -> tuple[float, str | None]:
    """What ``chapter``'s page takes under ``profile`` besides the computations the plan
    estimates (starting its kernel, imports, analysis, tables, figures): its last executed
    notebook's time (papermill's, wall) less its cells that compute a cached table
    (:data:`COMPUTING_CELL`). The newer of the build's executed notebook and
    ``alignbook run``'s; ``(seconds, path)``, ``(nan, None)`` when neither exists or
    records no times."""
    import nbformat

    candidates = [book.executed_path(profile, chapter),
                  book.build_dir / "runs" / profile / f"{chapter}.ipynb"]
    found = [p for p in candidates if Path(p).is_file()]
    if not found:
        return float("nan"), None
    path = max(found, key=lambda p: Path(p).stat().st_mtime)
    try:
        nb = nbformat.read(path, as_version=4)
        total = float(nb.metadata["papermill"]["duration"])
        computing = sum(float(c.metadata.get("papermill", {}).get("duration") or 0.0)
                        for c in nb.cells
                        if c.cell_type == "code" and COMPUTING_CELL in c.source)
    except (OSError, KeyError, TypeError, ValueError, json.JSONDecodeError):
        return float("nan"), None
    return max(0.0, total - computing), str(path)
