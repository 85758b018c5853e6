"""Delivering one edition's ledger: claim due rows in batches, send them through the pool, record outcomes.

Any number of these loops may run at once (one per process and core, or one per worker machine): the
ledger's atomic claims split the work. ``deliver`` runs one (``delivery.sender.EditionSender``: its stop and
halt rules); ``deliver_edition`` and ``deliver_rows`` run it with the configured transport and messages.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Unpack

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.clock import Clock, utcnow
from newsletter.config import DeliverySettings, Settings
from newsletter.delivery.envelope import verp_sender
from newsletter.delivery.ledger_writer import one_line
from newsletter.delivery.outgoing import MessageFactory
from newsletter.delivery.pool import RunStats
from newsletter.delivery.sender import EditionSender, MessageBuilder, SendOptions
from newsletter.errors import ConfigError
from newsletter.records.editions import Edition, Prepared
from newsletter.rendering.links import signer_from_settings
from newsletter.storage.ledger import Ledger
from newsletter.storage.webhook_events import edition_sent_if_done
from subscribers.store import SubscriberStore

if TYPE_CHECKING:  # a sending child (`delivery.child`) imports this module: no chat clients, no dkimpy unless signing
    from newsletter.delivery.channels.post import ChannelResult

log = logging.getLogger(__name__)

async def deliver(
    engine: Engine,
    *,
    settings: DeliverySettings,
    sender: str,
    edition_id: int,
    build_message: MessageBuilder,
    **options: Unpack[SendOptions],
) -> RunStats:
    """Send every due row of the edition this process can claim; returns what this process did
    (``EditionSender``; ``SendOptions`` lists the options)."""
    return await EditionSender(engine, settings=settings, sender=sender, edition_id=edition_id,
                               build_message=build_message, options=options).run()


# --- one `send`: prepare the ledger, then deliver it (in this process or in several) ----------------------


@dataclass
class SendReport:
    """What `newsletter send` prints at the end."""

    prepared: Prepared
    stats: RunStats
    counts: dict[str, int]
    ambiguous: list[dict[str, Any]]
    live_claims: int
    workers: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per sending process or worker (host:pid): its rows by state."""
    claim_holders: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    """Claims this run could not take, per holder: how many and until when their lease runs."""
    enqueued: int | None = None
    """With `--workers`: rows handed to the workers (None when this process sent)."""
    requeued: int = 0
    """With `--workers`: rows enqueued again because their task was gone (a worker died)."""
    waited: bool = True
    """With `--workers`: False when `send` stopped following the workers before every row was tried
    (`--no-wait`, or a signal); the counts are those of that moment and the workers go on."""
    channels: list[ChannelResult] = field(default_factory=list)
    """What this run did with each chat channel's row of the edition (docs/channels.md)."""


def smtp_password(settings: Settings) -> str | None:
    delivery = settings.delivery
    if not delivery.username:
        return None
    password = os.environ.get(delivery.password_env)
    if password is None:
        raise ConfigError(
            f"delivery.username is set but the environment variable {delivery.password_env} "
            "(delivery.password_env) holding the SMTP password is not"
        )
    return password


def message_factory(settings: Settings, engine: Engine, edition: Edition, *, clock: Clock) -> MessageFactory:
    dkim = None
    if settings.delivery.dkim:
        from newsletter.delivery.dkim import DkimSigner  # dkimpy and its DNS resolver: only when signing

        dkim = DkimSigner(settings.delivery.dkim)
    return MessageFactory(settings=settings, ledger=Ledger(engine), signer=signer_from_settings(settings),
                          edition=edition, clock=clock, dkim=dkim)


async def deliver_edition(
    settings: Settings,
    engine: Engine,
    edition: Edition,
    *,
    clock: Clock = utcnow,
    stop: asyncio.Event | None = None,
    limit: int | None = None,
    on_progress: Callable[[RunStats], None] | None = None,
    only: Collection[int] | None = None,
    factory: MessageFactory | None = None,
) -> RunStats:
    """Deliver the edition's ledger from this process, with the configured transport and message factory."""
    factory = factory or message_factory(settings, engine, edition, clock=clock)
    subscribers = SubscriberStore(engine)

    def bounce(subscriber_id: int, code: int, reply: str) -> None:
        if subscribers.mark_bounced(subscriber_id, now=clock()):
            log.warning("subscriber %s marked bounced: %s", subscriber_id, reply)

    stats = await deliver(
        engine,
        settings=settings.delivery,
        sender=settings.newsletter.from_address,
        envelope_sender=verp_sender(settings),
        edition_id=edition.id,
        build_message=factory.build,
        active_subscribers=subscribers.active_ids(),
        on_bounce=bounce,
        clock=clock,
        stop=stop,
        limit=limit,
        password=smtp_password(settings),
        on_progress=on_progress,
        only=only,
        wire_ready=True,
    )
    note_edition_sent(engine, edition, now=clock())
    return stats


def note_edition_sent(engine: Engine, edition: Edition, *, now: datetime) -> None:
    """The ``edition.sent`` webhook event once the edition's ledger is done; a database failure here is logged,
    never the send's failure (the event is then recorded by the next run that finds the ledger done)."""
    try:
        edition_sent_if_done(engine, edition, now=now)
    except SQLAlchemyError as error:
        log.error("edition.sent event of %s not recorded: %s", edition.slug, one_line(error))


async def deliver_rows(
    settings: Settings,
    engine: Engine,
    edition: Edition,
    ids: Collection[int],
    *,
    factory: MessageFactory | None = None,
    clock: Clock = utcnow,
    stop: asyncio.Event | None = None,
) -> RunStats:
    """Deliver exactly these ledger rows (a worker's batch) with the same pool and ledger rules as `send`.

    Only rows still pending, or deferred and due, are claimed (atomically): delivering the same batch again
    (a redelivered task) sends nothing twice. Rows of the batch that another claim still holds are left to
    it; ``Ledger.held_until`` tells the caller when that claim lapses.
    """
    return await deliver_edition(settings, engine, edition, clock=clock, stop=stop, only=ids, factory=factory)


def report(engine: Engine, prepared: Prepared, stats: RunStats, *, now: datetime) -> SendReport:
    ledger = Ledger(engine)
    edition_id = prepared.edition.id
    note_edition_sent(engine, prepared.edition, now=now)  # also when Celery workers delivered it
    return SendReport(
        prepared=prepared,
        stats=stats,
        counts=ledger.counts(edition_id) if not prepared.edition.is_empty else {},
        ambiguous=[
            {"email": r["email"], "message": r["last_message"], "message_id": r["message_id"]}
            for r in ledger.rows(edition_id, state="ambiguous")
        ],
        live_claims=ledger.live_claims(edition_id, now=now),
        claim_holders=ledger.live_claim_holders(edition_id, now=now),
        workers=ledger.by_worker(edition_id) if not prepared.edition.is_empty else {},
    )
