"""Papers count as sent to a reader only once that reader's row is `sent` (issue 13, item 9).

Before, a reader's papers were recorded in `sent_papers` when the ledger was filled: a reader whose message
then failed or was suppressed never got those papers in a later edition. Now the `sent` outcome is itself
the record (the variant's papers are stored with it), and `sent_papers` only keeps older history. Real
`send` runs against the aiosmtpd relay with scripted replies, on SQLite and PostgreSQL; the later edition
is a weekly one whose window covers the daily edition's papers, which a reader gets after moving from
daily to weekly.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.config import load_settings
from newsletter.service.jobs import housekeeping_job
from newsletter.storage import db
from newsletter.storage.db import open_database
from newsletter.storage.editions import EditionStore
from newsletter.storage.ledger import Ledger, NewDelivery
from subscribers.store import SubscriberStore
from tests.mailsink import Fault, MailSink, ReceivedMessage
from tests.support import secret_fixture
from tests.test_send import SECRET, cli_run, make_config

_ABS_LINK = re.compile(r"arxiv\.org/abs/([0-9]{4}\.[0-9]{4,5})")


secret = secret_fixture(SECRET)


def engine_of(config: Path) -> sa.Engine:
    return open_database(load_settings(config).newsletter.database_url)


def add_readers(config: Path, count: int) -> list[str]:
    store = SubscriberStore(engine_of(config))
    emails = [f"reader{i}@example.com" for i in range(count)]
    for address in emails:
        store.add(address, topics=("agents", "reasoning"), now=datetime.now(UTC))
    return emails


def papers_in(message: ReceivedMessage) -> set[str]:
    """The arXiv ids a received email links to (its plain-text part)."""
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    part = parsed.get_body(preferencelist=("plain",))
    assert part is not None
    return set(_ABS_LINK.findall(part.get_content()))  # type: ignore[union-attr]


def papers_received(sink: MailSink) -> dict[str, list[set[str]]]:
    return {address: [papers_in(m) for m in messages] for address, messages in sink.by_recipient().items()}


def received_by_ledger(config: Path) -> dict[int, set[str]]:
    """Per subscriber, the papers the ledger says they received or still may (every edition's rows)."""
    with engine_of(config).connect() as connection:
        ids = list(connection.execute(sa.select(db.deliveries.c.subscriber_id).distinct()).scalars())
    return Ledger(engine_of(config)).papers_carried(ids, editions_after=datetime(2000, 1, 1, tzinfo=UTC))


def move_to_weekly(config: Path, address: str) -> None:
    store = SubscriberStore(engine_of(config))
    reader = store.require(address)
    store.update_preferences(reader.id, topics=reader.topics, frequency="weekly", now=datetime.now(UTC))


@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_a_reader_whose_message_failed_gets_its_papers_in_a_later_edition(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink, extra="max_attempts = 1")
    assert cli_run(config, "fetch")[0] == 0
    lucky, unlucky = add_readers(config, 2)
    sink.add_fault(Fault(phase="rcpt", action="reply", reply="452 4.2.2 Mailbox full", recipient=unlucky))
    code, output = cli_run(config, "send")
    assert code == 0, output  # a full mailbox is the reader's own
    assert ledger_state(config, unlucky) == "failed"
    daily = papers_received(sink)[lucky][0]
    assert daily
    store = SubscriberStore(engine_of(config))
    recorded = received_by_ledger(config)
    assert recorded.get(store.require(lucky).id) == daily
    assert store.require(unlucky).id not in recorded  # the old code recorded them at fill time

    for address in (lucky, unlucky):
        move_to_weekly(config, address)
    code, output = cli_run(config, "send", "--frequency", "weekly")
    assert code == 0, output
    received = papers_received(sink)
    assert not daily & received[lucky][1], "the lucky reader is not sent the daily's papers again"
    (weekly,) = received[unlucky]
    assert daily & weekly, "the unlucky reader gets the papers the failed message carried"


@pytest.mark.usefixtures("database_url")
def test_a_row_suppressed_after_the_fill_records_no_paper(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    staying, leaving = add_readers(config, 2)
    sink.add_fault(Fault(phase="connect", action="reply", reply="554 5.3.2 No SMTP service here", times=None))
    code, output = cli_run(config, "send")  # fills the ledger; the relay refuses the session
    assert code == 1, output
    sink.clear_faults()
    store = SubscriberStore(engine_of(config))
    store.unsubscribe(store.require(leaving).id, now=datetime.now(UTC))
    code, output = cli_run(config, "send")
    assert code == 0, output
    assert ledger_state(config, leaving) == "suppressed"
    assert set(received_by_ledger(config)) == {store.require(staying).id}
    daily = papers_received(sink)[staying][0]
    # the reader comes back through their manage link, as a weekly reader: the daily's papers are new to them
    back = store.require(leaving)
    store.resubscribe(back.id, topics=back.topics, frequency="weekly", ip=None, now=datetime.now(UTC))
    code, output = cli_run(config, "send", "--frequency", "weekly")
    assert code == 0, output
    (weekly,) = papers_received(sink)[leaving]
    assert daily & weekly


def test_papers_in_flight_are_held_back_from_the_readers_other_edition(tmp_path: Path, sink: MailSink) -> None:
    """A reader whose daily message is still pending moves to weekly: the weekly edition leaves those papers
    out (it has more, from its longer window), and once the daily message goes, each paper arrived once."""
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    (reader,) = add_readers(config, 1)
    sink.add_fault(Fault(phase="connect", action="reply", reply="554 5.3.2 No SMTP service here", times=None))
    assert cli_run(config, "send")[0] == 1  # the daily row stays pending
    sink.clear_faults()
    move_to_weekly(config, reader)
    code, output = cli_run(config, "send", "--frequency", "weekly")
    assert code == 0, output
    assert cli_run(config, "send")[0] == 0  # the daily edition, resumed
    weekly, daily = papers_received(sink)[reader]
    assert daily
    assert weekly
    assert not daily & weekly, "no paper reaches the reader twice"


def ledger_state(config: Path, address: str) -> str:
    with engine_of(config).connect() as connection:
        return str(connection.execute(
            sa.select(db.deliveries.c.state).where(db.deliveries.c.email == address)).scalar_one())


def _edition(engine: sa.Engine, now: datetime, *, day: object, window: timedelta = timedelta(days=1)) -> int:
    with engine.begin() as connection:
        return int(connection.execute(db.editions.insert().values(
            frequency="daily", date=day, slug=f"daily-{day}", window_start=now - window, cutoff=now, created=now,
            paper_count=0, content={}, empty_reason="").returning(db.editions.c.id)).scalar_one())


def test_housekeeping_forgets_sent_papers_past_the_longest_edition_window(tmp_path: Path) -> None:
    """`sent_papers` (the fill-time history of older versions) no longer grows without bound: rows of editions
    cut off before the longest window (a week, or a longer daily window after a pause) are pruned."""
    with MailSink() as unused:
        settings = load_settings(make_config(tmp_path, unused))
    engine = open_database(settings.newsletter.database_url)
    now = datetime(2026, 6, 1, 6, tzinfo=UTC)
    editions = EditionStore(engine)
    ages = {"old": 9, "recent": 6}
    ids = {name: _edition(engine, now - timedelta(days=age), day=(now - timedelta(days=age)).date())
           for name, age in ages.items()}
    for name, edition_id in ids.items():
        editions.record_sent(edition_id, {1: [f"{name}-paper"]})
    result = housekeeping_job(settings, engine, clock=lambda: now, stop=threading.Event())
    assert result.details["pruned_sent_papers"] == 1
    assert editions.already_sent_many([1]) == {1: {"recent-paper"}}
    # a daily edition whose window spans 12 days (the daily job was paused) keeps 9-day-old records too
    editions.record_sent(ids["old"], {1: ["old-paper"]})
    _edition(engine, now, day=now.date(), window=timedelta(days=12))
    result = housekeeping_job(settings, engine, clock=lambda: now, stop=threading.Event())
    assert result.details["pruned_sent_papers"] == 0
    assert editions.already_sent_many([1]) == {1: {"recent-paper", "old-paper"}}


def test_a_variant_stored_before_the_upgrade_gets_its_papers_when_a_reader_joins_it(tmp_path: Path,
                                                                                    sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    assert cli_run(config, "fetch")[0] == 0
    (first,) = add_readers(config, 1)
    assert cli_run(config, "send")[0] == 0
    with engine_of(config).begin() as connection:  # as an edition half-sent by the version before 0011 left it
        connection.execute(db.variant_papers.delete())
    store = SubscriberStore(engine_of(config))
    store.add("late@example.com", topics=store.require(first).topics, now=datetime.now(UTC))
    code, output = cli_run(config, "send")
    assert code == 0, output
    (late,) = papers_received(sink)["late@example.com"]
    assert received_by_ledger(config)[store.require("late@example.com").id] == late


def test_delivery_rows_are_kept_while_a_new_window_can_reach_their_papers(tmp_path: Path) -> None:
    """They are the record of what each reader received: `keep_days = 1` still keeps a week of them."""
    with MailSink() as unused:
        settings = load_settings(make_config(tmp_path, unused, extra="[schedule]\nkeep_days = 1"))
    engine = open_database(settings.newsletter.database_url)
    now = datetime(2026, 6, 1, 6, tzinfo=UTC)
    ledger = Ledger(engine)
    for age in (9, 3):
        edition = _edition(engine, now - timedelta(days=age), day=(now - timedelta(days=age)).date())
        ledger.add(edition, [NewDelivery(subscriber_id=1, email="r@example.com", name="", variant_key="v",
                                         message_id=f"<{age}@x>")], now=now - timedelta(days=age))
    result = housekeeping_job(settings, engine, clock=lambda: now, stop=threading.Event())
    assert result.details["pruned_deliveries"] == 1
    with engine.connect() as connection:
        assert connection.execute(sa.select(db.deliveries.c.message_id)).scalars().all() == ["<3@x>"]
