"""Store behaviour that differs between engines, checked on SQLite and on the real PostgreSQL server.

The run log and the scheduler lease, counts of rows really inserted, long texts and JSON, the ledger's
reading queries, concurrent lease takers — and the URL forms an operator may write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.errors import StoreError
from newsletter.storage import db
from newsletter.storage.db import open_database
from newsletter.storage.editions import EditionStore
from newsletter.storage.ledger import Ledger, NewDelivery, Outcome
from newsletter.storage.papers import PaperStore, SourceState
from newsletter.storage.runs import Lease, RunStore
from tests.databases import PostgresServer

NOW = datetime(2026, 4, 27, 8, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_database(database_url)
    yield engine
    engine.dispose()


def test_the_run_log_keeps_runs_newest_first_and_prunes_old_ones(engine: Engine) -> None:
    runs = RunStore(engine)
    first = runs.start("fetch", now=NOW, worker="host:1")
    runs.finish(first, now=NOW + timedelta(seconds=3), status="ok", summary="fetched 3 sources",
                details={"sources": {"a": {"new": 2, "errors": []}}})
    second = runs.record("daily", now=NOW + timedelta(hours=1), worker="host:1", status="skipped", summary="late")
    assert second == first + 1
    recent = runs.recent()
    assert [(r.job, r.status) for r in recent] == [("daily", "skipped"), ("fetch", "ok")]
    assert recent[1].details == {"sources": {"a": {"new": 2, "errors": []}}}
    assert recent[1].started == NOW
    assert recent[1].finished == NOW + timedelta(seconds=3)
    assert [r.job for r in runs.recent(job="fetch")] == ["fetch"]
    assert runs.prune(before=NOW + timedelta(minutes=30)) == 1
    assert [r.job for r in runs.recent()] == ["daily"]


def test_the_lease_has_one_holder_until_it_lapses(engine: Engine) -> None:
    one = Lease(engine, "scheduler", holder="a:1", duration=timedelta(seconds=60))
    two = Lease(engine, "scheduler", holder="b:2", duration=timedelta(seconds=60))
    assert one.acquire(now=NOW)
    assert not two.acquire(now=NOW + timedelta(seconds=30))
    assert one.acquire(now=NOW + timedelta(seconds=50))  # renewed: now held until +110 s
    assert not two.acquire(now=NOW + timedelta(seconds=100))
    assert two.holder_now(now=NOW + timedelta(seconds=100)) == "a:1"
    assert two.acquire(now=NOW + timedelta(seconds=111))  # one died: its lease lapsed
    assert one.holder_now(now=NOW + timedelta(seconds=111)) == "b:2"
    two.release()
    assert one.holder_now(now=NOW + timedelta(seconds=111)) is None
    assert one.acquire(now=NOW + timedelta(seconds=112))


def test_concurrent_takers_of_a_free_lease_get_exactly_one_holder(engine: Engine) -> None:
    winners: list[str] = []
    start = threading.Barrier(8)

    def take(n: int) -> None:
        lease = Lease(engine, "race", holder=f"host:{n}", duration=timedelta(seconds=60))
        start.wait()
        if lease.acquire(now=NOW):
            winners.append(lease.holder)

    threads = [threading.Thread(target=take, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert Lease(engine, "race", holder="", duration=timedelta(0)).holder_now(now=NOW) == winners[0]


def test_inserts_that_skip_duplicates_count_only_new_rows(engine: Engine) -> None:
    # PostgreSQL reports -1 as the rowcount of a many-row INSERT: the count must come from RETURNING
    ledger = Ledger(engine)
    rows = [NewDelivery(subscriber_id=i, email=f"r{i}@example.com", name="", variant_key="v",
                        message_id=f"<{i}@example.org>") for i in range(5)]
    assert ledger.add(1, rows[:3], now=NOW) == 3
    assert ledger.add(1, rows, now=NOW) == 2
    assert ledger.add(1, rows, now=NOW) == 0
    editions = EditionStore(engine)
    with engine.begin() as connection:
        connection.execute(db.editions.insert().values(
            frequency="daily", date=NOW.date(), slug="daily-2026-04-27", window_start=NOW, cutoff=NOW, created=NOW,
            paper_count=0, empty_reason=None, content={"papers": {}, "topics": []}))
    assert editions.record_sent(1, {7: ["p1", "p2", "p2"], 8: ["p1"]}) == 3
    assert editions.record_sent(1, {7: ["p1", "p3"]}) == 1


def test_ledger_queries_for_workers(engine: Engine) -> None:
    ledger = Ledger(engine, worker="w:1")
    ledger.add(1, [NewDelivery(subscriber_id=i, email=f"r{i}@example.com", name="", variant_key="v",
                               message_id=f"<{i}@example.org>") for i in range(6)], now=NOW)
    ids = ledger.due_ids(1, now=NOW)
    assert len(ids) == 6
    claimed = ledger.claim(1, limit=10, now=NOW, lease=timedelta(seconds=30), only=ids[:3])
    assert [d.id for d in claimed] == ids[:3]
    later = NOW + timedelta(minutes=1)
    ledger.record(data_phase=[], now=NOW, outcomes=[
        Outcome(delivery_id=ids[0], state="sent", phase="data", code=250),
        Outcome(delivery_id=ids[1], state="deferred", phase="rcpt", code=451, next_attempt_at=later),
    ])
    assert ledger.due_ids(1, now=NOW) == ids[3:]
    assert ledger.due_ids(1, now=later) == [ids[1], *ids[3:]]
    assert ledger.held_until(ids) == NOW + timedelta(seconds=30)
    assert ledger.outstanding(1, due_by=NOW) == 4  # 1 claimed + 3 pending; the deferred one is not due
    assert ledger.outstanding(1, due_by=later) == 5
    assert ledger.by_worker(1) == {"w:1": {"sent": 1, "deferred": 1, "claimed": 1}}
    assert ledger.next_due(1) == later
    assert ledger.editions_with_due(now=later) == [1]


def test_long_texts_json_and_times_survive_the_round_trip(engine: Engine) -> None:
    store = PaperStore(engine)
    state = SourceState(source="feed", etag='W/"' + "e" * 2000 + '"', last_modified="Mon, 27 Apr 2026 08:00:00 GMT",
                        last_attempt=NOW, last_success=None, last_status="error", last_error="x" * 5000,
                        last_counts=None)
    store.record_fetch(state)
    assert store.source_state("feed") == state
    store.record_fetch(SourceState(source="feed", last_attempt=NOW, last_counts={"fetched": 3, "new": 3}))
    again = store.source_state("feed")
    assert again.last_counts == {"fetched": 3, "new": 3}
    assert again.last_attempt is not None
    assert again.last_attempt.tzinfo is UTC
    store.set_meta("model", "ü" * 3000)
    assert store.get_meta("model") == "ü" * 3000


def test_ids_are_never_reused_after_a_delete(engine: Engine) -> None:
    from subscribers.store import SubscriberStore

    subscribers = SubscriberStore(engine)
    first = subscribers.add("a@example.org", now=NOW)
    subscribers.delete_personal_data(first.id, now=NOW)
    second = subscribers.add("b@example.org", now=NOW)
    assert second.id > first.id  # link tokens name a subscriber by id


def test_a_bare_postgresql_url_uses_psycopg(postgres_session_url: str) -> None:
    bare = postgres_session_url.replace("postgresql+psycopg://", "postgresql://")
    engine = open_database(bare)
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_an_unreachable_database_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot open database") as caught:
        open_database("postgresql+psycopg://postgres:hunter2@127.0.0.1:1/none?connect_timeout=2")
    assert "hunter2" not in str(caught.value)


def test_connections_the_server_dropped_are_replaced_unnoticed(postgres_session_url: str,
                                                                postgres: PostgresServer) -> None:
    engine = open_database(postgres_session_url)
    with engine.connect() as connection:  # a pooled connection, idle afterwards
        connection.execute(sa.select(sa.literal(1)))
    with postgres.admin.connect() as admin:  # as a server restart or an idle timeout would
        admin.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :name AND pid <> pg_backend_pid()"),
                      {"name": sa.make_url(postgres_session_url).database})
    assert isinstance(RunStore(engine).recent(), list)  # no OperationalError: the dead connection was replaced
    engine.dispose()


def test_feed_values_too_long_or_with_nul_characters_are_stored_on_every_engine(engine: Engine) -> None:
    # SQLite keeps any length and NUL characters; PostgreSQL refuses both (and with them the whole batch)
    from newsletter.sources.parsing import parse_feed, parse_hf_daily

    link = "https://blog.example.org/" + "very-long-slug-" * 30
    category = "A category name far longer than the sixty-four characters of its column"
    rss = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
           f"<item><title>A post</title><link>{link}</link><category>{category}</category></item>"
           f"<item><title>Another</title><link>{link}x</link></item></channel></rss>").encode()
    hf = b'[{"paper": {"id": "2604.00001", "title": "Nul\\u0000 title", "summary": "a\\u0000b", ' \
         b'"ai_keywords": ["k\\u0000"]}}]'
    papers = [*parse_feed("rss", rss, source="blog").papers, *parse_hf_daily(hf, source="hf").papers]
    assert len({p.paper_id for p in papers}) == 3  # the two long links stay two papers
    assert all(len(p.paper_id) <= 300 for p in papers)
    store = PaperStore(engine)
    assert store.upsert(papers, now=NOW).new == 3
    assert store.upsert(parse_feed("rss", rss, source="blog").papers, now=NOW).unchanged == 2  # same ids again
    long_one = store.get(papers[0].paper_id)
    assert long_one is not None
    assert long_one.paper_id.startswith("https://blog.example.org/very-long-slug-")
    assert long_one.categories == (category,)  # a JSON list: no length limit
    assert long_one.abs_url == link
    hf_paper = store.get("2604.00001")
    assert hf_paper is not None
    assert (hf_paper.title, hf_paper.abstract, hf_paper.ai_keywords) == ("Nul title", "ab", ("k",))
