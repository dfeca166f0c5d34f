"""The build pipeline behind ``alignbook``: the book's files, parameters, profiles and
the execution of chapters (imports papermill lazily).

- a chapter is a notebook ``<file>.ipynb`` listed in ``_toc.yml``; its name is the
  file's stem (``book/theory`` -> ``theory``);
- its parameters are the variables of its one cell tagged ``parameters``
  (read with :func:`papermill.inspect_notebook`); every chapter declares
  ``profile`` (str), which the pipeline sets;
- a chapter may declare constraints on its parameters in its notebook's metadata,
  ``alignbook: {constraints: {NAME: [CONSTRAINT, ...]}}`` (vocabulary:
  :data:`CONSTRAINTS`); profile values and ``-p`` values alike are checked against them
  before any kernel starts, and no parameter may hold NaN or an infinity;
- ``book/profiles.yml`` gives, per profile, per chapter, parameter overrides;
- :func:`build` executes chapters with papermill into
  ``_build/executed/<profile>/<file>.ipynb`` and renders the site
  (:func:`alignbook.site.render_site`) into ``_build/<profile>/html``;
- :func:`run_chapter` executes one chapter with extra overrides into
  ``_build/runs/<profile>/``.

Builds of one profile take turns: each holds ``_build/<profile>.lock`` (an exclusive
``flock``) while it executes chapters and renders the site; a second build waits, saying
which process it waits for. A stopped build (SIGTERM, SIGINT) stops its worker processes
and their kernels, and workers whose main process died exit on their own
(:mod:`alignbook._procs`).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import math
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from alignbook import _procs
from alignbook import results as _results
from alignbook.glue import format_value

__all__ = [
    "Book",
    "BookError",
    "ParameterError",
    "ChapterFailed",
    "SiteFailed",
    "Parameter",
    "Constraint",
    "CONSTRAINTS",
    "ChapterRun",
    "notebook_parameters",
    "load_profiles",
    "expected_seconds",
    "resolve_parameters",
    "parse_cli_value",
    "build",
    "run_chapter",
    "results_folder",
]

PROFILES_FILE = Path("book") / "profiles.yml"
#: Environment variable that moves the build folder (default ``<book>/_build``).
BUILD_ENV = "ALIGNBOOK_BUILD"
KERNEL_NAME = "python3"
#: Profile names that would collide with folders the pipeline writes into _build/.
RESERVED_PROFILE_NAMES = {"executed", "runs", "staging", "jupyter", "html"}


# =========================================================================
# Pipeline: errors and data types
# =========================================================================

class BookError(Exception):
    """A problem with the book's files, profiles or parameters (exit status 2)."""


class ParameterError(BookError):
    """A parameter override names no declared parameter or has the wrong type."""


class ChapterFailed(BookError):
    """A chapter's notebook raised during execution. From :func:`build`, ``runs`` holds
    every chapter's :class:`ChapterRun`, the ones that succeeded too."""

    runs: list = []


class SiteFailed(BookError):
    """Jupyter Book failed to render the site (any Sphinx warning counts)."""


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One variable of a notebook's ``parameters`` cell."""

    name: str
    default: Any  # the literal default, or the source text when not a literal
    type: str | None  # "int", "float", "str", "bool", "list", "dict", or None (any)
    help: str = ""
    literal: bool = True  # whether ``default`` could be read as a Python literal

    def describe(self) -> str:
        default = format_value(self.default) if self.literal else self.default
        kind = self.type or "any"
        return f"{self.name} ({kind}, default {default})"


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
        ``alignbook: {constraints: {NAME: [CONSTRAINT, ...]}}``; see :data:`CONSTRAINTS`),
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
# Pipeline: parameters
# =========================================================================

_TYPE_NAMES = {"int", "float", "str", "bool", "list", "dict"}


def _type_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    for t, name in ((int, "int"), (float, "float"), (str, "str"), (list, "list"),
                    (tuple, "list"), (dict, "dict")):
        if isinstance(value, t):
            return name
    return None


def notebook_parameters(path: str | os.PathLike) -> dict[str, Parameter]:
    """The declared parameters of a notebook (its one cell tagged
    ``parameters``), with defaults and types. Types come from an annotation
    (``lr: float = 1``) or else from the literal default; a non-literal or
    ``None`` default accepts any value."""
    import nbformat
    import papermill as pm

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise BookError(f"{path} must have exactly one cell tagged 'parameters' (found {len(tagged)})")
    out: dict[str, Parameter] = {}
    for name, info in pm.inspect_notebook(str(path)).items():
        text = info.get("default", "")
        try:
            default, literal = ast.literal_eval(text), True
        except (ValueError, SyntaxError):
            default, literal = text, False
        annotated = (info.get("inferred_type_name") or "None").split("[")[0].strip()
        if annotated in _TYPE_NAMES:
            kind = annotated
        elif literal and default is not None:
            kind = _type_of(default)
        else:
            kind = None
        if isinstance(default, tuple):
            default = list(default)
        out[name] = Parameter(name, default, kind, info.get("help", ""), literal)
    return out


# =========================================================================
# Pipeline: parameter constraints
# =========================================================================

#: The vocabulary of parameter constraints, ``{name: what it requires}``. A chapter lists
#: them per parameter in its notebook's metadata, each as a name (``positive``) or a
#: one-key mapping for those that take an argument (``{"one_of": ["mlp", "convnet"]}``).
#: Number constraints apply to a number or to every number inside a list or mapping;
#: string constraints likewise to every string; list constraints to a list or to every
#: list that is a value of a mapping.
CONSTRAINTS: dict[str, str] = {
    # numbers
    "positive": "every number > 0",
    "non_negative": "every number >= 0",
    "finite": "every number finite, not NaN or infinite (required of every parameter anyway)",
    "fraction": "every number in [0, 1]",
    "at_least": "every number >= the argument",
    "at_most": "every number <= the argument",
    # strings
    "rule": "every string names a learning rule of alignlib.rules.RULES",
    "one_of": "every string is one of the argument's",
    # lists and mappings
    "non_empty": "has items (a list, mapping or string); in a mapping of lists, every list too",
    "unique": "no item twice in a list",
    "includes": "the list holds every item of the argument",
    "first": "the list's first item is the argument",
    "length": "the list has exactly the argument's number of items",
    "keys": "the mapping's keys are exactly the argument's",
}
_CONSTRAINT_ARGS = {"at_least": "number", "at_most": "number", "one_of": "list", "includes": "list",
                    "first": "any", "length": "count", "keys": "list"}


@dataclasses.dataclass(frozen=True)
class Constraint:
    """One constraint of :data:`CONSTRAINTS` on a parameter, with its argument if any."""

    name: str
    arg: Any = None

    def describe(self) -> str:
        if self.name not in _CONSTRAINT_ARGS:
            return self.name
        return f"{self.name} {format_value(self.arg)}"

    @classmethod
    def parse(cls, entry: Any, where: str) -> "Constraint":
        if isinstance(entry, Mapping) and len(entry) == 1:
            (name, arg), = entry.items()
        elif isinstance(entry, str):
            name, arg = entry, None
        else:
            raise BookError(f"{where}: a constraint is a name or a one-key mapping, got {entry!r}")
        if name not in CONSTRAINTS:
            raise BookError(f"{where}: unknown constraint {name!r}; the vocabulary is "
                            f"{', '.join(CONSTRAINTS)}")
        kind = _CONSTRAINT_ARGS.get(name)
        ok = {None: arg is None,
              "number": isinstance(arg, (int, float)) and not isinstance(arg, bool),
              "list": isinstance(arg, list) and bool(arg),
              "count": isinstance(arg, int) and not isinstance(arg, bool) and arg >= 0,
              "any": True}[kind]
        if not ok:
            need = {None: "no argument", "number": "a number", "list": "a non-empty list",
                    "count": "a count"}[kind]
            raise BookError(f"{where}: constraint {name!r} takes {need}, got {arg!r}")
        return cls(name, arg)


def notebook_constraints(path: str | os.PathLike, declared: Mapping[str, Parameter]
                         ) -> dict[str, list[Constraint]]:
    """The constraints a notebook declares (metadata ``alignbook.constraints``): ``{param:
    [Constraint, ...]}``. Unknown constraints or parameters are a :class:`BookError`."""
    import nbformat

    path = Path(path)
    meta = nbformat.read(path, as_version=4).metadata.get("alignbook") or {}
    raw = meta.get("constraints") or {}
    where = f"{path.name} (metadata alignbook.constraints)"
    if not isinstance(raw, Mapping):
        raise BookError(f"{where} must map parameter names to lists of constraints")
    out: dict[str, list[Constraint]] = {}
    for name, entries in raw.items():
        if name not in declared:
            raise BookError(f"{where}: {name!r} is not a parameter of the notebook; its parameters "
                            f"are {', '.join(declared)}")
        if not isinstance(entries, list):
            entries = [entries]
        out[name] = [Constraint.parse(e, f"{where}, {name}") for e in entries]
    return out


def _leaves(value: Any, keep) -> Iterable[Any]:
    """The leaves of a parameter value (nested lists, tuples and mappings) that ``keep``
    accepts, in order."""
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v, keep)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v, keep)
    elif keep(value):
        yield value


def _numbers(value: Any) -> Iterable[Any]:
    return _leaves(value, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))


def _strings(value: Any) -> Iterable[str]:
    return _leaves(value, lambda v: isinstance(v, str))


def _lists(value: Any) -> list[list]:
    if isinstance(value, (list, tuple)):
        return [list(value)]
    if isinstance(value, Mapping):
        return [list(v) for v in value.values() if isinstance(v, (list, tuple))]
    return []


def _rule_names() -> list[str]:
    from alignlib.rules import RULES

    return list(RULES)


def _violation(c: Constraint, value: Any) -> str | None:
    """Why ``value`` breaks ``c`` (a short phrase), or None when it satisfies it."""
    name, arg = c.name, c.arg
    number_tests = {
        "positive": (lambda v: v > 0, "{v} is not > 0"),
        "non_negative": (lambda v: v >= 0, "{v} is negative"),
        "finite": (lambda v: math.isfinite(v), "{v} is not finite"),
        "fraction": (lambda v: 0 <= v <= 1, "{v} is not in [0, 1]"),
        "at_least": (lambda v: v >= arg, "{v} is below " + str(arg)),
        "at_most": (lambda v: v <= arg, "{v} is above " + str(arg)),
    }
    if name in number_tests:
        test, why = number_tests[name]
        for v in _numbers(value):
            if not (math.isfinite(v) or name == "finite") or not test(v):
                return why.format(v=format_value(v))
        return None
    if name in ("rule", "one_of"):
        allowed = _rule_names() if name == "rule" else list(arg)
        for v in _strings(value):
            if v not in allowed:
                return f"{v!r} is not one of {', '.join(map(str, allowed))}"
        return None
    if name == "non_empty":
        if isinstance(value, (list, tuple, Mapping, str)) and not value:
            return "it is empty"
        if isinstance(value, Mapping) and any(not v for v in _lists(value)):
            empty = [k for k, v in value.items() if isinstance(v, (list, tuple)) and not v]
            return f"its entry {empty[0]!r} is empty"
        return None
    if name == "unique":
        for items in _lists(value):
            seen = []
            for v in items:
                if v in seen:
                    return f"{format_value(v)} appears twice"
                seen.append(v)
        return None
    if name == "includes":
        for items in _lists(value):
            missing = [a for a in arg if a not in items]
            if missing:
                return f"{format_value(items)} lacks {', '.join(map(format_value, missing))}"
        return None
    if name == "first":
        for items in _lists(value):
            if not items or items[0] != arg:
                return f"{format_value(items)} does not start with {format_value(arg)}"
        return None
    if name == "length":
        for items in _lists(value):
            if len(items) != arg:
                return f"it has {len(items)} item(s)"
        return None
    if name == "keys":
        if isinstance(value, Mapping) and set(value) != set(arg):
            return f"its keys are {', '.join(map(str, value)) or '(none)'}"
        return None
    raise AssertionError(name)  # pragma: no cover - every name of CONSTRAINTS is handled


def _non_finite(value: Any) -> Any:
    """The first NaN or infinity inside ``value``, or None."""
    for v in _numbers(value):
        if isinstance(v, float) and not math.isfinite(v):
            return v
    return None


def check_constraints(chapter: str, name: str, value: Any, constraints: Sequence[Constraint],
                      source: str) -> None:
    """A one-line :class:`ParameterError` naming the parameter, its value and the first
    constraint the value breaks."""
    for c in constraints:
        why = _violation(c, value)
        if why is not None:
            raise ParameterError(
                f"{source}: parameter {name!r} of chapter {chapter!r} is {format_value(value)}, "
                f"which breaks the constraint '{c.describe()}' ({CONSTRAINTS[c.name]}): {why}")


def _check_value(chapter: str, param: Parameter, value: Any, source: str) -> Any:
    """Type-check ``value`` against ``param``; return it (floats widened). NaN and
    infinities are refused in any parameter (they cannot name a results folder)."""
    value = _check_type(chapter, param, value, source)
    bad = _non_finite(value)
    if bad is not None:
        holds = "" if bad is value else f", which holds {bad!r}"
        raise ParameterError(
            f"{source}: parameter {param.name!r} of chapter {chapter!r} is {value!r}{holds}: "
            "parameter values must be finite numbers (no NaN or infinity)")
    return value


def _check_type(chapter: str, param: Parameter, value: Any, source: str) -> Any:
    """Type-check ``value`` against ``param``; return it (floats widened)."""

    def bad(expected: str) -> ParameterError:
        return ParameterError(
            f"{source}: parameter {param.name!r} of chapter {chapter!r} expects {expected}, "
            f"got {value!r} ({type(value).__name__}); declared as {param.describe()}")

    kind = param.type
    if kind is None:
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("a bool (true/false)")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an int")
        return value
    if kind == "float":
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad("a float") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a float")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise bad("a str")
        return value
    if kind == "dict":
        if not isinstance(value, dict):
            raise bad("a mapping")
        return value
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            raise bad("a list, e.g. \"[1, 2]\"")
        value = list(value)
        # a homogeneous literal default fixes the element type
        default = param.default if param.literal and isinstance(param.default, list) else []
        kinds = {_type_of(v) for v in default}
        if len(kinds) == 1:
            elem = Parameter(f"{param.name}[]", default[0], kinds.pop(), literal=True)
            try:
                value = [_check_type(chapter, elem, v, source) for v in value]
            except ParameterError:
                raise bad(f"a list of {elem.type}") from None
        return value
    return value  # pragma: no cover


def parse_cli_value(raw: str, param: Parameter | None) -> Any:
    """Parse a ``-p NAME VALUE`` value with YAML; for str parameters keep the
    text as typed unless YAML reads it as a string too."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        if param is not None and param.type == "str":
            return raw
        raise ParameterError(f"cannot parse value {raw!r}: {exc}") from None
    if param is not None and param.type == "str" and not isinstance(value, str):
        return raw
    return value


def _unknown_names(chapter: str, names: Iterable[str], declared: Mapping[str, Parameter], source: str) -> None:
    unknown = [n for n in names if n not in declared]
    if unknown:
        valid = "\n".join(f"  - {p.describe()}" for p in declared.values())
        raise ParameterError(
            f"{source}: chapter {chapter!r} has no parameter "
            f"{', '.join(repr(n) for n in unknown)}. Valid names:\n{valid}")


def load_profiles(book: Book) -> dict[str, dict[str, dict[str, Any]]]:
    """Read and check ``book/profiles.yml``: ``profiles: {name: {description,
    chapters: {chapter: {param: value}}}}``. Returns ``{profile: {chapter:
    overrides}}``. Unknown chapters, unknown parameters, a wrong type or an
    override of ``profile`` are errors."""
    path = book.profiles_path()
    if not path.is_file():
        raise BookError(f"profiles file {path} is missing")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise BookError(f"{path} is not valid YAML: {exc}") from None
    where = path.relative_to(book.root).as_posix()
    if not isinstance(data, dict) or set(data) != {"profiles"} or not isinstance(data["profiles"], dict):
        raise BookError(f"{where} must have a single top-level key 'profiles' mapping profile names to settings")
    chapters = book.chapters()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for profile, spec in data["profiles"].items():
        if not isinstance(profile, str) or profile in RESERVED_PROFILE_NAMES or not profile.isidentifier():
            raise BookError(f"{where}: {profile!r} is not a usable profile name "
                            f"(identifiers only, not {sorted(RESERVED_PROFILE_NAMES)})")
        spec = spec or {}
        if not isinstance(spec, dict) or set(spec) - {"description", "chapters", "expected_seconds"}:
            raise BookError(f"{where}: profile {profile!r} may only have the keys 'description', "
                            f"'chapters' and 'expected_seconds' (got {sorted(spec) if isinstance(spec, dict) else spec!r})")
        _check_expected_seconds(where, profile, spec.get("expected_seconds"), chapters)
        per_chapter = spec.get("chapters") or {}
        if not isinstance(per_chapter, dict):
            raise BookError(f"{where}: profiles.{profile}.chapters must be a mapping chapter -> parameters")
        out[profile] = {}
        for chapter, overrides in per_chapter.items():
            if chapter not in chapters:
                raise BookError(
                    f"{where}: profile {profile!r} sets parameters for unknown chapter {chapter!r}; "
                    f"the notebook chapters in _toc.yml are: {', '.join(chapters) or '(none)'}")
            overrides = overrides or {}
            if not isinstance(overrides, dict):
                raise BookError(f"{where}: profiles.{profile}.chapters.{chapter} must be a mapping")
            if "profile" in overrides:
                raise BookError(f"{where}: profiles.{profile}.chapters.{chapter} sets 'profile'; "
                                "the pipeline sets it to the profile's name")
            out[profile][chapter] = dict(overrides)
    return out


def _check_expected_seconds(where: str, profile: str, expected: Any, chapters: Sequence[str]) -> None:
    if expected is None:
        return
    if not isinstance(expected, dict):
        raise BookError(f"{where}: profiles.{profile}.expected_seconds must map chapters to seconds")
    for chapter, seconds in expected.items():
        if chapter not in chapters:
            raise BookError(f"{where}: profiles.{profile}.expected_seconds names unknown chapter "
                            f"{chapter!r}; the notebook chapters in _toc.yml are: {', '.join(chapters)}")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise BookError(f"{where}: profiles.{profile}.expected_seconds.{chapter} must be a "
                            f"positive number of seconds, got {seconds!r}")


def expected_seconds(book: Book, profile: str) -> dict[str, float]:
    """How long each chapter of ``profile`` is expected to take: the last build's measured
    time in this build folder where there is one, else the profile's ``expected_seconds``
    (measured on two idle cores when the profile was set). Used to start the longest
    chapters first when several run at once, and to say how long a build will take."""
    load_profiles(book)  # checks the file
    data = yaml.safe_load(book.profiles_path().read_text(encoding="utf-8"))
    expected = {c: float(v) for c, v in
                ((data["profiles"].get(profile) or {}).get("expected_seconds") or {}).items()}
    measured = book.build_dir / "executed" / profile / "timings.json"
    try:
        last = json.loads(measured.read_text(encoding="utf-8"))
        expected.update({c: float(t["seconds"]) for c, t in last.items() if t.get("ok")})
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    return expected


def _checked(book: Book, chapter: str, name: str, value: Any, source: str) -> Any:
    """``value`` for parameter ``name``, type-checked, finite and within the chapter's
    constraints (a :class:`ParameterError` otherwise)."""
    value = _check_value(chapter, book.parameters(chapter)[name], value, source)
    check_constraints(chapter, name, value, book.constraints(chapter).get(name, ()), source)
    return value


def _check_profile_chapter(book: Book, profile: str, chapter: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    declared = book.parameters(chapter)
    source = f"{PROFILES_FILE.as_posix()} (profile {profile!r})"
    _unknown_names(chapter, overrides, declared, source)
    return {k: _checked(book, chapter, k, v, source) for k, v in overrides.items()}


def resolve_parameters(
    book: Book,
    chapter: str,
    profile: str,
    profiles: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    cli: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The parameters papermill injects into ``chapter``: ``profile``, then the
    profile's overrides, then ``cli`` pairs (``(name, raw YAML text)``). All names
    and types are checked against the notebook's parameters cell first, and every value
    against the chapter's constraints (:meth:`Book.constraints`)."""
    profiles = load_profiles(book) if profiles is None else profiles
    if profile not in profiles:
        raise BookError(f"unknown profile {profile!r}; {PROFILES_FILE.as_posix()} defines: "
                        f"{', '.join(profiles) or '(none)'}")
    declared = book.parameters(chapter)
    if "profile" not in declared:
        raise ParameterError(
            f"chapter {chapter!r} ({book.notebook(chapter).relative_to(book.root)}) must declare "
            "profile = \"cpu\" in its parameters cell; the pipeline sets it")
    params: dict[str, Any] = {"profile": profile}
    params.update(_check_profile_chapter(book, profile, chapter, profiles[profile].get(chapter, {})))
    names = [n for n, _ in cli]
    _unknown_names(chapter, names, declared, "command line (-p)")
    if "profile" in names:
        raise ParameterError("set the profile with --profile, not -p profile")
    for name, raw in cli:
        value = parse_cli_value(raw, declared[name])
        params[name] = _checked(book, chapter, name, value, "command line (-p)")
    return params


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
    tmp = output.with_name(f".running-{uuid.uuid4().hex[:8]}-{output.name}")
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
    return {"chapter": chapter, "input": str(nb), "output": str(output), "parameters": params,
            "cwd": str(nb.parent), "env": env, "alone": book.runs_alone(chapter)}


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

    def finish(job, res):
        run = ChapterRun(job["chapter"], res["ok"], res["seconds"], Path(res.get("output", job["output"])),
                         job["parameters"], res.get("error"), res.get("stores", []))
        runs.append(run)
        status = "ok" if run.ok else "FAILED"
        echo(f"  {run.chapter:<16} {status:<6} {run.seconds:8.1f} s")
        return run

    if n_jobs <= 1 or len(jobs) <= 1:
        saved = dict(os.environ)
        try:
            for job in jobs:
                echo(f"  {job['chapter']:<16} running ...")
                finish(job, _execute_job(job))
        finally:
            os.environ.clear()
            os.environ.update(saved)
    else:
        import concurrent.futures as cf

        if "XLA_PYTHON_CLIENT_PREALLOCATE" not in os.environ:
            # several JAX processes share one accelerator: do not let each grab 75%
            for job in jobs:
                job["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        together = [job for job in jobs if not job.get("alone")]
        if together:
            with _worker_pool(n_jobs) as pool:
                futures = {pool.submit(_execute_job, job): job for job in together}
                for fut in cf.as_completed(futures):
                    finish(futures[fut], fut.result())
        for job in jobs:  # chapters that time themselves: one at a time, after the others
            if job.get("alone"):
                echo(f"  {job['chapter']:<16} running alone ...")
                with _worker_pool(1) as pool:
                    finish(job, pool.submit(_execute_job, job).result())
    order = {job["chapter"]: i for i, job in enumerate(jobs)}
    runs.sort(key=lambda r: order[r.chapter])
    return runs


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
