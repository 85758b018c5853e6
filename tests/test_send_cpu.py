"""What each message costs to send (issue 30): work done once per variant or per send stays there.

The send path must keep producing the same bytes and the same guarantees: these tests check that the cheaper
splice is byte for byte the per-occurrence splice it replaced, that a reader's values are encoded once per
message however many times the template uses them, that link tokens are still itsdangerous' tokens, and that
the pool no longer starts asyncio tasks per message while a stop still hands back what has not reached DATA.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import hashlib
import hmac
import html
import re
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import dkim
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import Signer, TimestampSigner

from newsletter.config import DkimSettings
from newsletter.delivery import mime
from newsletter.delivery.dkim import OVERSIGNED_HEADERS, SIGNED_HEADERS, DkimSigner
from newsletter.delivery.mime import CRLF, SOFT_BREAK, MessageTemplate, RecipientHeaders, _qp_text, _qp_value
from newsletter.delivery.sending import deliver
from newsletter.delivery.verp import sign_token, verify_token
from newsletter.rendering.links import feed_token, read_feed_token
from newsletter.rendering.personal import safe_url
from newsletter.storage import db
from newsletter.storage.db import open_database
from newsletter.storage.ledger import _MARK_DATA, _STORE_OUTCOME, Ledger, NewDelivery, Outcome
from newsletter.storage.ledger_quick import QuickRecorder
from subscribers.schema import subscribers
from subscribers.store import SubscriberStore
from subscribers.tokens import Keyring, TokenSigner
from tests.mailsink import Fault, MailSink
from tests.test_delivery import EDITION, START, Clock, build, fill, received, settings_for

NONCE = re.compile(r"__nlabc_(?P<name>[a-z]+(?:_[a-z]+)*)__")
NAMES = ("name", "greeting", "manage_url", "unsubscribe_url", "view_url")


def per_occurrence_splice(document: str, values: Mapping[str, str]) -> bytes:
    """The splice before issue 30: each placeholder's value encoded where it occurs (the reference)."""
    pieces: list[bytes] = []
    names: list[str] = []
    position = 0
    for match in NONCE.finditer(document):
        pieces.append(_qp_text(document[position : match.start()]))
        names.append(match.group("name"))
        position = match.end()
    pieces.append(_qp_text(document[position:]))
    out = [pieces[0]]
    for name, piece in zip(names, pieces[1:], strict=True):
        if not out[-1].endswith(CRLF):
            out.append(SOFT_BREAK)
        out.append(_qp_value(values[name]))
        out.append(SOFT_BREAK)
        out.append(piece)
    return b"".join(out)


text_chunks = st.text(alphabet=st.sampled_from(list("ab .=%\n\r\tÜé—<>&\"'")), max_size=90)
values_strategy = st.fixed_dictionaries({name: st.text(alphabet=st.sampled_from(list("Ab .=%\n<&é")), max_size=40)
                                         for name in NAMES})


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.tuples(text_chunks, st.sampled_from(NAMES)), max_size=8), last=text_chunks,
       values=values_strategy)
def test_the_spliced_body_is_byte_for_byte_the_per_occurrence_splice(
    chunks: list[tuple[str, str]], last: str, values: dict[str, str]
) -> None:
    """Placeholders back to back, at line starts, after "%" or "." — the precomputed format changes nothing."""
    document = "".join(f"{text}__nlabc_{name}__" for text, name in chunks) + last
    body = mime._split(document, NONCE)
    encoded = {name: _qp_value(value) for name, value in values.items()}
    assert body.render(encoded) == per_occurrence_splice(document, values)


def template(html_document: str, text_document: str) -> MessageTemplate:
    return MessageTemplate(boundary_seed="0123456789abcdef", from_name="Trending Papers 100%",
                           from_address="papers@example.org", subject="3 new papers, 100% fresh",
                           html_document=html_document, text_document=text_document, placeholder=NONCE,
                           list_id="papers.example.org", feedback_id="daily-2026-04-27:daily:newsletter:example.org")


def recipient_headers(n: int) -> RecipientHeaders:
    return RecipientHeaders(to_email=f"reader{n}@example.com", to_name=f"Reader {n}", message_id=f"<{n}@example.org>",
                            date=datetime(2026, 4, 27, 7, 0, n, 1234, tzinfo=UTC),
                            list_unsubscribe=[f"https://papers.example.org/unsubscribe/k0.{n}.sig"])


def test_each_value_is_encoded_once_per_message_however_often_it_occurs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A footer link in each of 50 papers is one encoding per part, not 50 (the old splice's cost)."""
    paper = '<p>paper</p><a href="__nlabc_manage_url__">manage</a><a href="__nlabc_view_url__">web</a>\n'
    html_document = "<p>__nlabc_greeting__</p>" + paper * 50
    text_document = "__nlabc_greeting__\n" + "paper: __nlabc_manage_url__\n" * 50
    calls: list[str] = []
    real = mime._value_encodings

    def counting(value: str, *, in_text: bool, in_html: bool) -> tuple[bytes, bytes]:
        calls.append(value)
        return real(value, in_text=in_text, in_html=in_html)

    monkeypatch.setattr(mime, "_value_encodings", counting)
    spliced = template(html_document, text_document)
    for n in range(3):
        values = {"greeting": f"Hi Reader {n},", "manage_url": f"https://papers.example.org/manage/k0.{n}.s&x",
                  "view_url": "https://papers.example.org/editions/daily-2026-04-27/"}
        calls.clear()
        raw = spliced.render(recipient_headers(n), values)
        # greeting and manage_url: once for both parts; view_url (shared by every reader) once in all
        assert len(calls) <= 3 if n == 0 else sorted(calls) == [values["greeting"], values["manage_url"]], calls
        assert raw.count(f"k0.{n}.s&amp;x".encode()) == 50  # HTML part: escaped, every occurrence
        assert raw.count(f"k0.{n}.s&x".encode()) == 50  # text part: raw, every occurrence
        assert f"Date: Mon, 27 Apr 2026 07:00:0{n} +0000".encode() in raw


plain_values = st.text(alphabet=st.sampled_from(list("Aa0 .=&<>\"'~!-\t")), min_size=70, max_size=80)


@settings(max_examples=400, deadline=None)
@given(value=st.one_of(st.text(max_size=90), text_chunks, plain_values), in_text=st.booleans(),
       in_html=st.booleans())
def test_a_value_is_encoded_as_quoted_printable_would_encode_it(value: str, in_text: bool, in_html: bool) -> None:
    """The shortcut for values QP leaves as they are (most names and links) gives ``_qp_value``'s bytes for any
    value: "=", a leading "." or space, a trailing space, 76 or 77 characters, HTML specials, non-ASCII."""
    assert mime._value_encodings(value, in_text=in_text, in_html=in_html) == (
        _qp_value(value) if in_text else b"", _qp_value(html.escape(value, quote=True)) if in_html else b"")


def reference_safe_url(url: str | None) -> str | None:
    """``safe_url`` before its shortcut for plain URLs."""
    if not url:
        return None
    url = url.strip()
    if not re.match(r"https?://", url, re.IGNORECASE):
        return None
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~")


url_tails = st.text(alphabet=st.sampled_from([*"aZ09_.-~:/?#[]@!$&'()*+,;=% \"<>\\^`{|}\té", "\u212a", "\u017f",
                                                "\u0131"]), max_size=30)


@settings(max_examples=300, deadline=None)
@given(scheme=st.sampled_from(["http://", "https://", "HTTPS://", "http\u017f://", " https://", "ftp://", ""]),
       tail=url_tails)
def test_a_link_is_made_safe_as_quote_would_make_it(scheme: str, tail: str) -> None:
    """``safe_url`` returns a plain http(s) URL as it is without calling ``quote`` (five links a message): the
    same result for anything, including the Kelvin sign and the long s that Unicode case rules match to k and s."""
    assert safe_url(scheme + tail) == reference_safe_url(scheme + tail)


def test_a_percent_sign_in_the_subject_or_body_survives_the_format() -> None:
    raw = template("<p>50% off __nlabc_greeting__ %s %%</p>", "100% __nlabc_greeting__ %d").render(
        recipient_headers(1), {"greeting": "Hi 5%,"})
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "3 new papers, 100% fresh"
    text_part, html_part = message.iter_parts()  # type: ignore[attr-defined]
    assert text_part.get_content() == "100% Hi 5%, %d"
    assert html_part.get_content() == "<p>50% off Hi 5%, %s %%</p>"


def test_link_tokens_are_itsdangerous_tokens_and_verify() -> None:
    keyring = Keyring.parse("k2:abcdefghijklmnopqrstuvwxyz,k0:0123456789abcdef0123")
    signer = TokenSigner(keyring)
    for purpose in ("manage", "unsubscribe", "feedback"):
        for subscriber_id in (0, 7, 123_456_789_012):
            token = signer.sign(purpose, subscriber_id)  # type: ignore[arg-type]
            expected = Signer(keyring.keys["k2"], salt=f"newsletter-token:{purpose}").sign(str(subscriber_id))
            assert token == "k2." + expected.decode("ascii")
            assert signer.verify(purpose, token) == subscriber_id  # type: ignore[arg-type]
            assert TokenSigner(keyring).verify(purpose, token) == subscriber_id  # type: ignore[arg-type]
    confirm = signer.sign("confirm", 5)  # timed tokens still go through itsdangerous' TimestampSigner
    assert TimestampSigner(keyring.keys["k2"], salt="newsletter-token:confirm").unsign(confirm[3:]) == b"5"


def test_feed_tokens_and_verp_addresses_keep_their_signatures() -> None:
    """Made per message from a kept HMAC state: still HMAC-SHA256 of the salt and the body, so the feed links and
    bounce addresses already in readers' mailboxes and on remote servers keep verifying."""
    keyring = Keyring.parse("k2:abcdefghijklmnopqrstuvwxyz")
    secret = keyring.keys["k2"].encode()
    issued = datetime(2026, 4, 27, 7, 0, 0, 250_000, tzinfo=UTC)
    token = feed_token(keyring, 1234, issued)
    body = f"1234.{int(issued.timestamp() * 1000):x}"
    mac = hmac.new(secret, b"newsletter-feed:" + body.encode(), hashlib.sha256).digest()[:16]
    assert token == f"k2.{body}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    assert read_feed_token(keyring, token) == (1234, issued.replace(microsecond=250_000))
    verp = sign_token(keyring, edition_id=9, subscriber_id=1234)
    mac = hmac.new(secret, b"newsletter-verp:9-1234", hashlib.sha256).digest()
    assert verp == f"k2-9-1234-{base64.b32encode(mac).decode().lower()[:16]}"
    assert verify_token(keyring, verp).subscriber_id == 1234


@pytest.fixture
def counted_tasks() -> Callable[[Coroutine[Any, Any, Any]], int]:
    """Runs a coroutine on a fresh loop and returns how many asyncio tasks were created meanwhile."""

    def run(coroutine: Coroutine[Any, Any, Any]) -> int:
        created = 0

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            nonlocal created
            created += 1
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop = asyncio.new_event_loop()
        loop.set_task_factory(factory)  # type: ignore[arg-type]
        try:
            loop.run_until_complete(coroutine)
        finally:
            loop.close()
        return created

    return run


def test_sending_starts_no_asyncio_task_per_message(ledger: Ledger, counted_tasks: Callable[..., int]) -> None:
    """With a stop event (as `send` always passes), 60 messages once took 120+ tasks: now a fixed handful."""
    emails = fill(ledger, 60)
    with MailSink() as sink:
        tasks = counted_tasks(deliver(ledger.engine, settings=settings_for(sink, concurrency=4, claim_batch=20),
                                      sender="papers@example.org", edition_id=EDITION, build_message=build,
                                      clock=Clock(), stop=asyncio.Event()))
        assert received(sink) == dict.fromkeys(emails, 1)
    assert ledger.counts(EDITION)["sent"] == 60
    assert tasks < 30, tasks


def test_a_stop_hands_back_messages_waiting_for_a_slow_relay_before_data(ledger: Ledger) -> None:
    """The stop watcher cancels sends stuck before DATA (a relay slow to answer MAIL/RCPT/DATA); nothing is lost."""
    emails = fill(ledger, 8)
    with MailSink() as sink:
        sink.add_fault(Fault(phase="mail", action="delay", seconds=5.0, times=None))  # no message reaches DATA

        async def stop_soon() -> float:
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.3, stop.set)
            started = asyncio.get_running_loop().time()
            await deliver(ledger.engine, settings=settings_for(sink, concurrency=4, timeout_seconds=30),
                          sender="papers@example.org", edition_id=EDITION, build_message=build, clock=Clock(),
                          stop=stop)
            return asyncio.get_running_loop().time() - started

        took = asyncio.run(stop_soon())
        assert took < 3.0
        counts = ledger.counts(EDITION)
        assert (counts["pending"], counts["claimed"], counts["sent"]) == (8, 0, 0)
        sink.clear_faults()
        asyncio.run(deliver(ledger.engine, settings=settings_for(sink), sender="papers@example.org",
                            edition_id=EDITION, build_message=build, clock=Clock()))
        assert received(sink) == dict.fromkeys(emails, 1)


def test_dkim_signatures_are_dkimpys_own_bytes_and_verify(dkim_key: tuple[Path, bytes]) -> None:
    """The OpenSSL signature is the one dkimpy's pure-Python RSA makes (PKCS #1 v1.5 is deterministic)."""
    key, record = dkim_key
    signer = DkimSigner(DkimSettings(selector="s1", domain="example.org", private_key_path=str(key)))
    assert signer.rsa is not None  # the fast path is the one under test
    raw = template('<p>__nlabc_greeting__</p>  two  spaces \n', "__nlabc_greeting__ \n").render(
        recipient_headers(3), {"greeting": "Hi Zoë,"})
    with mock.patch("time.time", return_value=1_780_000_000.0):
        signed = signer.sign(raw)
        reference = dkim.sign(raw, b"s1", b"example.org", key.read_bytes(), canonicalize=(b"relaxed", b"relaxed"),
                              include_headers=[*SIGNED_HEADERS, *OVERSIGNED_HEADERS]) + raw
    assert signed == reference

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record if name == b"s1._domainkey.example.org." else b""

    assert dkim.verify(signed, dnsfunc=dns)


def test_the_ledger_writes_the_bytes_sqlalchemy_would(ledger: Ledger) -> None:
    """The driver-level executemany (storage/bulk.py) stores every value as SQLAlchemy's own execution does:
    the same datetime text on SQLite (microseconds included), the same rows touched, fencing kept."""
    fill(ledger, 6)
    at = datetime(2026, 4, 27, 7, 0, 2, tzinfo=UTC)
    later = datetime(2026, 4, 27, 9, 30, 0, 123456, tzinfo=UTC)
    rows = ledger.claim(EDITION, limit=6, now=at, lease=timedelta(minutes=5))
    outcome = {"new_state": "deferred", "new_phase": "rcpt", "attempt": 1, "next_at": later, "code": 451,
               "msg": "451 4.7.1 later", "sent": None, "now": at}
    lost = ledger.record(data_phase=[(rows[0].id, rows[0].claim_token), (rows[1].id, "not-the-token")],
                         outcomes=[Outcome(delivery_id=rows[2].id, state="deferred", phase="rcpt", code=451,
                                           message="451 4.7.1 later", next_attempt_at=later,
                                           claim_token=rows[2].claim_token)], now=at)
    assert lost == {rows[1].id}
    with ledger.engine.begin() as connection:  # the same writes through SQLAlchemy's own execution
        connection.execute(_MARK_DATA, [{"row_id": rows[3].id, "token": rows[3].claim_token, "now": at}])
        connection.execute(_STORE_OUTCOME, [{**outcome, "row_id": rows[4].id, "token": rows[4].claim_token}])
    with ledger.engine.connect() as connection:
        stored = {row[0]: row[1:] for row in connection.exec_driver_sql(
            "SELECT id, state, phase, updated, next_attempt_at, last_code, last_message, claim_token IS NULL, "
            "attempts FROM deliveries").all()}
    assert stored[rows[0].id] == stored[rows[3].id]  # marked for DATA
    assert stored[rows[2].id] == stored[rows[4].id]  # deferred
    assert stored[rows[1].id] == stored[rows[5].id]  # untouched: the wrong claim token matched nothing
    assert stored[rows[2].id][:2] == ("deferred", "rcpt")


def test_commits_tried_on_the_loop_keep_one_connection_and_write_what_record_writes(ledger: Ledger) -> None:
    """The ledger writer's commits on the loop (``QuickRecorder``) hold one connection for the run, busy_timeout 0
    set once: no pool checkout and no PRAGMA per commit (together more CPU than SQLite's own work on a few rows).
    They write the rows ``Ledger.record`` writes, report a taken-over claim lost, and the connection goes back to
    the pool waiting for locks again."""
    if ledger.engine.dialect.name != "sqlite":  # a connection to a server can always wait: commits go to the thread
        assert QuickRecorder.open(ledger) is None
        return
    fill(ledger, 6)
    at = datetime(2026, 4, 27, 7, 0, 2, tzinfo=UTC)
    later = datetime(2026, 4, 27, 9, 30, 0, 123456, tzinfo=UTC)
    rows = ledger.claim(EDITION, limit=6, now=at, lease=timedelta(minutes=5))
    recorder = QuickRecorder.open(ledger)
    assert recorder is not None
    checkouts: list[object] = []
    statements: list[str] = []
    sa.event.listen(ledger.engine, "checkout", lambda *args: checkouts.append(args))
    sa.event.listen(ledger.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    for first, second in ((0, 1), (3, 4)):
        deferred = Outcome(delivery_id=rows[second + 1].id, state="deferred", phase="rcpt", code=451,
                           message="451 4.7.1 later", next_attempt_at=later, claim_token=rows[second + 1].claim_token)
        marks = [(rows[first].id, rows[first].claim_token), (rows[second].id, "not-the-token")]
        if first == 0:
            lost = recorder.try_record(data_phase=marks, outcomes=[deferred], now=at)
            assert checkouts == []
            assert not [sql for sql in statements if "PRAGMA" in sql]
        else:
            lost = ledger.record(data_phase=marks, outcomes=[deferred], now=at)
        assert lost == {rows[second].id}
    recorder.close()
    with ledger.engine.connect() as connection:
        stored = {row[0]: row[1:] for row in connection.exec_driver_sql(
            "SELECT id, state, phase, updated, next_attempt_at, last_code, last_message, claim_token IS NULL, "
            "attempts FROM deliveries").all()}
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30_000
    assert stored[rows[0].id] == stored[rows[3].id]  # marked for DATA
    assert stored[rows[2].id] == stored[rows[5].id]  # deferred
    assert stored[rows[1].id] == stored[rows[4].id]  # untouched: the wrong claim token matched nothing
    assert stored[rows[0].id][:2] == ("claimed", "data")
    assert stored[rows[2].id][:2] == ("deferred", "rcpt")
    assert ledger.counts(EDITION)["deferred"] == 2  # the tallies moved with the rows


def test_the_claim_time_consent_check_looks_up_each_row_not_the_whole_list(tmp_path: Path) -> None:
    """Each claimed batch re-checks that its readers are still active. As ``NOT IN (SELECT … active)`` SQLite read
    every active subscriber per batch (500 rows): at 100,000 readers, 200 batches × 100,000. Counted here in
    SQLite virtual-machine steps, which do not depend on the machine's speed or load."""
    engine = open_database(f"sqlite:///{tmp_path / 'list.db'}")
    now = datetime(2026, 4, 27, 7, 0, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(subscribers.insert(), [
            {"email": f"reader{n}@example.com", "name": "", "status": "active" if n % 10 else "unsubscribed",
             "topics": [], "frequency": "daily", "source": "import", "created": now, "updated": now}
            for n in range(1, 20_001)])
    ledger = Ledger(engine, worker="test")
    ledger.add(EDITION, [NewDelivery(subscriber_id=n, email=f"reader{n}@example.com", name="", variant_key="v",
                                     message_id=f"<{n}@example.org>") for n in range(1, 21)], now=now)
    batch = ledger.claim(EDITION, limit=20, now=now, lease=timedelta(minutes=5))
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    @sa.event.listens_for(engine, "before_cursor_execute")
    def watch(connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        connection.connection.driver_connection.set_progress_handler(count, 100)  # every 100 VM instructions

    active = SubscriberStore(engine).active_ids()
    suppressed = ledger.suppress_inactive([d.id for d in batch], active_subscribers=active, now=now,
                                          tokens={d.claim_token for d in batch})
    assert suppressed == {d.id for d in batch if d.subscriber_id % 10 == 0}  # readers 10 and 20 left
    assert steps < 200, steps  # 20 lookups: 7 here; reading the 18,000 active ids took ~1,800


def test_a_claim_reads_the_rows_it_takes_not_the_whole_edition(tmp_path: Path) -> None:
    """A claim late in a send (most rows sent) once read and sorted every row of the edition; SQLite VM steps."""
    engine = open_database(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger(engine, worker="test")
    now = datetime(2026, 4, 27, 7, 0, tzinfo=UTC)
    ledger.add(EDITION, [NewDelivery(subscriber_id=n, email=f"reader{n}@example.com", name="", variant_key="v",
                                     message_id=f"<{n}@example.org>") for n in range(20_000)], now=now)
    with engine.begin() as connection:  # a send 90 % through: the first 18,000 rows sent, one row deferred and due
        connection.execute(sa.update(db.deliveries).where(db.deliveries.c.id <= 18_000).values(state="sent"))
        connection.execute(sa.update(db.deliveries).where(db.deliveries.c.id == 19_990)
                           .values(state="deferred", next_attempt_at=now - timedelta(minutes=1)))
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    @sa.event.listens_for(engine, "before_cursor_execute")
    def watch(connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        connection.connection.driver_connection.set_progress_handler(count, 100)

    batch = ledger.claim(EDITION, limit=50, now=now, lease=timedelta(minutes=5))
    assert [d.id for d in batch] == list(range(18_001, 18_051))  # the first due rows by id, as before
    assert steps < 300, steps
    rest = ledger.claim(EDITION, limit=5000, now=now, lease=timedelta(minutes=5))
    assert [d.id for d in rest] == list(range(18_051, 20_001))  # the deferred row in its place by id


def test_the_due_rows_of_an_edition_come_from_its_index_in_id_order(ledger: Ledger) -> None:
    """PostgreSQL took a claim's first pending rows by walking the primary key past every row already sent (the
    (edition, state) index gave no id order): migration 0014_claim_order adds the id to that index."""
    fill(ledger, 3000)
    with ledger.engine.begin() as connection:
        connection.execute(sa.update(db.deliveries).where(db.deliveries.c.id <= 2500).values(state="sent"))
        if ledger.engine.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE deliveries")
    query = ("SELECT id FROM deliveries WHERE edition_id = 1 AND state = 'pending' ORDER BY id LIMIT 50")
    with ledger.engine.connect() as connection:
        if ledger.engine.dialect.name == "postgresql":
            plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN ANALYZE {query}"))
            assert "Rows Removed by Filter" not in plan, plan
        else:
            plan = "\n".join(str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
            assert "TEMP B-TREE" not in plan, plan
        assert "ix_deliveries_edition_state" in plan, plan
    batch = ledger.claim(EDITION, limit=50, now=START, lease=timedelta(minutes=5))
    assert [d.id for d in batch] == list(range(2501, 2551))
