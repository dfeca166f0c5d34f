"""The compiled-program cache shared by the book's processes (:mod:`alignbook.xla_cache`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from alignbook import xla_cache

# a child process: compile one training step of a small MLP, report whether JAX loaded it
# from the persistent cache or compiled it
CHILD = r"""
import json, jax, jax.numpy as jnp
from jax import monitoring
from alignbook import xla_cache
events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
folder = xla_cache.enable()
import equinox as eqx
import alignlib as al
model = al.MLP(64, 32, 2, 10, key=jax.random.key(0))
x = jnp.ones((8, 64))
step = eqx.filter_jit(eqx.filter_grad(lambda m, x: (m(x) ** 2).sum()))
jax.block_until_ready(step(model, x))
print(json.dumps({"folder": str(folder),
                  "hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses")}))
"""


def _child(env):
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_program_the_first_compiled(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update({"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla"),
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "ALIGNBOOK_XLA_CACHE": "1",
                "JAX_COMPILATION_CACHE_MAX_SIZE": str(xla_cache.MAX_BYTES)})
    first = _child(env)
    assert first["folder"] == str(tmp_path / "xla")
    assert first["misses"] >= 1 and first["hits"] == 0
    assert any((tmp_path / "xla").iterdir())
    assert (tmp_path / "xla" / ".lockfile").exists()  # reads and writes are locked
    second = _child(env)
    assert second["hits"] >= 1 and second["misses"] == 0
    # a process that times compilation compiles again, with the same folder configured
    timing = _child({**env, **xla_cache.cache_environment(times_compilation=True)})
    assert timing["hits"] == 0


def test_the_cache_can_be_turned_off_and_moved(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_MAX_SIZE", raising=False)
    monkeypatch.delenv("ALIGNBOOK_XLA_CACHE", raising=False)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    assert xla_cache.cache_dir() == tmp_path / "alignbook" / "xla"
    assert xla_cache.cache_environment() == {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "alignbook" / "xla"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": str(xla_cache.MIN_COMPILE_SECONDS),
        "JAX_COMPILATION_CACHE_MAX_SIZE": str(xla_cache.MAX_BYTES),
        "PYTHONWARNINGS": ",".join(f"ignore:{m}:UserWarning" for m in xla_cache.JAX_CACHE_WARNINGS)}
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert xla_cache.cache_dir() == tmp_path / "elsewhere"
    assert xla_cache.cache_environment(times_compilation=True) == {"JAX_ENABLE_COMPILATION_CACHE": "false"}
    monkeypatch.setenv("ALIGNBOOK_XLA_CACHE", "0")
    assert xla_cache.cache_dir() is None
    assert xla_cache.cache_environment() == {"JAX_ENABLE_COMPILATION_CACHE": "false"}


def test_chapter_kernels_get_the_cache(monkeypatch, tmp_path):
    from alignbook.pipeline import Book, _job

    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "xla"))
    monkeypatch.delenv("ALIGNBOOK_XLA_CACHE", raising=False)
    book = Book()
    job = _job(book, "theory", {"profile": "tiny"}, tmp_path / "theory.ipynb", False)
    assert job["env"]["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "xla")
    assert job["env"]["PYTHONWARNINGS"].endswith(xla_cache._quiet_warnings(""))
    # the chapter that times its steps (compilation included) compiles every program itself
    assert book.runs_alone("performance")
    job = _job(book, "performance", {"profile": "tiny"}, tmp_path / "performance.ipynb", False)
    assert job["env"]["JAX_ENABLE_COMPILATION_CACHE"] == "false"
    monkeypatch.setenv("ALIGNBOOK_XLA_CACHE", "0")
    job = _job(book, "theory", {"profile": "tiny"}, tmp_path / "theory.ipynb", False)
    assert "JAX_COMPILATION_CACHE_DIR" not in job["env"]


# a process that compiles one program and writes it to the cache its environment names
COMPILE = "import jax, jax.numpy as jnp; jax.block_until_ready(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((4, 4))))"


def _compile(env) -> str:
    out = subprocess.run([sys.executable, "-c", COMPILE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stderr


def test_an_entry_a_killed_process_left_is_removed_before_it_breaks_every_write(tmp_path):
    folder = tmp_path / "xla"
    folder.mkdir()
    # what a process killed between JAX's two writes leaves: a program (cut short) without
    # its last-used time
    (folder / "jit_f-0123abcd-cache").write_bytes(b"cut short")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") and k != "PYTHONWARNINGS"}
    env.update({"JAX_COMPILATION_CACHE_DIR": str(folder), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                "JAX_COMPILATION_CACHE_MAX_SIZE": str(xla_cache.MAX_BYTES)})
    # JAX then fails every write, with a warning that names the folder ...
    stderr = _compile(env)
    assert "Error writing persistent compilation cache entry" in stderr and str(folder) in stderr
    assert sorted(p.name for p in folder.iterdir() if p.name != ".lockfile") == ["jit_f-0123abcd-cache"]
    # ... which the processes the book starts do not print
    assert _compile({**env, "PYTHONWARNINGS": xla_cache._quiet_warnings("")}) == ""
    # repair removes the entry (and a time left without its program); writes work again
    (folder / "jit_g-4567-atime").write_bytes(b"\0" * 8)
    assert xla_cache.repair(folder) == 1
    assert [p.name for p in folder.iterdir() if p.name != ".lockfile"] == []
    assert _compile(env) == ""
    written = sorted(p.name for p in folder.iterdir() if p.name != ".lockfile")
    assert written and {n.rsplit("-", 1)[0] + "-atime" for n in written if n.endswith("-cache")} <= set(written)
    assert xla_cache.repair(folder) == 0
    assert xla_cache.repair(tmp_path / "missing") == 0


def test_a_users_warning_filters_are_kept():
    ours = xla_cache._quiet_warnings("")
    assert xla_cache._quiet_warnings("error::DeprecationWarning") == "error::DeprecationWarning," + ours
    assert xla_cache._quiet_warnings(ours) == ours  # not added twice


def test_a_build_repairs_the_cache_before_chapters_run(monkeypatch, tmp_path):
    from alignbook.pipeline import _run_jobs

    folder = tmp_path / "xla"
    folder.mkdir()
    (folder / "jit_f-0123abcd-cache").write_bytes(b"cut short")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(folder))
    monkeypatch.delenv("ALIGNBOOK_XLA_CACHE", raising=False)
    said = []
    assert _run_jobs([], 1, said.append) == []
    assert not (folder / "jit_f-0123abcd-cache").exists()
    assert any("removed 1 entry " in line for line in said), said
