"""The ledger (SQLite and PostgreSQL) and the SMTP pool against a real aiosmtpd server with scripted faults."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.config import DeliverySettings
from newsletter.delivery.sending import deliver
from newsletter.storage.ledger import Delivery, Ledger, NewDelivery, Outcome
from tests.mailsink import Fault, MailSink

EDITION = 1
START = datetime(2026, 4, 27, 7, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=[True, False], ids=["pipelined", "one-command-at-a-time"])
def sink(request: pytest.FixtureRequest) -> Iterator[MailSink]:
    """A relay that offers PIPELINING (MAIL, RCPT and DATA in one write) and one that does not."""
    with MailSink(pipelining=request.param) as server:
        yield server


def settings_for(sink: MailSink, **changes: object) -> DeliverySettings:
    base = DeliverySettings(port=sink.port, concurrency=4, timeout_seconds=2, retry_base_seconds=60, claim_batch=10)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def fill(ledger: Ledger, count: int) -> list[str]:
    emails = [f"reader{i}@example.com" for i in range(count)]
    ledger.add(
        EDITION,
        [NewDelivery(subscriber_id=i, email=e, name=f"Reader {i}", variant_key="v", message_id=f"<{i}@example.org>")
         for i, e in enumerate(emails)],
        now=START,
    )
    return emails


def build(delivery: Delivery) -> bytes:
    return (f"From: papers@example.org\r\nTo: {delivery.email}\r\nMessage-ID: {delivery.message_id}\r\n"
            f"Subject: test\r\n\r\nHello {delivery.name}\r\n").encode()


def run(ledger: Ledger, settings: DeliverySettings, clock: Clock, **kwargs: object) -> dict[str, int]:
    asyncio.run(deliver(ledger.engine, settings=settings, sender="papers@example.org", edition_id=EDITION,
                        build_message=build, clock=clock, **kwargs))  # type: ignore[arg-type]
    return ledger.counts(EDITION)


def received(sink: MailSink) -> dict[str, int]:
    return {address: len(messages) for address, messages in sink.by_recipient().items()}


def test_every_row_is_sent_once_and_a_second_run_sends_nothing(ledger: Ledger, sink: MailSink) -> None:
    emails = fill(ledger, 25)
    counts = run(ledger, settings_for(sink), Clock())
    assert counts["sent"] == 25
    assert counts["pending"] == 0
    assert counts["claimed"] == 0
    assert received(sink) == dict.fromkeys(emails, 1)
    assert run(ledger, settings_for(sink), Clock())["sent"] == 25
    assert len(sink.messages) == 25
    row = ledger.rows(EDITION, state="sent")[0]
    assert row["last_code"] == 250
    assert row["attempts"] == 1
    assert row["phase"] == "data"


def test_throttling_4xx_is_deferred_with_backoff_then_delivered(ledger: Ledger, sink: MailSink) -> None:
    emails = fill(ledger, 5)
    sink.add_fault(Fault(phase="rcpt", action="reply", reply="451 4.7.1 Try again later", recipient=emails[2]))
    clock = Clock()
    counts = run(ledger, settings_for(sink), clock)
    assert counts["sent"] == 4
    assert counts["deferred"] == 1
    deferred = ledger.rows(EDITION, state="deferred")[0]
    assert deferred["email"] == emails[2]
    assert deferred["last_code"] == 451
    assert deferred["phase"] == "rcpt"
    assert deferred["attempts"] == 1
    assert START + timedelta(seconds=48) <= deferred["next_attempt_at"] <= START + timedelta(seconds=72)
    assert run(ledger, settings_for(sink), clock)["deferred"] == 1  # not due yet: nothing happens
    clock.now = START + timedelta(minutes=2)
    assert run(ledger, settings_for(sink), clock)["sent"] == 5
    assert received(sink) == dict.fromkeys(emails, 1)


def test_4xx_until_max_attempts_fails(ledger: Ledger, sink: MailSink) -> None:
    fill(ledger, 1)
    sink.add_fault(Fault(phase="mail", action="reply", reply="452 4.3.1 Insufficient storage", times=None))
    clock = Clock()
    for _ in range(3):
        run(ledger, settings_for(sink, max_attempts=3), clock)
        clock.now += timedelta(hours=1)
    failed = ledger.rows(EDITION, state="failed")
    assert len(failed) == 1
    assert failed[0]["attempts"] == 3
    assert "gave up after 3 attempts" in failed[0]["last_message"]


def test_unknown_recipient_fails_and_bounces_the_subscriber(ledger: Ledger, sink: MailSink) -> None:
    emails = fill(ledger, 3)
    sink.add_fault(Fault(phase="rcpt", action="reply", reply="550 5.1.1 No such user", recipient=emails[1]))
    bounced: list[tuple[int, int, str]] = []
    counts = run(ledger, settings_for(sink), Clock(), on_bounce=lambda *args: bounced.append(args))
    assert counts["sent"] == 2
    assert counts["failed"] == 1
    assert bounced == [(1, 550, "550 5.1.1 No such user")]
    assert received(sink) == {emails[0]: 1, emails[2]: 1}


@pytest.mark.parametrize("reply", ["554 5.6.0 Message content rejected", "554 Message rejected"])
def test_permanent_content_refusal_fails_without_bounce(ledger: Ledger, sink: MailSink, reply: str) -> None:
    fill(ledger, 1)
    sink.add_fault(Fault(phase="dot", action="reply", reply=reply))
    bounced: list[object] = []
    counts = run(ledger, settings_for(sink), Clock(), on_bounce=lambda *args: bounced.append(args))
    assert counts["failed"] == 1
    assert not bounced


def test_drop_before_data_is_retried_on_a_fresh_connection(ledger: Ledger, sink: MailSink) -> None:
    emails = fill(ledger, 6)
    sink.add_fault(Fault(phase="mail", action="drop", times=2))
    sink.add_fault(Fault(phase="rcpt", action="drop", recipient=emails[4]))
    counts = run(ledger, settings_for(sink), Clock())
    assert counts["sent"] == 6
    assert received(sink) == dict.fromkeys(emails, 1)


def test_421_closes_the_connection_and_defers(ledger: Ledger, sink: MailSink) -> None:
    emails = fill(ledger, 4)
    sink.add_fault(Fault(phase="rcpt", action="reply", reply="421 4.3.2 Closing, come back later",
                         recipient=emails[0]))
    counts = run(ledger, settings_for(sink, concurrency=1), Clock())
    assert counts["deferred"] == 1
    assert counts["sent"] == 3


def test_drop_after_the_final_dot_is_ambiguous_and_never_resent(ledger: Ledger, sink: MailSink) -> None:
    emails = fill(ledger, 4)
    sink.add_fault(Fault(phase="dot", action="drop", recipient=emails[3]))
    clock = Clock()
    counts = run(ledger, settings_for(sink), clock)
    assert counts["ambiguous"] == 1
    assert counts["sent"] == 3
    assert ledger.rows(EDITION, state="ambiguous")[0]["email"] == emails[3]
    clock.now += timedelta(days=1)
    run(ledger, settings_for(sink), clock)
    assert received(sink) == dict.fromkeys(emails, 1)  # the server got it once; we never sent it again


def test_a_server_slower_than_the_timeout_after_data_is_ambiguous(ledger: Ledger, sink: MailSink) -> None:
    fill(ledger, 1)
    sink.add_fault(Fault(phase="dot", action="delay", seconds=2.0))
    counts = run(ledger, settings_for(sink, timeout_seconds=0.5), Clock())
    assert counts["ambiguous"] == 1
    assert "SMTPReadTimeoutError" in ledger.rows(EDITION, state="ambiguous")[0]["last_message"]


def test_per_domain_concurrency_caps_messages_in_flight_to_one_domain(ledger: Ledger, sink: MailSink) -> None:
    fill(ledger, 6)  # one domain: example.com
    sink.reply_delay = 0.2  # each message is stored 0.2 s after its content arrived
    counts = run(ledger, settings_for(sink, concurrency=6, per_domain_concurrency=2), Clock())
    assert counts["sent"] == 6
    stored = sorted(m.received_at for m in sink.messages)
    # at most two in flight: the third can only start once the first finished, 0.2 s after the first started
    assert all(later - earlier >= 0.15 for earlier, later in zip(stored, stored[2:], strict=False)), stored


def test_rate_limit_spaces_the_messages(ledger: Ledger, sink: MailSink) -> None:
    fill(ledger, 9)
    counts = run(ledger, settings_for(sink, concurrency=4, rate_limit=40), Clock())
    assert counts["sent"] == 9
    stored = sorted(m.received_at for m in sink.messages)
    assert stored[-1] - stored[0] >= 0.15  # 8 intervals of 1/40 s = 0.2 s at the least between first and last


def test_refused_connection_stops_the_run_and_leaves_every_row_retriable(ledger: Ledger) -> None:
    fill(ledger, 2)
    with MailSink() as closed:
        port = closed.port
    stats = asyncio.run(deliver(ledger.engine, settings=DeliverySettings(port=port, concurrency=2, timeout_seconds=1),
                                sender="papers@example.org", edition_id=EDITION, build_message=build, clock=Clock()))
    assert stats.halt is not None
    assert stats.halt.startswith(f"cannot open a session with the relay 127.0.0.1:{port}: SMTPConnectError")
    counts = ledger.counts(EDITION)
    assert (counts["pending"], counts["deferred"], counts["failed"]) == (2, 0, 0)


def test_a_stop_releases_unstarted_rows_and_the_next_run_completes(ledger: Ledger, sink: MailSink) -> None:
    emails = fill(ledger, 40)
    sink.reply_delay = 0.02

    async def stop_soon() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.15, stop.set)
        await deliver(ledger.engine, settings=settings_for(sink, concurrency=2, claim_batch=20),
                      sender="papers@example.org", edition_id=EDITION, build_message=build, clock=Clock(), stop=stop)

    asyncio.run(stop_soon())
    partial = ledger.counts(EDITION)
    assert 0 < partial["sent"] < 40
    assert partial["claimed"] == 0
    assert partial["pending"] == 40 - partial["sent"]
    sink.reply_delay = 0
    assert run(ledger, settings_for(sink), Clock())["sent"] == 40
    assert received(sink) == dict.fromkeys(emails, 1)


def test_expired_claims_are_released_or_made_ambiguous_by_phase(ledger: Ledger) -> None:
    fill(ledger, 3)
    claimed = ledger.claim(EDITION, limit=3, now=START, lease=timedelta(minutes=5))
    assert len(claimed) == 3
    assert ledger.claim(EDITION, limit=3, now=START, lease=timedelta(minutes=5)) == []  # nothing twice
    ledger.record(data_phase=[(claimed[0].id, claimed[0].claim_token)], outcomes=[], now=START)
    ledger.record(data_phase=[], outcomes=[Outcome(delivery_id=claimed[2].id, state="sent", phase="data",
                                                   claim_token=claimed[2].claim_token)], now=START)
    assert ledger.release_expired(EDITION, now=START + timedelta(minutes=1)) == (0, 0)  # still leased
    assert ledger.release_expired(EDITION, now=START + timedelta(minutes=6)) == (1, 1)
    counts = ledger.counts(EDITION)
    assert (counts["ambiguous"], counts["pending"], counts["sent"]) == (1, 1, 1)


def test_adding_rows_twice_keeps_one_per_subscriber(ledger: Ledger) -> None:
    fill(ledger, 3)
    fill(ledger, 3)
    assert sum(ledger.counts(EDITION).values()) == 3


def test_file_backend_writes_one_eml_per_row(ledger: Ledger, tmp_path: Path) -> None:
    fill(ledger, 3)
    counts = run(ledger, DeliverySettings(backend="file", outbox=str(tmp_path / "outbox")), Clock())
    assert counts["sent"] == 3
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert [f.name for f in files] == [f"edition-1-subscriber-{i}.eml" for i in range(3)]
    assert b"Hello Reader 0" in files[0].read_bytes()


@pytest.mark.parametrize("body", [b".leading dot\r\n..two dots\r\n.\r\nend\r\n", b"bare\nline feeds\n.dot\n"])
def test_message_bytes_arrive_exactly_whatever_lines_start_with(ledger: Ledger, sink: MailSink, body: bytes) -> None:
    fill(ledger, 1)

    def with_body(delivery: Delivery) -> bytes:
        return build(delivery) + body

    asyncio.run(deliver(ledger.engine, settings=settings_for(sink), sender="papers@example.org", edition_id=EDITION,
                        build_message=with_body, clock=Clock()))
    received = sink.messages[0].data.replace(b"\r\n", b"\n")
    assert received.endswith(body.replace(b"\r\n", b"\n"))
