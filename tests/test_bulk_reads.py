"""The ledger fill's bulk statements on SQLite and PostgreSQL: many new rows in one statement
(``storage.bulk.insert_new_many``), and reads of many readers by id ranges (``subscribers.store_reads.ids_in``)
that must still return only the readers asked for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db
from newsletter.storage.bulk import insert_new_many
from newsletter.storage.db import open_database
from subscribers.feedback import FeedbackStore
from subscribers.store import SubscriberStore

NOW = datetime(2026, 4, 27, 8, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_database(database_url)
    yield engine
    engine.dispose()


def delivery(subscriber_id: int, **values: object) -> dict[str, object]:
    return {"edition_id": 3, "subscriber_id": subscriber_id, "email": f"r{subscriber_id}@example.com",
            "name": "", "variant_key": "v", "message_id": f"<{subscriber_id}@x>", "state": "pending", "phase": "",
            "attempts": 0, "created": NOW, "updated": NOW, **values}


def test_many_new_rows_are_inserted_once_with_their_values(engine: Engine) -> None:
    first = [delivery(i, next_attempt_at=NOW + timedelta(minutes=i) if i % 2 else None, name=f"Reader {i}")
             for i in range(5)]
    with engine.begin() as connection:
        assert insert_new_many(connection, db.deliveries, first) == 5
        again = [delivery(i, name="changed") for i in range(3, 8)]  # 3 and 4 exist: kept as they were
        assert insert_new_many(connection, db.deliveries, again) == 3
        assert insert_new_many(connection, db.deliveries, [delivery(9)]) == 1
        assert insert_new_many(connection, db.deliveries, []) == 0
    with engine.connect() as connection:
        stored = {row.subscriber_id: row for row in connection.execute(sa.select(db.deliveries))}
    assert sorted(stored) == [0, 1, 2, 3, 4, 5, 6, 7, 9]
    assert [stored[i].name for i in range(8)] == ["Reader 0", "Reader 1", "Reader 2", "Reader 3", "Reader 4",
                                                  "changed", "changed", "changed"]
    assert [stored[i].next_attempt_at for i in range(5)] == [
        None, NOW + timedelta(minutes=1), None, NOW + timedelta(minutes=3), None]
    assert {stored[i].created for i in stored} == {NOW}


def test_readers_read_by_id_ranges_are_only_those_asked_for(engine: Engine) -> None:
    store = SubscriberStore(engine)
    ids = [store.add(f"r{i}@example.com", topics=["agents"], now=NOW).id for i in range(12)]
    dense = [i for i in ids if i % 3]  # gaps inside a range read whole: the gaps must not come back
    assert [s.id for s in store.get_many(dense)] == dense
    sparse = [ids[0], ids[-1]]
    assert [s.id for s in store.get_many(sparse)] == sparse
    feedback = FeedbackStore(engine)
    for reader in ids:
        feedback.record(reader, paper_id="2604.00001", topic="agents", vote="more", now=NOW)
    assert set(feedback.reader_votes(dense)) == set(dense)
    assert set(feedback.reader_votes(sparse)) == set(sparse)
