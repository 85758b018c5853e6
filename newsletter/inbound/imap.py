"""The IMAP door: poll a hosted mailbox that bounces land in, for operators who run no listener.

Each unseen message is fetched without marking it (``BODY.PEEK[]``), handed to the processor with the rest of
its fetched chunk (one transaction a chunk, ``handle_batch``), and flagged ``\\Seen`` only once its effect is
committed; a message whose processing failed stays unseen and is tried
again on the next poll (and a message processed twice, because the flag was lost, acts once: the processor
knows it). The mailbox has lost the envelope, so the recipients are read from the delivery headers
(Delivered-To, X-Original-To, then To and Cc): a VERP token survives there.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import logging
import os
import ssl
import time
from dataclasses import dataclass
from email.utils import getaddresses

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy.exc import SQLAlchemyError

from newsletter.config import InboundSettings
from newsletter.errors import ConfigError, InboundError, NewsletterError
from newsletter.inbound.process import InboundProcessor, Incoming, Outcome

log = logging.getLogger("newsletter.inbound")
_FETCH_CHUNK = 50
_SEEN = b"\\Seen"


@dataclass(frozen=True)
class PollReport:
    processed: int
    deferred: int


def imap_password(settings: InboundSettings) -> str:
    password = os.environ.get(settings.imap_password_env, "")
    if not password:
        raise ConfigError(f"no IMAP password: set the environment variable {settings.imap_password_env}",
                          key="inbound.imap_password_env")
    return password


def header_recipients(raw: bytes) -> list[str]:
    """The addresses a stored message was delivered to, most specific first."""
    headers = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0],
                                       policy=email.policy.compat32)
    found: list[str] = []
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc"):
        for _, address in getaddresses([str(v) for v in headers.get_all(name) or []]):
            if address and address not in found:
                found.append(address)
    return found


class ImapPoller:
    def __init__(self, processor: InboundProcessor, settings: InboundSettings, *, password: str,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if not settings.imap_host:
            raise ConfigError("no mailbox to poll: set [inbound] imap_host", key="inbound.imap_host")
        self.processor = processor
        self.settings = settings
        self.password = password
        self.ssl_context = ssl_context

    def _connect(self) -> IMAPClient:
        s = self.settings
        try:
            client = IMAPClient(s.imap_host, port=s.imap_port, ssl=s.imap_tls, ssl_context=self.ssl_context,
                                timeout=30)
            client.login(s.imap_username, self.password)
            client.select_folder(s.imap_folder)
        except (IMAPClientError, OSError) as error:
            raise InboundError(f"IMAP {s.imap_host}:{s.imap_port} ({s.imap_folder}): {error}") from None
        return client

    def poll_once(self) -> PollReport:
        """Process every unseen message once; returns how many were processed and how many left unseen."""
        client = self._connect()
        processed = deferred = 0
        try:
            uids = list(client.search(["UNSEEN"]))
            for start in range(0, len(uids), _FETCH_CHUNK):
                chunk = uids[start:start + _FETCH_CHUNK]
                fetched: list[tuple[int, Incoming]] = []
                for uid, data in client.fetch(chunk, ["BODY.PEEK[]"]).items():
                    raw = data.get(b"BODY[]")
                    if not isinstance(raw, bytes):
                        deferred += 1
                        continue
                    fetched.append((uid, Incoming(raw=raw, recipients=tuple(header_recipients(raw)), door="imap")))
                handled, left = self._handle(fetched)
                deferred += left
                for uid, outcome in handled:
                    client.add_flags([uid], [_SEEN])
                    log.info("IMAP message %s: %s → %s", uid, outcome.kind, outcome.outcome)
                    processed += 1
        except (IMAPClientError, OSError) as error:
            raise InboundError(f"IMAP {self.settings.imap_host}: {error}") from None
        finally:
            with contextlib.suppress(IMAPClientError, OSError):
                client.logout()
        return PollReport(processed=processed, deferred=deferred)

    def _handle(self, fetched: list[tuple[int, Incoming]]) -> tuple[list[tuple[int, Outcome]], int]:
        """One fetched chunk in one transaction (``handle_batch``): the (uid, outcome) pairs committed, and how
        many were not. When the batch fails, each message is tried alone, so only one that breaks it stays
        unseen."""
        if not fetched:
            return [], 0
        try:
            outcomes = self.processor.handle_batch([message for _, message in fetched])
        except (SQLAlchemyError, NewsletterError) as error:
            if len(fetched) == 1:
                log.error("IMAP message %s not stored, left unseen: %s", fetched[0][0], error)
                return [], 1
            handled: list[tuple[int, Outcome]] = []
            left = 0
            for one in fetched:
                one_handled, one_left = self._handle([one])
                handled += one_handled
                left += one_left
            return handled, left
        return [(uid, outcome) for (uid, _), outcome in zip(fetched, outcomes, strict=True)], 0

    def run_forever(self) -> None:
        """Poll every imap_interval_seconds; a failed poll is logged and tried again at the next one."""
        while True:
            try:
                report = self.poll_once()
                if report.processed or report.deferred:
                    log.info("IMAP poll: %d processed, %d deferred", report.processed, report.deferred)
            except InboundError as error:
                log.error("%s", error)
            time.sleep(self.settings.imap_interval_seconds)
