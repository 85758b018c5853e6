"""The ledger's tallies (``storage/ledger_tallies.py``) against the rows they count, on SQLite and PostgreSQL.

Every ledger operation that moves rows between states is run on two editions, and after each one the tallies
must equal a count of the rows (``Ledger.counts``) — including the outcomes a fenced sender tries to store
for rows it lost, which change nothing and must move nothing. ``halts`` grows by the rows a sender halted on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db
from newsletter.storage.db import open_database
from newsletter.storage.erasure import forget_subscriber_rows
from newsletter.storage.ledger import HALTED_PHASE, Ledger, NewDelivery, Outcome
from newsletter.storage.ledger_tallies import HALTS, ledger_tallies
from subscribers.store import SubscriberStore

NOW = datetime(2026, 4, 27, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_database(database_url)
    yield engine
    engine.dispose()


def rows(edition_id: int, subscribers: range) -> list[NewDelivery]:
    return [NewDelivery(subscriber_id=i, email=f"r{i}@example.com", name="", variant_key="v",
                        message_id=f"<{edition_id}.{i}@example.org>") for i in subscribers]


def check(ledger: Ledger, edition_id: int, **expected: int) -> None:
    """The tallies equal the rows' counts, and the states named here have these counts."""
    tallies = ledger.tallies(edition_id)
    counts = ledger.counts(edition_id)
    assert {state: tallies[state] for state in counts} == counts
    for key, value in expected.items():
        assert tallies[key] == value, (key, tallies)


def test_every_state_change_moves_the_tallies_by_the_rows_it_changed(engine: Engine) -> None:
    ledger = Ledger(engine, worker="w:1")
    other = Ledger(engine, worker="w:2")
    assert ledger.add(1, rows(1, range(10)), now=NOW) == 10
    assert ledger.add(1, rows(1, range(8, 12)), now=NOW) == 2  # two new, eight already there
    ledger.add(2, rows(2, range(5)), now=NOW)
    check(ledger, 1, pending=12, claimed=0, halts=0)
    check(ledger, 2, pending=5)

    batch = ledger.claim(1, limit=6, now=NOW, lease=LEASE)
    check(ledger, 1, pending=6, claimed=6)
    tokens = {d.id: d.claim_token for d in batch}
    a, b, c, d, e, f = (row.id for row in batch)
    later = NOW + timedelta(minutes=5)
    ledger.record(data_phase=[(a, tokens[a]), (b, tokens[b])], now=NOW, outcomes=[
        Outcome(delivery_id=a, state="sent", phase="data", code=250, claim_token=tokens[a]),
        Outcome(delivery_id=c, state="deferred", phase="rcpt", code=451, next_attempt_at=later,
                claim_token=tokens[c]),
        Outcome(delivery_id=d, state="failed", phase="rcpt", code=550, claim_token=tokens[d]),
        Outcome(delivery_id=e, state="pending", phase=HALTED_PHASE, message="535 authentication failed",
                count_attempt=False, claim_token=tokens[e]),
        Outcome(delivery_id=f, state="sent", phase="data", code=250, claim_token="not-the-token"),  # fenced
    ])
    check(ledger, 1, pending=7, claimed=2, sent=1, deferred=1, failed=1, halts=1)
    check(ledger, 2, pending=5, claimed=0, halts=0)

    # b reached DATA, f did not: a lapsed lease makes b ambiguous and gives f back
    assert ledger.release_expired(1, now=NOW + LEASE + timedelta(seconds=1)) == (1, 1)
    check(ledger, 1, pending=8, claimed=0, ambiguous=1)

    # a stale outcome for b (its claim lapsed) stores nothing and moves nothing
    ledger.record(data_phase=[], now=NOW, outcomes=[
        Outcome(delivery_id=b, state="sent", phase="data", code=250, claim_token=tokens[b])])
    check(ledger, 1, ambiguous=1, sent=1)

    # the deferred row comes back when due, with pending ones: both source states move
    again = other.claim(1, limit=100, now=later, lease=LEASE)
    assert c in {row.id for row in again}
    check(ledger, 1, pending=0, deferred=0, claimed=9)
    # a clean stop gives two back; two readers left the list meanwhile
    held = {row.id: row.claim_token for row in again}
    first, second, third, fourth = sorted(held)[:4]
    assert other.release({first: held[first], second: held[second]}, now=later) == 2
    check(ledger, 1, pending=2, claimed=7)
    active = sa.select(sa.literal(1).label("id")).where(sa.false())  # nobody is active any more
    suppressed = other.suppress_inactive([third, fourth], active_subscribers=active, now=later,
                                         tokens=set(held.values()))
    assert suppressed == {third, fourth}
    check(ledger, 1, pending=2, claimed=5, suppressed=2)

    # an operator's retry of the failed and ambiguous rows: back to pending
    assert ledger.requeue(1, states=("failed", "ambiguous"), now=later) == 2
    check(ledger, 1, pending=4, failed=0, ambiguous=0)


def test_an_erasure_suppresses_the_readers_waiting_rows_in_every_edition(engine: Engine) -> None:
    ledger = Ledger(engine)
    store = SubscriberStore(engine)
    reader = store.add("ada@example.com", name="Ada", topics=["agents"], now=NOW)
    ledger.add(1, rows(1, range(reader.id, reader.id + 3)), now=NOW)
    ledger.add(2, rows(2, range(reader.id, reader.id + 2)), now=NOW)
    taken = ledger.claim(2, limit=1, now=NOW, lease=LEASE)
    ledger.record(data_phase=[], now=NOW, outcomes=[
        Outcome(delivery_id=taken[0].id, state="deferred", phase="rcpt", next_attempt_at=NOW,
                claim_token=taken[0].claim_token)])
    check(ledger, 2, pending=1, deferred=1)
    with engine.begin() as connection:
        forget_subscriber_rows(engine, reader.id, connection=connection)
    check(ledger, 1, pending=2, suppressed=1)
    check(ledger, 2, pending=1, deferred=0, suppressed=1)


def test_pruned_editions_lose_their_tallies_and_an_edition_without_any_is_counted(engine: Engine) -> None:
    ledger = Ledger(engine)
    with engine.begin() as connection:
        old, new = (connection.execute(db.editions.insert().values(
            frequency="daily", date=day.date(), slug=f"daily-{day:%Y-%m-%d}", window_start=day, cutoff=day,
            created=day, paper_count=1, content={}).returning(db.editions.c.id)).scalar_one()
            for day in (NOW - timedelta(days=400), NOW))
    ledger.add(old, rows(old, range(3)), now=NOW)
    ledger.add(new, rows(new, range(2)), now=NOW)
    assert ledger.prune(before=NOW - timedelta(days=1)) == 3
    with engine.connect() as connection:
        kept = set(connection.execute(sa.select(ledger_tallies.c.edition_id).distinct()).scalars())
    assert kept == {new}
    check(ledger, new, pending=2)
    with engine.begin() as connection:  # as an edition filled before migration 0015, with no tallies
        connection.execute(ledger_tallies.delete())
    assert ledger.tallies(new) == {**ledger.counts(new), HALTS: 0}
    assert ledger.tallies(new)["pending"] == 2


def test_a_claim_takes_the_first_due_rows_by_id_whether_pending_or_deferred(engine: Engine) -> None:
    ledger = Ledger(engine)
    ledger.add(1, rows(1, range(6)), now=NOW)
    ids = sorted(row["id"] for row in ledger.rows(1, state="pending"))
    taken = ledger.claim(1, limit=2, now=NOW, lease=LEASE, only=ids[1:3])
    ledger.record(data_phase=[], now=NOW, outcomes=[
        Outcome(delivery_id=d.id, state="deferred", phase="rcpt", next_attempt_at=NOW, claim_token=d.claim_token)
        for d in taken])
    # due now: pending ids[0], ids[3:]; deferred ids[1], ids[2]
    assert [d.id for d in ledger.claim(1, limit=2, now=NOW, lease=LEASE)] == ids[:2]
    assert [d.id for d in ledger.claim(1, limit=3, now=NOW, lease=LEASE)] == [ids[2], ids[3], ids[4]]
    check(ledger, 1, pending=1, deferred=0, claimed=5)
