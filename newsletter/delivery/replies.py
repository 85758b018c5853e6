"""What an SMTP refusal means for the reader, the run and the ledger row (RFC 3463 enhanced status codes).

A relay that refuses to relay, a blocklist, a wrong password or a full disk answers with the same bare
``550`` or ``554`` as a mailbox that does not exist. Reading the bare code alone once marked a whole list
bounced (and suppressed for good) because the relay was misconfigured. The enhanced status code
(``5.1.1``, ``5.7.1``) says whose fault a refusal is, so it decides; the bare code is only a fallback for
relays that send none. The table is documented in ``docs/delivery.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Action = Literal["bounce", "soft_bounce", "defer", "halt", "fail"]
"""``bounce``: the address is bad, the reader is marked bounced and the row failed.
``soft_bounce``: the mailbox is full, counted and deferred. ``defer``: try later with backoff.
``halt``: not the reader's fault (policy, relaying denied, blocklist, authentication, the relay's system
or network), so the run stops and the row stays retriable. ``fail``: this message cannot be sent as is."""

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
_SESSION_PHASES = frozenset({"connect", "mail"})
"""A refusal before any recipient was named is about the session (greeting, AUTH, TLS, MAIL FROM)."""


@dataclass(frozen=True)
class Verdict:
    action: Action
    status: tuple[int, int, int] | None
    """The enhanced status code found (class, subject, detail), or None if the reply had none."""

    @property
    def signature(self) -> str:
        """What makes two refusals "the same" for the circuit breaker."""
        return ".".join(map(str, self.status)) if self.status else ""


def enhanced_status(message: str, code: int) -> tuple[int, int, int] | None:
    """The RFC 3463 code at the start of a reply's text, if its class agrees with the basic code."""
    match = _ENHANCED.match(message)
    if match is None:
        return None
    status = (int(match[1]), int(match[2]), int(match[3]))
    return status if status[0] == code // 100 else None


def classify(code: int, message: str, *, phase: str) -> Verdict:
    """The action for a refusal ``code`` ``message`` received in ``phase`` (connect, mail, rcpt or data)."""
    status = enhanced_status(message, code)
    if phase in _SESSION_PHASES:
        return Verdict("halt" if code >= 500 else "defer", status)
    if status is None:
        return Verdict(_bare(code, phase), None)
    klass, subject, detail = status
    if (subject, detail) == (2, 2):
        return Verdict("soft_bounce", status)
    if klass == 4:
        return Verdict("defer", status)
    if subject == 1 or (subject, detail) == (2, 1):
        return Verdict("bounce", status)
    if subject in (3, 4, 7):
        return Verdict("halt", status)
    return Verdict("fail", status)


def _bare(code: int, phase: str) -> Action:
    if 400 <= code < 500:
        return "defer"
    if code == 552 and phase == "rcpt":
        return "soft_bounce"  # RFC 5321: "exceeded storage allocation"
    if code in (550, 551, 553) and phase == "rcpt":
        return "bounce"
    return "fail"
