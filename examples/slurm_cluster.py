"""A Dask cluster of GPU workers on SLURM, submitted by dask-jobqueue, for the book's sweeps.

Run it on the cluster's login node from the book's folder (``pip install dask-jobqueue``
first); it starts a Dask scheduler here, submits ``--jobs`` SLURM jobs of one GPU worker
each, prints the scheduler's address and keeps the cluster up until Ctrl-C::

    .venv/bin/python examples/slurm_cluster.py --jobs 8 --partition gpu --account myproject
    # in another shell, with the address it printed:
    .venv/bin/alignbook build --profile gpu --address tcp://10.0.0.5:8786 --jobs 1

``--dry-run`` prints the SLURM job script and submits nothing (without dask-jobqueue
it prints the cluster's settings instead). Each worker runs one sweep point at a time on
its GPU (one thread, ``--resources GPU=1``) and sends the point's table back to the
build, which stores it; a worker whose job ends has its points rescheduled on the others,
and a build started again reuses every point already stored. Workers load the data sets
from their own data cache: keep it on a disk every node sees (``ALIGNBOOK_DATA``).
"""

from __future__ import annotations

import argparse
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="SLURM jobs, one GPU worker each")
    parser.add_argument("--partition", default=None, help="SLURM partition (#SBATCH -p)")
    parser.add_argument("--account", default=None, help="SLURM account (#SBATCH -A)")
    parser.add_argument("--walltime", default="24:00:00", help="each job's time limit")
    parser.add_argument("--cores", type=int, default=8, help="CPU cores per job")
    parser.add_argument("--memory", default="64GB", help="memory per job")
    parser.add_argument("--gres", default="gpu:1", help="the GPU request of each job")
    parser.add_argument("--port", type=int, default=8786, help="the scheduler's port")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python of the workers (default: this one, e.g. .venv/bin/python)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the job script (or the settings) and submit nothing")
    return parser.parse_args(argv)


def cluster_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster``: one job = one worker process
    with one thread and one GPU."""
    return dict(
        queue=args.partition, account=args.account, walltime=args.walltime,
        cores=args.cores, processes=1, memory=args.memory, python=args.python,
        job_extra_directives=[f"--gres={args.gres}"],
        # one point at a time per worker; the resource lets a sweep ask for a GPU
        worker_extra_args=["--nthreads", "1", "--resources", "GPU=1"],
        # several JAX processes may share a node's devices: none takes 75 % up front
        job_script_prologue=["export XLA_PYTHON_CLIENT_PREALLOCATE=false"],
        scheduler_options={"port": args.port, "dashboard_address": ":8787"},
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = cluster_options(args)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        if args.dry_run:
            print("dask-jobqueue is not installed; SLURMCluster would get:")
            for key, value in options.items():
                print(f"  {key} = {value!r}")
            return 0
        print("pip install dask-jobqueue first", file=sys.stderr)
        return 1
    if args.dry_run:
        options["scheduler_options"] = {**options["scheduler_options"], "port": 0}
    cluster = SLURMCluster(**options)
    try:
        if args.dry_run:
            print(cluster.job_script())
            return 0
        cluster.scale(jobs=args.jobs)
        print(f"scheduler: {cluster.scheduler_address}")
        print(f"run: alignbook build --profile gpu --address {cluster.scheduler_address} --jobs 1",
              flush=True)
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        return 0
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
