"""Issue 25, the mail door: what a stranger can send the bounce domain's public MX, over SMTP to the real
listener and through `newsletter inbound --file`. No report without a signed claim changes a reader; hostile
MIME is quarantined and answered 250, never a 500 or a traceback; stranger text never reaches a terminal raw."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.delivery.verp import sign_token
from newsletter.inbound.listener import InboundServer
from newsletter.storage.inbound import InboundLog
from subscribers.tokens import Keyring
from tests.conftest import spawn
from tests.inbound_support import (
    DOMAIN,
    INBOUND_FIXTURES,
    dsn,
    inbound_settings,
    make_inbound,
    wait_for_port,
)
from tests.mailsink import MailSink
from tests.support import free_port
from tests.test_send import add_subscribers, cli_run, make_config


async def _send(port: int, recipients: list[str], raw: bytes, *, timeout: float = 10) -> str:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=timeout)
    await smtp.connect()
    try:
        _, reply = await smtp.sendmail("", recipients, raw)
        return reply
    finally:
        smtp.close()


def _many_recipient_dsn(named: list[str], *, message_id: str, return_path: str = "") -> bytes:
    """One DSN with a failed block per named address (what used to suppress many readers at once)."""
    blocks = "".join(f"Final-Recipient: rfc822; {a}\r\nOriginal-Recipient: rfc822;{a}\r\nAction: failed\r\n"
                     f"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <{a}>: unknown\r\n\r\n" for a in named)
    returned = f"Return-Path: <{return_path}>\r\n" if return_path else ""
    return (f"From: MAILER-DAEMON@relay.example.org\r\nTo: bounces@{DOMAIN}\r\nSubject: Undelivered Mail\r\n"
            f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n"
            "--B\r\nContent-Type: text/plain\r\n\r\nnot delivered\r\n\r\n"
            "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example.org\r\n\r\n"
            f"{blocks}--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}"
            "From: Trending Papers <papers@example.org>\r\nMessage-ID: <orig@example.org>\r\n\r\n--B--\r\n").encode()


def _old_style_bounce(named: str, *, message_id: str) -> bytes:
    return (f"From: MAILER-DAEMON@mx.example.net\r\nSubject: failure notice\r\nMessage-ID: {message_id}\r\n\r\n"
            f"Hi. This is the qmail-send program at mx.example.net.\r\nI'm afraid I wasn't able to deliver your "
            f"message to the following addresses.\r\nThis is a permanent error; I've given up. Sorry it didn't "
            f"work out.\r\n\r\n<{named}>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n").encode()


async def test_forged_reports_to_every_local_part_change_no_reader(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'forged.db'}")
    victims = [inbound.add(f"victim{n}@example.net") for n in range(3)]
    mallory = inbound.add("mallory@example.net")  # a reader herself: she holds one real token, her own
    own = inbound.verp(mallory)
    own_token = own.partition("+")[2].partition("@")[0]
    named = [f"victim{n}@example.net" for n in range(3)]
    foreign = sign_token(Keyring.parse("k1:someone-elses-secret-012345"), edition_id=1, subscriber_id=victims[0])
    local_parts = ["bounces", "postmaster", "abuse", "unsubscribe", "noreply", f"bounces+{foreign}",
                   "bounces+k1-1-1-aaaaaaaaaaaaaaaa", "bounces+", f"unsubscribe+{foreign}"]
    server = InboundServer(inbound.processor, inbound_settings())
    port = await server.start(port=0)
    replies = []
    try:
        number = 0
        for local in local_parts:
            rcpt = f"{local}@{DOMAIN}"
            arf = (INBOUND_FIXTURES / "arf-jmrp.eml").read_bytes().replace(b"RECIPIENT", named[0].encode())
            spoofed = f"bounces+{foreign}@{DOMAIN}"
            arf = arf.replace(b"MESSAGEID", f"<a{number}@x>".encode()).replace(b"<jmrp-7@", f"<j{number}@".encode())
            for raw in (_many_recipient_dsn(named, message_id=f"<d{number}@x>"),
                        _many_recipient_dsn(named, message_id=f"<s{number}@x>", return_path=spoofed),
                        arf, _old_style_bounce(named[1], message_id=f"<q{number}@x>")):
                number += 1
                replies.append(await _send(port, [rcpt], raw))
        # replayed: Mallory's real token on a report that names the victims changes no one (hers included)
        replies.append(await _send(port, [own], _many_recipient_dsn(named, message_id="<replay-1@x>")))
        replies.append(await _send(port, [f"postmaster@{DOMAIN}"], _many_recipient_dsn(
            named, message_id="<replay-2@x>", return_path=f"bounces+{own_token}@{DOMAIN}")))
        # two tokens that name different readers
        replies.append(await _send(port, [own, inbound.verp(victims[0])],
                                   dsn(to=own, final_recipient="nobody@example.org", status="5.1.1",
                                       message_id="<two@x>")))
    finally:
        await server.stop()
    assert all(reply.startswith("2.0.0 ") for reply in replies), replies
    assert inbound.statuses() == {**{a: "active" for a in named}, "mallory@example.net": "active"}
    counts = InboundLog(inbound.processor.engine).counts()
    assert set(counts) <= {"forged", "unattributed", "ignored"}, counts
    assert counts["forged"] >= 3
    assert counts["unattributed"] >= 20


async def test_a_real_bounce_with_its_own_token_still_acts(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'real.db'}")
    reader, bystander = inbound.add("gone@example.net"), inbound.add("stays@example.net")
    server = InboundServer(inbound.processor, inbound_settings())
    port = await server.start(port=0)
    try:
        reply = await _send(port, [inbound.verp(reader)],
                            dsn(to=inbound.verp(reader), final_recipient="gone@example.net", status="5.1.1"))
    finally:
        await server.stop()
    assert reply.startswith("2.0.0 applied")
    assert inbound.statuses() == {"gone@example.net": "bounced", "stays@example.net": "active"}
    assert bystander


def _nested(depth: int) -> bytes:
    head = b"From: MAILER-DAEMON@relay.example.org\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
    opening = b"".join(b"Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n" % (n, n)
                       for n in range(depth))
    return head + opening + b"Content-Type: text/plain\r\n\r\nx\r\n"


def _many_parts(count: int) -> bytes:
    return (b"From: MAILER-DAEMON@relay.example.org\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"p\"\r\n\r\n" + b"--p\n\nx\n" * count + b"--p--\r\n")


async def test_hostile_mime_is_quarantined_and_answered_250(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'mime.db'}")
    reader = inbound.add("ada@example.net")
    verp = inbound.verp(reader)
    lines = b"From: MAILER-DAEMON@relay.example.org\r\nSubject: failure notice\r\n\r\n" + b"a\n" * 600_000
    samples = {"deep": _nested(2_000), "parts": _many_parts(199_000), "some parts": _many_parts(600),
               "lines": lines}
    assert all(len(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")) < 2_000_000 for raw in samples.values())
    server = InboundServer(inbound.processor, inbound_settings())
    port = await server.start(port=0)
    try:
        replies = {name: await _send(port, [verp], raw, timeout=20) for name, raw in samples.items()}
    finally:
        await server.stop()
    assert all(reply.startswith("2.0.0 quarantined") for reply in replies.values()), replies
    assert inbound.statuses() == {"ada@example.net": "active"}
    records = InboundLog(inbound.processor.engine).recent(outcome="quarantined")
    assert len(records) == len(samples)
    assert any("lines" in r.detail for r in records)
    assert any("part delimiters" in r.detail for r in records)


def test_inbound_file_with_deep_mime_is_one_quarantine_line(tmp_path: Path, sink: MailSink,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", "k1:test-secret-0123456789abcdef")
    config = make_config(tmp_path, sink, extra=f'\n[inbound]\ndomain = "{DOMAIN}"\n')
    deep = tmp_path / "deep.eml"
    deep.write_bytes(_nested(2_000))
    code, output = cli_run(config, "inbound", "--file", str(deep))
    assert code == 0
    assert "→ quarantined" in output
    assert "Traceback" not in output


OSC = "\x1b]0;owned\x07\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07"


@pytest.mark.slow
def test_stranger_text_never_reaches_the_terminal_raw(tmp_path: Path, sink: MailSink,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "k1:test-secret-0123456789abcdef"
    monkeypatch.setenv("NEWSLETTER_SECRET", secret)
    config = make_config(tmp_path, sink, extra=f'\n[inbound]\ndomain = "{DOMAIN}"\n')
    assert cli_run(config, "fetch")[0] == 0
    (address,) = add_subscribers(config, 1)
    assert cli_run(config, "send")[0] == 0
    (sent,) = sink.messages
    raw = dsn(to=sent.mail_from, final_recipient=address, status="5.1.1").replace(
        b"Recipient address rejected", OSC.encode())
    report = tmp_path / "osc.eml"
    report.write_bytes(raw)
    code, output = cli_run(config, "inbound", "--file", str(report), "--rcpt", sent.mail_from)
    assert "applied" in output
    code, shown = cli_run(config, "subscribers", "show", address)
    assert code == 0
    assert "\x1b" not in shown
    assert "\x07" not in shown
    assert "\\x1b]0;owned\\x07" in shown
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(b"\x1b]0;owned\x07 no header here\r\n")
    assert "quarantined" in cli_run(config, "inbound", "--file", str(garbage))[1]
    record_id = cli_run(config, "inbound", "--quarantined")[1].split(":")[0]
    main, child = pty.openpty()  # a real terminal on standard output
    try:
        process = subprocess.run([sys.executable, "-m", "newsletter", "--config", str(config), "inbound", "--raw",
                                  record_id], stdout=child, stderr=subprocess.PIPE, timeout=60,
                                 env=dict(os.environ), cwd=tmp_path)
        os.close(child)
        child = -1
        printed = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            printed += chunk
    finally:
        os.close(main)
        if child != -1:
            os.close(child)
    assert process.returncode == 0, process.stderr
    assert b"\x1b" not in printed
    assert b"\\x1b]0;owned\\x07" in printed
    piped = subprocess.run([sys.executable, "-m", "newsletter", "--config", str(config), "inbound", "--raw",
                            record_id], capture_output=True, timeout=60, env=dict(os.environ), cwd=tmp_path)
    assert piped.stdout == garbage.read_bytes()  # to a file or a pipe, the bytes are kept as they came


def test_inbound_on_a_busy_port_is_one_line(tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", "k1:test-secret-0123456789abcdef")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = make_config(tmp_path, sink, extra=f'\n[inbound]\ndomain = "{DOMAIN}"\nport = {port}\n')
        result = CliRunner().invoke(cli, ["--config", str(config), "inbound"])
    assert result.exit_code == 1
    assert result.output == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


@pytest.mark.slow
def test_the_listeners_log_shows_a_strangers_envelope_with_escapes_visible(tmp_path: Path, sink: MailSink,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", "k1:test-secret-0123456789abcdef")
    port = free_port()
    config = make_config(tmp_path, sink, extra=f'\n[inbound]\ndomain = "{DOMAIN}"\nport = {port}\n')
    process = spawn(["--config", str(config), "inbound"])
    wait_for_port(port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rwb")
        stream.readline()
        sender = b"MAIL FROM:<\"\x1b]0;owned\x07\"@evil.example>"  # a quoted local part may hold controls
        for command in (b"EHLO x", sender, f"RCPT TO:<bounces@{DOMAIN}>".encode(), b"DATA", b"Subject: \x1b]8;;http://evil\x07hi\r\n\r\nbody\r\n."):
            stream.write(command + b"\r\n")
            stream.flush()
            while True:
                line = stream.readline()
                if line[3:4] != b"-":
                    break
        assert line.startswith(b"250"), line
    broken = b"From: \r\nSubject: Undelivered Mail\r\n\r\nno address in From: a detector breaks on it\r\n"
    assert asyncio.run(_send(port, [f"bounces@{DOMAIN}"], broken)).startswith("2.0.0 ")
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert b"inbound other from" in output, output
    assert b"\x1b" not in output
    assert b"\\x1b]0;owned\\x07" in output
    assert b"Traceback" not in output


async def test_a_burst_of_messages_is_processed_one_at_a_time(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'burst.db'}")
    reader = inbound.add("ada@example.net")
    real = inbound.processor.classify
    lock = threading.Lock()
    running = [0, 0, 0]  # now, most at once, in all

    def counted(message: Any) -> Any:
        with lock:
            running[0] += 1
            running[1] = max(running[:2])
            running[2] += 1
        time.sleep(0.2)  # a message that takes a while to classify
        try:
            return real(message)
        finally:
            with lock:
                running[0] -= 1

    inbound.processor.classify = counted  # type: ignore[method-assign]
    server = InboundServer(inbound.processor, inbound_settings())
    port = await server.start(port=0)
    try:
        replies = await asyncio.gather(*(
            _send(port, [f"postmaster@{DOMAIN}"], _old_style_bounce("ada@example.net", message_id=f"<b{n}@x>"))
            for n in range(4)))
    finally:
        await server.stop()
    assert all(reply.startswith("2.0.0 unattributed") for reply in replies), replies
    assert running[1:] == [1, 4]
    assert inbound.statuses() == {"ada@example.net": "active"}
    assert reader


async def test_a_flood_of_unreadable_mail_keeps_a_bounded_quarantine(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'flood.db'}", quarantine_per_day=2)
    server = InboundServer(inbound.processor, inbound_settings(quarantine_per_day=2))
    port = await server.start(port=0)
    try:
        replies = [await _send(port, [f"bounces@{DOMAIN}"], _nested(60) + b"%d" % n) for n in range(4)]
    finally:
        await server.stop()
    assert all(reply.startswith("2.0.0 quarantined") for reply in replies), replies
    log = InboundLog(inbound.processor.engine)
    records = log.recent(outcome="quarantined")
    assert len(records) == 4
    kept = [r.id for r in records if log.quarantined_raw(r.id) is not None]
    assert len(kept) == 2
    assert sum("bytes not kept" in r.detail for r in records) == 2


async def test_idle_connections_past_the_limit_are_refused_at_once(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'idle.db'}")
    reader = inbound.add("ada@example.net")
    server = InboundServer(inbound.processor, inbound_settings())
    port = await server.start(port=0)
    held = []
    try:
        greetings = []
        for _ in range(60):  # from one address; a local Postfix opens at most 20
            stream = await asyncio.open_connection("127.0.0.1", port)
            held.append(stream)
            greetings.append(await asyncio.wait_for(stream[0].readline(), 5))
        assert sum(g.startswith(b"220") for g in greetings) == 50
        assert sum(g.startswith(b"421") for g in greetings) == 10
        for _, writer in held[:5]:
            writer.close()
        await asyncio.sleep(0.2)
        reply = await _send(port, [inbound.verp(reader)],  # a slot given back serves the next sender
                            dsn(to=inbound.verp(reader), final_recipient="ada@example.net", status="5.1.1"))
        assert reply.startswith("2.0.0 applied")
    finally:
        for _, writer in held:
            writer.close()
        await server.stop()
