"""Post an edition to its chat channels, under the ledger's exactly-once rules; `channels test` and `list`.

Each ``[[channels]]`` entry of the edition's frequency gets one ledger row per edition, claimed and fenced
like an email row (``storage/channels.py``): the ``posting`` phase is committed before the HTTP request, so
a `send` killed mid-post leaves the row ``ambiguous`` and the next `send` does not post it again; a row
whose post never started is posted by the next `send`. A revoked webhook pauses the channel (its reason in
`status` and `channels list`) instead of being retried at every run.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.config.channels import ChannelSettings
from newsletter.delivery.channels.message import ChatMessage, channel_papers, chat_message
from newsletter.delivery.channels.post import ChannelResult, PostOutcome, Service, post, service
from newsletter.delivery.claims import dead_senders
from newsletter.errors import ConfigError
from newsletter.records.editions import Edition
from newsletter.rendering.links import edition_url
from newsletter.storage.channels import ChannelClaim, ChannelLedger, ChannelStatus
from newsletter.storage.editions import EditionStore

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=10)
"""A post is one HTTP request bounded by Apprise's timeouts: a claim older than this belongs to a dead poster."""
MAX_WAIT = timedelta(hours=6)
"""The longest a Retry-After or a backoff holds a row back."""


def find_channel(settings: Settings, name: str) -> ChannelSettings:
    for channel in settings.channels:
        if channel.name == name:
            return channel
    known = ", ".join(c.name for c in settings.channels) or "none"
    raise ConfigError(f"no channel named {name!r}; configured channels: {known}")


def channel_url(channel: ChannelSettings) -> str:
    url = os.environ.get(channel.url_env, "").strip()
    if not url:
        raise ConfigError(f"channel {channel.name!r}: the environment variable {channel.url_env} (url_env) holding "
                          "its Apprise URL is not set")
    return url


def _message(settings: Settings, channel: ChannelSettings, target: Service, edition: Edition) -> ChatMessage:
    return chat_message(name=settings.newsletter.name, edition=edition,
                        papers=channel_papers(edition, channel.topics), count=channel.papers,
                        edition_url=edition_url(settings, edition.slug), body_limit=target.body_limit,
                        title_limit=target.title_limit)


def _backoff(attempts: int) -> timedelta:
    wait: timedelta = timedelta(minutes=2) * 2 ** min(max(0, attempts), 12)
    return min(MAX_WAIT, wait)


def post_edition(settings: Settings, engine: Engine, edition: Edition, *,
                 clock: Callable[[], datetime]) -> list[ChannelResult]:
    """Post the edition to each channel of its frequency whose row is due; one result per such channel."""
    channels = [c for c in settings.channels if c.frequency == edition.frequency]
    if not channels or edition.is_empty:
        return []
    ledger = ChannelLedger(engine, worker=f"{socket.gethostname()}:{os.getpid()}")
    wanted = [c for c in channels if channel_papers(edition, c.topics)]
    ledger.add(edition.id, [c.name for c in wanted], now=clock())
    ledger.release_expired(edition.id, now=clock(), dead_workers=dead_senders(ledger.claim_holders(edition.id)))
    paused = {name: s.paused_reason for name, s in ledger.statuses().items() if s.paused_reason}
    results = []
    for channel in wanted:
        if channel.name in paused:
            results.append(ChannelResult(channel.name, "paused", str(paused[channel.name])))
            continue
        results.append(_post_channel(settings, ledger, channel, edition, clock=clock))
    return results


def post_channels(settings: Settings, engine: Engine, edition: Edition, *,
                  clock: Callable[[], datetime]) -> dict[str, str]:
    """``post_edition`` as channel → state, for a scheduled run's summary."""
    return {r.channel: r.state for r in post_edition(settings, engine, edition, clock=clock)}


def post_due_channels(settings: Settings, engine: Engine, *,
                      clock: Callable[[], datetime]) -> dict[str, dict[str, str]]:
    """Post every edition that has a channel row due (deferred and due, or pending): `serve`'s retry run."""
    editions = EditionStore(engine)
    ledger = ChannelLedger(engine)
    paused = {name for name, s in ledger.statuses().items() if s.paused_reason}
    done = {}
    for edition_id in ledger.editions_due(now=clock(), skip=paused):
        edition = editions.get_by_id(edition_id)
        if edition is not None:
            done[edition.slug] = post_channels(settings, engine, edition, clock=clock)
    return done


def _post_channel(settings: Settings, ledger: ChannelLedger, channel: ChannelSettings, edition: Edition, *,
                  clock: Callable[[], datetime]) -> ChannelResult:
    claim = ledger.claim(edition.id, channel.name, now=clock(), lease=LEASE)
    if claim is None:
        return ChannelResult(channel.name, "unchanged", "nothing due (already posted, held, or waiting)")
    try:
        target = service(channel_url(channel))
    except ConfigError as error:
        ledger.release(claim, now=clock())
        return ChannelResult(channel.name, "pending", str(error))
    message = _message(settings, channel, target, edition)
    if not ledger.mark_posting(claim, now=clock()):
        return ChannelResult(channel.name, "unchanged", "taken over by another `send`; not posted by this one")
    outcome = post(target, title=message.title, body=message.body, now=clock)
    _record(ledger, claim, channel.name, outcome, clock=clock)
    state = "pending" if outcome.result == "paused" else outcome.result
    return ChannelResult(channel.name, state, outcome.message, papers=message.papers)


def _record(ledger: ChannelLedger, claim: ChannelClaim, name: str, outcome: PostOutcome, *,
            clock: Callable[[], datetime]) -> None:
    now = clock()
    if outcome.result == "paused":
        # Not posted (the service refused the URL): the row waits, pending, until the channel is resumed.
        ledger.pause(name, outcome.message, now=now)
        ledger.record(claim, state="pending", code=outcome.code, message=outcome.message, now=now)
        return
    next_at = None
    if outcome.result == "deferred":
        wait = (timedelta(seconds=outcome.retry_after_seconds) if outcome.retry_after_seconds is not None
                else _backoff(claim.attempts))
        next_at = now + min(wait, MAX_WAIT)
    ledger.record(claim, state=outcome.result, code=outcome.code, message=outcome.message, now=now,
                  next_attempt_at=next_at)
    if outcome.result != "sent":
        log.warning("channel %s: %s", name, outcome.message)


def post_test_message(settings: Settings, engine: Engine, name: str, *, clock: Callable[[], datetime]) -> PostOutcome:
    """`channels test NAME`: post a short test message now (no ledger row); remembered as the last result."""
    channel = find_channel(settings, name)
    target = service(channel_url(channel))
    body = (f"A test message from {settings.newsletter.name}: this channel receives the {channel.frequency} "
            f"edition ({settings.newsletter.base_url.rstrip('/')}/archive).")
    outcome = post(target, title=f"{settings.newsletter.name}: test", body=body, now=clock)
    ChannelLedger(engine).note(name, f"test {outcome.result}: {outcome.message}", now=clock())
    return outcome


def statuses(settings: Settings, engine: Engine) -> list[tuple[ChannelSettings, ChannelStatus | None]]:
    known = ChannelLedger(engine).statuses()
    return [(channel, known.get(channel.name)) for channel in settings.channels]
