"""The SMTP session after aiosmtplib connects: TLS both ways, AUTH, pipelining, and reply parsing."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiosmtplib.errors import SMTPReadTimeoutError, SMTPServerDisconnected

from newsletter.config import DeliverySettings
from newsletter.delivery.sending import deliver
from newsletter.delivery.smtp_session import ReplyReader, SmtpSession
from newsletter.delivery.transports import connect
from newsletter.storage.db import open_database
from newsletter.storage.ledger import Ledger, NewDelivery
from tests.mailsink import MailSink
from tests.test_delivery import EDITION, Clock, build, fill


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: the client trusts it only through ``delivery.ca_file``."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "relay.pem", folder / "relay.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


def ledger_in(tmp_path: Path, recipients: int) -> Ledger:
    ledger = Ledger(open_database(f"sqlite:///{tmp_path / 'ledger.db'}"), worker="tls")
    fill(ledger, recipients)
    return ledger


def run(ledger: Ledger, settings: DeliverySettings, *, password: str | None = None) -> dict[str, int]:
    asyncio.run(deliver(ledger.engine, settings=settings, sender="papers@example.org", edition_id=EDITION,
                        build_message=build, clock=Clock(), password=password))
    return ledger.counts(EDITION)


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_delivers_over_tls_with_auth(tmp_path: Path, certificate: tuple[Path, Path], mode: str) -> None:
    ledger = ledger_in(tmp_path, 5)
    with MailSink(tls=server_context(certificate), tls_mode=mode, auth=("relay-user", "s3cret")) as sink:
        settings = DeliverySettings(port=sink.port, security=mode, ca_file=str(certificate[0]),  # type: ignore[arg-type]
                                    username="relay-user", concurrency=2, timeout_seconds=5)
        counts = run(ledger, settings, password="s3cret")
    assert counts["sent"] == 5
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == sorted(f"reader{i}@example.com" for i in range(5))
    assert set(sink.authenticated_users) == {"relay-user"}


def test_plain_connection_to_a_relay_that_requires_starttls_is_refused(tmp_path: Path,
                                                                       certificate: tuple[Path, Path]) -> None:
    """The sink really demands STARTTLS: the TLS test above cannot pass by sending in clear text."""
    ledger = ledger_in(tmp_path, 1)
    with MailSink(tls=server_context(certificate), tls_mode="starttls") as sink:
        counts = run(ledger, DeliverySettings(port=sink.port, security="none", timeout_seconds=5))
    assert counts["pending"] == 1  # a session error: the run stops, the row stays retriable
    assert sink.messages == []
    (row,) = ledger.rows(EDITION, state="pending")
    assert "STARTTLS" in row["last_message"]


def test_an_untrusted_certificate_stops_the_run_with_the_reason(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    ledger = ledger_in(tmp_path, 1)
    with MailSink(tls=server_context(certificate), tls_mode="tls") as sink:
        counts = run(ledger, DeliverySettings(port=sink.port, security="tls", timeout_seconds=5))
    assert counts["pending"] == 1
    assert sink.messages == []
    (row,) = ledger.rows(EDITION, state="pending")
    assert "CERTIFICATE_VERIFY_FAILED" in row["last_message"]


@pytest.mark.parametrize("offered", [True, False])
def test_pipelining_is_used_exactly_when_the_relay_offers_it(offered: bool) -> None:
    async def open_session(port: int) -> SmtpSession:
        smtp = await connect(DeliverySettings(port=port, timeout_seconds=5), password=None)
        return SmtpSession(smtp, sender="papers@example.org", timeout=5)

    async def send_one(port: int) -> tuple[bool, int]:
        session = await open_session(port)
        received_at_mark: list[int] = []

        async def mark() -> None:  # the ledger's "about to send the content" step
            received_at_mark.append(len(sink.messages))

        reply = await session.send("reader@example.com", b"Subject: hi\r\n\r\nhello\r\n", mark)
        await session.quit()
        assert received_at_mark == [0]
        return session.pipelining, reply.code

    with MailSink(pipelining=offered) as sink:
        pipelining, code = asyncio.run(send_one(sink.port))
    assert (pipelining, code) == (offered, 250)
    assert sink.messages[0].data == b"Subject: hi\r\n\r\nhello\r\n"


def test_replies_split_across_packets_and_multiline_replies_are_reassembled() -> None:
    async def scenario() -> list[tuple[int, str]]:
        reader = ReplyReader()
        chunks = [b"250 2.1.0 O", b"k\r\n250-first\r\n250-sec", b"ond\r\n250 last\r\n354 go ahead\r\n"]
        loop = asyncio.get_running_loop()
        for delay, chunk in enumerate(chunks):
            loop.call_later(0.01 * (delay + 1), reader.data_received, chunk)
        replies = await reader.replies(3, timeout=2)
        return [(r.code, r.message) for r in replies]

    assert asyncio.run(scenario()) == [(250, "2.1.0 Ok"), (250, "first\nsecond\nlast"), (354, "go ahead")]


def test_a_connection_keeps_one_timer_for_its_waits_and_each_wait_still_times_out_at_its_deadline() -> None:
    """Two waits for replies a message, each with a timeout: one timer per connection, re-armed only when it fires
    before the current wait's deadline, instead of a timer set and cancelled per wait (a heap push each)."""
    async def scenario() -> tuple[int, float]:
        reader = ReplyReader()
        loop = asyncio.get_running_loop()
        scheduled = 0
        call_at = loop.call_at

        def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            nonlocal scheduled
            scheduled += 1
            return call_at(when, callback, *args, **kwargs)

        loop.call_at = counting  # type: ignore[method-assign]
        for _ in range(40):  # quick replies, as from a local relay
            loop.call_soon(reader.data_received, b"250 2.0.0 Ok\r\n")
            await reader.replies(1, timeout=0.3)
        await asyncio.sleep(0.2)  # the timer set for the first wait is still ahead
        started = loop.time()
        with pytest.raises(SMTPReadTimeoutError):
            await reader.replies(1, timeout=0.3)  # nothing comes: it fails at its own deadline, not the first's
        waited = loop.time() - started
        reader.stop_timer()
        return scheduled, waited

    scheduled, waited = asyncio.run(scenario())
    assert scheduled <= 3  # the first wait's timer, re-armed once or twice (it was 41)
    assert 0.28 <= waited < 0.6


def test_a_dropped_connection_fails_the_waiting_reader() -> None:
    async def scenario() -> None:
        reader = ReplyReader()
        asyncio.get_running_loop().call_later(0.01, reader.connection_lost, None)
        await reader.replies(1, timeout=2)

    with pytest.raises(SMTPServerDisconnected):
        asyncio.run(scenario())



def test_an_address_that_cannot_go_on_a_command_line_fails_as_a_bad_address(tmp_path: Path) -> None:
    ledger = Ledger(open_database(f"sqlite:///{tmp_path / 'ledger.db'}"), worker="t")
    hostile = ["reader@example.com>\r\nRCPT TO:<victim@example.org", "no-at-sign", "two words@example.com"]
    ledger.add(EDITION, [NewDelivery(subscriber_id=i, email=e, name="", variant_key="v", message_id=f"<{i}@x>")
                         for i, e in enumerate(hostile)], now=Clock()())
    with MailSink() as sink:
        counts = run(ledger, DeliverySettings(port=sink.port, timeout_seconds=5))
    assert counts["failed"] == 3
    assert sink.messages == []
    assert {r["last_code"] for r in ledger.rows(EDITION, state="failed")} == {553}
