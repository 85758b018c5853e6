"""The inbound part of `newsletter status`: what came back lately, and each recent edition's bounce and
complaint rates beside the lines the big mailbox providers draw.

Gmail's bulk-sender rules ask for a spam-complaint rate under 0.1% and never 0.3% or more (Yahoo's are
alike); a bounce rate above a few percent is what gets a sender's mail deferred.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from newsletter.storage.inbound import InboundLog

COMPLAINT_LINE = 0.003
"""Gmail's line: at 0.3% spam complaints or more, a bulk sender's mail goes to spam or is refused."""
COMPLAINT_TARGET = 0.001
BOUNCE_LINE = 0.02


def inbound_view(engine: Engine, *, now: datetime, editions: int = 5) -> dict[str, Any]:
    log = InboundLog(engine)
    rates = []
    for edition in log.edition_rates(limit=editions):
        rates.append({
            "slug": edition.slug,
            "sent": edition.sent,
            "bounced": edition.bounced,
            "complained": edition.complained,
            "bounce_rate": round(edition.bounce_rate, 5),
            "complaint_rate": round(edition.complaint_rate, 5),
            "over_complaint_line": edition.complaint_rate >= COMPLAINT_LINE,
            "over_bounce_line": edition.bounce_rate > BOUNCE_LINE,
        })
    return {
        "last_30_days": log.counts(since=now - timedelta(days=30)),
        "editions": rates,
        "complaint_line": COMPLAINT_LINE,
        "complaint_target": COMPLAINT_TARGET,
        "bounce_line": BOUNCE_LINE,
    }
