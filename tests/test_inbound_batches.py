"""Issue 30: inbound mail in batches — one transaction and a few indexed statements for a whole bounce storm,
with the same outcomes, reader changes, evidence and log as the messages handled one at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
import pytest
import sqlalchemy as sa

from newsletter.inbound.listener import InboundServer
from newsletter.inbound.process import Incoming
from newsletter.storage.db import deliveries, inbound_messages
from subscribers.schema import subscriber_events, suppressions
from tests.inbound_support import DOMAIN, INBOUND_FIXTURES, Inbound, dsn, inbound_settings, make_inbound

SENT = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _our_message(inbound: Inbound, subscriber_id: int, email: str, message_id: str) -> None:
    """The ledger row of a message we sent (what a report without a VERP token is attributed by)."""
    with inbound.processor.engine.begin() as connection:
        connection.execute(deliveries.insert().values(
            edition_id=7, subscriber_id=subscriber_id, email=email, name="", variant_key="v", message_id=message_id,
            state="sent", phase="done", attempts=1, created=SENT, updated=SENT, sent_at=SENT))


def _storm(inbound: Inbound) -> list[Incoming]:
    """Readers and the mail that comes back about them: every kind of outcome, a reader reported three times
    over (the policy's limit of soft bounces), and one message handed over twice."""
    readers = [inbound.add(f"r{n}@example.net") for n in range(8)]
    _our_message(inbound, readers[5], "r5@example.net", "<ours-5@example.org>")

    def verp(n: int, raw: bytes) -> Incoming:
        return Incoming(raw=raw, recipients=(inbound.verp(readers[n]),), door="smtp")

    hard = dsn(to=inbound.verp(readers[0]), final_recipient="r0@example.net", status="5.1.1")
    token = inbound.verp(readers[2]).partition("+")[2].partition("@")[0]
    arf = (INBOUND_FIXTURES / "arf-yahoo.eml").read_bytes().replace(b"REPLACE", token.encode()) \
        .replace(b"MESSAGEID", b"<m2@example.org>")
    forged = inbound.verp(readers[3]).replace("bounces+k1-", "bounces+k1-A")
    return [
        verp(0, hard),
        *(verp(1, dsn(to=inbound.verp(readers[1]), final_recipient="r1@example.net", status="4.2.2",
                      action="delayed" if n == 9 else "failed", message_id=f"<soft-{n}@relay>"))
          for n in range(3)),
        Incoming(raw=arf, recipients=(f"bounces@{DOMAIN}",), door="smtp"),
        verp(2, dsn(to=inbound.verp(readers[2]), final_recipient="r2@example.net", status="5.1.1",
                    message_id="<after-complaint@relay>")),
        Incoming(raw=dsn(to=forged, final_recipient="r3@example.net", status="5.1.1", message_id="<f@relay>"),
                 recipients=(forged,), door="smtp"),
        Incoming(raw=dsn(to=f"postmaster@{DOMAIN}", final_recipient="r4@example.net", status="5.1.1",
                         message_id="<no-claim@relay>"), recipients=(f"postmaster@{DOMAIN}",), door="smtp"),
        Incoming(raw=dsn(to=f"postmaster@{DOMAIN}", final_recipient="r5@example.net", status="5.1.1",
                         message_id="<by-id@relay>", original_id="<ours-5@example.org>"),
                 recipients=(f"postmaster@{DOMAIN}",), door="smtp"),
        verp(0, hard),  # handed over again: acts once
        Incoming(raw=b"\x00" * 10 + b"not mail at all", recipients=(f"bounces@{DOMAIN}",), door="smtp"),
    ]


def _state(inbound: Inbound) -> tuple[object, ...]:
    with inbound.processor.engine.connect() as connection:
        events = connection.execute(sa.select(
            subscriber_events.c.subscriber_id, subscriber_events.c.kind, subscriber_events.c.action,
            subscriber_events.c.status, subscriber_events.c.message_id, subscriber_events.c.edition_id,
            subscriber_events.c.attributed_by).order_by(subscriber_events.c.id)).all()
        entries = connection.execute(sa.select(suppressions.c.address_hash, suppressions.c.reason)
                                     .order_by(suppressions.c.address_hash)).all()
        log = connection.execute(sa.select(
            inbound_messages.c.key, inbound_messages.c.kind, inbound_messages.c.outcome,
            inbound_messages.c.subscriber_id, inbound_messages.c.edition_id, inbound_messages.c.detail,
            inbound_messages.c.raw.is_not(None)).order_by(inbound_messages.c.id)).all()
    return inbound.statuses(), [tuple(e) for e in events], [tuple(e) for e in entries], [tuple(r) for r in log]


def test_a_storm_in_one_batch_does_exactly_what_the_messages_do_one_at_a_time(database_url: str,
                                                                              empty_database_url: str) -> None:
    batched, alone = make_inbound(database_url), make_inbound(empty_database_url)
    storm, same = _storm(batched), _storm(alone)
    statements: list[str] = []
    sa.event.listen(batched.processor.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *args: statements.append(statement))
    commits: list[int] = []
    sa.event.listen(batched.processor.engine, "commit", lambda conn: commits.append(1))
    outcomes = batched.processor.handle_batch(storm)
    assert len(commits) == 1
    assert len(statements) <= 12, statements  # look-ups by index and executemany writes, not per message
    one_by_one = [alone.processor.handle(m.raw, recipients=m.recipients, door=m.door) for m in same]
    assert outcomes == one_by_one
    assert [o.outcome for o in outcomes] == [
        "applied", "applied", "applied", "applied", "applied", "applied", "forged", "unattributed", "applied",
        "duplicate", "quarantined"]
    assert [o.actions for o in outcomes if o.outcome == "applied"] == [
        ("bounced",), ("counted",), ("counted",), ("bounced",), ("complained",), ("none",), ("bounced",)]
    assert _state(batched) == _state(alone)
    assert batched.statuses() == {"r0@example.net": "bounced", "r1@example.net": "bounced",
                                  "r2@example.net": "complained", "r3@example.net": "active",
                                  "r4@example.net": "active", "r5@example.net": "bounced",
                                  "r6@example.net": "active", "r7@example.net": "active"}
    assert batched.processor.handle_batch(storm)[0].outcome == "duplicate"  # a batch handed over again acts no more
    assert _state(batched) == _state(alone)


def test_attribution_reads_readers_and_our_messages_by_index(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'plan.db'}")
    with inbound.processor.engine.connect() as connection:
        for query in (sa.select(deliveries.c.edition_id).where(deliveries.c.message_id.in_(["<a@x>", "<b@x>"])),
                      sa.select(sa.literal(1)).select_from(sa.table("subscribers"))
                      .where(sa.column("email").in_(["a@x.org"]))):
            compiled = query.compile(connection, compile_kwargs={"literal_binds": True})
            plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
            assert "USING" in plan, plan
            assert "INDEX" in plan, plan
            assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), plan


async def _send(port: int, recipient: str, raw: bytes) -> str:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as client:
        _, reply = await client.sendmail("", [recipient], raw)
    return reply


async def test_the_listener_commits_messages_that_arrive_together_in_one_batch(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'storm.db'}")
    readers = [inbound.add(f"s{n}@example.net") for n in range(40)]
    commits: list[int] = []
    sa.event.listen(inbound.processor.engine, "commit", lambda conn: commits.append(1))
    server = InboundServer(inbound.processor, inbound_settings(rate_limit_per_minute=1000))
    port = await server.start(port=0)
    try:
        replies = await asyncio.gather(*(
            _send(port, inbound.verp(reader), dsn(to=inbound.verp(reader), final_recipient=f"s{n}@example.net",
                                                 status="5.1.1", message_id=f"<storm-{n}@relay>"))
            for n, reader in enumerate(readers)))
    finally:
        await server.stop()
    assert all(reply.startswith("2.0.0 applied") for reply in replies), replies
    assert set(inbound.statuses().values()) == {"bounced"}
    assert len(commits) < len(readers) / 2, len(commits)  # one per message before batches


@pytest.mark.parametrize("broken_at", [0, 3])
async def test_a_message_that_breaks_its_batch_is_the_only_one_deferred(tmp_path: Path, broken_at: int) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'poison.db'}")
    readers = [inbound.add(f"p{n}@example.net") for n in range(6)]
    real = inbound.processor.classify

    def poisoned(message: Incoming) -> object:
        if b"<poison@relay>" in message.raw:
            raise OSError("the disk is full for this one")
        return real(message)

    inbound.processor.classify = poisoned  # type: ignore[method-assign]
    server = InboundServer(inbound.processor, inbound_settings(rate_limit_per_minute=1000))
    port = await server.start(port=0)
    try:
        results = await asyncio.gather(*(
            _send(port, inbound.verp(reader), dsn(
                to=inbound.verp(reader), final_recipient=f"p{n}@example.net", status="5.1.1",
                message_id="<poison@relay>" if n == broken_at else f"<fine-{n}@relay>"))
            for n, reader in enumerate(readers)), return_exceptions=True)
    finally:
        await server.stop()
    deferred = [n for n, r in enumerate(results) if isinstance(r, aiosmtplib.SMTPDataError) and r.code == 451]
    assert deferred == [broken_at], results
    assert sorted(inbound.statuses().values()) == ["active"] + ["bounced"] * 5
