"""The build pipeline behind ``alignbook``: the book's files and the execution of
chapters (imports papermill lazily).

- a chapter is a notebook ``<file>.ipynb`` listed in ``_toc.yml``; its name is the
  file's stem (``book/theory`` -> ``theory``);
- its parameters, their constraints and the profiles' values
  (``book/profiles.yml``) are :mod:`alignbook.parameters`; every value is checked
  before any kernel starts;
- :func:`build` executes chapters with papermill into
  ``_build/executed/<profile>/<file>.ipynb`` and renders the site
  (:func:`alignbook.site.render_site`) into ``_build/<profile>/html``;
- :func:`run_chapter` executes one chapter with extra overrides into
  ``_build/runs/<profile>/``;
- while chapters run, the running cell of each is printed every 30 s
  (:mod:`alignbook.progress`).

Builds of one profile take turns: each holds ``_build/<profile>.lock`` (an exclusive
``flock``) while it executes chapters and renders the site; a second build waits, saying
which process it waits for. A stopped build (SIGTERM, SIGINT) stops its worker processes
and their kernels, and workers whose main process died exit on their own
(:mod:`alignbook._procs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from alignbook import _procs, xla_cache
from alignbook import results as _results
from alignbook.glue import format_value
from alignbook.parameters import (
    PROFILES_FILE,
    BookError,
    Constraint,
    Parameter,
    _check_profile_chapter,
    expected_seconds,
    load_profiles,
    notebook_constraints,
    notebook_parameters,
    resolve_parameters,
)
from alignbook.progress import ProgressReporter

__all__ = [
    "Book",
    "ChapterFailed",
    "SiteFailed",
    "ChapterRun",
    "build",
    "run_chapter",
    "results_folder",
    "profile_lock",
]

#: Environment variable that moves the build folder (default ``<book>/_build``).
BUILD_ENV = "ALIGNBOOK_BUILD"
KERNEL_NAME = "python3"


# =========================================================================
# Pipeline: errors and data types
# =========================================================================

class ChapterFailed(BookError):
    """A chapter's notebook raised during execution. From :func:`build`, ``runs`` holds
    every chapter's :class:`ChapterRun`, the ones that succeeded too."""

    runs: list = []


class SiteFailed(BookError):
    """Jupyter Book failed to render the site (any Sphinx warning counts)."""


@dataclasses.dataclass
class ChapterRun:
    """What happened to one chapter."""

    chapter: str
    ok: bool
    seconds: float
    output: Path
    parameters: dict[str, Any]
    error: dict[str, Any] | None = None
    stores: list[dict[str, str]] = dataclasses.field(default_factory=list)

    def failure_message(self) -> str:
        err = self.error or {}
        if err.get("kind") == "cell":
            count = err.get("exec_count")
            # In [count] is what Jupyter shows; the index counts every cell of the
            # executed notebook, including papermill's injected-parameters cell
            where = (f"cell [{count}]" if count is not None else "a cell") + \
                f" (cell index {err.get('cell_index')} of the executed notebook)"
            first = (err.get("source") or "").strip().splitlines()
            snippet = f"\n    the cell begins: {first[0][:100]}" if first else ""
            return (f"chapter {self.chapter!r} failed in {where}: "
                    f"{err.get('ename')}: {err.get('evalue')}{snippet}\n"
                    f"    executed notebook with the traceback: {self.output}")
        return (f"chapter {self.chapter!r} failed before or outside a cell: "
                f"{err.get('ename')}: {err.get('evalue')}")


# =========================================================================
# Pipeline: the book's files
# =========================================================================


def _toc_files(node: Any) -> list[str]:
    """Every ``file``/``root`` entry of a _toc.yml structure, in reading order."""
    out: list[str] = []
    if isinstance(node, Mapping):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                out.append(node[key])
        for key, value in node.items():
            if key not in ("root", "file"):
                out += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            out += _toc_files(item)
    return out


def _strip_suffix(entry: str) -> str:
    for suffix in (".ipynb", ".md"):
        if entry.endswith(suffix):
            return entry[: -len(suffix)]
    return entry


class Book:
    """The book rooted at ``root`` (the folder holding ``_config.yml`` and
    ``_toc.yml``)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = (Path(root) if root is not None else _results.project_root()).resolve()
        for name in ("_config.yml", "_toc.yml"):
            if not (self.root / name).is_file():
                raise BookError(f"{self.root} is not a book folder: {name} is missing")
        self.toc = yaml.safe_load((self.root / "_toc.yml").read_text(encoding="utf-8"))
        self.config = yaml.safe_load((self.root / "_config.yml").read_text(encoding="utf-8")) or {}
        # $ALIGNBOOK_BUILD moves every build output (executed notebooks, runs, staging,
        # sites) elsewhere, e.g. so that the tests never touch the reader's _build/.
        self.build_dir = Path(os.environ.get(BUILD_ENV) or self.root / "_build").resolve()
        self._param_cache: dict[str, dict[str, Parameter]] = {}
        self._constraint_cache: dict[str, dict[str, list[Constraint]]] = {}

    # ---------------------------------------------------------------- toc
    def documents(self) -> list[str]:
        """Toc entries (without suffix), in reading order."""
        return [_strip_suffix(f) for f in _toc_files(self.toc)]

    def source(self, doc: str) -> Path:
        """The source file of a toc entry; a clear error when it is missing."""
        nb, md = self.root / f"{doc}.ipynb", self.root / f"{doc}.md"
        if nb.is_file() and md.is_file():
            raise BookError(f"_toc.yml entry {doc!r} is ambiguous: both {nb.name} and {md.name} exist")
        if nb.is_file():
            return nb
        if md.is_file():
            return md
        raise BookError(f"_toc.yml lists {doc!r} but neither {doc}.ipynb nor {doc}.md exists in {self.root}")

    def chapters(self) -> dict[str, Path]:
        """Notebook chapters (name -> notebook path), in toc order."""
        out: dict[str, Path] = {}
        for doc in self.documents():
            src = self.source(doc)
            if src.suffix != ".ipynb":
                continue
            name = Path(doc).name
            if name in out:
                raise BookError(f"two notebook chapters are named {name!r}: {out[name]} and {src}")
            out[name] = src
        return out

    def notebook(self, chapter: str) -> Path:
        chapters = self.chapters()
        if chapter not in chapters:
            raise BookError(
                f"unknown chapter {chapter!r}; the notebook chapters in _toc.yml are: "
                f"{', '.join(chapters) or '(none)'}")
        return chapters[chapter]

    def parameters(self, chapter: str) -> dict[str, Parameter]:
        if chapter not in self._param_cache:
            self._param_cache[chapter] = notebook_parameters(self.notebook(chapter))
        return self._param_cache[chapter]

    def constraints(self, chapter: str) -> dict[str, list[Constraint]]:
        """The constraints a chapter declares on its parameters (notebook metadata
        ``alignbook: {constraints: {NAME: [CONSTRAINT, ...]}}``; see :data:`alignbook.parameters.CONSTRAINTS`),
        checked against the vocabulary and the declared parameters."""
        if chapter not in self._constraint_cache:
            self._constraint_cache[chapter] = notebook_constraints(
                self.notebook(chapter), self.parameters(chapter))
        return self._constraint_cache[chapter]

    # --------------------------------------------------------------- paths
    def runs_alone(self, chapter: str) -> bool:
        """True when the chapter's notebook metadata says ``alignbook: {run_alone: true}``:
        it measures wall-clock times, so ``build --jobs N`` runs it after the others, with
        nothing beside it."""
        import nbformat

        nb = nbformat.read(self.notebook(chapter), as_version=4)
        return bool((nb.metadata.get("alignbook") or {}).get("run_alone", False))

    def executed_path(self, profile: str, chapter: str) -> Path:
        rel = self.notebook(chapter).relative_to(self.root)
        return self.build_dir / "executed" / profile / rel

    def html_dir(self, profile: str) -> Path:
        return self.build_dir / profile / "html"

    def lock_path(self, profile: str) -> Path:
        """The lock file that builds of ``profile`` take turns on."""
        return self.build_dir / f"{profile}.lock"

    def profiles_path(self) -> Path:
        return self.root / PROFILES_FILE


# =========================================================================
# Pipeline: execution
# =========================================================================


def _kernel_dir(book: Book) -> Path:
    """A Jupyter data folder whose ``python3`` kernelspec runs *this*
    interpreter; put first on JUPYTER_PATH so that it wins over user-level specs."""
    data = book.build_dir / "jupyter"
    spec_dir = data / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": True, "supported_encryption": ["curve"]},
    }
    text = json.dumps(spec, indent=1) + "\n"
    target = spec_dir / "kernel.json"
    if not target.is_file() or target.read_text() != text:
        _results._write_text_atomic(target, text)
    return data


def _execute_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one notebook with papermill (in this process or a pool worker).
    Writes to a temporary file; on success moves it to ``job['output']``, on
    failure to ``<output stem>.failed.ipynb``."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    from traitlets.config import Config

    # Encrypt the kernel's ZMQ transport where jupyter_client and the kernelspec
    # support it (jupyter_client >= 8.7); older versions ignore this setting.
    config = Config({"KernelManager": {"transport_encryption": "auto"}})
    os.environ.update(job["env"])
    output = Path(job["output"])
    output.parent.mkdir(parents=True, exist_ok=True)
    # private to this execution: two runs of one chapter at once never share a file
    tmp = Path(job["running"])
    failed = output.with_name(f"{output.stem}.failed.ipynb")
    manifest = Path(job["env"][_results.MANIFEST_ENV])  # private to this execution too
    manifest.unlink(missing_ok=True)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"ok": True}
    try:
        pm.execute_notebook(
            job["input"], str(tmp), parameters=job["parameters"], kernel_name=KERNEL_NAME,
            cwd=job["cwd"], progress_bar=False, log_output=False, start_timeout=180,
            config=config,
        )
    except PapermillExecutionError as exc:
        result = {"ok": False, "error": {
            "kind": "cell", "cell_index": exc.cell_index, "exec_count": exc.exec_count,
            "ename": exc.ename, "evalue": exc.evalue, "source": exc.source}}
    except Exception as exc:  # kernel died, bad notebook, ...
        result = {"ok": False, "error": {"kind": "other", "ename": type(exc).__name__, "evalue": str(exc)}}
    except BaseException:  # interrupted: leave nothing half-written behind
        tmp.unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)
        raise
    result["seconds"] = time.perf_counter() - t0
    if result["ok"]:
        os.replace(tmp, output)
        failed.unlink(missing_ok=True)
    else:
        if tmp.exists():
            os.replace(tmp, failed)
        result["output"] = str(failed)
        output.unlink(missing_ok=True)  # never render a stale notebook for a failed chapter
    stores = []
    if manifest.is_file():
        seen = set()
        for line in manifest.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(Exception):
                entry = json.loads(line)
                if entry["path"] not in seen:
                    seen.add(entry["path"])
                    stores.append(entry)
    # beside the executed notebook, where the scorecard looks for the result folders it used
    public = _manifest_path(output)
    if manifest.is_file():
        os.replace(manifest, public)
    else:
        public.unlink(missing_ok=True)
    result["stores"] = stores
    return result


def _manifest_path(output: Path) -> Path:
    """Where the result folders an executed notebook used are listed (one JSON per line)."""
    return output.with_name(f".{output.stem}.stores.jsonl")


def results_folder(book: Book) -> Path:
    """Where chapters run by the pipeline store results: ``$ALIGNBOOK_RESULTS`` or
    ``<book>/results``."""
    return Path(os.environ.get(_results.RESULTS_ENV) or book.root / "results")


def _job(book: Book, chapter: str, params: dict[str, Any], output: Path, recompute: bool) -> dict[str, Any]:
    nb = book.notebook(chapter)
    env = {
        "JUPYTER_PATH": os.pathsep.join(
            [str(_kernel_dir(book))] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]),
        _results.RESULTS_ENV: str(results_folder(book)),
        _results.MANIFEST_ENV: str(output.with_name(f".{output.stem}.{uuid.uuid4().hex[:8]}.stores.jsonl.tmp")),
        _results.RECOMPUTE_ENV: "1" if recompute else os.environ.get(_results.RECOMPUTE_ENV, ""),
        "PYTHONUNBUFFERED": "1",
    }
    alone = book.runs_alone(chapter)  # it times itself, compilation included
    env.update(xla_cache.cache_environment(times_compilation=alone))
    # where the chapter's sweep points run: the command line's choice (--engine, carried in
    # this process's environment), else the profile's engine key, else in the kernel
    from alignbook.parameters import profile_engine
    from alignbook.sweep import ENGINE_ENV, Engine

    try:
        engine = (Engine.from_env() if os.environ.get(ENGINE_ENV)
                  else profile_engine(book, params.get("profile", "")) or Engine())
    except ValueError as exc:
        raise BookError(f"sweep engine: {exc}") from None
    env.update(engine.env())
    if engine.engine != "serial" and "XLA_PYTHON_CLIENT_PREALLOCATE" not in os.environ:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # the kernel shares devices with workers
    return {"chapter": chapter, "input": str(nb), "output": str(output), "parameters": params,
            "cwd": str(nb.parent), "env": env, "alone": alone,
            # the notebook while it runs (papermill saves it as each cell starts)
            "running": str(output.with_name(f".running-{uuid.uuid4().hex[:8]}-{output.name}"))}


@contextlib.contextmanager
def _worker_pool(n_workers: int):
    """A pool of spawned worker processes that never outlives the block: when the block
    ends with an exception (an interrupt, a failure), the workers and everything they
    started (their kernels) are stopped instead of being waited for. The workers exit on
    their own when this process dies (:func:`alignbook._procs.worker_init`)."""
    import concurrent.futures as cf
    import multiprocessing as mp

    pool = cf.ProcessPoolExecutor(max_workers=n_workers, mp_context=mp.get_context("spawn"),
                                  initializer=_procs.worker_init, initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        workers = list((getattr(pool, "_processes", None) or {}).keys())
        trees = [p for w in workers for p in [w, *_procs.descendants(w)]]
        _procs.terminate(trees)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_jobs(jobs: list[dict[str, Any]], n_jobs: int, echo) -> list[ChapterRun]:
    runs: list[ChapterRun] = []
    xla_cache.repair(echo=echo)  # an entry a stopped process left makes every write fail
    progress = ProgressReporter(echo)

    def finish(job, res):
        progress.done(job["chapter"])
        run = ChapterRun(job["chapter"], res["ok"], res["seconds"], Path(res.get("output", job["output"])),
                         job["parameters"], res.get("error"), res.get("stores", []))
        runs.append(run)
        status = "ok" if run.ok else "FAILED"
        echo(f"  {run.chapter:<16} {status:<6} {run.seconds:8.1f} s")
        return run

    with progress:
        if n_jobs <= 1 or len(jobs) <= 1:
            saved = dict(os.environ)
            try:
                for job in jobs:
                    echo(f"  {job['chapter']:<16} running ...")
                    progress.watch(job["chapter"], job["running"])
                    finish(job, _execute_job(job))
            finally:
                os.environ.clear()
                os.environ.update(saved)
        else:
            _run_pooled(jobs, n_jobs, echo, progress, finish)
    order = {job["chapter"]: i for i, job in enumerate(jobs)}
    runs.sort(key=lambda r: order[r.chapter])
    return runs


def _run_pooled(jobs: list[dict[str, Any]], n_jobs: int, echo, progress: ProgressReporter,
                finish) -> None:
    """``n_jobs`` chapters at a time in worker processes; the chapters that time themselves
    one at a time, after the others."""
    import concurrent.futures as cf

    if "XLA_PYTHON_CLIENT_PREALLOCATE" not in os.environ:
        # several JAX processes share one accelerator: do not let each grab 75%
        for job in jobs:
            job["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    together = [job for job in jobs if not job.get("alone")]
    if together:
        with _worker_pool(n_jobs) as pool:
            futures = {pool.submit(_execute_job, job): job for job in together}
            for job in together:
                progress.watch(job["chapter"], job["running"])
            for fut in cf.as_completed(futures):
                finish(futures[fut], fut.result())
    for job in jobs:
        if job.get("alone"):
            echo(f"  {job['chapter']:<16} running alone ...")
            progress.watch(job["chapter"], job["running"])
            with _worker_pool(1) as pool:
                finish(job, pool.submit(_execute_job, job).result())


def _select_chapters(book: Book, chapters: Sequence[str] | None) -> list[str]:
    available = book.chapters()
    if not chapters:
        return list(available)
    unknown = [c for c in chapters if c not in available]
    if unknown:
        raise BookError(f"unknown chapter(s) {', '.join(map(repr, unknown))}; the notebook chapters in "
                        f"_toc.yml are: {', '.join(available) or '(none)'}")
    return [c for c in available if c in chapters]  # toc order


def run_chapter(
    book: Book,
    chapter: str,
    profile: str = "cpu",
    overrides: Sequence[tuple[str, str]] = (),
    recompute: bool = False,
    echo=print,
) -> ChapterRun:
    """Execute one chapter with CLI ``overrides`` (``(name, raw YAML)`` pairs)
    into ``_build/runs/<profile>/<chapter>[-<hash>].ipynb``. Parameters are
    checked before anything runs. Raises :class:`ChapterFailed` on failure."""
    for doc in book.documents():
        book.source(doc)
    params = resolve_parameters(book, chapter, profile, cli=overrides)
    suffix = f"-{_results.params_hash(params, 8)}" if overrides else ""
    output = book.build_dir / "runs" / profile / f"{chapter}{suffix}.ipynb"
    echo(f"Running chapter {chapter!r} with profile {profile!r}: "
         + ", ".join(f"{k}={format_value(v)}" for k, v in params.items()))
    with _procs.stop_tree_on_signals(echo):
        (run,) = _run_jobs([_job(book, chapter, params, output, recompute)], 1, echo)
    if not run.ok:
        raise ChapterFailed(run.failure_message())
    return run


#: Locks held by this process: ``{(lock file, thread id): depth}`` (re-entrant per thread).
_HELD_LOCKS: dict[tuple[str, int], int] = {}


def _lock_holder(path: Path) -> str:
    """Who holds a profile lock, from the pid its holder writes into it."""
    for _ in range(20):  # the holder writes its pid just after taking the lock
        with contextlib.suppress(OSError, ValueError):
            text = path.read_text(encoding="utf-8").strip()
            if text:
                return f"pid {int(text.split()[0])}"
        time.sleep(0.05)
    return "pid unknown"


@contextlib.contextmanager
def profile_lock(book: Book, profile: str, echo=print):
    """Hold ``_build/<profile>.lock`` (an exclusive ``flock``) for the block, so that two
    builds of one profile never write the same executed notebooks, staging folder or site
    at once. A build that has to wait says so once, naming the process it waits for.
    Re-entrant within a thread; no lock where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = book.lock_path(profile)
    key = (str(path), threading.get_ident())
    if key in _HELD_LOCKS:
        _HELD_LOCKS[key] += 1
        try:
            yield
        finally:
            _HELD_LOCKS[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"  waiting for another build of profile {profile!r} ({_lock_holder(path)}) "
                 f"to finish; lock file: {path}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD_LOCKS[key] = 1
        try:
            yield
        finally:
            del _HELD_LOCKS[key]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def build(
    book: Book,
    profile: str = "cpu",
    chapters: Sequence[str] | None = None,
    jobs: int = 1,
    recompute: bool = False,
    site: bool = True,
    echo=print,
) -> tuple[list[ChapterRun], Path | None]:
    """Execute the chapters (all notebook chapters in _toc.yml, or ``chapters``)
    with ``profile``'s parameters, then render the site. Every chapter's
    parameters are checked before any runs. Raises :class:`ChapterFailed` when
    a chapter fails (the others still run; the site is not rendered)."""
    for doc in book.documents():
        book.source(doc)  # every toc entry exists
    profiles = load_profiles(book)
    selected = _select_chapters(book, chapters)
    if profile not in profiles:
        raise BookError(f"unknown profile {profile!r}; {PROFILES_FILE.as_posix()} defines: "
                        f"{', '.join(profiles) or '(none)'}")
    # check every chapter in the profile, not only the selected ones
    for chapter in profiles[profile]:
        _check_profile_chapter(book, profile, chapter, profiles[profile][chapter])
    params = {c: resolve_parameters(book, c, profile, profiles) for c in selected}
    with _procs.stop_tree_on_signals(echo), profile_lock(book, profile, echo):
        return _build_locked(book, profile, selected, params, jobs, recompute, site, echo)


def _build_locked(book: Book, profile: str, selected: list[str], params: dict[str, dict[str, Any]],
                  jobs: int, recompute: bool, site: bool, echo) -> tuple[list[ChapterRun], Path | None]:
    """:func:`build` once the parameters are checked and the profile's lock is held."""
    echo(f"Executing {len(selected)} chapter(s) with profile {profile!r}"
         + (f" ({jobs} at a time)" if jobs > 1 and len(selected) > 1 else ""))
    t0 = time.perf_counter()
    job_list = [_job(book, c, params[c], book.executed_path(profile, c), recompute) for c in selected]
    expected = expected_seconds(book, profile)
    if all(c in expected for c in selected):
        alone = sum(expected[j["chapter"]] for j in job_list if j["alone"])
        pooled = sum(expected[j["chapter"]] for j in job_list if not j["alone"])
        echo(f"  expected: about {(alone + pooled / max(1, min(jobs, len(selected)))) / 60:.0f} min "
             "(times of the last build, or of the profile on two idle cores; recorded results are reused)")
    # longest first, so that the last chapter to start is a short one (toc order for ties)
    job_list.sort(key=lambda j: -expected.get(j["chapter"], 0.0))
    runs = sorted(_run_jobs(job_list, jobs, echo), key=lambda r: selected.index(r.chapter))
    timings = {r.chapter: {"seconds": round(r.seconds, 3), "ok": r.ok} for r in runs}
    (book.build_dir / "executed" / profile).mkdir(parents=True, exist_ok=True)
    _results._write_text_atomic(book.build_dir / "executed" / profile / "timings.json",
                                json.dumps(timings, indent=2) + "\n")
    failed = [r for r in runs if not r.ok]
    if failed:
        error = ChapterFailed("\n".join(r.failure_message() for r in failed))
        error.runs = runs  # every chapter's run, the ones that succeeded too
        raise error
    echo(f"  {'(chapters)':<16} {'':<6} {time.perf_counter() - t0:8.1f} s")
    from alignbook.site import render_site

    html = render_site(book, profile, echo) if site else None
    return runs, html
