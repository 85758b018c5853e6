"""Plain records passed between pipeline steps: frozen dataclasses, never parser objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class Paper:
    """One paper as one source saw it, or as the store holds it after merging every sighting.

    ``paper_id`` is the arXiv id without version (``2604.21952``, ``astro-ph/0601001``) or, for items
    that are not arXiv papers, their link. Text fields are plain text: feed markup never survives parsing.
    """

    paper_id: str
    version: int | None = None
    title: str
    authors: tuple[str, ...] = ()
    abstract: str = ""
    categories: tuple[str, ...] = ()
    primary_category: str | None = None
    abs_url: str | None = None
    pdf_url: str | None = None
    hf_url: str | None = None
    code_url: str | None = None
    project_url: str | None = None
    thumbnail_url: str | None = None
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    published: datetime | None = None
    announce_type: str | None = None
    upvotes: int | None = None
    github_stars: int | None = None
    sources: tuple[str, ...] = ()
    first_seen: datetime | None = None
    updated: datetime | None = None


@dataclass(frozen=True)
class ParsedFeed:
    """What one feed document yielded: the papers, how many entries were skipped and why, and warnings."""

    papers: tuple[Paper, ...]
    skipped: int = 0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TopicMatch:
    """Why a paper belongs to a topic, in words an email can show."""

    paper_id: str
    topic: str
    strength: float
    similarity: float
    keywords: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    closest: str = ""
    """The facet (description phrase, name, keyword) or example paper title the paper is closest to."""
    closest_kind: str = ""
    """What ``closest`` is: "phrase", "name", "keyword", "example", "feedback" or "" (nothing to name)."""
    terms: tuple[str, ...] = ()
    """Words of the topic that the paper's title or abstract uses too."""

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the paper is in the topic, in words: never a bare score (scores stay in `papers --json`)."""
        reasons: list[str] = []
        if self.closest_kind == "example":
            reasons.append(f"like the example paper ‘{self.closest}’")
        elif self.closest_kind == "feedback":
            reasons.append(f"like ‘{self.closest}’, which readers asked for more of")
        elif self.closest:
            reasons.append(f"closest to ‘{self.closest}’")
        mentioned = list(dict.fromkeys([*self.keywords, *self.terms]))[: max(3, len(self.keywords))]
        if mentioned:
            reasons.append("mentions " + ", ".join(f"‘{k}’" for k in mentioned))
        if self.categories:
            reasons.append("listed in " + ", ".join(self.categories))
        if not reasons:
            reasons.append("close to the topic as a whole")
        return tuple(reasons)


@dataclass(frozen=True)
class SourceReport:
    """The outcome of fetching one source, as the `fetch` table shows it."""

    source: str
    fetched: int = 0
    new: int = 0
    updated: int = 0
    skipped: int = 0
    errors: tuple[str, ...] = field(default_factory=tuple)
    warnings: tuple[str, ...] = field(default_factory=tuple)
    not_modified: bool = False

    @property
    def failed(self) -> bool:
        return bool(self.errors)
