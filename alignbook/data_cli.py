"""``alignbook data``: the data sets' files: which profile reads which, where they are,
fetching them and checking them.

Usage::

    alignbook data list [NAME ...] [--cache-dir DIR] [--no-verify]
    alignbook data download NAME [--cache-dir DIR] [--base-url URL] [--no-progress]
    alignbook data verify [NAME] [--cache-dir DIR]

``--cache-dir`` is the folder that holds one data set's files (the library's
``cache_dir=``, a chapter's ``data_dir``); without it each data set has its own folder in
the data cache (``$ALIGNBOOK_DATA/<name>/``, else ``~/.cache/alignbook/datasets/<name>/``).
Downloads go through :func:`alignlib.data.fetch_file`: a temporary file beside the final
one, locked while it is written, checked against the published checksum, then renamed;
a file already there is checked, and one with the wrong checksum is moved aside and
fetched again. Exit status: 0 success, 1 a file missing, corrupt or not downloaded,
2 bad arguments (an unknown name lists the valid ones).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import warnings
from pathlib import Path

from alignbook import pipeline as _book
from alignbook import results as _results
from alignlib import data as _data
from alignlib.data.cache import ENV_DATA

__all__ = ["add_parser", "main", "profile_datasets"]


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register ``data list|download|verify`` on the ``alignbook`` subcommands ``sub``."""
    names = ", ".join(_data.DATASET_NAMES)
    p_data = sub.add_parser(
        "data", parents=[common], help="list, download or verify the data sets' files",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"The data sets ({names}): which profile reads which, where their files "
                    "are, fetching and checking them. Exit status: 0 success, 1 a file missing "
                    "or corrupt, 2 bad arguments.",
        epilog=textwrap.dedent("""\
            Examples:
              alignbook data list
              alignbook data download kmnist
              alignbook data download cifar10 --cache-dir /data/cifar10
              alignbook data verify

            The tiny and cpu profiles need no files; the gpu profile reads kmnist, cifar10
            and imagenet32 (which has no public URL: `download imagenet32` says how to place
            its files by hand)."""))
    actions = p_data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    def action(name: str, names: dict, help: str, description: str) -> argparse.ArgumentParser:
        """One action, with its data set argument(s) (``names``: add_argument's keywords)
        and ``--cache-dir``."""
        parser = actions.add_parser(name, parents=[common], help=help, description=description)
        parser.add_argument(names.pop("dest"), metavar="NAME", **names)
        parser.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                            help="the folder holding the data set's files (default: its folder in "
                                 "the data cache, $ALIGNBOOK_DATA/<name> or "
                                 "~/.cache/alignbook/datasets/<name>)")
        return parser

    p_list = action(
        "list", dict(dest="names", nargs="*", help="only these data sets"),
        help="every data set: profiles that read it, files, sizes, status",
        description="Every data set with the profiles that read it, its files and their sizes, "
                    "its folder, and whether each file is there and matches its published checksum. "
                    "Changes nothing; downloads nothing.")
    p_list.add_argument("--no-verify", dest="verify", action="store_false",
                        help="only check that the files exist (skip their checksums)")
    p_download = action(
        "download", dict(dest="name"), help="fetch a data set's files, verified, into the data cache",
        description="Fetch every published file of data set NAME that is not already there; each "
                    "is written to a temporary file, checked against its published checksum and "
                    "only then renamed into place. Files already there are checked; one with the "
                    "wrong checksum is moved aside and fetched again.")
    p_download.add_argument("--base-url", default=None, metavar="URL",
                            help="download from this mirror (URL/<file>) instead of the published URL")
    p_download.add_argument("--no-progress", dest="progress", action="store_false",
                            help="no progress bar")
    action("verify", dict(dest="name", nargs="?", default=None),
           help="check the files' checksums; exit 1 naming any missing or corrupt",
           description="Check that the files the loaders read are there and match their published "
                       "checksums (all data sets, or NAME). Changes nothing. Exit status 1, naming "
                       "each file, when one is missing or corrupt.")


# --------------------------------------------------------------------------- profiles


def profile_datasets(book: _book.Book, profile: str, profiles=None) -> list[tuple[str, str | None]]:
    """The ``(data set, data_dir or None)`` pairs that ``profile``'s chapters read: their
    ``dataset`` / ``datasets`` parameters (notebook default, then the profile's value)
    that name a data set, with their ``data_dir``."""
    profiles = _book.load_profiles(book) if profiles is None else profiles
    pairs: list[tuple[str, str | None]] = []
    for chapter in book.chapters():
        values = {p.name: p.default for p in book.parameters(chapter).values() if p.literal}
        values.update(_book.resolve_parameters(book, chapter, profile, profiles))
        names = values.get("datasets") or []
        names = [names] if isinstance(names, str) else list(names)
        if isinstance(values.get("dataset"), str):
            names.append(values["dataset"])
        data_dir = values.get("data_dir") or None
        for name in names:
            if name in _data.DATASET_NAMES and (name, data_dir) not in pairs:
                pairs.append((name, data_dir))
    return pairs


def _readers(root: Path | None) -> tuple[dict[str, list[str]], str | None]:
    """``{data set: [profiles whose chapters read it]}``, and a note when the book or its
    profiles cannot be read."""
    try:
        book = _book.Book(root if root is not None else _results.project_root())
        profiles = _book.load_profiles(book)
        found: dict[str, list[str]] = {}
        for profile in profiles:
            for name in dict(profile_datasets(book, profile, profiles)):
                found.setdefault(name, []).append(profile)
        return found, None
    except _book.BookError as exc:
        return {}, f"profiles unknown: {exc}"


# --------------------------------------------------------------------------- helpers


class _UsageError(Exception):
    """Bad arguments: exit status 2."""


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _check_name(name: str) -> str:
    if name not in _data.DATASET_NAMES:
        raise _UsageError(f"unknown data set {name!r}; valid names: {', '.join(_data.DATASET_NAMES)}")
    return name


def _folder_names(names: list[str], cache_dir: Path | None) -> list[str]:
    """The data sets with files among ``names``; ``--cache-dir`` names one folder, so it
    needs exactly one of them."""
    with_files = [n for n in names if n in _data.DATASETS]
    if cache_dir is not None and len(with_files) != 1:
        raise _UsageError("--cache-dir is the folder of one data set's files: name that data set "
                          f"({', '.join(_data.DATASETS)})")
    return with_files


def _checks(name: str, cache_dir: Path | None, verify: bool) -> list[tuple[_data.FileCheck, bool]]:
    """Every file a loader of ``name`` may read (its official test split included), each
    with whether the loader's default split needs it."""
    needed = {c.filename for c in _data.check_files(name, cache_dir=cache_dir, verify=False)}
    return [(c, c.filename in needed)
            for c in _data.check_files(name, cache_dir=cache_dir, split="test", verify=verify)]


# --------------------------------------------------------------------------- list


def _cmd_list(args) -> int:
    names = [_check_name(n) for n in args.names] or list(_data.DATASET_NAMES)
    _folder_names(names, args.cache_dir)
    readers, note = _readers(getattr(args, "root", None))
    print(f"Data cache  {_data.cache_folder('kmnist').parent}  (one folder per data set; "
          f"{ENV_DATA}=<root> moves it)")
    if note:
        print(f"  note: {note}")
    for name in names:
        print()
        if name in _data.OFFLINE_DATASETS:
            print(f"{name:<12}{_data.OFFLINE_DATASETS[name]}")
            print(f"{'':<12}profiles  {', '.join(readers.get(name, [])) or 'any (no chapter parameter names it)'}")
            print(f"{'':<12}files     none (offline)")
            continue
        info = _data.DATASETS[name]
        checks = _checks(name, args.cache_dir, args.verify)
        sizes = [info.file(c.filename).size for c, _ in checks]
        total = None if None in sizes else sum(sizes)
        print(f"{name:<12}{info.title}, {_size(total)}")
        print(f"{'':<12}profiles  {', '.join(readers.get(name, [])) or '-'}")
        print(f"{'':<12}folder    {_data.cache_folder(name, args.cache_dir)}")
        for i, ((check, needed), size) in enumerate(zip(checks, sizes)):
            status = check.status + (f" ({check.detail})" if check.detail else "")
            extra = "" if needed else "  [official test split only]"
            print(f"{'':<12}{'files' if i == 0 else '':<10}{check.filename:<28}{_size(size):>13}  {status}{extra}")
        how = (f"by hand (`alignbook data download {name}` says how)" if not info.public_download
               else f"alignbook data download {name}")
        print(f"{'':<12}get it    {how}")
    return 0


# --------------------------------------------------------------------------- download


def _by_hand(info: _data.DatasetInfo, folder: Path, missing: list[str]) -> str:
    files = " and ".join(missing)
    return "\n".join([
        f"{info.title} has no public download URL: {info.base_url} serves its files only to "
        "registered users (a script would get a login page).",
        "To place the files by hand:",
        f"  1. log in at https://image-net.org and download, from {info.base_url}:",
        f"     {files} (the release: {info.homepage});",
        f"  2. put them in {folder}/ as they are, or unzipped",
        "     (the npz files they hold, in that folder or in one named after the zip);",
        f"  3. run `alignbook data verify {info.name}`.",
        f"From a mirror you can reach: alignbook data download {info.name} --base-url URL",
    ])


def _fetch(name: str, filename: str, args) -> str:
    """Fetch (or check) one file; what happened, in words. A file already there with the
    wrong checksum is moved aside by the library, then fetched again."""
    kwargs = dict(cache_dir=args.cache_dir, download=True, base_url=args.base_url,
                  progress=args.progress)
    path = _data.cache_folder(name, args.cache_dir) / filename
    existed = path.is_file()
    try:
        _data.fetch_file(name, filename, **kwargs)
    except _data.CorruptFileError as err:
        if not existed or err.moved_to is None:
            raise
        print(f"  {filename}: the copy there was corrupt, moved aside to {err.moved_to.name}; fetching again")
        existed = False
        _data.fetch_file(name, filename, **kwargs)
    checksum = _data.DATASETS[name].file(filename).checksum
    verified = f"{checksum[0]} verified" if checksum else "no published checksum, not verified"
    return f"{'already there' if existed else 'downloaded'}, {verified}"


def _cmd_download(args) -> int:
    name = _check_name(args.name)
    if name in _data.OFFLINE_DATASETS:
        print(f"{name}: {_data.OFFLINE_DATASETS[name]}; nothing to download.")
        return 0
    info = _data.DATASETS[name]
    folder = _data.cache_folder(name, args.cache_dir)
    if not info.public_download and not args.base_url:
        missing = [c.filename for c in _data.check_files(name, cache_dir=args.cache_dir, verify=False)
                   if not c.ok]
        if not missing:
            print(f"{name}: every file is in {folder}; `alignbook data verify {name}` checks them.")
            return 0
        print(_by_hand(info, folder, missing))
        print(f"alignbook: error: {name} cannot be downloaded from its published URL; "
              "place the files by hand (above)", file=sys.stderr)
        return 1
    filenames = [c.filename for c in _data.check_files(name, cache_dir=args.cache_dir, split="test",
                                                       verify=False)]
    print(f"{info.title} -> {folder}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _data.UnverifiedFileWarning)  # said per file below
        for filename in filenames:
            print(f"  {filename}: {_fetch(name, filename, args)}")
    print(f"Done: {len(filenames)} file(s) in {folder}.")
    return 0


# --------------------------------------------------------------------------- verify


def _cmd_verify(args) -> int:
    names = [_check_name(args.name)] if args.name else list(_data.DATASETS)
    with_files = _folder_names(names, args.cache_dir)
    problems = []
    for name in names:
        if name not in with_files:
            print(f"{name}: {_data.OFFLINE_DATASETS[name]}; no files to verify.")
            continue
        print(f"{name}: {_data.cache_folder(name, args.cache_dir)}")
        for check, needed in _checks(name, args.cache_dir, verify=True):
            if check.status == "missing" and not needed:
                print(f"  {check.filename:<30} not downloaded (only the official test split reads it)")
                continue
            print(f"  {check.filename:<30} {check.status}" + (f" ({check.detail})" if check.detail else ""))
            if not check.ok:
                problems.append((name, check))
    if problems:
        print(f"alignbook: {len(problems)} file(s) missing or corrupt:", file=sys.stderr)
        for name, check in problems:
            fix = _data.download_command(name, _data.cache_folder(name, args.cache_dir))
            print(f"  {check.status}: {check.path}  (fix: {fix})", file=sys.stderr)
        return 1
    print("Every file there matches its published checksum (or has none published).")
    return 0


def main(args) -> int:
    """Run ``alignbook data ACTION`` (``args`` from the ``alignbook`` parser)."""
    handler = {"list": _cmd_list, "download": _cmd_download, "verify": _cmd_verify}[args.data_command]
    try:
        return handler(args)
    except _UsageError as exc:
        print(f"alignbook: error: {exc}", file=sys.stderr)
        return 2
    except (_data.DownloadError, _data.CorruptFileError, _data.DatasetNotFoundError) as exc:
        print(f"alignbook: error: {exc}", file=sys.stderr)
        return 1
