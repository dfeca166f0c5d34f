"""What each chapter of a profile computes, listed without computing it, for the cost
plan (:mod:`alignbook.plan`).

* **Sweep points** (:func:`chapter_points`): the chapter's sweep calls, as in its notebook,
  with ``points_only=True`` (:mod:`alignlib.experiments.points`), on data sets of the
  right shapes that hold no data (:func:`stand_in_dataset`; no data file is read). Each
  point's :meth:`~alignlib.experiments.points.Point.workload` says what it trains. The
  learning rates the rules and low-data chapters measure before their sweeps are all
  taken as 1 (they do not change the cost), unless ``measured=True``: then they are
  measured as the notebook does, so that the points are the chapter's own, the points
  its runner stores (:mod:`alignbook.plan_stored`).
* **Programs a point runs besides training** (:func:`point_programs`): the alignment
  chapter's scores, after every epoch at the narrowest and widest width and after the last
  elsewhere, and the authors' probe estimates at the probe widths.
* **Work a chapter does besides its sweeps** (:func:`chapter_extras`), as
  :class:`Extra` items costed like training: the stable learning rates at initialisation
  of the rules and low-data chapters (a power iteration on the NTK per width or batch
  size), and the recurrent chapter's check at initialisation and its runs from the
  authors' seed.

:func:`planned_parameters` lists the parameters all this reads, for the stored plan's
provenance.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import inspect
import weakref
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from alignbook.parameters import BookError, resolve_parameters

__all__ = ["stand_in_dataset", "is_stand_in", "chapter_parameters", "chapter_points", "chapter_extras",
           "point_programs", "planned_parameters", "Extra", "Program", "PLANNED_CHAPTERS",
           "CHAPTER_EXTRAS", "CHAPTER_JAX_SETTINGS", "POINT_PROGRAMS"]

#: Data sets read from files: input shape, classes, training-file and official test sizes.
_FILE_SETS = {
    "kmnist": ((28, 28, 1), 10, 60000, 10000),
    "cifar10": ((32, 32, 3), 10, 50000, 10000),
    "imagenet32": ((32, 32, 3), 1000, 1281167, 50000),
}
_DEFAULT_SPLIT = {"kmnist": "heldout", "cifar10": "heldout", "imagenet32": "test"}
#: The data sets :func:`stand_in_dataset` made without reading their files.
_STAND_INS: "weakref.WeakSet" = weakref.WeakSet()
#: Whether the learning rates a chapter measures before its sweep are measured for real.
_MEASURED = contextvars.ContextVar("measured_learning_rates", default=False)


def stand_in_dataset(name: str, *, n_train: int | None = None, cap_heldout: bool = False,
                     split: str | None = None, holdout: int | None = None, **_):
    """A data set with the shapes ``load_dataset(name, ...)`` would return and no data:
    every array is a read-only view of one zero (no memory, no files). The offline sets
    (``digits``, ``add``) are loaded for real: they are small."""
    from alignlib.data import AUTHORS_HOLDOUT, Dataset, load_dataset

    if name not in _FILE_SETS:
        kwargs = {} if n_train is None else {"n_train": n_train}
        return load_dataset(name, cap_heldout=cap_heldout, **kwargs)
    shape, classes, in_file, official_test = _FILE_SETS[name]
    split = split or _DEFAULT_SPLIT[name]
    holdout = (AUTHORS_HOLDOUT if split == "heldout" else 0) if holdout is None else holdout
    train = in_file - holdout if not n_train else int(n_train)
    test = holdout if split == "heldout" else official_test
    if cap_heldout and n_train:
        test = min(test, int(n_train))
    zero = np.zeros((), np.float32)

    def arrays(n, *tail, dtype=np.float32):
        return np.broadcast_to(np.zeros((), dtype), (n, *tail))

    data = Dataset(name=name, x_train=np.broadcast_to(zero, (train, *shape)),
                   y_train=arrays(train, classes), x_test=np.broadcast_to(zero, (test, *shape)),
                   y_test=arrays(test, classes), labels_train=arrays(train, dtype=np.int64),
                   labels_test=arrays(test, dtype=np.int64), n_outputs=classes)
    _STAND_INS.add(data)
    return data


def is_stand_in(data) -> bool:
    """Whether ``data`` is a data set :func:`stand_in_dataset` made without its files (its
    arrays are zeros: a point on it is not the point the chapter runs)."""
    return data in _STAND_INS


class _ReadParameters(dict):
    """A chapter's parameters that remember which of them were read (``read``)."""

    def __init__(self, values: Mapping[str, Any]):
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return super().__getitem__(name)


def chapter_parameters(book, profile: str, chapter: str) -> dict[str, Any]:
    """Every parameter of ``chapter`` under ``profile``: its notebook's defaults with the
    profile's values."""
    values = {name: p.default for name, p in book.parameters(chapter).items() if p.literal}
    values.update(resolve_parameters(book, chapter, profile))
    return _ReadParameters(values)


# ------------------------------------------------------------ the chapters' sweeps


def _benchmark_data(p: Mapping[str, Any], **kwargs):
    return stand_in_dataset(p["dataset"], **kwargs)


def _alignment(p: Mapping[str, Any]) -> list:
    from alignlib.experiments import layer_alignment as la

    return la.alignment_experiments(
        p["datasets"], n_train=p["n_train"], epochs=p["epochs"], lr=p["lr"], seeds=p["seeds"],
        mlp_widths=p["mlp_widths"], mlp_depth=p["mlp_depth"], conv_widths=p["conv_widths"],
        probe_widths=p["probe_widths"], probe_batches=p["probe_batches"],
        load=lambda name, **kw: stand_in_dataset(name, **kw), points_only=True)


@dataclasses.dataclass(frozen=True)
class Extra:
    """Work a chapter does besides training its sweep points, costed like a point.

    ``what``: a short description; ``workload``: the work as SGD steps of a network
    (:class:`~alignlib.experiments.points.Workload`); ``in_train``: whether it runs in
    :func:`alignlib.train`'s loop (a point's start-up and per-epoch costs) or as compiled
    programs of its own (their compile time only); ``epochs``: the loop's epochs."""

    what: str
    workload: Any
    in_train: bool = False
    epochs: int = 0


@contextlib.contextmanager
def _recorded_learning_rates() -> Iterator[list[Extra]]:
    """The rules and low-data chapters measure each point's stable learning rate at
    initialisation (:func:`alignlib.experiments.feedforward.stable_lr_at_init`). The plan
    needs only which learning rates a point trains, so inside the block every bound is 1
    (measured for real inside :func:`chapter_points` with ``measured=True``, on data read
    from files), and each measurement is recorded as an :class:`Extra`: the power iteration of
    :func:`alignlib.stability.ntk_top_eigenvalue`, whose every iteration (a
    vector-Jacobian product and its transpose on the batch) is costed as a backprop step."""
    from alignlib.experiments import feedforward as ff
    from alignlib.experiments.points import Workload
    from alignlib.models import model_factory
    from alignlib.rules import mse
    from alignlib.stability import ntk_top_eigenvalue

    iterations = inspect.signature(ntk_top_eigenvalue).parameters["iterations"].default
    measure = ff.stable_lr_at_init
    found: list[Extra] = []

    def record(data, **kwargs):
        bound = inspect.signature(measure).bind(data, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        x = data.x_train[:min(a["batch_size"], data.n_train)]
        shape = tuple(data.x_train.shape[1:])
        make = model_factory(a["arch"], shape, data.n_outputs, a["width"], depth=a["depth"],
                             strides=a["strides"], parameterization=a["parameterization"],
                             bias_multiplier=a["bias_multiplier"])
        structure = ("ntk", a["arch"], shape, data.n_outputs, a["width"], a["depth"],
                     tuple(a["strides"]), a["parameterization"], len(x))
        found.append(Extra(f"stable learning rate at initialisation: {a['arch']} of width "
                           f"{a['width']}, batch {len(x)}", Workload(
                               make, "backprop", x, data.y_train[:len(x)], mse, runs=1,
                               steps=iterations, eval_examples=0, structure=structure)))
        if _MEASURED.get() and not is_stand_in(data):
            return measure(data, **kwargs)
        return {"ntk_top_eigenvalue": 1.0, "lr_bound": 1.0}

    ff.stable_lr_at_init = record
    try:
        yield found
    finally:
        ff.stable_lr_at_init = measure


def _rules_network(p: Mapping[str, Any]) -> dict:
    return dict(arch=p["arch"], depth=p["depth"], strides=p["strides"],
                bias_multiplier=p["bias_multiplier"])


def _rules_lr_plan(p: Mapping[str, Any], data):
    from alignlib.experiments import rules_vs_width as rv

    return rv.learning_rate_plan(
        data, p["widths"], fractions=p["lr_fractions"], common_fraction=p["common_fraction"],
        lrs=p["lrs"], wide_fractions=p["wide_lr_fractions"], wide_from=p["wide_from"],
        sweep_widths=p["lr_sweep_widths"], sweep_fractions=p["lr_sweep_fractions"],
        **_rules_network(p))


def _rules(p: Mapping[str, Any]) -> list:
    from alignlib.experiments import feedforward as ff
    from alignlib.experiments import rules_vs_width as rv

    data = _benchmark_data(p)
    network = _rules_network(p)
    with _recorded_learning_rates():
        lr_plan = _rules_lr_plan(p, data)
    points = rv.sweep(data, lr_plan, rules=p["rules"], wide_rules=p["wide_rules"],
                      wide_from=p["wide_from"], seeds=p["seeds"], epochs=p["max_epochs"],
                      convergence_tolerance=p["convergence_tolerance"],
                      seeds_per_call=p["seeds_per_call"] or None, points_only=True, **network)
    if p["adam_widths"] and p["adam_rules"]:
        points += ff.width_sweep(
            data, widths=p["adam_widths"], rules=p["adam_rules"], lrs=p["adam_lrs"],
            seeds=p["seeds"], epochs=p["max_epochs"], optimizer="adam",
            parameterization="standard", convergence_tolerance=p["convergence_tolerance"],
            seeds_per_call=p["seeds_per_call"] or None, experiment="standard_adam",
            points_only=True, **network)
    return points


def _low_data_network(p: Mapping[str, Any]) -> tuple:
    full = _benchmark_data(p)
    return full, [n for n in p["sizes"] if n <= full.n_train], _rules_network(p)


def _low_data(p: Mapping[str, Any]) -> list:
    from alignlib.experiments import feedforward as ff, low_data as ld

    full, used, network = _low_data_network(p)
    with _recorded_learning_rates():  # the notebook's learning rates: of the smallest bound
        bound = float(ld.stability(full, used, width=p["width"], **network).lr_bound.min())
    return ld.sweep(
        lambda n: _benchmark_data(p, n_train=n, cap_heldout=p["cap_heldout"]), used,
        width=p["width"], rules=p["rules"], lrs=ff.lr_grid(bound, p["lr_fractions"]),
        seeds=p["seeds"], epochs=p["epochs"], min_steps=p["min_steps"],
        convergence_tolerance=p["convergence_tolerance"],
        seeds_per_call=p["seeds_per_call"] or None, points_only=True, **network)


def _imagenet(p: Mapping[str, Any]) -> list:
    from alignlib.experiments import feedforward as ff, imagenet as inet

    if p["dataset"] == inet.SMOKE_DATASET:  # the notebook's random images, as it makes them
        data = inet.load_data(p["dataset"], n_train=p["n_train"], n_test=p["n_test"],
                              target_offset=p["target_offset"])
    else:
        data = stand_in_dataset(p["dataset"], n_train=p["n_train"] or None)
    return ff.width_sweep(data, arch="convnet", widths=[p["width"]], rules=p["rules"],
                          lrs=p["lrs"], seeds=p["seeds"], epochs=p["epochs"],
                          strides=p["strides"], experiment="imagenet", points_only=True)


def _recurrent(p: Mapping[str, Any]) -> list:
    from alignlib.experiments import recurrent as rec

    return [point for width in p["widths"] for point in rec.sweep(
        [("intended", r, width) for r in p["rules"]], epochs=p["epochs"], lr=p["lr"],
        seeds=p["seeds"], batch_size=p["batch_size"], n_sequences=p["n_sequences"],
        length=p["length"], n_train=p["n_train"], data_seed=p["data_seed"], points_only=True)]


#: The chapters whose sweeps run as points, and how each makes them (its notebook's calls).
PLANNED_CHAPTERS: dict[str, Callable[[Mapping[str, Any]], list]] = {
    "alignment": _alignment, "rules": _rules, "low_data": _low_data, "imagenet": _imagenet,
    "recurrent": _recurrent,
}


#: JAX settings a chapter sets for itself before it compiles anything (the plan compiles
#: its steps with them too).
CHAPTER_JAX_SETTINGS: dict[str, Callable[[Mapping[str, Any]], dict]] = {
    "imagenet": lambda p: {"jax_disable_most_optimizations": bool(p["fast_compile"])},
}


def _check_planned(chapter: str) -> None:
    if chapter not in PLANNED_CHAPTERS:
        raise BookError(f"chapter {chapter!r} has no sweep to plan; chapters with sweeps: "
                        f"{', '.join(PLANNED_CHAPTERS)}")


def chapter_points(book, profile: str, chapter: str, *, measured: bool = False) -> list:
    """The sweep points ``chapter`` trains under ``profile``, without training them.
    ``measured``: measure the learning rates the chapter measures before its sweep (the
    stable learning rates at initialisation, on data the plan reads: seconds to a minute
    of computation) instead of taking every bound as 1, so that the points are the ones
    the chapter runs (their keys, :mod:`alignbook.plan_stored`)."""
    _check_planned(chapter)
    token = _MEASURED.set(measured)
    try:
        return PLANNED_CHAPTERS[chapter](chapter_parameters(book, profile, chapter))
    finally:
        _MEASURED.reset(token)


# --------------------------------------------------- work besides the sweeps' training


def _rules_extras(p: Mapping[str, Any]) -> list[Extra]:
    with _recorded_learning_rates() as found:
        _rules_lr_plan(p, _benchmark_data(p))
    return found


def _low_data_extras(p: Mapping[str, Any]) -> list[Extra]:
    from alignlib.experiments import low_data as ld

    full, used, network = _low_data_network(p)
    with _recorded_learning_rates() as found:
        ld.stability(full, used, width=p["width"], **network)
    return found


def _recurrent_extras(p: Mapping[str, Any]) -> list[Extra]:
    """The check at initialisation (:func:`~alignlib.experiments.recurrent.
    updates_at_initialisation` at ``check_width``: backprop's gradient and each Align
    rule's, one compiled gradient each) and the runs from the authors' seed
    (:func:`~alignlib.authors_add_task.authors_seed_run`: every rule at each of
    ``authors_widths``, all its epochs one compiled program)."""
    from alignlib import authors_add_task as aat
    from alignlib.data import add_task
    from alignlib.experiments.points import Workload
    from alignlib.rules import get_rule, sequence_mse

    found = []
    data = add_task(n_sequences=p["n_sequences"], length=p["length"], n_train=p["n_train"],
                    seed=p["data_seed"])
    b, width = p["batch_size"], p["check_width"]
    for setting, name in (("intended", "backprop"), ("intended", "align_ada"),
                          ("intended", "align_zero"), ("intended", "align_prop"),
                          ("authors_ada", "align_ada")):
        rule = aat.rule_for(setting, name)
        found.append(Extra(f"update at initialisation: {rule.name} ({setting}), width {width}",
                           Workload(aat.make_rnn(width), rule, data.x_train[:b],
                                    data.y_train[:b], sequence_mse, runs=1, steps=1,
                                    eval_examples=0, loop_trips=p["length"],
                                    structure=("init", setting, name, width, b, p["length"]))))
    setting = aat.AUTHORS_SETTING
    ab, epochs = setting["batch_size"], p["authors_epochs"]
    for width in p["authors_widths"]:
        theirs = aat.authors_seed_draws(width, epochs=1).data
        for rule in [*p["authors_rules"], *(get_rule(r) for r in p["defined_rules"])]:
            rule = aat.rule_for("authors_code", rule)
            found.append(Extra(f"run from the authors' seed: {rule.name}, width {width}", Workload(
                aat.make_rnn(width, slot_state=ab), rule, theirs.x_train[:ab],
                theirs.y_train[:ab], sequence_mse, runs=1,
                steps=epochs * (theirs.n_train // ab), eval_examples=(epochs + 1) * theirs.n_test,
                loop_trips=setting["length"], structure=("authors", rule.name, width, ab))))
    return found


#: The work each chapter does besides its sweeps, and how to list it (its notebook's calls).
CHAPTER_EXTRAS: dict[str, Callable[[Mapping[str, Any]], list[Extra]]] = {
    "rules": _rules_extras, "low_data": _low_data_extras, "recurrent": _recurrent_extras,
}


def chapter_extras(book, profile: str, chapter: str) -> list[Extra]:
    """The work ``chapter`` does under ``profile`` besides training its sweep points."""
    _check_planned(chapter)
    make = CHAPTER_EXTRAS.get(chapter)
    return make(chapter_parameters(book, profile, chapter)) if make else []


@dataclasses.dataclass(frozen=True)
class Program:
    """A compiled program a point runs besides its training steps: ``what``; ``key``:
    programs with equal keys compile once; ``fn`` (jitted) on ``args`` (arrays or
    :class:`jax.ShapeDtypeStruct`), run ``calls`` times, each running its loop body
    ``loop_trips`` times (XLA's cost analysis counts it once)."""

    what: str
    key: tuple
    fn: Callable
    args: tuple
    calls: int
    loop_trips: int = 1


def _stacked_shapes(model, runs: int, keep: Callable[[Any], bool] | None = None):
    """``model`` stacked over ``runs`` as shapes: every array (that ``keep`` accepts)
    becomes a :class:`jax.ShapeDtypeStruct` with a leading axis of ``runs``; with
    ``keep``, everything else becomes ``None`` (as ``equinox.filter`` leaves it)."""
    import equinox as eqx
    import jax

    def shape(a):
        if eqx.is_array(a) and (keep is None or keep(a)):
            return jax.ShapeDtypeStruct((runs, *a.shape), a.dtype)
        return a if keep is None else None

    return jax.tree.map(shape, model)


def _alignment_programs(point) -> list[Program]:
    """The scores of an alignment point (:func:`alignlib.experiments.layer_alignment.
    alignment_width_sweep`): the epoch metrics of every run
    (:func:`alignlib.alignment.layers.alignment_epoch_metrics`) at epoch 0 and after every
    epoch of a curve width, after the last elsewhere; at a probe width, the authors'
    probe estimate of every layer (:func:`alignlib.alignment.probe_alignment_score`, its
    batches a loop) for the update and its shuffled control, of ``probe_runs`` runs."""
    import equinox as eqx
    import jax

    from alignlib.alignment import layer_geometry, probe_alignment_score
    from alignlib.alignment.layers import alignment_epoch_metrics

    p, work = point.params, point.workload()
    runs, epochs = len(p["seeds"]), int(p["epochs"])
    model = eqx.filter_jit(work.make)(jax.random.key(0, impl="rbg"))
    models = _stacked_shapes(model, runs)
    predicted = _stacked_shapes(model, runs, eqx.is_inexact_array)
    trees = (models, models, predicted)
    shaped, static = eqx.partition(trees, lambda a: isinstance(a, jax.ShapeDtypeStruct))
    metrics = alignment_epoch_metrics(p["seeds"])
    out = [Program("alignment scores", ("epoch metrics", work.structure, runs),
                   jax.jit(lambda d: metrics(*eqx.combine(d, static))), (shaped,),
                   calls=epochs + 1 if p["curve"] else 1)]
    if p["probe"] and p["probe_runs"]:
        dtype = next(a.dtype for a in jax.tree.leaves(model) if eqx.is_inexact_array(a))
        for geo in layer_geometry(model):
            weight = jax.ShapeDtypeStruct(geo.weight_shape, dtype)
            score = functools.partial(
                probe_alignment_score, input_shape=geo.input_shape if geo.kind == "conv" else None,
                stride=geo.stride, padding=geo.padding, n_batches=p["probe_batches"],
                batch_size=p["probe_batch_size"])
            out.append(Program(f"probe estimate, {geo.name}", ("probe", geo, p["probe_batches"],
                                                                p["probe_batch_size"]),
                               jax.jit(score), (weight, weight, jax.random.PRNGKey(0)),
                               calls=2 * p["probe_runs"], loop_trips=p["probe_batches"]))
    return out


#: Programs the points of a chapter run besides their training steps, by the point's
#: experiment function.
POINT_PROGRAMS: dict[str, Callable[[Any], list[Program]]] = {
    "alignlib.experiments.layer_alignment:_width_point": _alignment_programs,
}


def point_programs(point) -> list[Program]:
    """The programs ``point`` runs besides its training steps (:data:`POINT_PROGRAMS`)."""
    make = POINT_PROGRAMS.get(point.fn)
    return make(point) if make else []


def planned_parameters(book, profile: str, chapters=None) -> dict[str, dict[str, Any]]:
    """``{chapter: {name: value}}``: the parameters of ``profile`` (its values and the
    notebooks' defaults) that listing each chapter's work reads (default: every chapter of
    :data:`PLANNED_CHAPTERS` in the book)."""
    chapters = [c for c in book.chapters() if c in PLANNED_CHAPTERS] if chapters is None \
        else list(chapters)
    found = {}
    for chapter in chapters:
        p = chapter_parameters(book, profile, chapter)
        PLANNED_CHAPTERS[chapter](p)
        CHAPTER_EXTRAS.get(chapter, lambda p: [])(p)
        CHAPTER_JAX_SETTINGS.get(chapter, lambda p: {})(p)
        found[chapter] = {name: dict.__getitem__(p, name) for name in sorted(p.read)}
    return found
