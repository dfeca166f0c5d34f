"""Sweeps: many independent experiment points, run here or on a cluster, each saved once.

A **point** is one call of an experiment function with one set of parameters::

    Point("alignbook.sweep:train_point", {"rule": "align_ada", "width": 256, ...})

The experiment is named by its import path ``"module:function"`` so that any worker
process can import it; it takes the parameters as keyword arguments and returns a tidy
:class:`pandas.DataFrame`. The point's **key** is the hash of its canonical JSON
(experiment name and parameters, :func:`alignbook.results.params_hash`).

**Batch what can be batched.** Seeds and learning rates of one configuration should be
*one* point, passed as lists (``seeds=[0, 1, 2], learning_rates=[1, 2, 5]``):
:func:`alignlib.training.train` runs them in one compiled, ``vmap``-ed program, so a
narrow network does not leave the device idle. :func:`grid` builds points this way: the
product of the ``axes`` (rule, width, ...) makes the points, the ``batched`` parameters
go whole into every point.

**Storage.** Every finished point is written through the results store
(:class:`alignbook.results.ResultStore`): ``<root>/<name>/<profile>/<key>/point.csv``
with ``provenance.json`` (parameters, versions, device, git revision, checksum), each
file written to a temporary name and moved into place atomically. A point whose table is
recorded as complete is never computed again; a point that was running when its process
died has no trusted file and is computed again. So a sweep interrupted half-way resumes
where it stopped, with nothing lost and nothing done twice.

**Engines** (:func:`run_sweep`):

* ``engine="serial"`` (default): the points run one after the other in this process.
  Nothing to set up.
* ``engine="dask"``: each point is a task of a `Dask distributed
  <https://distributed.dask.org>`_ cluster. ``address=None`` starts a local cluster of
  ``n_workers`` worker processes (one thread each) for the duration of the sweep;
  ``address="tcp://host:8786"`` (or a :class:`distributed.Client`) uses a running cluster.
  ``resources={"GPU": 1}`` sends each point to a worker that declared that resource
  (``dask worker ... --resources GPU=1``), one point per GPU at a time. A worker that
  dies has its points rescheduled on the others by the scheduler (up to
  ``distributed.scheduler.allowed-failures`` deaths per point). Workers write the
  points themselves (``shared_filesystem=True``: the results root must be the same path
  on every machine, as on a cluster's shared disk); with ``shared_filesystem=False``
  they send the tables back and this process writes them.

SLURM: start the cluster with ``dask_jobqueue.SLURMCluster`` (package ``dask-jobqueue``)
and pass its client or ``scheduler_address``; see the book's performance chapter.

**Modules**, one concept each: :mod:`~alignbook.sweep.points` (points, their keys,
:func:`grid`), :mod:`~alignbook.sweep.store` (the per-point store, :func:`run_point`),
:mod:`~alignbook.sweep.runner` (:func:`run_sweep` and its serial and Dask engines),
:mod:`~alignbook.sweep.engines` (the chapters' :class:`Engine` and its local cluster),
:mod:`~alignbook.sweep.chapters` (:func:`chapter_runner`) and
:mod:`~alignbook.sweep.experiments` (:func:`train_point`, :func:`demo_point`). Everything
public is importable from ``alignbook.sweep`` itself.
"""

from __future__ import annotations

from alignbook.sweep.chapters import POINTS_FOLDER, chapter_runner
from alignbook.sweep.engines import (
    ADDRESS_ENV,
    CHAPTER_ENGINES,
    ENGINE_ENV,
    WORKERS_ENV,
    Engine,
    _close_clients as _close_clients,  # closes engine_client's clients (tests call it)
    engine_client,
    gpu_worker_specs,
    local_cluster,
    visible_gpus,
)
from alignbook.sweep.experiments import demo_point, train_point
from alignbook.sweep.points import CALL_POINT as CALL_POINT
from alignbook.sweep.points import Point, experiment_name, grid, resolve_experiment
from alignbook.sweep.runner import ENGINES, SweepError, SweepResult, describe_point, run_sweep
from alignbook.sweep.store import POINT_TABLE, SweepStore, run_point

__all__ = [
    "Point", "SweepResult", "SweepStore", "grid", "experiment_name", "resolve_experiment",
    "run_point", "run_sweep", "train_point", "demo_point", "ENGINES", "POINT_TABLE",
    "SweepError", "describe_point", "Engine", "CHAPTER_ENGINES", "ENGINE_ENV", "WORKERS_ENV",
    "ADDRESS_ENV", "POINTS_FOLDER", "chapter_runner", "engine_client", "local_cluster",
    "gpu_worker_specs", "visible_gpus",
]
