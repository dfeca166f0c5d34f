"""The scorecard's files: each chapter's ``claims.json``, collected across chapters for
``alignbook claims`` and the book's *Scorecard* page. The records and their verdict
vocabulary are the library's (:mod:`alignlib.claims`)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from alignbook.glue import glue_claim
from alignbook.pipeline import Book, results_folder
from alignbook.results import results_root
from alignlib.claims import CLAIMS_FILE, VERDICT_MEANINGS, Claim, scorecard_markdown

__all__ = ["ChapterClaims", "save_claims", "collect_claims", "profile_claims", "fill_scorecard",
           "SCORECARD_MARK", "VERDICTS_MARK"]


class ChapterClaims(list):
    """The scorecard records of one chapter page, in the order the page states them.

    :meth:`record` builds a :class:`~alignlib.claims.Claim` for this chapter and profile,
    keeps it and glues its verdict and measurement for the page's prose
    (:func:`alignbook.glue.glue_claim`); :meth:`add` does the same for a record an
    experiment module built; :func:`save_claims` writes them all at the end of the page.
    """

    def __init__(self, chapter: str, profile: str):
        super().__init__()
        self.chapter, self.profile = chapter, profile

    def add(self, claim: Claim) -> Claim:
        if claim.chapter != self.chapter or claim.profile != self.profile:
            raise ValueError(f"claim {claim.claim!r} is for {claim.chapter}/{claim.profile}, "
                             f"this page is {self.chapter}/{self.profile}")
        self.append(claim)
        glue_claim(claim)
        return claim

    def record(self, claim: str, statement: str, quantity: str, value, measured: str,
               expectation: str, verdict: str, figure: str, low=None, high=None) -> Claim:
        """Keep and glue the record ``claim`` (its id): the paper's ``statement``, the
        ``quantity`` measured and its ``value`` (with the interval ``low``, ``high``), the
        ``measured`` text, the ``expectation`` that would confirm it, the ``verdict``
        (:data:`alignlib.claims.VERDICTS`) and the ``figure`` label that shows it."""
        return self.add(Claim(chapter=self.chapter, claim=claim, statement=statement,
                              quantity=quantity, value=value, low=low, high=high,
                              measured=measured, expectation=expectation, verdict=verdict,
                              profile=self.profile, figure=figure))


def save_claims(store, claims: Iterable[Claim]) -> Path:
    """Write ``claims`` to ``claims.json`` in ``store``'s folder (a
    :class:`~alignbook.results.ResultStore`), recorded in its provenance."""
    claims = list(claims)
    ids = [c.claim for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"claim ids must be unique within a chapter, got {ids}")
    for c in claims:
        if c.chapter != store.chapter or c.profile != store.profile:
            raise ValueError(f"claim {c.claim!r} is for {c.chapter}/{c.profile}, the store for "
                             f"{store.chapter}/{store.profile}")
    payload = {"chapter": store.chapter, "profile": store.profile, "params_hash": store.hash,
               "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds"),
               "claims": [dataclasses.asdict(c) for c in claims]}
    return store.save_json(payload, CLAIMS_FILE.removesuffix(".json"))


def collect_claims(profile: str, root: str | os.PathLike | None = None,
                   chapters: Sequence[str] | None = None,
                   folders: dict[str, Sequence[str | os.PathLike]] | None = None) -> list[Claim]:
    """The claims of every chapter for ``profile``, from the results root (default as
    :func:`alignbook.results.results_root`). ``folders`` maps a chapter to the result
    folders its last build used (the pipeline knows them); for a chapter not in it, the
    most recently written ``claims.json`` of the profile counts (a run with other
    parameters may have written it). ``chapters`` orders and filters the chapters
    (default: all, alphabetically)."""
    base = results_root(root)
    folders = folders or {}
    paths = [Path(f) / CLAIMS_FILE for fs in folders.values() for f in fs]
    paths += [p for p in sorted(base.glob(f"*/{profile}/*/{CLAIMS_FILE}"))
              if p.parts[-4] not in folders]
    newest: dict[str, dict] = {}
    for path in paths:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        chapter = payload.get("chapter")
        if chapter and (chapter not in newest or payload["written"] > newest[chapter]["written"]):
            newest[chapter] = payload
    order = list(chapters) if chapters is not None else sorted(newest)
    return [Claim(**c) for ch in order if ch in newest for c in newest[ch]["claims"]]


SCORECARD_MARK = "<!-- scorecard: table -->"
VERDICTS_MARK = "<!-- scorecard: verdicts -->"


def profile_claims(book: Book, profile: str, chapters: Sequence[str] | None = None):
    """The scorecard records of ``profile``: for each chapter, those of the result
    folders its last ``alignbook build --profile`` used (recorded beside the executed
    notebook), else the newest of the profile. ``chapters``: default all, in toc order."""
    chapters = list(book.chapters()) if chapters is None else list(chapters)
    folders = {}
    for chapter in chapters:
        executed = book.executed_path(profile, chapter)
        manifest = executed.with_name(f".{executed.stem}.stores.jsonl")
        if executed.is_file() and manifest.is_file():
            entries = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()
                       if line.strip()]
            folders[chapter] = [e["path"] for e in entries if e.get("chapter") == chapter]
    return collect_claims(profile, results_folder(book), chapters, folders)


def fill_scorecard(book: Book, staging: Path, profile: str, chapters: Sequence[str]) -> None:
    """Replace the scorecard markers in the staged Markdown pages with the claims that
    ``chapters`` (those rendered) recorded for ``profile``."""
    pages = [p for p in staging.rglob("*.md") if "_build" not in p.relative_to(staging).parts]
    pages = [p for p in pages if SCORECARD_MARK in p.read_text(encoding="utf-8")]
    if not pages:
        return
    found = profile_claims(book, profile, chapters)
    table = (scorecard_markdown(found) if found else
             f"No chapter has recorded claims for the {profile} profile yet.")
    verdicts = "\n".join(f"- **{v}**: {m}." for v, m in VERDICT_MEANINGS.items())
    for page in pages:
        text = page.read_text(encoding="utf-8")
        page.write_text(text.replace(SCORECARD_MARK, table).replace(VERDICTS_MARK, verdicts),
                        encoding="utf-8")


