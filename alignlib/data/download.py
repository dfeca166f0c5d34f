"""Downloads into the data cache, and the one way every loader gets its files.

A missing file raises :class:`~alignlib.data.cache.DatasetNotFoundError` (a
``FileNotFoundError``) naming the file, the full path looked at, the URL, and how to fix
it (``alignbook data download NAME``); ``download=True`` fetches it: streamed to a temp
file in the cache folder (``.<name>.<random>.part``, locked while the download runs),
verified, then atomically renamed, so an interrupted or corrupt download never appears
under the final name. Temporary ``.part`` files left by a killed download are removed by
the next fetch of that file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from alignlib.data.cache import (
    CHUNK,
    ENV_DATA,
    ChecksumMismatchError,
    DatasetNotFoundError,
    DownloadError,
    _expected_checksum,
    _mismatch,
    _verify,
    _warn_unverified,
    cache_folder,
    download_command,
)
from alignlib.data.registry import DatasetInfo, dataset_info

__all__ = ["fetch_file"]


def _part_files(dest: Path) -> list[Path]:
    """The temporary files downloads of ``dest`` write (see :func:`_download`)."""
    return sorted(dest.parent.glob(f".{dest.name}.*.part"))


def _lock_part(fd: int) -> bool:
    """Take an exclusive, non-blocking lock on an open ``.part`` file; False when another
    process holds it (a download in progress). True where locks are not available."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


#: Where file locks are not available, a ``.part`` file untouched this long is stale.
_STALE_PART_SECONDS = 24 * 3600


def _remove_stale_parts(dest: Path) -> list[Path]:
    """Delete the ``.part`` files of downloads of ``dest`` that were killed: each download
    holds a lock on its own ``.part`` file while it runs, so a file nobody holds is left
    over. Returns the files removed."""
    removed = []
    for part in _part_files(dest):
        try:
            fd = os.open(part, os.O_RDWR)
        except OSError:
            continue
        try:
            if fcntl is not None:
                stale = _lock_part(fd)
            else:  # pragma: no cover - Windows
                stale = time.time() - os.fstat(fd).st_mtime > _STALE_PART_SECONDS
            if stale:
                part.unlink(missing_ok=True)
                removed.append(part)
        finally:
            os.close(fd)
    return removed


def _umask() -> int:
    """The process's umask, read from /proc/self/status where there is one (Linux), else
    set and restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _download(info: DatasetInfo, url: str, dest: Path, expected: tuple[str, str] | None, *,
              progress: bool, timeout: float, base_url: str | None = None) -> None:
    """Stream ``url`` to a temp file beside ``dest`` (``.<name>.<random>.part``, locked while
    the download runs), verify, then rename onto ``dest``."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    _lock_part(fd)  # released when the file is closed (or the process dies)
    try:
        algorithm = expected[0] if expected else "sha256"
        h = hashlib.new(algorithm)
        written = 0
        request = urllib.request.Request(url, headers={"User-Agent": "alignlib (alignbook dataset loader)"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=not progress, leave=False) as bar:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            # http.client returns b"" (no exception) when the server closes early.
            if total is not None and written != total:
                raise DownloadError(
                    f"Download of {url} ended after {written} of {total} bytes "
                    f"(connection closed early); nothing was saved as {dest}. Try again."
                )
        if expected is None:
            _warn_unverified(dest, info)
        elif h.hexdigest() != expected[1]:
            raise _mismatch(info, dest, tmp, expected[0], expected[1], h.hexdigest(), downloaded=True,
                            base_url=base_url)
        os.chmod(tmp, 0o666 & ~_umask())  # as open(dest, "w") would, not mkstemp's 0o600
        os.replace(tmp, dest)
    except BaseException as err:
        if tmp.exists():
            tmp.unlink()
        if isinstance(err, (DownloadError, ChecksumMismatchError)) or not isinstance(
            err, (OSError, http.client.HTTPException)
        ):
            raise
        raise DownloadError(f"Download of {url} failed ({err}); nothing was saved as {dest}.") from err


def _missing_error(info: DatasetInfo, folder: Path, filenames: list[str], base_url: str | None,
                   call: str, extra: str = "") -> DatasetNotFoundError:
    """The offline error: each file, the full path looked at, its URL, and the fixes."""
    paths = tuple(folder / f for f in filenames)
    urls = tuple(info.url(f, base_url) for f in filenames)
    lines = [f"{info.title}: {len(filenames)} file(s) not found."]
    for p, u in zip(paths, urls):
        lines.append(f"  file '{p.name}'\n    looked for: {p}\n    get it from: {u}")
    if extra:
        lines.append(extra)
    lines.append(
        f"Fix: run `{download_command(info.name, folder, base_url)}` (or call {call}) to "
        f"download into {folder}; or put the files in "
        f"that folder; or pass cache_dir=<folder holding them>; or set the environment variable "
        f"{ENV_DATA}=<root> (files then go in <root>/{info.name}/)."
    )
    if info.note:
        lines.append(f"Note: {info.note}")
    return DatasetNotFoundError("\n".join(lines), paths=paths, urls=urls)


def fetch_file(name: str, filename: str, *, cache_dir=None, download: bool = False,
               base_url: str | None = None, checksums: Mapping | None = None,
               progress: bool = True, timeout: float = 60.0) -> Path:
    """Path of a verified copy of one published file, downloading it if asked.

    Args:
        name: a key of :data:`~alignlib.data.DATASETS`.
        filename: one of that dataset's published file names.
        cache_dir, download, base_url, checksums, progress: as in
            :func:`~alignlib.data.load_kmnist`.
        timeout: seconds to wait on the server before giving up.

    Raises:
        DatasetNotFoundError: the file is absent and ``download`` is false.
        ChecksumMismatchError: the file (or the downloaded copy) has the wrong checksum;
            it was moved aside to ``<file>.corrupt-<timestamp>``.
        DownloadError: the download failed or ended early (nothing kept).
    """
    info = dataset_info(name)
    info.file(filename)
    folder = cache_folder(info.name, cache_dir)
    path = folder / filename
    expected = _expected_checksum(info, filename, checksums)
    if not path.exists():
        if not download:
            raise _missing_error(info, folder, [filename], base_url,
                                 f"fetch_file('{info.name}', '{filename}', download=True)")
        _download(info, info.url(filename, base_url), path, expected, progress=progress, timeout=timeout,
                  base_url=base_url)
        return path
    if folder.is_dir():
        _remove_stale_parts(path)
    _verify(info, path, expected, base_url)
    return path


def _fetch_all(name: str, filenames: list[str], *, loader: str, cache_dir, download, base_url,
               checksums, progress) -> dict[str, Path]:
    """Fetch several files, reporting every missing one at once when offline."""
    info = dataset_info(name)
    folder = cache_folder(name, cache_dir)
    if not download:
        missing = [f for f in filenames if not (folder / f).exists()]
        if missing:
            raise _missing_error(info, folder, missing, base_url, f"{loader}(download=True)")
    return {
        f: fetch_file(name, f, cache_dir=cache_dir, download=download, base_url=base_url,
                      checksums=checksums, progress=progress)
        for f in filenames
    }
