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
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alignlib.data.cache import user_cache_dir

__all__ = ["CACHE_DIR_ENV", "SWITCH_ENV", "MIN_COMPILE_SECONDS", "MAX_BYTES", "cache_dir", "cache_environment",
           "enable"]

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
            _MAX_SIZE_ENV: os.environ.get(_MAX_SIZE_ENV, str(MAX_BYTES))}


def enable() -> Path | None:
    """Turn the shared cache on for this process and the processes it starts (sets
    :func:`cache_environment` in ``os.environ``; call it before anything is compiled).
    Returns the folder, or ``None`` when turned off."""
    env = cache_environment()
    os.environ.update(env)
    if "jax" in sys.modules:  # jax read its variables already
        import jax

        if CACHE_DIR_ENV not in env:
            jax.config.update("jax_enable_compilation_cache", False)
            return None
        jax.config.update("jax_compilation_cache_dir", env[CACHE_DIR_ENV])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", float(env[_MIN_SECONDS_ENV]))
        jax.config.update("jax_compilation_cache_max_size", int(env[_MAX_SIZE_ENV]))
    return cache_dir()
