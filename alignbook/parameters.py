"""A chapter's parameters: declared in its notebook, constrained, set by profiles and the
command line.

- a chapter's parameters are the variables of its one cell tagged ``parameters``
  (read with :func:`papermill.inspect_notebook`); every chapter declares ``profile``
  (str), which the pipeline sets;
- a chapter may declare constraints on its parameters in its notebook's metadata,
  ``alignbook: {constraints: {NAME: [CONSTRAINT, ...]}}`` (vocabulary:
  :data:`CONSTRAINTS`); profile values and ``-p`` values alike are checked against them
  before any kernel starts, and no parameter may hold NaN or an infinity;
- ``book/profiles.yml`` gives, per profile, per chapter, parameter overrides
  (:func:`load_profiles`), and :func:`resolve_parameters` the values papermill injects.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import yaml

from alignbook.glue import format_value

if TYPE_CHECKING:  # the type of the ``book`` arguments; pipeline imports this module
    from alignbook.pipeline import Book

__all__ = [
    "BookError", "ParameterError", "Parameter", "Constraint", "CONSTRAINTS",
    "notebook_parameters", "notebook_constraints", "check_constraints", "parse_cli_value",
    "load_profiles", "expected_seconds", "resolve_parameters", "PROFILES_FILE",
    "profile_engine",
]

PROFILES_FILE = Path("book") / "profiles.yml"
#: Profile names that would collide with folders the pipeline writes into _build/.
RESERVED_PROFILE_NAMES = {"executed", "runs", "staging", "jupyter", "html"}


class BookError(Exception):
    """A problem with the book's files, profiles or parameters (exit status 2)."""


class ParameterError(BookError):
    """A parameter override names no declared parameter or has the wrong type."""


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


# =========================================================================
# A notebook's parameters
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
# Constraints on parameters
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


# =========================================================================
# Profiles and the values a run injects
# =========================================================================


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
        if not isinstance(spec, dict) or set(spec) - {"description", "chapters", "expected_seconds",
                                                      "engine"}:
            raise BookError(f"{where}: profile {profile!r} may only have the keys 'description', "
                            f"'chapters', 'expected_seconds' and 'engine' "
                            f"(got {sorted(spec) if isinstance(spec, dict) else spec!r})")
        _check_expected_seconds(where, profile, spec.get("expected_seconds"), chapters)
        _engine_of(where, profile, spec.get("engine"))
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


def _engine_of(where: str, profile: str, spec: Any):
    """A profile's ``engine:`` value as an :class:`alignbook.sweep.Engine` (``None`` when
    absent): a name (``serial``, ``local``, ``dask``) or a mapping ``{engine: NAME,
    workers: N, address: ADDRESS}``."""
    from alignbook.sweep import CHAPTER_ENGINES, Engine

    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"engine": spec}
    if not isinstance(spec, dict) or set(spec) - {"engine", "workers", "address"} or "engine" not in spec:
        raise BookError(f"{where}: profiles.{profile}.engine must be one of {', '.join(CHAPTER_ENGINES)} "
                        f"or a mapping with 'engine' and optionally 'workers' or 'address', got {spec!r}")
    try:
        return Engine(spec["engine"], spec.get("workers"), spec.get("address"))
    except ValueError as exc:
        raise BookError(f"{where}: profiles.{profile}.engine: {exc}") from None


def profile_engine(book: Book, profile: str):
    """Where ``profile``'s chapters run their sweep points when the command line names no
    engine: its ``engine:`` key as an :class:`alignbook.sweep.Engine`, or ``None``."""
    load_profiles(book)  # checks the file
    data = yaml.safe_load(book.profiles_path().read_text(encoding="utf-8"))
    where = book.profiles_path().relative_to(book.root).as_posix()
    return _engine_of(where, profile, (data["profiles"].get(profile) or {}).get("engine"))


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
