"""An editor's review applied to a built edition: pinned papers first, dropped ones gone, the note on top.

The stored snapshot never changes (an edition is frozen once built); the review is kept beside it and
applied whenever the edition is read for sending, previewing or copying, so an editor can change their
mind until the edition is sent. Pinning works by rank: a pinned paper outranks every other paper in each
topic it is in (and the first pinned outranks the later ones), so per-reader selection, the size budget and
"more on the web" all keep it first without knowing about pins.
"""

from __future__ import annotations

import dataclasses

from newsletter.records.editions import PIN_RANK, Edition, EditionTopic
from newsletter.storage.reviews import Review


def apply_review(edition: Edition, review: Review | None) -> Edition:
    """The edition as the editor shaped it (unchanged without a review)."""
    if review is None or (not review.pinned and not review.dropped and not review.note):
        return edition
    dropped = set(review.dropped)
    boost = {paper_id: PIN_RANK * (len(review.pinned) - i) for i, paper_id in enumerate(review.pinned)}
    topics = []
    for topic in edition.topics:
        entries = [dataclasses.replace(e, rank=e.rank + boost.get(e.paper_id, 0.0)) for e in topic.entries
                   if e.paper_id not in dropped]
        entries.sort(key=lambda e: (-e.rank, e.paper_id))
        if entries:
            topics.append(EditionTopic(slug=topic.slug, name=topic.name, entries=tuple(entries)))
    papers = {pid: p for pid, p in edition.papers.items() if pid not in dropped}
    return dataclasses.replace(edition, papers=papers, topics=tuple(topics), note=review.note)
