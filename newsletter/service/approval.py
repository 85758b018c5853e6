"""``[schedule] approve``: scheduled editions wait for an editor's `newsletter edition approve`.

The daily or weekly job builds (and stores) the edition, so an editor can look at it and shape it
(`newsletter edition show|pin|drop|note`), and records that it waits. Approving it changes nothing else;
the next retry run of `serve` finds the approved edition with no deliveries written yet, fills its ledger
and sends it, once: from then on it has ledger rows and is never picked up again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.editions.build import build_edition
from newsletter.records.editions import Frequency
from newsletter.rendering.links import signer_from_settings
from newsletter.storage.editions import EditionStore
from newsletter.storage.ledger import Ledger
from newsletter.storage.papers import PaperStore
from newsletter.storage.reviews import ReviewStore
from newsletter.usecases.campaign import prepare

Deliver = Callable[..., dict[str, int]]


def hold_for_approval(settings: Settings, engine: Engine, *, frequency: Frequency, now: datetime) -> str | None:
    """Build today's edition; its slug when it must wait for approval, None when it may go (or is empty)."""
    edition = build_edition(settings, PaperStore(engine), EditionStore(engine), frequency=frequency, now=now)
    if edition.is_empty or Ledger(engine).subscribers_with_rows(edition.id):
        return None
    review = ReviewStore(engine).get(edition.id)
    return None if review is not None and review.approved_at is not None else edition.slug


def send_approved(settings: Settings, engine: Engine, *, clock: Callable[[], datetime], stop: threading.Event,
                  deliver: Deliver) -> Iterator[tuple[int, dict[str, int], str]]:
    """Fill the ledger of each approved, unsent edition and deliver it: (edition id, counts, slug)."""
    editions = EditionStore(engine)
    for edition_id in ReviewStore(engine).approved_without_ledger():
        if stop.is_set():
            return
        edition = editions.get_by_id(edition_id)
        if edition is None:
            continue
        prepared = prepare(settings, engine, frequency=edition.frequency, now=clock(), day=edition.date,
                           signer=signer_from_settings(settings))
        if prepared.edition.is_empty or not prepared.recipients:
            continue
        yield edition_id, deliver(settings, engine, edition_id, clock=clock, stop=stop), edition.slug
