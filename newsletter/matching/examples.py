"""Few-shot topics: resolve each topic's ``examples`` and ``not_examples`` to stored papers.

Why: a handful of papers defines a topic better than a sentence (that is how Zotero-library and Semantic
Scholar-folder users work). A reference is an arXiv id (``2406.01234``, a versioned id or an arXiv link) or
the exact title of a stored paper; references the store does not hold yet are skipped and reported, so a
topic can name papers before they are fetched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from newsletter.config import TopicSettings
from newsletter.matching.evidence import TopicExamples
from newsletter.records.papers import Paper
from newsletter.sources.arxiv_ids import split_arxiv_id


class PaperLookup(Protocol):
    """What resolving needs of ``newsletter.storage.papers.PaperStore``."""

    def get_many(self, paper_ids: Sequence[str]) -> dict[str, Paper]: ...

    def by_titles(self, titles: Sequence[str]) -> dict[str, Paper]: ...


def _resolve(store: PaperLookup, references: Sequence[str]) -> tuple[list[Paper], list[str]]:
    ids = {ref: parsed[0] for ref in references if (parsed := split_arxiv_id(ref)) is not None}
    by_id = store.get_many(list(ids.values())) if ids else {}
    by_title = store.by_titles([ref for ref in references if ref not in ids])
    papers: list[Paper] = []
    missing: list[str] = []
    for ref in references:
        paper = by_id.get(ids[ref]) if ref in ids else by_title.get(ref)
        if paper is None:
            missing.append(ref)
        elif paper.paper_id not in {p.paper_id for p in papers}:
            papers.append(paper)
    return papers, missing


def resolve_examples(store: PaperLookup, topics: Sequence[TopicSettings]) -> TopicExamples:
    """Per topic slug: (example papers, not-example papers) found in the store."""
    return {t.slug: (_resolve(store, t.examples)[0], _resolve(store, t.not_examples)[0])
            for t in topics if t.examples or t.not_examples}


def missing_examples(store: PaperLookup, topics: Sequence[TopicSettings]) -> dict[str, list[str]]:
    """Per topic slug: the references of its examples and not-examples that the store does not hold."""
    result: dict[str, list[str]] = {}
    for topic in topics:
        missing = _resolve(store, topic.examples)[1] + _resolve(store, topic.not_examples)[1]
        if missing:
            result[topic.slug] = missing
    return result


def with_feedback(
    store: PaperLookup, examples: TopicExamples, votes: Mapping[str, tuple[Sequence[str], Sequence[str]]]
) -> TopicExamples:
    """``examples`` plus, per topic, the papers readers asked for more of (examples) and less of (not-examples).

    ``votes`` is ``subscribers.feedback.FeedbackStore.topic_votes()``: the papers on which enough distinct
    active readers of a topic agree (``[feedback] shared_min_readers``), never one reader's clicks alone.
    """
    if not votes:
        return examples
    merged = {slug: (list(pos), list(neg)) for slug, (pos, neg) in examples.items()}
    wanted = [pid for more, less in votes.values() for pid in (*more, *less)]
    found = store.get_many(wanted)
    for slug, (more, less) in votes.items():
        positive, negative = merged.setdefault(slug, ([], []))
        positive += [found[pid] for pid in more if pid in found and found[pid] not in positive]
        negative += [found[pid] for pid in less if pid in found and found[pid] not in negative]
    return {slug: (tuple(pos), tuple(neg)) for slug, (pos, neg) in merged.items()}
