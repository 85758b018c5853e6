"""Readers' "more like this" / "less like this" on papers: stored, exported, erased with the reader.

Why: a reader's clicks say what *they* want first. Each reader's votes re-rank their own emails
(``reader_votes``, read by ``newsletter.editions.preferences``). A topic's shared definition is another
matter: one reader must not be able to change what everyone else receives, so the papers readers asked for
more (less) of become a topic's examples (not-examples) only when enough distinct active readers of that
topic agree (``topic_votes``: the "more" voters outnumber the "less" voters by ``min_readers`` or more).
Only the latest click per reader, paper and topic counts. Rows go with the reader: the foreign key cascades
on erasure.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from subscribers.errors import SubscribersError
from subscribers.schema import VOTES, paper_feedback, subscribers
from subscribers.store_reads import ids_in


@dataclass(frozen=True)
class Vote:
    subscriber_id: int
    paper_id: str
    topic: str
    vote: int
    """+1: more like this; -1: less like this."""
    created: datetime


class FeedbackStore:
    """All SQL for ``paper_feedback``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, subscriber_id: int, *, paper_id: str, topic: str, vote: str, now: datetime) -> Vote:
        """Store a click ("more" or "less"); a second click on the same paper and topic replaces the first."""
        if vote not in VOTES:
            raise SubscribersError(f"unknown vote {vote!r}; expected one of: {', '.join(VOTES)}")
        stored = Vote(subscriber_id=subscriber_id, paper_id=paper_id[:300], topic=topic[:64], vote=VOTES[vote],
                      created=now)
        table = paper_feedback
        with self.engine.begin() as connection:
            connection.execute(table.delete().where(
                table.c.subscriber_id == subscriber_id, table.c.paper_id == stored.paper_id,
                table.c.topic == stored.topic))
            connection.execute(table.insert(), [{"subscriber_id": subscriber_id, "paper_id": stored.paper_id,
                                                 "topic": stored.topic, "vote": stored.vote, "created": now}])
        return stored

    def votes(self, *, subscriber_id: int | None = None) -> list[Vote]:
        """Every vote (of one reader), oldest first: what `subscribers export` and `show` include."""
        query = sa.select(paper_feedback).order_by(paper_feedback.c.created, paper_feedback.c.paper_id)
        if subscriber_id is not None:
            query = query.where(paper_feedback.c.subscriber_id == subscriber_id)
        with self.engine.connect() as connection:
            return [Vote(subscriber_id=r["subscriber_id"], paper_id=r["paper_id"], topic=r["topic"], vote=r["vote"],
                         created=r["created"]) for r in connection.execute(query).mappings()]

    def _active_votes(self, subscriber_ids: list[int] | None = None) -> list[tuple[int, str, str, int]]:
        """(reader, paper, topic, vote) of active readers, only in topics they still receive."""
        table = paper_feedback
        query = (sa.select(table.c.subscriber_id, table.c.paper_id, table.c.topic, table.c.vote, subscribers.c.topics)
                 .join(subscribers, subscribers.c.id == table.c.subscriber_id)
                 .where(subscribers.c.status == "active"))
        ordered = sorted(set(subscriber_ids or ()))
        chunks = [None] if subscriber_ids is None else [ordered[i : i + 500] for i in range(0, len(ordered), 500)]
        result: list[tuple[int, str, str, int]] = []
        with self.engine.connect() as connection:
            for chunk in chunks:
                chosen = query if chunk is None else query.where(ids_in(table.c.subscriber_id, chunk))
                keep = None if chunk is None else set(chunk)
                for reader, paper_id, topic, vote, topics in connection.execute(chosen):
                    if topic in (topics or ()) and (keep is None or reader in keep):
                        result.append((int(reader), str(paper_id), str(topic), int(vote)))
        return result

    def topic_votes(self, *, min_readers: int) -> dict[str, tuple[list[str], list[str]]]:
        """Per topic: the papers its readers agree they want more of, and those they agree they want less of.

        A paper counts for a topic when the distinct active readers of that topic who voted "more" on it
        outnumber those who voted "less" by ``min_readers`` or more (or the other way round). Votes of
        readers who left, bounced or dropped the topic do not count.
        """
        net: dict[tuple[str, str], int] = defaultdict(int)
        for _reader, paper_id, topic, vote in self._active_votes():
            net[(topic, paper_id)] += vote  # one row per reader, paper and topic: each reader counts once
        result: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        for (topic, paper_id), total in sorted(net.items()):
            if total >= min_readers:
                result[topic][0].append(paper_id)
            elif total <= -min_readers:
                result[topic][1].append(paper_id)
        return dict(result)

    def reader_votes(self, subscriber_ids: list[int]) -> dict[int, dict[str, int]]:
        """Per active reader: ``{paper_id: net vote}`` over the topics they receive (for their own ranking)."""
        if not subscriber_ids:
            return {}
        result: dict[int, dict[str, int]] = defaultdict(dict)
        for reader, paper_id, _topic, vote in self._active_votes(list(subscriber_ids)):
            result[reader][paper_id] = result[reader].get(paper_id, 0) + vote
        return {reader: {p: v for p, v in theirs.items() if v} for reader, theirs in result.items()
                if any(theirs.values())}
