"""Progress lines while chapters execute: the running cell read from the notebook papermill
is writing, and the lines a real build prints."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from alignbook import progress


def _notebook(tmp_path, status_of_cell_2="running"):
    start = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    cells = [
        {"cell_type": "code", "source": "import x", "metadata": {"papermill": {"status": "completed"}}},
        {"cell_type": "code", "source": ["# train every rule\n", "table = sweep(widths)\n"],
         "metadata": {"papermill": {"status": status_of_cell_2,
                                    "start_time": (start + dt.timedelta(seconds=50)).isoformat()}}},
        {"cell_type": "markdown", "source": "text", "metadata": {"papermill": {"status": "pending"}}},
    ]
    path = tmp_path / ".running-1234-rules.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {"papermill": {
        "start_time": start.isoformat()}}}))
    return path, start


def test_running_cell_reads_papermill_metadata(tmp_path):
    path, start = _notebook(tmp_path)
    cell = progress.running_cell(path, now=start + dt.timedelta(seconds=250))
    assert cell == {"cell": 2, "cells": 3, "seconds": 200.0, "chapter_seconds": 250.0,
                    "source": "table = sweep(widths)"}


def test_no_running_cell_and_unreadable_files_give_none(tmp_path):
    path, _ = _notebook(tmp_path, status_of_cell_2="completed")
    assert progress.running_cell(path) is None
    half = tmp_path / "half.ipynb"
    half.write_text('{"cells": [')
    assert progress.running_cell(half) is None
    assert progress.running_cell(tmp_path / "missing.ipynb") is None


def test_reporter_lines_name_chapter_cell_and_times(tmp_path):
    path, _ = _notebook(tmp_path)
    reporter = progress.ProgressReporter(lambda line: None, interval=0)
    reporter.watch("rules", path)
    reporter.watch("theory", tmp_path / "not-started-yet.ipynb")
    (line,) = reporter.lines()
    assert re.fullmatch(r"  rules +cell 2/3 running .+ \(chapter .+\): table = sweep\(widths\)", line)
    reporter.done("rules")
    assert reporter.lines() == []


@pytest.mark.parametrize("seconds, text", [(5, "5 s"), (190, "3 min 10 s"), (7500, "2 h 05 min")])
def test_duration(seconds, text):
    assert progress.duration(seconds) == text


def test_bad_interval_is_refused(monkeypatch):
    monkeypatch.setenv(progress.PROGRESS_ENV, "soon")
    with pytest.raises(ValueError, match=progress.PROGRESS_ENV):
        progress.interval_from_env()
    monkeypatch.setenv(progress.PROGRESS_ENV, "0")
    assert progress.interval_from_env() == 0.0


def test_a_build_prints_the_running_cells(tiny_book):
    """The tiny build (progress every 2 s) printed at least one line naming a chapter, its
    running cell and the elapsed times."""
    lines = re.findall(r"^  (\w+) +cell (\d+)/(\d+) running .+ \(chapter .+\)", tiny_book.log or
                       "", flags=re.M)
    assert lines, "no progress line in the tiny build's output"
    assert all(int(i) <= int(n) for _, i, n in lines)
