"""What several test modules need: the repository root, what an executed chapter glued,
the figure labels of a chapter's page, the relative error of two pytrees, a local
HTTP server, and the ``cpu_only`` decorator."""

from __future__ import annotations

import contextlib
import functools
import http.server
import re
import threading
from pathlib import Path
from typing import Callable, Iterator

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]


def glued(nb_path: Path) -> dict[str, str]:
    """``{glue name: text}`` of an executed notebook: the text ``{glue:text}`` pastes
    (myst-nb's own reading of each papermill record)."""
    from myst_nb.core.variables import format_plain_text

    nb = nbformat.read(nb_path, as_version=4)
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "application/papermill.record/text/plain" in data:
                out[o["metadata"]["scrapbook"]["name"]] = format_plain_text(
                    data["application/papermill.record/text/plain"], "")
    return out


def figure_names(chapter: str) -> set[str]:
    """The ``:name:`` labels of the figures on ``chapter``'s page."""
    nb = nbformat.read(REPO / "book" / f"{chapter}.ipynb", as_version=4)
    return {n for c in nb.cells if c.cell_type == "markdown"
            for n in re.findall(r":name: (\S+)", c.source)}


def rel_err(a, b) -> float:
    """``||a - b|| / ||b||`` over all leaves of two pytrees of the same structure."""
    import jax
    import jax.numpy as jnp

    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    num = sum(float(jnp.sum((u - v) ** 2)) for u, v in zip(la, lb))
    den = sum(float(jnp.sum(v ** 2)) for v in lb)
    return (num / den) ** 0.5


@contextlib.contextmanager
def serve_http(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (a free port) in a thread; yields the base URL
    ``http://127.0.0.1:PORT`` (no trailing slash) and shuts the server down after."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def cpu_only(test: Callable) -> Callable:
    """Mark a test that checks what XLA compiles for the CPU backend (op counts in the
    HLO, the CPU-only code paths of :mod:`alignlib.layers`): it is skipped when JAX's
    default backend is not the CPU. The backend is asked when the test runs, not when
    it is collected, so that collecting the suite starts no accelerator. The test also
    carries the ``cpu_only`` marker (``pytest -m "not cpu_only"`` leaves them all out)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        import jax

        backend = jax.default_backend()
        if backend != "cpu":
            pytest.skip(f"checks the CPU backend's compiled program; JAX's backend is {backend}")
        return test(*args, **kwargs)

    return pytest.mark.cpu_only(run)


def run_cli(capfd, *args: str) -> tuple[int, str, str]:
    """``alignbook ARGS`` in this process: exit status, stdout and stderr."""
    from alignbook import cli

    rc = cli.main(list(args))
    out, err = capfd.readouterr()
    return rc, out, err


# ------------------------------------------------------------------ what a page shows

#: The tag of a cell whose output is a table meant for the reader.
READER_TABLE = "reader-table"
#: Tags with which Jupyter Book shows nothing of a cell's outputs.
OUTPUT_HIDDEN = {"remove-cell", "remove-output"}


def cell_tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def stray_outputs(nb) -> list[str]:
    """The outputs of ``nb``'s code cells that a reader would see and should not: every
    ``execute_result``, ``stream`` or ``display_data`` output that is not a figure (an
    image), a glued value (``metadata.scrapbook``), or a table of a cell tagged
    ``reader-table``. Cells whose outputs Jupyter Book removes are skipped."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or cell_tags(cell) & OUTPUT_HIDDEN:
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind not in ("execute_result", "stream", "display_data"):
                continue
            if "scrapbook" in out.get("metadata", {}):
                continue  # a glued value: shown where the text pastes it
            data = out.get("data", {})
            if kind != "stream" and any(k.startswith("image/") for k in data):
                continue  # a figure
            if kind != "stream" and READER_TABLE in cell_tags(cell) and \
                    ("text/html" in data or "text/markdown" in data):
                continue  # a formatted table for the reader
            text = out.get("text") if kind == "stream" else \
                data.get("text/plain", next(iter(data.values()), ""))
            text = "".join(text) if isinstance(text, list) else str(text)
            first = cell.source.strip().splitlines()[-1][:80] if cell.source.strip() else ""
            found.append(f"cell {index} ({kind}, last line {first!r}): {text.strip()[:160]!r}")
    return found
