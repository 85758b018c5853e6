"""Where the newsletter meets the subscriber domain: the store with this config's topics, confirmation
emails, and the operator's commands (add, remove, import) that need both.

A confirmation email is one message, not a campaign: it is built here with the stdlib ``email`` package and
handed to ``delivery.send_single`` over the configured SMTP relay. It contains no text the requester typed
except the address itself (no name, no topics), so a bot cannot use the form to mail its words to a
stranger; and at most ``CONFIRMATIONS_PER_ADDRESS`` go to one address per ``CONFIRMATION_WINDOW``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import IO

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.delivery.sending import smtp_password
from newsletter.delivery.transports import send_single
from newsletter.errors import NewsletterError
from newsletter.records.text import collapse_whitespace
from newsletter.rendering.templating import RenderEnvironment
from newsletter.storage.erasure import forget_subscriber_rows
from subscribers.csvio import import_csv
from subscribers.csvtext import delimiter_name
from subscribers.models import STATUSES, Frequency, ImportReport, Source, Subscriber
from subscribers.rate_limit_store import CONFIRMATION_WINDOW, CONFIRMATIONS_PER_ADDRESS, RateLimits
from subscribers.store import SubscriberStore
from subscribers.tokens import MAX_AGE, TokenSigner

log = logging.getLogger(__name__)

CONFIRMATION_TEMPLATE = "web/confirmation_email.txt.j2"


def subscriber_store(settings: Settings, engine: Engine) -> SubscriberStore:
    """The subscriber store that knows this newsletter's topic slugs (unknown ones are errors)."""
    return SubscriberStore(engine, topics=[t.slug for t in settings.topics])


def confirm_url(settings: Settings, signer: TokenSigner, subscriber_id: int) -> str:
    return f"{settings.newsletter.base_url.rstrip('/')}/confirm/{signer.sign('confirm', subscriber_id)}"


def _recipient_address(email: str) -> Address:
    username, _, domain = email.rpartition("@")
    return Address(username=username, domain=domain)


def confirmation_message(
    settings: Settings, *, email: str, url: str, environment: RenderEnvironment, now: datetime
) -> bytes:
    """The confirmation email (plain text, UTF-8): operator text, the address and the link — nothing else."""
    newsletter = settings.newsletter
    max_age = MAX_AGE["confirm"]
    days = max_age.days if max_age else 0
    text = environment.render(CONFIRMATION_TEMPLATE, {
        "newsletter": {"name": newsletter.name, "base_url": newsletter.base_url},
        "email": email,
        "confirm_url": url,
        "valid_days": days,
        "postal_address": collapse_whitespace(settings.email.postal_address),
    })
    message = EmailMessage(policy=SMTP)
    from_username, _, from_domain = newsletter.from_address.rpartition("@")
    message["From"] = Address(display_name=collapse_whitespace(newsletter.name), username=from_username,
                              domain=from_domain)
    message["To"] = _recipient_address(email)
    message["Subject"] = f"Confirm your subscription to {collapse_whitespace(newsletter.name)}"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=from_domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to this
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    return message.as_bytes()


async def send_confirmation(
    settings: Settings,
    engine: Engine,
    signer: TokenSigner,
    subscriber: Subscriber,
    *,
    environment: RenderEnvironment,
    now: datetime,
) -> bool:
    """Send one confirmation email unless the address already had its quota this week. True if sent.

    A failure to send is logged, not raised: the request was stored either way and the person can ask again.
    """
    allowed = await asyncio.to_thread(RateLimits(engine).allow_confirmation, subscriber.email, now=now)
    if not allowed:
        log.info("confirmation to subscriber %s not sent: %d already sent within %s", subscriber.id,
                 CONFIRMATIONS_PER_ADDRESS, CONFIRMATION_WINDOW)
        return False
    message = confirmation_message(settings, email=subscriber.email, url=confirm_url(settings, signer, subscriber.id),
                                   environment=environment, now=now)
    try:
        where = await send_single(settings.delivery, sender=settings.newsletter.from_address,
                                  recipient=subscriber.email, message=message, password=smtp_password(settings))
    except NewsletterError as error:
        log.error("confirmation to subscriber %s failed: %s", subscriber.id, error)
        return False
    log.info("confirmation to subscriber %s sent via %s", subscriber.id, where)
    return True


def send_confirmations(
    settings: Settings, engine: Engine, signer: TokenSigner, subscribers: Sequence[Subscriber], *, now: datetime
) -> int:
    """Confirmation emails for subscribers an operator added as pending; returns how many were sent."""
    if not subscribers:
        return 0
    environment = RenderEnvironment(settings)

    async def run() -> int:
        sent = 0
        for subscriber in subscribers:
            sent += await send_confirmation(settings, engine, signer, subscriber, environment=environment, now=now)
        return sent

    return asyncio.run(run())


# --- operator commands ----------------------------------------------------------------------------------


def add_subscriber(
    settings: Settings,
    engine: Engine,
    email: str,
    *,
    now: datetime,
    name: str | None,
    topics: Sequence[str] | None,
    frequency: Frequency | None,
    pending: bool,
    force: bool,
    source: Source = "cli",
) -> tuple[str, Subscriber]:
    """Add or update one subscriber the operator vouches for (active, or pending to be confirmed); ``source``
    records how the operator did it (``cli``, ``api``)."""
    store = subscriber_store(settings, engine)
    with engine.begin() as connection:
        return store.put(connection, email, now=now, name=name, topics=topics, frequency=frequency, pending=pending,
                         source=source, force=force)


def reader_line(subscriber: Subscriber) -> str:
    """A reader in one line, as `subscribers add` and `remove` and the console print it."""
    topics = ", ".join(subscriber.topics) or "no topics"
    return f"{subscriber.email} ({subscriber.status}; {topics}; {subscriber.frequency})"


@dataclass(frozen=True, kw_only=True)
class Removal:
    subscriber: Subscriber
    changed: bool
    deleted: bool = False
    topic: str | None = None

    def summary(self) -> str:
        """What the removal did, in the words the CLI and the console both print."""
        address = self.subscriber.email
        if self.deleted:
            return f"deleted the personal data of {address}; kept a suppression entry"
        if not self.changed:
            return f"{address}: nothing to change ({reader_line(self.subscriber)})"
        if self.topic and self.subscriber.status != "unsubscribed":
            return f"{address}: removed from {self.topic}; now {reader_line(self.subscriber)}"
        return f"unsubscribed {address}"


def remove_subscriber(
    settings: Settings, engine: Engine, email: str, *, now: datetime, topic: str | None = None, delete: bool = False
) -> Removal:
    """Unsubscribe (from everything, or from one topic), or with ``delete`` erase the personal data and keep
    only the suppression entry (ledger rows of the subscriber are blanked too)."""
    store = subscriber_store(settings, engine)
    subscriber = store.require(email)
    if delete:
        with engine.begin() as connection:  # one transaction: never a subscriber gone but their address kept
            store.delete_personal_data(subscriber.id, now=now, connection=connection)
            forget_subscriber_rows(engine, subscriber.id, connection=connection)
        return Removal(subscriber=subscriber, changed=True, deleted=True)
    changed = store.unsubscribe(subscriber.id, now=now, topic=topic)
    after = store.get(subscriber.id)
    return Removal(subscriber=after or subscriber, changed=changed, topic=topic)


def import_subscribers(
    settings: Settings,
    engine: Engine,
    stream: IO[str] | bytes,
    *,
    now: datetime,
    confirm: bool = False,
    force: bool = False,
    dry_run: bool = False,
    encoding: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """CSV import (``subscribers.csvio``) with this newsletter's topics; see ``send_confirmations`` for --confirm.
    ``progress`` is called with (rows done, rows in all) after each chunk."""
    return import_csv(subscriber_store(settings, engine), stream, now=now, confirm=confirm, force=force,
                      dry_run=dry_run, encoding=encoding, progress=progress)


def subscriber_json(subscriber: Subscriber) -> dict[str, object]:
    """The JSON shape of one subscriber (`subscribers list --json`, `show --json`; docs/cli.md)."""

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": subscriber.id,
        "email": subscriber.email,
        "name": subscriber.name,
        "status": subscriber.status,
        "topics": list(subscriber.topics),
        "frequency": subscriber.frequency,
        "source": subscriber.source,
        "consent_at": when(subscriber.consent_at),
        "consent_ip": subscriber.consent_ip,
        "confirmed_at": when(subscriber.confirmed_at),
        "confirmed_ip": subscriber.confirmed_ip,
        "unsubscribed_at": when(subscriber.unsubscribed_at),
        "created": when(subscriber.created),
        "updated": when(subscriber.updated),
    }


def kept_by_status(report: ImportReport) -> dict[str, list[str]]:
    """Imported readers left not active, by status: what the import kept of their recorded consent."""
    kept: dict[str, list[str]] = {}
    for subscriber in sorted(report.kept, key=lambda s: STATUSES.index(s.status)):
        kept.setdefault(subscriber.status, []).append(subscriber.email)
    return kept


def import_lines(report: ImportReport) -> list[str]:
    """The import's report in words, line by line (`subscribers import` prints it, the console shows it)."""
    prefix = "dry run, nothing changed: " if report.dry_run else ""
    lines = []
    if report.encoding != "utf-8" or report.delimiter != ",":
        lines.append(f"read as {report.encoding}, columns separated by {delimiter_name(report.delimiter)}")
    lines.append(f"{prefix}{report.rows} row{'' if report.rows == 1 else 's'}: {len(report.added)} added, "
                 f"{len(report.updated)} updated, {len(report.unchanged)} unchanged, {len(report.errors)} not imported")
    kept = kept_by_status(report)
    if kept:
        lines.append("kept not active, as recorded: " + ", ".join(f"{len(emails)} {status}"
                                                                  for status, emails in kept.items())
                     + " (they get no email; --force makes an imported row's status win)")
    lines.extend(str(error) for error in report.errors)
    return lines
