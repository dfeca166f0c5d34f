"""The results store: where chapters put the tables and figures they compute.

A chapter opens one store per parameter setting::

    store = ResultStore("alignment", profile, dict(widths=widths, lr=lr))

and everything it saves goes into one folder::

    <root>/<chapter>/<profile>/<hash>/
        provenance.json        parameters, package versions, device, git revision,
                               and one checksum per result file
        width_sweep.csv        tidy tables (``save_table``)
        width_sweep.png/.pdf   figures (``save_figure``)

``<hash>`` is the first 12 hex digits of the SHA-256 of the canonical JSON of the
parameters (sorted keys, no spaces, integral floats written as integers, numpy
values as plain numbers and lists), so the same parameters always map to the same
folder and ``cached`` can reuse a finished table instead of recomputing it.

``<root>`` is, in order of precedence: the ``root`` argument, the environment
variable ``ALIGNBOOK_RESULTS``, or ``results/`` in the book's root folder (the
nearest folder above the working directory that holds ``_toc.yml``; else the working
directory).

Crash safety. Every file is written to a temporary file in the same folder, flushed
to disk and moved into place with ``os.replace``, so a file never appears half
written under its final name. After the move, the file's SHA-256 is recorded in
``provenance.json`` (itself written the same way, under a lock). A result file is
*trusted* only when ``provenance.json`` lists it with a matching checksum: a run
killed between writing a file and recording it, or a file edited or truncated by
hand, is recomputed by ``cached`` and refused by ``load_table``. Left-over temporary
files (names starting with ``.tmp-``) are never read.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pandas as pd

__all__ = [
    "ResultStore",
    "IncompleteResultError",
    "canonical_json",
    "params_hash",
    "project_root",
    "results_root",
    "RESULTS_ENV",
    "RECOMPUTE_ENV",
    "MANIFEST_ENV",
]

#: Environment variable that overrides the results root folder.
RESULTS_ENV = "ALIGNBOOK_RESULTS"
#: When set to a non-empty value other than "0", ``cached`` recomputes every table.
RECOMPUTE_ENV = "ALIGNBOOK_RECOMPUTE"
#: Set by the ``alignbook`` pipeline: a file to which every store appends its folder,
#: so that the command line can report where a chapter's results went.
MANIFEST_ENV = "ALIGNBOOK_STORE_MANIFEST"

PACKAGES = ("jax", "jaxlib", "equinox", "optax", "numpy", "alignlib")
HASH_LENGTH = 12
PROVENANCE = "provenance.json"
_TMP_PREFIX = ".tmp-"


class IncompleteResultError(FileNotFoundError):
    """A result file is missing, or present but not recorded as complete."""


# --------------------------------------------------------------------------- paths


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory)
    that holds ``_toc.yml``; ``start`` itself when there is none."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    return here


def results_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the results root: ``root``, else ``$ALIGNBOOK_RESULTS``, else
    ``<project root>/results``."""
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return project_root() / "results"


# ------------------------------------------------------------------ hashing params


def _jsonable(value: Any) -> Any:
    """Convert parameter values to plain JSON types (numpy scalars and arrays,
    tuples, paths); refuse anything that has no canonical text form."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"parameter names must be strings, got {k!r}")
            out[k] = _jsonable(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"parameter values must be finite, got {value!r}")
        # one number, one text: 5.0 and 5 name the same folder
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    # numpy scalars / arrays without importing numpy here
    if hasattr(value, "tolist") and callable(value.tolist):
        return _jsonable(value.tolist())
    raise TypeError(
        f"parameter value {value!r} of type {type(value).__name__} has no canonical "
        "JSON form; use int, float, str, bool, None, lists or dicts of these"
    )


def canonical_json(params: Mapping[str, Any]) -> str:
    """The canonical JSON text of a parameter mapping: sorted keys, no spaces."""
    return json.dumps(
        _jsonable(dict(params)), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )


def params_hash(params: Mapping[str, Any], length: int = HASH_LENGTH) -> str:
    """First ``length`` hex digits of the SHA-256 of ``canonical_json(params)``."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()[:length]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- atomic writing


def _umask() -> int:
    """The process's umask, without changing it where the system can tell it (Linux's
    /proc/self/status); elsewhere set and restored at once."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path in ``final``'s folder; on success fsync it and move
    it onto ``final`` with ``os.replace``; on failure delete it. The file gets the
    permissions a plain ``open(final, "w")`` would give (``0o666`` less the umask),
    not the private ``0o600`` of :func:`tempfile.mkstemp`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{final.name}.", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    # make the rename itself durable (best effort; not all filesystems allow it)
    with contextlib.suppress(OSError):
        dfd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _write_text_atomic(path: Path, text: str) -> None:
    with _atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder/.lock`` (POSIX ``flock``; no-op elsewhere)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------- provenance


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def _package_versions() -> dict[str, str | None]:
    return {p: _version(p) for p in PACKAGES}


@functools.lru_cache(maxsize=None)
def _device_info() -> dict[str, Any]:
    try:
        import jax

        devices = jax.devices()
        return {
            "backend": jax.default_backend(),
            "device_kind": devices[0].device_kind if devices else None,
            "device_count": len(devices),
        }
    except Exception as exc:  # jax missing or failing to initialise
        return {"backend": None, "device_kind": None, "device_count": 0, "error": repr(exc)}


def _git_info(folder: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(folder), *args],
                capture_output=True, text=True, timeout=20, check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    revision = git("rev-parse", "--verify", "--quiet", "HEAD")
    status = git("status", "--porcelain")
    return {
        "revision": revision or None,
        # None when git (or the repository) is not available
        "dirty": None if status is None else bool(status),
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# -------------------------------------------------------------------- the store


class ResultStore:
    """One folder of results for one chapter, profile and parameter setting.

    Arguments:
        chapter: the chapter's name, as in ``_toc.yml`` (``"alignment"``).
        profile: the profile the chapter runs under (``"cpu"``, ``"gpu"``, ``"tiny"``).
        params: the parameters that determine the results (JSON-able values:
            int, float, str, bool, None, lists and dicts of these). Their canonical
            JSON is hashed to name the folder; pass every parameter that changes a
            number, and nothing that does not (not ``profile``: it has its own level).
        root: results root; default ``$ALIGNBOOK_RESULTS`` or ``<book>/results``.

    Attributes:
        path: the folder (created on construction).
        hash: the parameter hash naming the folder.
    """

    def __init__(
        self,
        chapter: str,
        profile: str,
        params: Mapping[str, Any],
        root: str | os.PathLike | None = None,
    ):
        for label, value in (("chapter", chapter), ("profile", profile)):
            if not isinstance(value, str) or not value or "/" in value or value.startswith("."):
                raise ValueError(f"{label} must be a plain, non-empty name, got {value!r}")
        self.chapter = chapter
        self.profile = profile
        self.params = json.loads(canonical_json(params))  # validated, plain copy
        self.hash = params_hash(self.params)
        self.root = results_root(root)
        self.path = self._folder()
        self.path.mkdir(parents=True, exist_ok=True)
        self._announce()

    def __repr__(self) -> str:
        return f"ResultStore({self.chapter!r}, {self.profile!r}, hash={self.hash!r}, path='{self.path}')"

    # ---------------------------------------------------------------- helpers
    def _folder(self) -> Path:
        """The store's folder: ``<root>/<chapter>/<profile>/<hash>``."""
        return self.root / self.chapter / self.profile / self.hash

    def _announce(self) -> None:
        """Tell the alignbook pipeline (if it is running us) where results go."""
        manifest = os.environ.get(MANIFEST_ENV)
        if not manifest:
            return
        line = json.dumps({"chapter": self.chapter, "profile": self.profile,
                           "hash": self.hash, "path": str(self.path)})
        with contextlib.suppress(OSError):
            Path(manifest).parent.mkdir(parents=True, exist_ok=True)
            with open(manifest, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def _file(self, name: str, suffix: str) -> Path:
        if not name or "/" in name or os.sep in name or name.startswith("."):
            raise ValueError(f"result names must be plain file names, got {name!r}")
        return self.path / f"{name}{suffix}"

    def _read_provenance(self) -> dict[str, Any]:
        path = self.path / PROVENANCE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError:
            # never produced by us (writes are atomic); treat as absent
            return {}

    def _environment(self) -> dict[str, Any]:
        return {
            "chapter": self.chapter,
            "profile": self.profile,
            "params": self.params,
            "params_hash": self.hash,
            "packages": _package_versions(),
            "device": _device_info(),
            "git": _git_info(project_root()),
            "python": platform.python_version(),
            "python_executable": sys.executable,
            "platform": platform.platform(),
            "timestamp": _now(),
        }

    def _record(self, *files: Path) -> dict[str, Any]:
        """Write provenance.json with the current environment and a checksum entry
        for each of ``files`` (which must already be in their final place)."""
        with _locked(self.path):
            prov = self._read_provenance()
            recorded = prov.get("files", {})
            env = self._environment()
            for f in files:
                recorded[f.name] = {
                    "sha256": _sha256_file(f),
                    "bytes": f.stat().st_size,
                    "written": env["timestamp"],
                    "git_revision": env["git"]["revision"],
                    "git_dirty": env["git"]["dirty"],
                }
            prov = {**env, "files": dict(sorted(recorded.items()))}
            _write_text_atomic(self.path / PROVENANCE, json.dumps(prov, indent=2) + "\n")
        return prov

    def is_complete(self, filename: str) -> bool:
        """True when ``filename`` (in this folder) exists and provenance.json
        records it with a matching SHA-256."""
        path = self.path / filename
        entry = self._read_provenance().get("files", {}).get(filename)
        if entry is None or not path.is_file():
            return False
        return entry.get("sha256") == _sha256_file(path)

    # ------------------------------------------------------------- public API
    def provenance(self) -> dict[str, Any]:
        """Write (or refresh) ``provenance.json`` and return its contents: chapter,
        profile, params, params_hash, packages (jax, jaxlib, equinox, optax, numpy,
        alignlib), device (backend, device_kind, device_count), git (revision,
        dirty), python, timestamp, and ``files`` (checksums of result files)."""
        return self._record()

    def save_table(self, df: pd.DataFrame, name: str) -> Path:
        """Save a tidy table as ``<name>.csv`` (atomically) and record it.

        A non-default index is written as ordinary columns (``reset_index``), so
        ``load_table`` returns the same columns and a default index."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"save_table expects a pandas DataFrame, got {type(df).__name__}")
        if not isinstance(df.index, pd.RangeIndex) or df.index.name is not None:
            df = df.reset_index()
        path = self._file(name, ".csv")
        with _atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
        self._record(path)
        return path

    def save_json(self, obj: Any, name: str) -> Path:
        """Save JSON-able ``obj`` as ``<name>.json`` (atomically, sorted keys) and record it."""
        path = self._file(name, ".json")
        _write_text_atomic(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")
        self._record(path)
        return path

    def save_arrays(self, arrays: Mapping[str, Any], name: str) -> Path:
        """Save numeric arrays as ``<name>.npz`` (atomically) and record it."""
        import numpy as np

        path = self._file(name, ".npz")
        with _atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **{str(k): np.asarray(v) for k, v in arrays.items()})
        self._record(path)
        return path

    def has_arrays(self, name: str) -> bool:
        """True when ``<name>.npz`` is present and recorded as complete."""
        return self.is_complete(self._file(name, ".npz").name)

    def load_arrays(self, name: str) -> dict[str, Any]:
        """The arrays of ``<name>.npz`` as ``{name: numpy array}``; raise
        ``IncompleteResultError`` if the file is missing or not recorded as complete."""
        import numpy as np

        path = self._file(name, ".npz")
        if not self.is_complete(path.name):
            raise IncompleteResultError(
                f"arrays {name!r} in {self.path} are missing or were not recorded as complete")
        with np.load(path, allow_pickle=False) as found:
            return {k: found[k] for k in found.files}

    def load_table(self, name: str) -> pd.DataFrame:
        """Load ``<name>.csv``; raise ``IncompleteResultError`` if it is missing or
        not recorded as complete (e.g. a run died before recording it)."""
        path = self._file(name, ".csv")
        if not self.is_complete(path.name):
            raise IncompleteResultError(
                f"table {name!r} in {self.path} is missing or was not recorded as "
                "complete in provenance.json; recompute it (ResultStore.cached)"
            )
        return pd.read_csv(path)

    def has_table(self, name: str) -> bool:
        """True when ``<name>.csv`` is present and recorded as complete."""
        return self.is_complete(self._file(name, ".csv").name)

    def cached(self, name: str, compute_fn: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """Return table ``name``, computing it with ``compute_fn()`` only when no
        finished copy exists (or ``$ALIGNBOOK_RECOMPUTE`` is set). Either way the
        table is returned as read back from its CSV, so a first run and a re-run
        give identical frames.

        While ``compute_fn`` runs, the points of every sweep it calls
        (:mod:`alignlib.experiments.points`) run through :mod:`alignbook.sweep` and are
        stored one by one under ``<root>/<chapter>/<profile>/points/`` (see
        :func:`alignbook.sweep.chapter_runner`): an interrupted table resumes at its
        first unfinished point, and ``$ALIGNBOOK_ENGINE`` may send the points to a Dask
        cluster."""
        recompute = os.environ.get(RECOMPUTE_ENV, "") not in ("", "0")
        if recompute or not self.has_table(name):
            from alignbook.sweep import chapter_runner
            from alignlib.experiments.points import use_runner

            with use_runner(chapter_runner(self, recompute=recompute)):
                df = compute_fn()
            self.save_table(df, name)
        return self.load_table(name)

    def save_figure(self, fig: Any, name: str, dpi: int = 150) -> dict[str, Path]:
        """Save a matplotlib figure as ``<name>.png`` (``dpi`` dots per inch) and
        ``<name>.pdf``, atomically. The PNG carries the provenance (JSON, key
        ``alignbook:provenance``) in its text metadata; the PDF's Subject/Keywords
        name the chapter, profile, parameter hash and git revision."""
        env = self._environment()
        prov_text = json.dumps({k: env[k] for k in (
            "chapter", "profile", "params", "params_hash", "packages", "device",
            "git", "python", "timestamp")}, sort_keys=True)
        rev = env["git"]["revision"] or "unknown"
        if env["git"]["dirty"]:
            rev += "+dirty"
        title = f"{self.chapter}/{name} ({self.profile}, {self.hash})"
        png = self._file(name, ".png")
        pdf = self._file(name, ".pdf")
        with _atomic_path(png) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, metadata={
                "Title": title,
                "Software": f"alignlib {env['packages'].get('alignlib')}",
                "Source": f"git {rev}",
                "alignbook:provenance": prov_text,
            })
        with _atomic_path(pdf) as tmp:
            fig.savefig(tmp, format="pdf", metadata={
                "Title": title,
                "Subject": f"alignbook chapter {self.chapter}, profile {self.profile}, "
                           f"params {self.hash}, git {rev}",
                "Keywords": canonical_json(self.params),
                "Creator": f"alignlib {env['packages'].get('alignlib')}",
            })
        self._record(png, pdf)
        return {"png": png, "pdf": pdf}

    def files(self) -> list[str]:
        """Names of the result files recorded as complete."""
        recorded = self._read_provenance().get("files", {})
        return [name for name in recorded if self.is_complete(name)]
