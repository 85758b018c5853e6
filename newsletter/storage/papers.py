"""All database access for papers, source state and topic matches.

Writes are batched (one SELECT per chunk of ids, one executemany per kind of write), so a 10,000-entry
feed is stored in well under a second on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.records.merge import merge_paper
from newsletter.records.papers import Paper, TopicMatch
from newsletter.storage import db

_CHUNK = 500
_PAPER_COLUMNS = [c.name for c in db.papers.columns]
_TUPLE_COLUMNS = ("authors", "categories", "ai_keywords", "sources")


@dataclass
class UpsertCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    changed: dict[str, Paper] = field(default_factory=dict)
    inserted: set[str] = field(default_factory=set)
    """The ids of ``changed`` that were not stored before."""

@dataclass(frozen=True)
class SourceState:
    source: str
    etag: str | None = None
    last_modified: str | None = None
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_status: str | None = None
    last_error: str | None = None
    last_counts: Mapping[str, int] | None = None


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _row_to_paper(row: sa.RowMapping) -> Paper:
    values = dict(row)
    for name in _TUPLE_COLUMNS:
        values[name] = tuple(values[name] or ())
    return Paper(**values)


def _paper_to_row(paper: Paper) -> dict[str, Any]:
    row = {name: getattr(paper, name) for name in _PAPER_COLUMNS}
    for name in _TUPLE_COLUMNS:
        row[name] = list(row[name])
    return row


class PaperStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- papers -----------------------------------------------------------------------------------------

    def upsert(self, incoming: Iterable[Paper], *, now: datetime) -> UpsertCounts:
        """Merge papers into the store: new ones are inserted, changed ones updated, the rest left alone."""
        batch: dict[str, Paper] = {}
        order: list[str] = []
        for paper in incoming:
            if paper.paper_id in batch:
                batch[paper.paper_id] = merge_paper(batch[paper.paper_id], paper, now=now)[0]
            else:
                batch[paper.paper_id] = paper
                order.append(paper.paper_id)
        counts = UpsertCounts()
        with self.engine.begin() as connection:
            existing = self._load(connection, order)
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            for paper_id in order:
                before = existing.get(paper_id)
                merged, changed = merge_paper(before, batch[paper_id], now=now)
                if not changed:
                    counts.unchanged += 1
                    continue
                counts.changed[paper_id] = merged
                if before is None:
                    counts.new += 1
                    counts.inserted.add(paper_id)
                    inserts.append(_paper_to_row(merged))
                else:
                    counts.updated += 1
                    row = _paper_to_row(merged)
                    row["key"] = row.pop("paper_id")
                    updates.append(row)
            if inserts:
                connection.execute(db.papers.insert(), inserts)
            if updates:
                statement = (
                    db.papers.update()
                    .where(db.papers.c.paper_id == sa.bindparam("key"))
                    .values({name: sa.bindparam(name) for name in _PAPER_COLUMNS if name != "paper_id"})
                )
                connection.execute(statement, updates)
        return counts

    def _load(self, connection: sa.Connection, paper_ids: Sequence[str]) -> dict[str, Paper]:
        found: dict[str, Paper] = {}
        for chunk in _chunks(paper_ids):
            rows = connection.execute(sa.select(db.papers).where(db.papers.c.paper_id.in_(chunk)))
            for row in rows.mappings():
                found[row["paper_id"]] = _row_to_paper(row)
        return found

    def get(self, paper_id: str) -> Paper | None:
        with self.engine.connect() as connection:
            return self._load(connection, [paper_id]).get(paper_id)

    def get_many(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        with self.engine.connect() as connection:
            return self._load(connection, paper_ids)

    def get_for_matching(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        """The papers with only what topic matching reads (id, title, abstract, categories): a fraction of the
        cost of ``get_many`` when a large batch is read back to be matched."""
        columns = [db.papers.c.paper_id, db.papers.c.title, db.papers.c.abstract, db.papers.c.categories,
                   db.papers.c.primary_category]
        found: dict[str, Paper] = {}
        with self.engine.connect() as connection:
            for chunk in _chunks(paper_ids):
                for paper_id, title, abstract, categories, primary in connection.execute(
                        sa.select(*columns).where(db.papers.c.paper_id.in_(chunk))):
                    found[paper_id] = Paper(paper_id=paper_id, title=title, abstract=abstract,
                                            categories=tuple(categories or ()), primary_category=primary)
        return found

    def by_titles(self, titles: Sequence[str]) -> dict[str, Paper]:
        """``{title: paper}`` of the stored papers with exactly these titles (case and spacing ignored)."""
        wanted = {" ".join(t.lower().split()): t for t in titles if t.strip()}
        if not wanted:
            return {}
        found: dict[str, Paper] = {}
        query = sa.select(db.papers).where(sa.func.lower(db.papers.c.title).in_(list(wanted)))
        with self.engine.connect() as connection:
            for row in connection.execute(query).mappings():
                paper = _row_to_paper(row)
                key = " ".join(paper.title.lower().split())
                if key in wanted:
                    found[wanted[key]] = paper
        return found

    def papers(
        self,
        *,
        since: datetime | None = None,
        topic: str | None = None,
        unmatched: bool = False,
        limit: int | None = None,
    ) -> list[Paper]:
        """Newest first: papers first seen at or after ``since``, optionally of one topic or of none."""
        query = sa.select(db.papers).order_by(db.papers.c.first_seen.desc(), db.papers.c.published.desc().nulls_last(),
                                              db.papers.c.paper_id).limit(limit)  # one fetch: newest published first
        if unmatched:
            query = query.where(~db.papers.c.paper_id.in_(sa.select(db.topic_matches.c.paper_id)))
        if since is not None:
            query = query.where(db.papers.c.first_seen >= since)
        if topic is not None:
            matched = sa.select(db.topic_matches.c.paper_id).where(db.topic_matches.c.topic == topic)
            query = query.where(db.papers.c.paper_id.in_(matched))
        with self.engine.connect() as connection:
            return [_row_to_paper(row) for row in connection.execute(query).mappings()]

    def paper_ids(self, *, updated_since: datetime | None = None) -> list[str]:
        """The ids of ``papers()`` in its order (newest first), optionally of papers changed at or after a time."""
        query = sa.select(db.papers.c.paper_id).order_by(
            db.papers.c.first_seen.desc(), db.papers.c.published.desc().nulls_last(), db.papers.c.paper_id)
        if updated_since is not None:
            query = query.where(db.papers.c.updated >= updated_since)
        with self.engine.connect() as connection:
            return [str(paper_id) for paper_id in connection.execute(query).scalars()]

    def count_papers(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(db.papers)).scalar_one())

    # --- topic matches ----------------------------------------------------------------------------------

    def replace_matches(self, paper_ids: Sequence[str], matches: Iterable[TopicMatch]) -> None:
        """Forget the old matches of these papers and store the new ones, in one transaction."""
        rows = [
            {
                "paper_id": m.paper_id,
                "topic": m.topic,
                "strength": m.strength,
                "similarity": m.similarity,
                "keywords": list(m.keywords),
                "categories": list(m.categories),
                "closest": m.closest[:500],
                "closest_kind": m.closest_kind,
                "terms": list(m.terms),
            }
            for m in matches
        ]
        with self.engine.begin() as connection:
            for chunk in _chunks(paper_ids):
                connection.execute(db.topic_matches.delete().where(db.topic_matches.c.paper_id.in_(chunk)))
            if rows:
                connection.execute(db.topic_matches.insert(), rows)

    def matches(self, *, paper_ids: Sequence[str] | None = None, topic: str | None = None) -> list[TopicMatch]:
        query = sa.select(db.topic_matches).order_by(db.topic_matches.c.topic, db.topic_matches.c.strength.desc())
        if topic is not None:
            query = query.where(db.topic_matches.c.topic == topic)
        result: list[TopicMatch] = []
        with self.engine.connect() as connection:
            chunks: Iterable[Sequence[str] | None] = [None] if paper_ids is None else _chunks(paper_ids)
            for chunk in chunks:
                chunk_query = query if chunk is None else query.where(db.topic_matches.c.paper_id.in_(chunk))
                for row in connection.execute(chunk_query).mappings():
                    result.append(
                        TopicMatch(
                            paper_id=row["paper_id"],
                            topic=row["topic"],
                            strength=row["strength"],
                            similarity=row["similarity"],
                            keywords=tuple(row["keywords"]),
                            categories=tuple(row["categories"]),
                            closest=row["closest"],
                            closest_kind=row["closest_kind"],
                            terms=tuple(row["terms"]),
                        )
                    )
        return result

    def match_counts(self) -> dict[str, int]:
        """``{topic: papers matched}`` over every stored match."""
        query = sa.select(db.topic_matches.c.topic, sa.func.count()).group_by(db.topic_matches.c.topic)
        with self.engine.connect() as connection:
            return {topic: int(count) for topic, count in connection.execute(query)}

    def count_unmatched(self) -> int:
        query = sa.select(sa.func.count()).select_from(db.papers).where(
            ~db.papers.c.paper_id.in_(sa.select(db.topic_matches.c.paper_id))
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    # --- small key/value facts --------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as connection:
            value = connection.execute(sa.select(db.meta.c.value).where(db.meta.c.key == key)).scalar()
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        with self.engine.begin() as connection:
            updated = connection.execute(db.meta.update().where(db.meta.c.key == key).values(value=value))
            if updated.rowcount == 0:
                connection.execute(db.meta.insert().values(key=key, value=value))

    def delete_meta(self, key: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(db.meta.delete().where(db.meta.c.key == key))

    # --- source state -----------------------------------------------------------------------------------

    def source_state(self, source: str) -> SourceState:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(db.source_state).where(db.source_state.c.source == source)
            ).mappings().first()
        return SourceState(**row) if row else SourceState(source=source)

    def source_states(self) -> list[SourceState]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(db.source_state).order_by(db.source_state.c.source)).mappings()
            return [SourceState(**row) for row in rows]

    def record_fetch(self, state: SourceState) -> None:
        values = {
            "etag": state.etag,
            "last_modified": state.last_modified,
            "last_attempt": state.last_attempt,
            "last_success": state.last_success,
            "last_status": state.last_status,
            "last_error": state.last_error,
            "last_counts": dict(state.last_counts) if state.last_counts is not None else None,
        }
        with self.engine.begin() as connection:
            updated = connection.execute(
                db.source_state.update().where(db.source_state.c.source == state.source).values(values)
            )
            if updated.rowcount == 0:
                connection.execute(db.source_state.insert().values(source=state.source, **values))
