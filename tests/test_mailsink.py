"""The mail sink against real SMTP clients (smtplib and aiosmtplib) on 127.0.0.1.

Delivery tests trust the sink to behave like a real server, fault by fault, so each fault is checked here from
the client's side: the reply code it sees, the exception it raises, and what the server ended up storing.
"""

from __future__ import annotations

import asyncio
import email
import smtplib
import time
from pathlib import Path

import aiosmtplib
import pytest

from tests.mailsink import DATA_SIZE_LIMIT, Fault, MailSink

SENDER = "papers@example.org"
ALICE = "alice@example.com"
BOB = "bob@example.com"


def make_message(subject: str = "Hello", to: str = ALICE, body: str = "Trending papers.") -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.org>\r\n\r\n{body}\r\n"
    ).encode()


def client(sink: MailSink, *, timeout: float = 5.0) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname=sink.host, port=sink.port, timeout=timeout, start_tls=False)


# -- normal operation --------------------------------------------------------------------------------------------


def test_accepts_and_records_the_raw_message(sink: MailSink) -> None:
    message = make_message(to=f"{ALICE}, {BOB}")
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        assert smtp.sendmail(SENDER, [ALICE, BOB], message) == {}

    assert sink.port != 0
    [received] = sink.messages
    assert received.mail_from == SENDER
    assert received.rcpt_tos == (ALICE, BOB)
    assert received.data == message
    assert received.received_at <= time.monotonic()
    assert sink.by_recipient() == {ALICE: [received], BOB: [received]}


def test_advertises_a_large_size_limit_and_accepts_a_multi_megabyte_message(sink: MailSink) -> None:
    line = b"x" * 76 + b"\r\n"
    message = make_message().rstrip(b"\r\n") + b"\r\n" + line * (3 * 1024 * 1024 // len(line))
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        smtp.ehlo()
        assert smtp.esmtp_features["size"] == str(DATA_SIZE_LIMIT)
        assert {"8bitmime", "smtputf8"} <= set(smtp.esmtp_features)
        smtp.sendmail(SENDER, [ALICE], message)
    assert sink.messages[0].data == message


def test_dot_stuffing_and_lines_ending_in_a_dot_survive_the_round_trip(sink: MailSink) -> None:
    body = ".hidden\r\n..double\r\n.\r\nEnd of sentence.\r\n...\r\n\r\n.\r\nx."
    message = make_message(body=body)
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        smtp.sendmail(SENDER, [ALICE], message)  # smtplib dot-stuffs; the sink must undo exactly that
    assert sink.messages[0].data == message


def test_an_empty_message_ends_at_the_first_lone_dot(sink: MailSink) -> None:
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        smtp.ehlo()
        smtp.mail(SENDER)
        smtp.rcpt(ALICE)
        assert smtp.docmd("DATA")[0] == 354
        smtp.send(b".\r\n")
        assert smtp.getreply()[0] == 250
    assert sink.messages[0].data == b""


def test_a_line_over_the_rfc_limit_is_refused_and_the_connection_goes_on(sink: MailSink) -> None:
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as raised:
            smtp.sendmail(SENDER, [ALICE], make_message(body="x" * 1000))
        assert raised.value.smtp_code == 500
        smtp.sendmail(SENDER, [ALICE], make_message(body="x" * 998))
    assert len(sink.messages) == 1


def test_writes_each_accepted_message_to_the_maildir(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    with MailSink(maildir=maildir) as sink, smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        smtp.sendmail(SENDER, [ALICE], make_message("First"))
        smtp.sendmail(SENDER, [BOB], make_message("Second", to=BOB))

    assert len(sink.paths) == 2
    assert all(path.parent == maildir / "new" and path.is_file() for path in sink.paths)
    parsed = [email.message_from_bytes(path.read_bytes()) for path in sink.paths]
    assert [message["Subject"] for message in parsed] == ["First", "Second"]
    assert parsed[1]["To"] == BOB
    assert b"\r\n" not in sink.paths[0].read_bytes()  # Maildir files use LF line ends


async def test_async_context_manager_runs_on_its_own_loop() -> None:
    async with MailSink() as sink:
        smtp = client(sink)
        async with smtp:
            await smtp.sendmail(SENDER, [ALICE], make_message())
    assert len(sink.messages) == 1


def test_stop_closes_open_connections_and_is_idempotent() -> None:
    sink = MailSink()
    sink.start()
    smtp = smtplib.SMTP(sink.host, sink.port, timeout=5)
    smtp.ehlo()
    sink.stop()
    sink.stop()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()


async def test_many_concurrent_connections_each_reusing_their_connection(sink: MailSink) -> None:
    async def one_connection(n: int) -> None:
        smtp = client(sink)
        async with smtp:
            for i in range(20):
                recipient = f"reader{n}@example.com"
                await smtp.sendmail(SENDER, [recipient], make_message(f"m{n}-{i}", to=recipient))

    await asyncio.gather(*(one_connection(n) for n in range(20)))

    assert len(sink.messages) == 400
    grouped = sink.by_recipient()
    assert len(grouped) == 20
    assert all(len(messages) == 20 for messages in grouped.values())


async def test_reply_delay_slows_every_data_reply_and_can_change_while_running(sink: MailSink) -> None:
    smtp = client(sink)
    async with smtp:
        sink.reply_delay = 0.1
        started = time.monotonic()
        await smtp.sendmail(SENDER, [ALICE], make_message())
        assert time.monotonic() - started >= 0.1
        sink.reply_delay = 0.0
        await smtp.sendmail(SENDER, [ALICE], make_message())
        assert sink.delayed_replies == 1  # the second reply did not wait


# -- scripted replies --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "reply", "error"),
    [
        ("mail", "451 4.7.1 Try again later", aiosmtplib.SMTPSenderRefused),
        ("data", "451 4.3.0 Not now", aiosmtplib.SMTPDataError),
        ("dot", "554 5.7.1 Message rejected", aiosmtplib.SMTPDataError),
    ],
)
async def test_reply_fault_is_the_code_the_client_sees(
    sink: MailSink, phase: str, reply: str, error: type[aiosmtplib.SMTPResponseException]
) -> None:
    sink.add_fault(Fault(phase, "reply", reply))
    smtp = client(sink)
    async with smtp:
        with pytest.raises(error) as raised:
            await smtp.sendmail(SENDER, [ALICE], make_message())
    assert raised.value.code == int(reply[:3])
    assert raised.value.message == reply[4:]
    assert sink.messages == []


async def test_rcpt_reply_fault_refuses_the_recipient(sink: MailSink) -> None:
    sink.add_fault(Fault("rcpt", "reply", "550 5.1.1 No such user"))
    smtp = client(sink)
    async with smtp:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as raised:
            await smtp.sendmail(SENDER, [ALICE], make_message())
    [refused] = raised.value.recipients
    assert (refused.code, refused.message, refused.recipient) == (550, "5.1.1 No such user", ALICE)
    assert sink.messages == []


def test_connect_reply_fault_replaces_the_greeting_and_closes(sink: MailSink) -> None:
    sink.add_fault(Fault("connect", "reply", "421 4.3.2 Closing"))
    with pytest.raises(smtplib.SMTPConnectError) as raised:
        smtplib.SMTP(sink.host, sink.port, timeout=5)
    assert (raised.value.smtp_code, raised.value.smtp_error) == (421, b"4.3.2 Closing")
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:  # fired once, then a normal greeting
        assert smtp.noop()[0] == 250


def test_421_reply_closes_the_connection_after_the_reply(sink: MailSink) -> None:
    sink.add_fault(Fault("mail", "reply", "421 4.3.2 Shutting down"))
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        smtp.ehlo()
        assert smtp.docmd(f"MAIL FROM:<{SENDER}>") == (421, b"4.3.2 Shutting down")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()


def test_times_one_fires_once_then_the_server_behaves(sink: MailSink) -> None:
    sink.add_fault(Fault("mail", "reply", "451 4.7.1 Try again later"))
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused):
            smtp.sendmail(SENDER, [ALICE], make_message())
        smtp.sendmail(SENDER, [ALICE], make_message())
    assert len(sink.messages) == 1


def test_times_none_fires_until_cleared(sink: MailSink) -> None:
    sink.add_fault(Fault("dot", "reply", "451 4.3.0 Busy", times=None))
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        for _ in range(3):
            with pytest.raises(smtplib.SMTPDataError):
                smtp.sendmail(SENDER, [ALICE], make_message())
        sink.clear_faults()
        smtp.sendmail(SENDER, [ALICE], make_message())
    assert len(sink.messages) == 1


async def test_per_recipient_rcpt_fault_only_refuses_that_recipient(sink: MailSink) -> None:
    sink.add_fault(Fault("rcpt", "reply", "550 5.1.1 No such user", recipient=BOB, times=None))
    smtp = client(sink)
    async with smtp:
        errors, _ = await smtp.sendmail(SENDER, [ALICE, BOB], make_message())
        await smtp.sendmail(SENDER, [ALICE], make_message())
    assert list(errors) == [BOB]
    assert errors[BOB].code == 550
    assert [message.rcpt_tos for message in sink.messages] == [(ALICE,), (ALICE,)]


async def test_per_recipient_dot_fault_only_hits_transactions_with_that_recipient(sink: MailSink) -> None:
    sink.add_fault(Fault("dot", "reply", "452 4.2.2 Mailbox full", recipient=BOB))
    smtp = client(sink)
    async with smtp:
        await smtp.sendmail(SENDER, [ALICE], make_message("to-alice"))
        with pytest.raises(aiosmtplib.SMTPDataError, match="Mailbox full"):
            await smtp.sendmail(SENDER, [BOB], make_message("to-bob", to=BOB))
        await smtp.sendmail(SENDER, [BOB], make_message("to-bob-again", to=BOB))
    assert [message.rcpt_tos for message in sink.messages] == [(ALICE,), (BOB,)]


@pytest.mark.parametrize(
    ("phase", "reply"),
    [("rcpt", "550 5.1.1 No such user"), ("data", "451 4.3.0 Not now"), ("dot", "451 4.3.0 Try later")],
)
def test_rset_after_an_error_lets_the_same_connection_send_the_next_message(
    sink: MailSink, phase: str, reply: str
) -> None:
    sink.add_fault(Fault(phase, "reply", reply))
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        smtp.ehlo()
        assert smtp.mail(SENDER)[0] == 250
        code, _ = smtp.rcpt(ALICE)
        if phase != "rcpt":
            assert code == 250
            code, _ = smtp.data(make_message("lost")) if phase == "dot" else smtp.docmd("DATA")
        assert code == int(reply[:3])
        assert smtp.rset()[0] == 250
        smtp.sendmail(SENDER, [BOB], make_message("next", to=BOB))
    [received] = sink.messages
    assert received.rcpt_tos == (BOB,)


# -- dropped connections -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["connect", "mail", "rcpt", "data"])
def test_drop_fault_disconnects_without_a_reply_and_stores_nothing(sink: MailSink, phase: str) -> None:
    sink.add_fault(Fault(phase, "drop"))
    with pytest.raises(smtplib.SMTPServerDisconnected), smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        smtp.sendmail(SENDER, [ALICE], make_message())
    assert sink.messages == []


async def test_drop_after_dot_stores_the_message_but_the_client_sees_a_disconnect(sink: MailSink) -> None:
    sink.add_fault(Fault("dot", "drop"))
    smtp = client(sink)
    await smtp.connect()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await smtp.sendmail(SENDER, [ALICE], make_message("ambiguous"))
    assert not smtp.is_connected
    [stored] = sink.messages
    assert b"Subject: ambiguous" in stored.data


# -- slow server -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["connect", "mail", "rcpt", "data"])
async def test_delay_fault_makes_a_short_timeout_client_time_out(sink: MailSink, phase: str) -> None:
    sink.add_fault(Fault(phase, "delay", seconds=1.0))
    smtp = client(sink, timeout=0.1)
    if phase == "connect":
        with pytest.raises(aiosmtplib.SMTPTimeoutError):
            await smtp.connect()
    else:
        await smtp.connect()
        with pytest.raises(aiosmtplib.SMTPTimeoutError):
            await smtp.sendmail(SENDER, [ALICE], make_message())
        smtp.close()


async def test_delay_after_dot_times_out_the_client_and_stores_nothing(sink: MailSink) -> None:
    sink.add_fault(Fault("dot", "delay", seconds=0.4))
    smtp = client(sink, timeout=0.1)
    await smtp.connect()
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        await smtp.sendmail(SENDER, [ALICE], make_message())
    smtp.close()
    await asyncio.sleep(0.5)  # past the server's delay: the abandoned transaction must not have been stored
    assert sink.messages == []


async def test_delay_fault_then_answers_normally(sink: MailSink) -> None:
    sink.add_fault(Fault("rcpt", "delay", seconds=0.15))
    smtp = client(sink)
    async with smtp:
        started = time.monotonic()
        await smtp.sendmail(SENDER, [ALICE], make_message())
        assert time.monotonic() - started >= 0.15
    assert len(sink.messages) == 1


# -- AUTH --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["auth_login", "auth_plain"])
async def test_auth_accepts_the_right_credentials(mechanism: str) -> None:
    async with MailSink(auth=("newsletter", "s3cret")) as sink:
        smtp = client(sink)
        async with smtp:
            await smtp.ehlo()
            response = await getattr(smtp, mechanism)("newsletter", "s3cret")
            assert response.code == 235
            await smtp.sendmail(SENDER, [ALICE], make_message())
    assert sink.authenticated_users == ["newsletter"]
    assert len(sink.messages) == 1


@pytest.mark.parametrize("mechanism", ["auth_login", "auth_plain"])
async def test_auth_rejects_wrong_credentials(mechanism: str) -> None:
    async with MailSink(auth=("newsletter", "s3cret")) as sink:
        smtp = client(sink)
        async with smtp:
            await smtp.ehlo()
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as raised:
                await getattr(smtp, mechanism)("newsletter", "wrong")
    assert raised.value.code == 535
    assert sink.authenticated_users == []


async def test_auth_is_required_when_configured() -> None:
    async with MailSink(auth=("newsletter", "s3cret")) as sink:
        smtp = client(sink)
        async with smtp:
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as raised:
                await smtp.sendmail(SENDER, [ALICE], make_message())
    assert raised.value.code == 530
    assert sink.messages == []


async def test_without_configured_auth_any_login_is_accepted_and_none_is_required(sink: MailSink) -> None:
    smtp = aiosmtplib.SMTP(
        hostname=sink.host, port=sink.port, username="anyone", password="anything", start_tls=False, timeout=5
    )
    async with smtp:
        await smtp.sendmail(SENDER, [ALICE], make_message())
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as plain:
        plain.sendmail(SENDER, [BOB], make_message(to=BOB))
    assert sink.authenticated_users == ["anyone"]
    assert len(sink.messages) == 2


# -- fault validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"phase": "helo", "action": "drop"}, "Fault phase 'helo' is not one of connect, mail, rcpt, data, dot"),
        ({"phase": "mail", "action": "explode"}, "Fault action 'explode' is not one of reply, drop, delay"),
        ({"phase": "mail", "action": "reply", "reply": "try later"}, "must start with an SMTP code"),
        ({"phase": "mail", "action": "drop", "recipient": ALICE}, "before any recipient is known"),
        ({"phase": "rcpt", "action": "drop", "times": 0}, "Fault times must be None"),
    ],
)
def test_fault_rejects_settings_that_could_never_fire(kwargs: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Fault(**kwargs)  # type: ignore[arg-type]
