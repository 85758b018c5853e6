"""Many stored editions, fast: synthetic papers through the real ``EditionStore.insert`` (tests and bench/web.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from newsletter.records.editions import EditionEntry, EditionPaper, EditionTopic
from newsletter.storage.editions import EditionStore

TOPICS = (("agents", "LLM agents"), ("reasoning", "Reasoning"), ("medical", "Medical imaging"))
ABSTRACT = ("We study how language models plan, call tools and reason over many steps; experiments on "
            "twelve benchmarks show consistent gains over strong baselines. ") * 6


def add_editions(store: EditionStore, *, count: int, papers: int = 60, first: date = date(2025, 5, 1)) -> list[str]:
    """``count`` daily editions of ``papers`` papers each, spread over the three test topics. Returns slugs."""
    slugs = []
    for day_number in range(count):
        day = first + timedelta(days=day_number)
        cutoff = datetime.combine(day, time(7), tzinfo=UTC)
        edition_papers = {}
        for n in range(papers):
            paper_id = f"25{day_number:04d}.{n:05d}"
            edition_papers[paper_id] = EditionPaper(
                paper_id=paper_id, title=f"Paper {n} of {day.isoformat()}: agents that plan",
                authors=tuple(f"Author {k}" for k in range(8)), abstract=ABSTRACT,
                abs_url=f"https://arxiv.org/abs/{paper_id}", pdf_url=f"https://arxiv.org/pdf/{paper_id}",
                published=cutoff.isoformat(), score=float(papers - n), score_explanation="fresh",
            )
        ids = list(edition_papers)
        topics = tuple(
            EditionTopic(slug=slug, name=name, entries=tuple(
                EditionEntry(paper_id=pid, strength=0.5, rank=float(papers - i), reasons=("keyword 'agent'",))
                for i, pid in enumerate(ids) if i % len(TOPICS) == t
            ))
            for t, (slug, name) in enumerate(TOPICS)
        )
        edition = store.insert(frequency="daily", day=day, window_start=cutoff - timedelta(days=1), cutoff=cutoff,
                               created=cutoff, papers=edition_papers, topics=topics, empty_reason=None)
        slugs.append(edition.slug)
    return slugs
