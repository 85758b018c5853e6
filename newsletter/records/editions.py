"""An edition as plain records: what one issue of the newsletter holds, frozen when it is built.

The snapshot is self-contained (paper fields, ranked entries per topic with their reasons, trending score
and its explanation), so an edition renders the same later — in the web archive, or when a send resumes —
whatever happens to the papers table meanwhile. ``content_to_json``/``content_from_json`` are its stored form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Any

from subscribers.models import FREQUENCIES as FREQUENCIES  # the frequencies editions are built for
from subscribers.models import Frequency as Frequency

CONTENT_VERSION = 1
PIN_RANK = 1_000_000.0
"""Added to a pinned paper's rank: far above any trending score plus match strength."""


@dataclass(frozen=True, kw_only=True)
class EditionPaper:
    """A paper as the edition shows it (plain text fields, http(s) links only)."""

    paper_id: str
    title: str
    authors: tuple[str, ...] = ()
    abstract: str = ""
    ai_summary: str | None = None
    primary_category: str | None = None
    abs_url: str | None = None
    pdf_url: str | None = None
    hf_url: str | None = None
    code_url: str | None = None
    project_url: str | None = None
    thumbnail_url: str | None = None
    upvotes: int | None = None
    github_stars: int | None = None
    published: str | None = None
    """ISO 8601 publication time, as stored in the snapshot."""
    score: float = 0.0
    score_explanation: str = ""


@dataclass(frozen=True, kw_only=True)
class EditionEntry:
    """One paper in one topic: how strongly it matches, its rank value and why it is there."""

    paper_id: str
    strength: float
    rank: float
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EditionTopic:
    slug: str
    name: str
    entries: tuple[EditionEntry, ...]
    """Best first: by rank (relevance tier, then trending score + match strength; editions/relevance.py), then
    paper id."""


@dataclass(frozen=True, kw_only=True)
class Edition:
    id: int
    frequency: Frequency
    date: date
    slug: str
    window_start: datetime
    cutoff: datetime
    created: datetime
    papers: Mapping[str, EditionPaper]
    topics: tuple[EditionTopic, ...]
    empty_reason: str | None = None
    note: str = ""
    """The editor's note shown at the top of every email (`newsletter edition note`); empty: none."""

    @property
    def paper_count(self) -> int:
        return len(self.papers)

    @property
    def is_empty(self) -> bool:
        return not self.papers

    @cached_property
    def topic_map(self) -> dict[str, EditionTopic]:
        return {topic.slug: topic for topic in self.topics}


def content_to_json(papers: Mapping[str, EditionPaper], topics: tuple[EditionTopic, ...]) -> dict[str, Any]:
    return {
        "version": CONTENT_VERSION,
        "papers": [asdict(p) for p in papers.values()],
        "topics": [asdict(t) for t in topics],
    }


def content_from_json(content: Mapping[str, Any]) -> tuple[dict[str, EditionPaper], tuple[EditionTopic, ...]]:
    papers: dict[str, EditionPaper] = {}
    for raw in content["papers"]:
        values = dict(raw)
        values["authors"] = tuple(values.get("authors") or ())
        paper = EditionPaper(**values)
        papers[paper.paper_id] = paper
    topics = tuple(
        EditionTopic(
            slug=t["slug"],
            name=t["name"],
            entries=tuple(
                EditionEntry(paper_id=e["paper_id"], strength=e["strength"], rank=e["rank"],
                             reasons=tuple(e["reasons"]))
                for e in t["entries"]
            ),
        )
        for t in content["topics"]
    )
    return papers, topics


@dataclass(frozen=True)
class Prepared:
    edition: Edition
    subscribers: int
    """Active subscribers of the edition's frequency."""
    recipients: int
    """Subscribers with a ledger row (new or from an earlier run)."""
    added: int
    """Ledger rows added by this run."""
    variants: int
    """Distinct emails of the edition."""
    rendered: int
    """Variants rendered by this run (the others were rendered by an earlier run)."""
    nothing_new: int
    """Subscribers whose topics had nothing new for them: no email."""
