"""Progress of chapters while they execute: which cell of which chapter runs, for how long.

Papermill saves the executing notebook when each cell starts, marking that cell
``metadata.papermill.status == "running"`` with its ``start_time``. A
:class:`ProgressReporter` thread in the building process reads the notebooks being
written every ``interval`` seconds and prints one line per running chapter, e.g.::

    rules            cell 12/26 running 3 min 10 s (chapter 5 min 02 s): sweep = rv.sweep(...

so a long chapter (hours in the gpu profile) is never silent. Nothing is sent between
processes: the workers only write the notebooks they would write anyway.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from pathlib import Path
from typing import Callable

#: Seconds between progress lines (``ALIGNBOOK_PROGRESS_SECONDS``; 0 switches them off).
PROGRESS_ENV = "ALIGNBOOK_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def interval_from_env(default: float = DEFAULT_INTERVAL) -> float:
    """The progress interval from :data:`PROGRESS_ENV`, or ``default``; a value that is
    not a number >= 0 raises ValueError naming the variable."""
    raw = os.environ.get(PROGRESS_ENV, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"{PROGRESS_ENV} must be a number of seconds >= 0, got {raw!r}")
    return value


def duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 10 s"``, ``"2 h 05 min"``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


def running_cell(path: str | os.PathLike, now: _dt.datetime | None = None) -> dict | None:
    """What a notebook being executed by papermill is doing: ``{"cell": i (1-based),
    "cells": n, "seconds": time in that cell, "chapter_seconds": time since the chapter
    started, "source": its first line of code}``, or ``None``
    when the file is missing, half-written or has no running cell."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cells = nb.get("cells", [])
    now = now or _dt.datetime.now(_dt.timezone.utc)
    chapter_seconds = _since(nb.get("metadata", {}).get("papermill", {}), now)
    for i, cell in enumerate(cells):
        meta = cell.get("metadata", {}).get("papermill", {})
        if meta.get("status") != "running":
            continue
        source = "".join(cell.get("source", ""))
        first = next((line.strip() for line in source.splitlines() if line.strip()
                      and not line.lstrip().startswith("#")), "")
        return {"cell": i + 1, "cells": len(cells), "seconds": _since(meta, now),
                "chapter_seconds": chapter_seconds,
                "source": first if len(first) <= 60 else first[:57] + "..."}
    return None


def _since(meta: dict, now: _dt.datetime) -> float:
    """Seconds from papermill's ``start_time`` in ``meta`` to ``now`` (0 if absent)."""
    try:
        start = _dt.datetime.fromisoformat(meta["start_time"])
    except (KeyError, TypeError, ValueError):
        return 0.0
    if start.tzinfo is None:
        start = start.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, (now - start).total_seconds())


class ProgressReporter:
    """Prints, every ``interval`` seconds, the running cell of each chapter whose notebook
    is being written (``watch(chapter, path)`` / ``done(chapter)``; a chapter still waiting
    for a worker has no such file yet and prints nothing). Use as a context
    manager; ``interval <= 0`` prints nothing."""

    def __init__(self, echo: Callable[[str], None], interval: float | None = None):
        self.echo = echo
        self.interval = interval_from_env() if interval is None else float(interval)
        self._watched: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, chapter: str, path: str | os.PathLike) -> None:
        with self._lock:
            self._watched[chapter] = Path(path)

    def done(self, chapter: str) -> None:
        with self._lock:
            self._watched.pop(chapter, None)

    def lines(self) -> list[str]:
        """One line per watched chapter whose notebook shows a running cell."""
        with self._lock:
            watched = dict(self._watched)
        out = []
        for chapter, path in watched.items():
            cell = running_cell(path)
            if cell is None:
                continue
            out.append(f"  {chapter:<16} cell {cell['cell']}/{cell['cells']} running "
                       f"{duration(cell['seconds'])} (chapter {duration(cell['chapter_seconds'])})"
                       + (f": {cell['source']}" if cell["source"] else ""))
        return out

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for line in self.lines():
                self.echo(line)

    def __enter__(self) -> "ProgressReporter":
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="alignbook-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
