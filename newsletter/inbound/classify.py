"""The one classifier of mail that comes back: bytes in, a ``Verdict`` out. Pure: no database, no secrets.

What is tried, in order, and why that order:

1. RFC 5965 ARF (``multipart/report; report-type=feedback-report``): a feedback loop's spam complaint.
2. RFC 3464 DSN (a ``message/delivery-status`` part): ``Action: failed`` with a 5.x.x status is a hard
   bounce (except 5.2.2, mailbox full, which may clear), with 4.x.x a soft bounce (a relay gave up on a
   temporary refusal); ``Action: delayed`` is only a warning.
3. Older, non-standard bounces, through flufl.bounce's detectors, but only for mail that says it is a
   bounce (a mailer-daemon sender or a bounce-like subject): the heuristics would otherwise fire on a
   reader's reply that quotes one. Bounces also carry ``Auto-Submitted``, so this comes before step 4.
4. Auto-replies (RFC 3834 ``Auto-Submitted``, vacation and out-of-office markers): ignored.
5. Mail to the unsubscribe address: the signed token is taken from the local part (``unsubscribe+TOKEN``)
   or the subject (what List-Unsubscribe's mailto puts there); the caller verifies it.

Anything else is ``other`` and changes nothing. Input that cannot be read as a message at all (no header,
or a detector that breaks on it) is ``unparseable``: the caller keeps it in quarantine.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.policy
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses
from typing import Literal

from flufl.bounce import all_failures

from newsletter.delivery.verp import token_in

Kind = Literal["hard-bounce", "soft-bounce", "delay", "complaint", "unsubscribe", "auto-reply", "other",
               "unparseable"]

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon|mdaemon|bounces?|nobody)@", re.I)
_DAEMON_NAME = re.compile(r"mail delivery|delivery subsystem|mailer.daemon|postmaster|delivery system", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status|failure|failed|notification|problem)|returned mail|failure notice"
    r"|non.?delivery|could not be delivered|mail delivery|delivery has failed|rejected|bounce|unzustellbar"
    r"|nicht zustellbar|permanent (error|failure)|message (not delivered|failure)|non recens|inconnu|user unknown"
    r"|unknown user|no such user",
    re.I,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesend|abwesenheit|absence|"
    r"vacation|on leave|away from|r[ée]ponse automatique|respuesta autom)", re.I,
)
MAX_HEADER_CHARS = 2_000
"""Characters of a header field kept (``parse``): decoding or parsing a 2 MB one cost 25 to 50 s of CPU."""
MAX_TOKENS = 10
"""Tokens taken from one message (each is verified, an HMAC): more are not looked at."""
_UNSUBSCRIBE_TOKEN = re.compile(r"\b[A-Za-z0-9]{1,16}\.[0-9]{1,12}\.[A-Za-z0-9_-]{10,}")


def _one_line(record: logging.LogRecord) -> bool:
    """flufl.bounce logs a detector that breaks on a message with its traceback; one line is enough."""
    record.exc_info, record.exc_text = None, None
    return True


logging.getLogger("flufl.bounce").addFilter(_one_line)


@dataclass(frozen=True)
class InboundAddresses:
    """The addresses of the bounce domain (``[inbound]``): what the classifier recognises as ours."""

    domain: str
    bounce_local_part: str = "bounces"
    unsubscribe_local_part: str = "unsubscribe"


@dataclass(frozen=True)
class Failure:
    """One refused recipient, as the report tells it."""

    recipient: str | None
    status: str
    diagnostic: str
    permanent: bool


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    detector: str
    """What decided: ``arf``, ``dsn``, ``flufl``, ``headers``, ``address``, ``none`` or ``parse``."""
    failures: tuple[Failure, ...] = ()
    original_message_id: str | None = None
    """Message-ID of our message that the report is about (from the returned message or its headers)."""
    verp_tokens: tuple[str, ...] = ()
    """Tokens of ``bounces+TOKEN@domain`` addresses: the envelope recipients, else the returned headers."""
    unsubscribe_tokens: tuple[str, ...] = ()
    complaint_recipients: tuple[str, ...] = ()
    message_id: str | None = None
    """Message-ID of the incoming message itself (what makes a redelivery recognisable)."""
    subject: str = ""
    reason: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def parse(raw: bytes) -> Message | None:
    """The message, or None when the bytes are not a message at all (no header line).

    Every header field of every part is cut to ``MAX_HEADER_CHARS``: flufl.bounce's detectors parse the
    addresses of ``From`` with the stdlib's quadratic-ish parser (a 2 MB one cost ~50 s of CPU), and no
    field of a real bounce that matters here is that long.
    """
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    if not len(message.keys()):
        return None
    for part in message.walk():
        fields: list[tuple[str, object]] = part._headers  # type: ignore[attr-defined]  # compat32's own list
        if any(isinstance(value, str) and len(value) > MAX_HEADER_CHARS for _, value in fields):
            part._headers = [(name, value[:MAX_HEADER_CHARS] if isinstance(value, str) else value)  # type: ignore[attr-defined]
                             for name, value in fields]
    return message


def _text(value: object) -> str:
    return " ".join(str(value or "").split())


def _first_address(value: str) -> str | None:
    """``rfc822; user@example.org`` (a DSN field) or ``<user@example.org>`` → ``user@example.org``."""
    _, _, address = value.rpartition(";") if ";" in value else ("", "", value)
    address = address.strip().strip("<>").strip()
    return address or None


def _returned_headers(message: Message) -> list[Message]:
    """The headers of our message as the report returns them (message/rfc822 or text/rfc822-headers)."""
    found: list[Message] = []
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                found.append(payload[0])
        elif content_type in ("text/rfc822-headers", "text/global-headers"):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                found.append(HeaderParser().parsestr(payload.decode("utf-8", "replace")))
    return found


def _original_message_id(returned: Sequence[Message]) -> str | None:
    for headers in returned:
        value = _text(headers.get("Message-ID"))
        if value:
            return value
    return None


def _verp_tokens(recipients: Iterable[str], returned: Sequence[Message], addresses: InboundAddresses) -> list[str]:
    """Tokens from the envelope recipients; else from the Return-Path of the returned message (a feedback
    loop keeps it, and an IMAP mailbox has lost the envelope)."""
    candidates = list(recipients)
    candidates += [str(h.get("Return-Path") or "") for h in returned]
    tokens = []
    for candidate in candidates:
        token = token_in(candidate[:MAX_HEADER_CHARS], local_part=addresses.bounce_local_part, domain=addresses.domain)
        if token and token not in tokens:
            tokens.append(token)
    return tokens[:MAX_TOKENS]


def _dsn_failures(message: Message) -> tuple[list[Failure], list[Failure]] | None:
    """(failed, delayed) recipients of a DSN; None when the message has no delivery-status part."""
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
        failed: list[Failure] = []
        delayed: list[Failure] = []
        for block in blocks[1:] if len(blocks) > 1 else blocks:
            action = _text(block.get("Action")).lower()
            status_match = _STATUS.search(_text(block.get("Status")))
            status = status_match.group(0) if status_match else ""
            recipient = _first_address(_text(block.get("Final-Recipient") or block.get("Original-Recipient")))
            diagnostic = _text(block.get("Diagnostic-Code"))[:500]
            if action.startswith("failed"):
                permanent = status.startswith("5") and status != "5.2.2"
                failed.append(Failure(recipient, status or "5.0.0", diagnostic, permanent))
            elif action.startswith("delayed"):
                delayed.append(Failure(recipient, status or "4.0.0", diagnostic, False))
        return failed, delayed
    return None


def _header(message: Message, name: str) -> str:
    return str(message.get(name) or "")[:MAX_HEADER_CHARS]


def _is_daemon(message: Message) -> bool:
    sender = _text(_header(message, "From"))
    pairs = getaddresses([sender])
    address = pairs[0][1] if pairs else ""
    return bool(_DAEMON.match(address) or _DAEMON_NAME.search(sender))


def _is_auto_reply(message: Message) -> bool:
    auto = _text(message.get("Auto-Submitted")).lower()
    if auto and not auto.startswith("no"):
        return True
    if message.get("X-Autoreply") or message.get("X-Autorespond") or message.get("X-Auto-Response-Suppress"):
        return True
    if _text(message.get("Precedence")).lower() in ("auto_reply", "auto-reply"):
        return True
    return bool(_AUTO_SUBJECT.search(_decoded_subject(message)))


def _decoded_subject(message: Message) -> str:
    raw = message.get("Subject")
    if raw is None:
        return ""
    raw = str(raw)[:MAX_HEADER_CHARS]
    try:
        return _text(str(email.header.make_header(email.header.decode_header(raw))))
    except (LookupError, UnicodeError, ValueError, email.errors.MessageError):  # CharsetError: a bad charset name
        return _text(raw)


def _status_in_text(message: Message) -> tuple[str, str]:
    """Best-effort status code and diagnostic line from the human-readable part of an old-style bounce."""
    for part in message.walk():
        if part.get_content_maintype() != "text" or part.get_content_type() == "text/rfc822-headers":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        for line in payload.decode("utf-8", "replace").splitlines():
            match = _STATUS.search(line) or re.search(r"\b5\d\d\b", line)
            if match:
                return (match.group(0) if "." in match.group(0) else ""), _text(line)[:500]
        break
    return "", ""


def _unsubscribe_tokens(recipients: Sequence[str], subject: str, addresses: InboundAddresses) -> list[str] | None:
    """Tokens of a message to the unsubscribe address; None when it was not sent there."""
    tokens: list[str] = []
    ours = False
    for recipient in recipients:
        local, _, host = recipient.strip().strip("<>").rpartition("@")
        prefix, _, token = local.partition("+")
        if host.lower() == addresses.domain.lower() and prefix.lower() == addresses.unsubscribe_local_part.lower():
            ours = True
            if token:
                tokens.append(token)
    if not ours:
        return None
    return (tokens + [t for t in _UNSUBSCRIBE_TOKEN.findall(subject) if t not in tokens])[:MAX_TOKENS]


def classify(raw: bytes, *, recipients: Sequence[str] = (), addresses: InboundAddresses) -> Verdict:
    """Classify one incoming message. ``recipients``: its envelope recipients (RCPT TO), or for a mailbox
    the addresses its headers say it was delivered to."""
    message = parse(raw)
    if message is None:
        return Verdict(kind="unparseable", detector="parse", reason="no header lines")
    subject = _decoded_subject(message)
    returned = _returned_headers(message)
    common = Verdict(
        kind="other", detector="none", reason="not a bounce, complaint or unsubscribe",
        original_message_id=_original_message_id(returned),
        verp_tokens=tuple(_verp_tokens(recipients, returned, addresses)),
        message_id=_text(_header(message, "Message-ID")) or None,
        subject=subject[:300],
    )
    report_type = message.get_param("report-type")
    if message.get_content_type() == "multipart/report" and str(report_type or "").lower() == "feedback-report":
        return _complaint(message, common)
    dsn = _dsn_failures(message)
    if dsn is not None:
        failed, delayed = dsn
        if failed:
            kind: Kind = "hard-bounce" if any(f.permanent for f in failed) else "soft-bounce"
            return replace(common, kind=kind, detector="dsn", failures=tuple(failed),
                           reason="delivery status: failed")
        if delayed:
            return replace(common, kind="delay", detector="dsn", failures=tuple(delayed),
                           reason="delivery status: delayed")
    if _is_daemon(message) or _BOUNCE_SUBJECT.search(subject):
        try:
            temporary, permanent = all_failures(message)
        except (LookupError, ValueError, TypeError, AttributeError, UnicodeError) as error:
            return replace(common, kind="unparseable", detector="flufl", reason=f"detector error: {error!r}"[:300])
        if permanent or temporary:
            status, diagnostic = _status_in_text(message)
            failures = [Failure(r.decode("utf-8", "replace"), status or "5.0.0", diagnostic, True) for r in permanent]
            failures += [Failure(r.decode("utf-8", "replace"), status or "4.0.0", diagnostic, False)
                         for r in temporary]
            return replace(common, kind="hard-bounce" if permanent else "delay", detector="flufl",
                           failures=tuple(failures), reason="non-standard bounce")
    if _is_auto_reply(message):
        return replace(common, kind="auto-reply", detector="headers", reason="auto-reply")
    tokens = _unsubscribe_tokens(recipients, subject, addresses)
    if tokens is not None:
        return replace(common, kind="unsubscribe", detector="address", unsubscribe_tokens=tuple(tokens),
                       reason="mail to the unsubscribe address")
    return common


def _complaint(message: Message, common: Verdict) -> Verdict:
    recipients: list[str] = []
    feedback_type = ""
    for part in message.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        payload = part.get_payload()
        fields = payload[0] if isinstance(payload, list) and payload and isinstance(payload[0], Message) else None
        if fields is None and isinstance(payload, str):
            fields = HeaderParser().parsestr(payload)
        if fields is None:
            continue
        feedback_type = _text(fields.get("Feedback-Type")).lower()
        for value in fields.get_all("Original-Rcpt-To") or []:
            address = _first_address(_text(value))
            if address:
                recipients.append(address)
    if feedback_type and feedback_type not in ("abuse", "fraud", "virus", "other"):
        return replace(common, kind="other", detector="arf", reason=f"feedback report of type {feedback_type!r}")
    return replace(common, kind="complaint", detector="arf", complaint_recipients=tuple(recipients),
                   reason=f"feedback report ({feedback_type or 'abuse'})")
