"""The compiled-program cache shared by every process that runs the book.

Each distinct training step (one rule, one architecture, one width, one batch shape) is
compiled by XLA once per process. A build runs several processes that compile many of
the same programs: the chapter kernels, their sweep workers, a chapter re-run with other
parameters, the test suite's own runs. JAX can keep compiled executables on disk
(its *persistent compilation cache*), keyed by the program, its compile options, the
backend, the device and the JAX version, so that a later process loads a program
instead of compiling it again. The program is the same, so every number is the same;
only the time to the first step changes.

The cache lives in ``<user cache dir>/alignbook/xla`` (``$XDG_CACHE_HOME`` honoured),
or where ``$JAX_COMPILATION_CACHE_DIR`` says. ``ALIGNBOOK_XLA_CACHE=0`` turns it off in
every process the book starts.
A chapter that times compilation itself (the ones that run alone) runs without it: a
program loaded from the cache would time the load, not the compilation. Deleting the
folder is always safe.

**A damaged folder.** JAX writes an entry as two files, the program (``<key>-cache``) and
the time it was last used (``<key>-atime``), under the folder's lock. A process killed
between the two (a test that kills a build, a sweep worker stopped mid-compile) leaves a
program, possibly cut short, with no time; so does a process that used the folder
without a size limit (JAX then writes no times). JAX then fails every later write to the
folder, in every process, with a warning naming the files. :func:`repair` removes such
entries; every build and test session calls it before anything compiles. A process
started with :func:`cache_environment` or :func:`enable` does not print JAX's warnings
about entries it could not read or write: the program is compiled instead and the
numbers are the same, so a chapter's page has nothing to say about it.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from alignlib.data.cache import user_cache_dir

__all__ = ["CACHE_DIR_ENV", "SWITCH_ENV", "MIN_COMPILE_SECONDS", "MAX_BYTES", "JAX_CACHE_WARNINGS", "cache_dir",
           "cache_environment", "enable", "repair"]

#: JAX's own variable naming the cache folder (read when ``jax`` is imported).
CACHE_DIR_ENV = "JAX_COMPILATION_CACHE_DIR"
#: ``0`` turns the shared cache off.
SWITCH_ENV = "ALIGNBOOK_XLA_CACHE"
_MIN_SECONDS_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
_ENABLE_ENV = "JAX_ENABLE_COMPILATION_CACHE"
_MAX_SIZE_ENV = "JAX_COMPILATION_CACHE_MAX_SIZE"
#: The folder's size limit; past it the least recently used programs are deleted. With a
#: limit, JAX also locks the folder around each read and write (``filelock``), so two
#: processes never see a half-written program.
MAX_BYTES = 4 << 30
#: Programs that compile faster than this are not written (loading costs about as much).
MIN_COMPILE_SECONDS = 0.5
#: How JAX's warnings about an entry it could not read or write begin (``jax._src.compiler``).
JAX_CACHE_WARNINGS = ("Error reading persistent compilation cache entry",
                      "Error writing persistent compilation cache entry")
_PROGRAM, _USED = "-cache", "-atime"  # JAX's two files per entry (jax._src.lru_cache)


def cache_dir() -> Path | None:
    """The cache folder, or ``None`` when ``ALIGNBOOK_XLA_CACHE=0``."""
    if os.environ.get(SWITCH_ENV, "").strip() in ("0", "false", "no", "off"):
        return None
    explicit = os.environ.get(CACHE_DIR_ENV)
    return Path(explicit) if explicit else user_cache_dir() / "alignbook" / "xla"


def cache_environment(times_compilation: bool = False) -> dict[str, str]:
    """The environment variables that give a child process (a chapter's kernel, a sweep
    worker, a build) the shared cache; a value already set in this process's environment
    is kept. When the cache is turned off, or the process measures compile times
    (``times_compilation``), they switch JAX's cache off in it, even where this process
    has one."""
    folder = None if times_compilation else cache_dir()
    if folder is None:
        return {_ENABLE_ENV: "false"}
    return {CACHE_DIR_ENV: str(folder),
            _MIN_SECONDS_ENV: os.environ.get(_MIN_SECONDS_ENV, str(MIN_COMPILE_SECONDS)),
            _MAX_SIZE_ENV: os.environ.get(_MAX_SIZE_ENV, str(MAX_BYTES)),
            "PYTHONWARNINGS": _quiet_warnings(os.environ.get("PYTHONWARNINGS", ""))}


def _quiet_warnings(current: str) -> str:
    """``$PYTHONWARNINGS`` with filters that ignore :data:`JAX_CACHE_WARNINGS` added (a
    filter's message matches the start of a warning's text)."""
    ours = [f"ignore:{message}:UserWarning" for message in JAX_CACHE_WARNINGS]
    kept = [f for f in current.split(",") if f.strip() and f not in ours]
    return ",".join(kept + ours)


def repair(folder: Path | None = None, echo=None) -> int:
    """Remove the entries of the cache ``folder`` (default :func:`cache_dir`) that a
    killed process left half-written: a program without its last-used time, or a time
    without its program. Runs under the folder's lock, so an entry another process is
    writing is never touched. Returns how many entries were removed (0 when the folder
    does not exist, the cache is off, or it has no size limit: then JAX writes no times);
    ``echo`` (e.g. ``print``) is told when any were."""
    folder = cache_dir() if folder is None else Path(folder)
    if folder is None or not folder.is_dir() or os.environ.get(_MAX_SIZE_ENV, "").strip() == "-1":
        return 0
    try:
        import filelock
    except ImportError:  # JAX cannot use a size limit without it either
        return 0
    removed = 0
    with filelock.FileLock(folder / ".lockfile", timeout=60):
        names = {p.name for p in folder.iterdir()}
        for name in sorted(names):
            for suffix, other in ((_PROGRAM, _USED), (_USED, _PROGRAM)):
                if name.endswith(suffix) and name[:-len(suffix)] + other not in names:
                    (folder / name).unlink(missing_ok=True)
                    removed += suffix == _PROGRAM
    if removed and echo is not None:
        echo(f"  compiled-program cache: removed {removed} entr{'y' if removed == 1 else 'ies'} "
             "a stopped process left half-written")
    return removed


def enable() -> Path | None:
    """Turn the shared cache on for this process and the processes it starts (sets
    :func:`cache_environment` in ``os.environ``; call it before anything is compiled).
    Returns the folder, or ``None`` when turned off."""
    env = cache_environment()
    os.environ.update(env)
    for message in JAX_CACHE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    repair()
    if "jax" in sys.modules:  # jax read its variables already
        import jax

        if CACHE_DIR_ENV not in env:
            jax.config.update("jax_enable_compilation_cache", False)
            return None
        jax.config.update("jax_compilation_cache_dir", env[CACHE_DIR_ENV])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", float(env[_MIN_SECONDS_ENV]))
        jax.config.update("jax_compilation_cache_max_size", int(env[_MAX_SIZE_ENV]))
    return cache_dir()
