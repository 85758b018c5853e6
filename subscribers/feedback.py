"""Readers' "more like this" / "less like this" on papers: stored, exported, erased with the reader.

Why: a reader's clicks say more about what a topic means than its description does. The votes refine each
topic for everyone (``topic_votes``: papers readers asked for more of become the topic's examples, papers
they asked for less of its not-examples) and each reader's own ranking within their topics
(``reader_votes``). Only the latest click per reader, paper and topic counts. Rows go with the reader: the
foreign key cascades on erasure.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from subscribers.errors import SubscribersError
from subscribers.schema import VOTES, paper_feedback


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

    def topic_votes(self) -> dict[str, tuple[list[str], list[str]]]:
        """Per topic: papers with more "more" than "less" votes, and papers with more "less" votes (net)."""
        query = sa.select(paper_feedback.c.topic, paper_feedback.c.paper_id, sa.func.sum(paper_feedback.c.vote)
                          ).group_by(paper_feedback.c.topic, paper_feedback.c.paper_id)
        result: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        with self.engine.connect() as connection:
            for topic, paper_id, total in connection.execute(query):
                if total > 0:
                    result[topic][0].append(paper_id)
                elif total < 0:
                    result[topic][1].append(paper_id)
        return dict(result)

    def reader_votes(self, subscriber_ids: list[int]) -> dict[int, dict[str, int]]:
        """Per reader: ``{paper_id: net vote}`` over their topics (for their own ranking)."""
        if not subscriber_ids:
            return {}
        result: dict[int, dict[str, int]] = defaultdict(dict)
        table = paper_feedback
        with self.engine.connect() as connection:
            for start in range(0, len(subscriber_ids), 500):
                chunk = subscriber_ids[start : start + 500]
                query = sa.select(table.c.subscriber_id, table.c.paper_id, sa.func.sum(table.c.vote)).where(
                    table.c.subscriber_id.in_(chunk)).group_by(table.c.subscriber_id, table.c.paper_id)
                for subscriber_id, paper_id, total in connection.execute(query):
                    if total:
                        result[subscriber_id][paper_id] = int(total)
        return dict(result)
