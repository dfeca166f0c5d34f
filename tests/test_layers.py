"""The three layers import one way: the science (``alignlib``) imports neither its
experiments nor the tooling; the experiments (``alignlib.experiments``) import the
science, never the tooling; the tooling (``alignbook``) may import both."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from helpers import REPO

SCIENCE = REPO / "alignlib"
EXPERIMENTS = SCIENCE / "experiments"
TOOLING = REPO / "alignbook"


def imported_modules(path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _violations(files, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for path in files:
        bad = sorted(m for m in imported_modules(path)
                     if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            out[str(path.relative_to(REPO))] = bad
    return out


def test_the_layers_exist():
    assert (SCIENCE / "__init__.py").is_file()
    assert (EXPERIMENTS / "__init__.py").is_file()
    assert (TOOLING / "__init__.py").is_file()


def test_the_science_imports_neither_experiments_nor_tooling():
    science = [p for p in SCIENCE.rglob("*.py") if EXPERIMENTS not in p.parents]
    assert science
    assert _violations(science, ("alignbook", "alignlib.experiments")) == {}


def test_the_experiments_never_import_the_tooling():
    assert _violations(EXPERIMENTS.rglob("*.py"), ("alignbook",)) == {}


def test_the_checker_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from alignbook.results import ResultStore\n")
    assert _violations_outside_repo(bad) == ["alignbook.results", "alignbook.results.ResultStore"]


def _violations_outside_repo(path) -> list[str]:
    return sorted(m for m in imported_modules(path) if m.startswith("alignbook"))


@pytest.mark.parametrize("package", ["alignlib", "alignlib.experiments"])
def test_importing_the_science_loads_no_tooling(package):
    code = (f"import sys, {package}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alignbook'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.strip()
    assert out == "[]"
