"""What `papers` and `topics` show, as plain data: the CLI prints it as tables or as stable JSON, and
``GET /api/v1/papers`` answers the same JSON.

The JSON shapes are documented in docs/cli.md; add keys freely, never rename or remove one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from newsletter.config import Settings
from newsletter.matching.trending import trending_score
from newsletter.records.papers import Paper, TopicMatch
from newsletter.storage.papers import PaperStore


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def paper_json(paper: Paper, matches: list[TopicMatch], *, settings: Settings, now: datetime) -> dict[str, Any]:
    score = trending_score(paper, now=now, settings=settings.trending)
    return {
        "id": paper.paper_id,
        "version": paper.version,
        "title": paper.title,
        "authors": list(paper.authors),
        "abstract": paper.abstract,
        "ai_summary": paper.ai_summary,
        "categories": list(paper.categories),
        "primary_category": paper.primary_category,
        "links": {
            "abstract": paper.abs_url,
            "pdf": paper.pdf_url,
            "huggingface": paper.hf_url,
            "code": paper.code_url,
            "project": paper.project_url,
            "thumbnail": paper.thumbnail_url,
        },
        "published": _iso(paper.published),
        "first_seen": _iso(paper.first_seen),
        "announce_type": paper.announce_type,
        "signals": {"upvotes": paper.upvotes, "github_stars": paper.github_stars, "sources": list(paper.sources)},
        "trending": {"score": round(score.value, 4), "explanation": score.explain()},
        "topics": [
            {"slug": m.topic, "strength": m.strength, "similarity": m.similarity, "reasons": list(m.reasons),
             "closest": {"kind": m.closest_kind, "text": m.closest} if m.closest else None}
            for m in sorted(matches, key=lambda m: -m.strength)
        ],
    }


@dataclass(frozen=True)
class PapersView:
    papers: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"count": len(self.papers), "papers": self.papers}


def papers_view(
    settings: Settings,
    store: PaperStore,
    *,
    now: datetime,
    since: datetime | None = None,
    topic: str | None = None,
    unmatched: bool = False,
) -> PapersView:
    """Papers newest first, each with its trending score and topic reasons."""
    if topic is not None:
        settings.topic(topic)
    papers = store.papers(since=since, topic=topic, unmatched=unmatched)
    by_paper: dict[str, list[TopicMatch]] = defaultdict(list)
    for match in store.matches(paper_ids=[p.paper_id for p in papers]):
        by_paper[match.paper_id].append(match)
    return PapersView([paper_json(p, by_paper[p.paper_id], settings=settings, now=now) for p in papers])


def topics_view(settings: Settings, store: PaperStore, *, now: datetime, top: int = 3) -> dict[str, Any]:
    """Per topic: how many papers match and the best few with their reasons; plus the unmatched count."""
    topics: list[dict[str, Any]] = []
    for topic in settings.topics:
        matches = store.matches(topic=topic.slug)
        papers = store.get_many([m.paper_id for m in matches])
        ranked = sorted(
            matches,
            key=lambda m: (-(trending_score(papers[m.paper_id], now=now, settings=settings.trending).value
                             + m.strength), m.paper_id),
        )
        topics.append(
            {
                "slug": topic.slug,
                "name": topic.name,
                "count": len(matches),
                "top": [
                    {
                        "id": m.paper_id,
                        "title": papers[m.paper_id].title,
                        "strength": m.strength,
                        "reasons": list(m.reasons),
                    }
                    for m in ranked[:top]
                ],
            }
        )
    unmatched = store.papers(unmatched=True)
    return {
        "topics": topics,
        "unmatched": {"count": len(unmatched), "ids": [p.paper_id for p in unmatched]},
        "papers": store.count_papers(),
    }
