"""The scorecard: every claim of the paper that the book checks, with its verdict.

Each chapter ends by turning its measurements into :class:`Claim` records, one per
claim it tests; the book saves them as ``claims.json`` in the chapter's results folder,
and ``alignbook claims`` and the book's *Scorecard* page collect them across chapters
(:mod:`alignbook.scorecard`, :func:`scorecard_markdown`).

A verdict is one of five words, defined here once (:data:`VERDICTS`):

* ``holds``: every check of the claim passed at the sizes this profile reaches;
* ``holds in part``: some checks passed, others did not (the record says which);
* ``does not hold``: the checks failed although the runs had converged;
* ``inconclusive``: the runs behind the check had not finished learning, or the
  interval is too wide to decide. A claim is never declared false on such runs;
* ``not tested in this profile``: the profile's parameters leave the check out
  (e.g. a rule or width not in its sweep).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

__all__ = [
    "HOLDS", "HOLDS_IN_PART", "DOES_NOT_HOLD", "INCONCLUSIVE", "NOT_TESTED", "VERDICTS",
    "VERDICT_MEANINGS", "Claim", "verdict_of_checks", "verdict_of_intervals", "claims_table",
    "scorecard_markdown", "CLAIMS_FILE",
]

HOLDS = "holds"
HOLDS_IN_PART = "holds in part"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not tested in this profile"

#: The verdict vocabulary, from best to worst news for the paper.
VERDICTS = (HOLDS, HOLDS_IN_PART, DOES_NOT_HOLD, INCONCLUSIVE, NOT_TESTED)

#: One sentence per verdict, shown on the Scorecard page.
VERDICT_MEANINGS = {
    HOLDS: "every check of the claim passed at the sizes this profile reaches",
    HOLDS_IN_PART: "some checks passed and others did not; the measured column says which",
    DOES_NOT_HOLD: "the checks failed on runs that had finished learning",
    INCONCLUSIVE: "the runs behind the check had not converged, or the interval is too "
                  "wide to decide; no claim is called false on such runs",
    NOT_TESTED: "this profile's parameters leave the check out",
}

CLAIMS_FILE = "claims.json"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class Claim:
    """One checked claim.

    Fields: ``chapter`` (file stem), ``claim`` (a short id, unique in the chapter, e.g.
    ``"align-within-few-points"``), ``statement`` (the paper's claim in the book's
    words), ``quantity`` (what was measured, with its unit), ``value``, ``low``,
    ``high`` (the measurement and its interval; ``None`` when not applicable),
    ``measured`` (the measurement as the page prints it), ``expectation`` (what the
    claim predicts for the quantity), ``verdict`` (one of :data:`VERDICTS`),
    ``profile``, ``figure`` (the label of the figure that shows it, e.g.
    ``"fig-rules-width-sweep"``, or ``""``).
    """

    chapter: str
    claim: str
    statement: str
    quantity: str
    value: float | None
    low: float | None
    high: float | None
    measured: str
    expectation: str
    verdict: str
    profile: str
    figure: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        for name in ("chapter", "claim", "statement", "quantity", "expectation", "profile"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"Claim.{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("value", "low", "high"):
            object.__setattr__(self, name, _number(getattr(self, name)))


def verdict_of_checks(checks: Sequence[bool], *, converged: bool = True) -> str:
    """The verdict of a claim made of several checks (e.g. one per rule or width):
    all pass -> holds; some -> holds in part; none -> does not hold; no checks -> not
    tested. With ``converged=False`` (some run behind the checks had not finished
    learning) a verdict that is not ``holds`` becomes ``inconclusive``; a claim that
    already holds keeps ``holds``, and its ``measured`` text should say that the runs
    had not converged."""
    checks = [bool(c) for c in checks]
    if not checks:
        return NOT_TESTED
    if all(checks):
        return HOLDS
    if not converged:
        return INCONCLUSIVE
    return HOLDS_IN_PART if any(checks) else DOES_NOT_HOLD


def verdict_of_intervals(intervals: Sequence[tuple[float, float]], threshold: float, *,
                         above: bool = True, converged: bool = True) -> str:
    """The verdict of a claim that each of several measured intervals ``(low, high)``
    lies above ``threshold`` (``above=False``: below it).

    An interval entirely on the claimed side passes, one entirely on the other side
    fails, one that straddles the threshold is undecided. All pass: holds. Some fail:
    holds in part (if others pass) or does not hold. None fails but some are undecided:
    inconclusive. Runs that had not converged make every verdict but ``holds``
    inconclusive. No intervals: not tested. NaN bounds count as undecided.
    """
    if not intervals:
        return NOT_TESTED
    passed = failed = 0
    for low, high in intervals:
        low, high = (low, high) if above else (-high, -low)
        t = threshold if above else -threshold
        if low is not None and math.isfinite(low) and low > t:
            passed += 1
        elif high is not None and math.isfinite(high) and high < t:
            failed += 1
    if passed == len(intervals):
        return HOLDS
    if not converged or not failed:
        return INCONCLUSIVE
    return HOLDS_IN_PART if passed else DOES_NOT_HOLD


def claims_table(claims: Sequence[Claim]):
    """The claims as a :class:`pandas.DataFrame`, one row per claim, fields as columns."""
    import pandas as pd

    fields = [f.name for f in dataclasses.fields(Claim)]
    return pd.DataFrame([dataclasses.asdict(c) for c in claims], columns=fields)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def scorecard_markdown(claims: Sequence[Claim], *, link_figures: bool = True) -> str:
    """A Markdown (MyST) table of ``claims``: chapter, claim, measured, expectation,
    verdict and, with ``link_figures``, a ``{ref}`` link to the figure."""
    header = ["chapter", "claim", "measured", "expectation", "verdict"]
    if link_figures:
        header.append("figure")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for c in claims:
        row = [c.chapter, c.statement, f"{c.quantity}: {c.measured}", c.expectation,
               f"**{c.verdict}**"]
        if link_figures:
            row.append(f"{{ref}}`figure <{c.figure}>`" if c.figure else "")
        lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
    return "\n".join(lines)
