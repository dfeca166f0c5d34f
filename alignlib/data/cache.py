"""The data cache: where each data set's files live, their checksums, and what happens
to a file that is not right.

Files live in a cache folder, chosen in this order:

1. the ``cache_dir=`` argument (the folder that holds the files themselves);
2. ``$ALIGNBOOK_DATA/<name>`` if the environment variable ``ALIGNBOOK_DATA`` is set;
3. ``<user cache dir>/alignbook/datasets/<name>``, where the user cache dir is
   ``$XDG_CACHE_HOME`` if set, else ``~/.cache`` (``~/Library/Caches`` on macOS,
   ``%LOCALAPPDATA%`` on Windows).

A file whose checksum does not match is never used: it is moved aside to
``<name>.corrupt-<timestamp>`` (never deleted or overwritten) and
:class:`ChecksumMismatchError` is raised; a file that cannot be read (truncated, not in
its format) is treated the same way (:class:`CorruptFileError`, of which
:class:`ChecksumMismatchError` is a kind). Files without a published checksum are used
with a one-time :class:`UnverifiedFileWarning`. :func:`check_files` reports which of a
loader's files are there and whether they verify, without changing anything.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shlex
import sys
import tarfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

from alignlib.data.dataset import check_split
from alignlib.data.registry import (
    DEFAULT_SPLIT,
    IMAGENET_TRAIN_NPZ,
    IMAGENET_TRAIN_ZIP,
    IMAGENET_VAL_NPZ,
    IMAGENET_VAL_ZIP,
    NEEDED,
    OFFLINE_DATASETS,
    DatasetInfo,
    dataset_info,
)

__all__ = [
    "DatasetNotFoundError",
    "CorruptFileError",
    "ChecksumMismatchError",
    "DownloadError",
    "UnverifiedFileWarning",
    "cache_folder",
    "user_cache_dir",
    "download_command",
    "FileCheck",
    "check_files",
]

ENV_DATA = "ALIGNBOOK_DATA"
CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------
# Errors and warnings
# ---------------------------------------------------------------------------------------


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file is not in the cache folder (and ``download=False``)."""

    def __init__(self, message: str, *, paths: tuple[Path, ...] = (), urls: tuple[str, ...] = ()):
        super().__init__(message)
        self.paths = paths
        self.urls = urls
        self.filename = str(paths[0]) if paths else None

    def __str__(self) -> str:  # FileNotFoundError's own __str__ would drop our message
        return self.args[0]


class CorruptFileError(ValueError):
    """A dataset file cannot be used (it cannot be read in its format, or, for the
    subclass :class:`ChecksumMismatchError`, its checksum is wrong); it was moved aside to
    ``moved_to`` (``<file>.corrupt-<timestamp>``)."""

    def __init__(self, message: str, *, path: Path, moved_to: Path | None):
        super().__init__(message)
        self.path, self.moved_to = path, moved_to


class ChecksumMismatchError(CorruptFileError):
    """A file's checksum differs from the published one; the file was moved aside."""

    def __init__(self, message: str, *, path: Path, algorithm: str, expected: str, actual: str,
                 moved_to: Path | None):
        super().__init__(message, path=path, moved_to=moved_to)
        self.algorithm, self.expected, self.actual = algorithm, expected, actual


class DownloadError(OSError):
    """A download failed or ended early; nothing was written under the final name."""


class UnverifiedFileWarning(UserWarning):
    """A file is used without a published checksum to check it against."""


_warned_unverified: set[str] = set()


# ---------------------------------------------------------------------------------------
# Cache folder, checksums, files moved aside
# ---------------------------------------------------------------------------------------


def user_cache_dir() -> Path:
    """The per-user cache root: ``$XDG_CACHE_HOME`` if absolute, else the platform's
    (``~/.cache``, ``~/Library/Caches``, ``%LOCALAPPDATA%``)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"])
    return Path.home() / ".cache"


def cache_folder(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding dataset ``name``'s files.

    ``cache_dir`` (the folder itself) wins; else ``$ALIGNBOOK_DATA/<name>``; else
    ``<user cache dir>/alignbook/datasets/<name>`` (``$XDG_CACHE_HOME`` honoured).
    Nothing is created.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env).expanduser() / name
    return user_cache_dir() / "alignbook" / "datasets" / name


def download_command(name: str, folder: Path | None = None, base_url: str | None = None) -> str:
    """The shell command that fetches data set ``name`` into ``folder`` (``--cache-dir``
    only when ``folder`` is not the default one) from ``base_url`` (a mirror), if given."""
    command = f"alignbook data download {name}"
    if folder is not None and Path(folder) != cache_folder(name):
        command += f" --cache-dir {shlex.quote(str(folder))}"
    if base_url:
        command += f" --base-url {shlex.quote(base_url)}"
    return command


def _fresh_copy(info: DatasetInfo, path: Path, base_url: str | None) -> str:
    """The end of a message about a bad file: where, and how, to get it again."""
    return (f"Get a fresh copy from {info.url(path.name, base_url)}: "
            f"`{download_command(info.name, path.parent, base_url)}` fetches it "
            "(or download=True).")


def _parse_checksum(value) -> tuple[str, str] | None:
    """``None``, ``"sha256:<hex>"``, ``"md5:<hex>"``, or a bare hex digest (by length)."""
    if value is None:
        return None
    if isinstance(value, tuple) and len(value) == 2:
        algo, digest = value
    elif isinstance(value, str) and ":" in value:
        algo, digest = value.split(":", 1)
    elif isinstance(value, str):
        algo = {64: "sha256", 32: "md5"}.get(len(value))
        digest = value
        if algo is None:
            raise ValueError(
                f"Cannot tell the algorithm of checksum {value!r}; write 'sha256:<hex>' or 'md5:<hex>'."
            )
    else:
        raise ValueError(
            f"A checksum must be None, 'sha256:<hex>', 'md5:<hex>' or a hex string, got {value!r}."
        )
    algo = algo.lower()
    if algo not in ("sha256", "md5"):
        raise ValueError(f"Unsupported checksum algorithm {algo!r}; use sha256 or md5.")
    return algo, digest.lower()


def _expected_checksum(info: DatasetInfo, filename: str, checksums: Mapping | None) -> tuple[str, str] | None:
    if checksums is not None and filename in checksums:
        return _parse_checksum(checksums[filename])
    return info.file(filename).checksum


def _file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _move_aside(bad: Path, final: Path) -> Path:
    """Rename ``bad`` to ``<final name>.corrupt-<timestamp>`` beside ``final`` (never overwriting)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = final.with_name(f"{final.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = final.with_name(f"{final.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(bad, target)
    return target


def _mismatch(info: DatasetInfo, final: Path, bad: Path, algorithm: str, expected: str, actual: str,
              *, downloaded: bool, base_url: str | None = None) -> ChecksumMismatchError:
    """Move ``bad`` aside and build the error (``bad`` is ``final`` or a temp download)."""
    moved = _move_aside(bad, final)
    what = "The downloaded copy of" if downloaded else "The file"
    msg = (
        f"{what} {info.title} file '{final.name}' has the wrong {algorithm} checksum.\n"
        f"  file:     {final}\n"
        f"  expected: {expected}\n"
        f"  actual:   {actual}\n"
        f"It was not used; it was moved aside to {moved} (delete it once inspected). "
        + ("Nothing was saved under the final name. " if downloaded else "")
        + _fresh_copy(info, final, base_url)
    )
    return ChecksumMismatchError(msg, path=final, algorithm=algorithm, expected=expected, actual=actual,
                                 moved_to=moved)


#: What reading a truncated or damaged file raises (gzip, zip, tar, npz, IDX).
class _BadFormat(ValueError):
    """Raised by the format readers when a file's bytes do not fit its format."""


_UNREADABLE = (EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile, tarfile.TarError, _BadFormat)


def _unreadable(info: DatasetInfo, path: Path, err: BaseException, base_url: str | None,
                member: str | None = None) -> CorruptFileError:
    """Move an unreadable ``path`` aside (as for a checksum mismatch) and build the error."""
    moved = _move_aside(path, path) if path.exists() else None
    inside = f" (member '{member}')" if member else ""
    msg = (
        f"The {info.title} file '{path.name}'{inside} cannot be read: {type(err).__name__}: {err}\n"
        f"  file: {path}\n"
        "It is truncated or damaged (an interrupted copy?) and was not used; "
        + (f"it was moved aside to {moved} (delete it once inspected). " if moved else "")
        + _fresh_copy(info, path, base_url)
    )
    return CorruptFileError(msg, path=path, moved_to=moved)


def _read_or_move_aside(info: DatasetInfo, path: Path, base_url: str | None, read: Callable, *args):
    """``read(path, *args)``; a file that cannot be read is moved aside (CorruptFileError)."""
    try:
        return read(path, *args)
    except _UNREADABLE as err:
        raise _unreadable(info, path, err, base_url) from err


def _warn_unverified(path: Path, info: DatasetInfo) -> None:
    key = str(path.resolve())
    if key in _warned_unverified:
        return
    _warned_unverified.add(key)
    warnings.warn(
        f"{info.title} file {path} cannot be verified: no published checksum is known for "
        f"'{path.name}' (see DATASETS['{info.name}']). It is used as is.",
        UnverifiedFileWarning,
        stacklevel=4,
    )


def _verify(info: DatasetInfo, path: Path, expected: tuple[str, str] | None,
            base_url: str | None = None) -> None:
    if expected is None:
        _warn_unverified(path, info)
        return
    algorithm, digest = expected
    actual = _file_digest(path, algorithm)
    if actual != digest:
        raise _mismatch(info, path, path, algorithm, digest, actual, downloaded=False, base_url=base_url)


# ---------------------------------------------------------------------------------------
# What is there
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FileCheck:
    """What :func:`check_files` found for one file a loader reads.

    ``status``: ``"verified"`` (its checksum is the published one), ``"unverifiable"``
    (present; no published checksum), ``"unchecked"`` (present; ``verify=False``),
    ``"bad"`` (wrong checksum, or not in its format: a loader would move it aside) or
    ``"missing"``. ``detail`` says more where there is more to say.
    """

    filename: str
    path: Path
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        """The file is there and nothing is known to be wrong with it."""
        return self.status in ("verified", "unverifiable", "unchecked")


def _check_one(info: DatasetInfo, path: Path, verify: bool) -> FileCheck:
    if not path.is_file():
        return FileCheck(path.name, path, "missing")
    if not verify:
        return FileCheck(path.name, path, "unchecked")
    expected = info.file(path.name).checksum
    if expected is None:
        return FileCheck(path.name, path, "unverifiable", "no published checksum")
    algorithm, digest = expected
    actual = _file_digest(path, algorithm)
    if actual != digest:
        return FileCheck(path.name, path, "bad", f"{algorithm} {actual}, published {digest}")
    return FileCheck(path.name, path, "verified", algorithm)


def check_files(name: str, *, cache_dir: str | os.PathLike | None = None, split: str | None = None,
                verify: bool = True) -> list[FileCheck]:
    """Check, without changing anything, the files that ``load_<name>(split=split)`` reads.

    Nothing is downloaded, moved or created. ``split`` defaults to the loader's own
    default (``"heldout"`` for KMNIST and CIFAR-10, ``"test"`` for ImageNet32).
    ``verify=False`` skips the checksums (only presence is checked). For ImageNet32 each
    zip counts as present when the npz files it holds are all extracted in the cache
    folder (or in the folder named after the zip); a missing zip's entry says how many of
    them were found. The offline sets (``"digits"``, ``"add"``) need no files: ``[]``.
    """
    if name in OFFLINE_DATASETS:
        return []
    info = dataset_info(name)
    split = check_split(split if split is not None else DEFAULT_SPLIT[name])
    folder = cache_folder(name, cache_dir)
    if name != "imagenet32":
        wanted = NEEDED[name]["heldout"] + (NEEDED[name]["test"] if split == "test" else ())
        return [_check_one(info, folder / f, verify) for f in wanted]
    groups = [(IMAGENET_TRAIN_ZIP, IMAGENET_TRAIN_NPZ)]
    if split == "test":
        groups.append((IMAGENET_VAL_ZIP, (IMAGENET_VAL_NPZ,)))
    checks = []
    for zip_name, npz_names in groups:
        # the loader reads each npz file extracted if it is (in the folder or the one named
        # after the zip, see _ImagenetSource), else from the zip
        places = [(folder / n, folder / zip_name[: -len(".zip")] / n) for n in npz_names]
        found = [next(c for c in pair if c.is_file()) for pair in places if any(c.is_file() for c in pair)]
        zpath = folder / zip_name
        if len(found) == len(npz_names):
            checks += [FileCheck(p.name, p, "unverifiable" if verify else "unchecked",
                                 "extracted from " + zip_name) for p in found]
        elif zpath.is_file():
            check = _check_one(info, zpath, verify)
            if verify and not zipfile.is_zipfile(zpath):
                check = FileCheck(zip_name, zpath, "bad", "not a zip archive (a saved login page?)")
            checks.append(check)
        else:
            checks.append(FileCheck(zip_name, zpath, "missing",
                                    f"or its {len(npz_names)} npz file(s) extracted: {len(found)} found"))
    return checks
