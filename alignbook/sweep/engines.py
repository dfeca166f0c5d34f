"""The chapters' engine: where a chapter's sweep points run, and its Dask cluster.

:class:`Engine` is what ``alignbook build|run --engine`` and a profile's ``engine:``
key choose (``serial``, ``local`` or ``dask``), carried into a chapter's kernel by
environment variables. For the ``local`` engine, :func:`local_cluster` starts one
worker process per visible GPU (:func:`visible_gpus`), each pinned to its GPU
(:func:`gpu_worker_specs`), or CPU processes where there is none; :func:`engine_client`
keeps one client per engine for the process's lifetime.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


#: Engines of ``alignbook build|run --engine`` (and of a profile's ``engine:`` key).
CHAPTER_ENGINES = ("serial", "local", "dask")
#: Environment variables that carry the engine into a chapter's kernel.
ENGINE_ENV = "ALIGNBOOK_ENGINE"
WORKERS_ENV = "ALIGNBOOK_WORKERS"
ADDRESS_ENV = "ALIGNBOOK_SCHEDULER"


@dataclass(frozen=True)
class Engine:
    """Where a chapter's sweep points run.

    ``"serial"``: in the chapter's kernel, one after the other (the default). ``"local"``:
    a Dask cluster on this machine for the kernel's lifetime: one worker process per
    visible GPU, each pinned to it through ``CUDA_VISIBLE_DEVICES`` (``workers`` spreads
    that many over the GPUs, several sharing one), or ``workers`` CPU processes (default:
    one per core) where there is no GPU; every worker runs one point at a time with
    ``XLA_PYTHON_CLIENT_PREALLOCATE=false``. ``"dask"``: the Dask scheduler at
    ``address`` (``tcp://host:8786``, workers started by ``dask worker`` or
    dask-jobqueue; they send each table back to be stored here), or, without an address,
    a local cluster of ``workers`` CPU processes (default 2).
    """

    engine: str = "serial"
    workers: int | None = None
    address: str | None = None

    def __post_init__(self):
        if self.engine not in CHAPTER_ENGINES:
            raise ValueError(f"engine must be one of {', '.join(CHAPTER_ENGINES)}, got {self.engine!r}")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise ValueError(f"workers must be a positive integer, got {self.workers!r}")
        if self.engine == "serial" and self.workers is not None:
            raise ValueError("workers apply to the local and dask engines, not serial")
        if self.address is not None and self.engine != "dask":
            raise ValueError(f"an address applies to the dask engine, not {self.engine}")
        if self.address is not None and self.workers is not None:
            raise ValueError("give the dask engine a scheduler address or a number of local "
                             "workers, not both")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Engine":
        """The engine named by ``$ALIGNBOOK_ENGINE``, ``$ALIGNBOOK_WORKERS`` and
        ``$ALIGNBOOK_SCHEDULER`` (unset: serial)."""
        env = os.environ if environ is None else environ
        workers = env.get(WORKERS_ENV) or None
        try:
            workers = int(workers) if workers is not None else None
        except ValueError:
            raise ValueError(f"${WORKERS_ENV} must be a positive integer, got {workers!r}") from None
        return cls(env.get(ENGINE_ENV) or "serial", workers, env.get(ADDRESS_ENV) or None)

    def env(self) -> dict[str, str]:
        """The environment variables that select this engine in a chapter's kernel."""
        out = {ENGINE_ENV: self.engine, WORKERS_ENV: "", ADDRESS_ENV: ""}
        if self.workers is not None:
            out[WORKERS_ENV] = str(self.workers)
        if self.address is not None:
            out[ADDRESS_ENV] = self.address
        return out


def visible_gpus() -> list[str]:
    """The GPUs worker processes may be pinned to: ``$CUDA_VISIBLE_DEVICES`` where set,
    else those ``nvidia-smi`` lists; none where ``$JAX_PLATFORMS`` leaves CUDA out or no
    NVIDIA driver answers. JAX is not started."""
    platforms = os.environ.get("JAX_PLATFORMS", "").lower()
    if platforms and not any(p in platforms for p in ("cuda", "gpu")):
        return []
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        ids = [d.strip() for d in given.split(",") if d.strip()]
        return [] if not ids or ids[0] in ("-1", "NoDevFiles") else ids
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def local_cluster(workers: int | None = None, gpus: Sequence[str] | None = None):
    """A Dask cluster of worker processes on this machine, one thread each: one per GPU of
    ``gpus`` (default :func:`visible_gpus`) pinned through ``CUDA_VISIBLE_DEVICES``
    (``workers`` of them, round robin, where given), else ``workers`` CPU processes
    (default: one per core). Workers do not preallocate accelerator memory, so several
    processes (the chapter's kernel too) can share a device."""
    from distributed import LocalCluster, Scheduler, SpecCluster

    gpus = visible_gpus() if gpus is None else list(gpus)
    if not gpus:
        n = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                        else os.cpu_count() or 1)
        return LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                            dashboard_address=None, env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    return SpecCluster(workers=gpu_worker_specs(gpus, workers),
                       scheduler={"cls": Scheduler, "options": {"dashboard_address": None}})


def gpu_worker_specs(gpus: Sequence[str], workers: int | None = None) -> dict[str, dict]:
    """The workers of :func:`local_cluster` on ``gpus``, as ``SpecCluster`` specifications:
    ``workers`` (default one per GPU) worker processes (nannies) of one thread, spread over
    the GPUs in turn, each seeing only its GPU and declaring the resource ``GPU=1``."""
    from distributed import Nanny

    return {f"gpu{gpus[i % len(gpus)]}-{i}": {"cls": Nanny, "options": {
        "nthreads": 1, "resources": {"GPU": 1},
        "env": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                "CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]}}}
        for i in range(workers or len(gpus))}


_CLIENTS: dict[Engine, Any] = {}


def engine_client(engine: Engine):
    """The Dask client of ``engine`` (not serial), started on first use and kept for
    this process's lifetime (closed at exit)."""
    if engine.engine == "serial":
        raise ValueError("the serial engine has no cluster")
    if engine not in _CLIENTS:
        from distributed import Client, LocalCluster

        if engine.address is not None:
            client = Client(engine.address)
        elif engine.engine == "local":
            client = Client(local_cluster(engine.workers))
        else:
            client = Client(LocalCluster(n_workers=engine.workers or 2, threads_per_worker=1,
                                         processes=True, dashboard_address=None))
        if not _CLIENTS:
            atexit.register(_close_clients)
        _CLIENTS[engine] = client
    return _CLIENTS[engine]


def _close_clients() -> None:
    while _CLIENTS:
        _, client = _CLIENTS.popitem()
        cluster = client.cluster
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
