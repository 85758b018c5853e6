"""The SMTP/LMTP door on a real socket: acknowledge after commit, no relaying, size cap, rate limit,
a listener killed in the middle of a message."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import aiosmtplib
import pytest
import sqlalchemy as sa

from newsletter.inbound.listener import InboundServer
from subscribers.evidence import EvidenceStore
from tests.conftest import spawn, write_config
from tests.inbound_support import DOMAIN, SECRET, dsn, inbound_settings, make_inbound, wait_for_port
from tests.support import free_port


async def _send(port: int, sender: str, recipients: list[str], raw: bytes) -> str:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
    await smtp.connect()
    try:
        _, reply = await smtp.sendmail(sender, recipients, raw)
        return reply
    finally:
        smtp.close()


async def test_listener_applies_then_acknowledges_and_refuses_relaying(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'l.db'}")
    reader = inbound.add("gone@example.net")
    server = InboundServer(inbound.processor, inbound_settings(max_message_bytes=20_000))
    port = await server.start(port=0)
    try:
        reply = await _send(port, "", [inbound.verp(reader)],
                            dsn(to=inbound.verp(reader), final_recipient="gone@example.net", status="5.1.1"))
        assert reply.startswith("2.0.0 applied")
        assert inbound.statuses() == {"gone@example.net": "bounced"}
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await _send(port, "spammer@example.com", ["victim@elsewhere.example"], b"Subject: relay?\r\n\r\nhi\r\n")
        assert refused.value.recipients[0].code == 550
        with pytest.raises(aiosmtplib.SMTPResponseException) as too_big:
            await _send(port, "", [f"bounces@{DOMAIN}"], b"Subject: big\r\n\r\n" + b"x" * 30_000 + b"\r\n")
        assert too_big.value.code == 552
    finally:
        await server.stop()


async def test_rate_limit_and_a_failed_commit_make_the_sender_retry(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'r.db'}")
    reader = inbound.add("full@example.net")
    server = InboundServer(inbound.processor, inbound_settings(rate_limit_per_minute=2))
    port = await server.start(port=0)
    try:
        with inbound.processor.engine.begin() as connection:  # the log table is gone: nothing can commit
            connection.execute(sa.text("ALTER TABLE inbound_messages RENAME TO inbound_messages_away"))
        raw = dsn(to=inbound.verp(reader), final_recipient="full@example.net", status="5.1.1")
        with pytest.raises(aiosmtplib.SMTPDataError) as deferred:
            await _send(port, "", [inbound.verp(reader)], raw)
        assert deferred.value.code == 451
        assert inbound.statuses() == {"full@example.net": "active"}  # the bounce's effect was rolled back too
        with inbound.processor.engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE inbound_messages_away RENAME TO inbound_messages"))
        assert (await _send(port, "", [inbound.verp(reader)], raw)).startswith("2.0.0 applied")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as limited:
            await _send(port, "", [inbound.verp(reader)], raw)
        assert limited.value.code == 450
    finally:
        await server.stop()


def _lmtp_two_recipients(port: int, verp: str, raw: bytes) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rwb")
        stream.readline()
        for command in (b"LHLO tester", b"MAIL FROM:<>", f"RCPT TO:<{verp}>".encode(),
                        f"RCPT TO:<bounces@{DOMAIN}>".encode(), b"DATA"):
            stream.write(command + b"\r\n")
            stream.flush()
            line = stream.readline()
            while line[3:4] == b"-":
                line = stream.readline()
        stream.write(raw + b".\r\n")
        stream.flush()
        return [stream.readline(), stream.readline()]


async def test_lmtp_answers_once_per_recipient(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'lmtp.db'}", protocol="lmtp")
    reader = inbound.add("lmtp@example.net")
    server = InboundServer(inbound.processor, inbound_settings(protocol="lmtp"))
    port = await server.start(port=0)
    try:
        raw = dsn(to=inbound.verp(reader), final_recipient="lmtp@example.net", status="5.1.1")
        replies = await asyncio.to_thread(_lmtp_two_recipients, port, inbound.verp(reader), raw)
        assert all(r.startswith(b"250 2.0.0 applied") for r in replies), replies
        assert inbound.statuses() == {"lmtp@example.net": "bounced"}
    finally:
        await server.stop()






@pytest.mark.slow
async def test_listener_killed_mid_message_the_sender_retries_and_it_acts_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    config = write_config(tmp_path, [("feed", "rss", "feed.xml")],
                          extra=f'[inbound]\ndomain = "{DOMAIN}"\nport = {port}\n')
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    inbound = make_inbound(f"sqlite:///{tmp_path / 'papers.db'}")
    reader = inbound.add("once@example.net")
    raw = dsn(to=inbound.verp(reader), final_recipient="once@example.net", status="5.1.1")
    first = spawn(["--config", str(config), "inbound"])
    wait_for_port(port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rwb")
        stream.readline()
        for command in (b"EHLO tester", b"MAIL FROM:<>", f"RCPT TO:<{inbound.verp(reader)}>".encode(), b"DATA"):
            stream.write(command + b"\r\n")
            stream.flush()
            line = stream.readline()
            while line[3:4] == b"-":
                line = stream.readline()
        assert line.startswith(b"354")
        stream.write(raw[: len(raw) // 2])
        stream.flush()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        try:
            reply = stream.readline()
        except ConnectionResetError:
            reply = b""
        assert reply == b""  # the connection died without a reply: the sender must retry
    assert inbound.statuses() == {"once@example.net": "active"}
    spawn(["--config", str(config), "inbound"])
    wait_for_port(port)
    assert (await _send(port, "", [inbound.verp(reader)], raw)).startswith("2.0.0 applied")
    # the 250 is lost after the commit, so the sender hands the same message over again: no second effect
    assert (await _send(port, "", [inbound.verp(reader)], raw)).startswith("2.0.0 duplicate")
    assert inbound.statuses() == {"once@example.net": "bounced"}
    assert len(EvidenceStore(inbound.processor.engine).events(reader)) == 1


@pytest.mark.slow
async def test_serve_runs_the_inbound_listener_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port, web_port = free_port(), free_port()
    config = write_config(tmp_path, [("feed", "rss", "feed.xml")],
                          extra=f'[web]\nport = {web_port}\n[inbound]\ndomain = "{DOMAIN}"\nport = {port}\n')
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    inbound = make_inbound(f"sqlite:///{tmp_path / 'papers.db'}")
    reader = inbound.add("served@example.net")
    process = spawn(["--config", str(config), "serve"])
    wait_for_port(port)
    raw = dsn(to=inbound.verp(reader), final_recipient="served@example.net", status="5.1.1")
    assert (await _send(port, "", [inbound.verp(reader)], raw)).startswith("2.0.0 applied")
    assert inbound.statuses() == {"served@example.net": "bounced"}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
