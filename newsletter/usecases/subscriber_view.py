"""Everything stored about one address, as `subscribers show --json` and ``GET /api/v1/subscribers/{email}``
give it: the subscriber, the suppression entry, the mail-back evidence and the reader's votes."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.usecases.subscribe import subscriber_json, subscriber_store
from subscribers.addresses import valid_email
from subscribers.errors import NotFoundError
from subscribers.evidence import Event, EvidenceStore
from subscribers.feedback import FeedbackStore


def event_json(event: Event) -> dict[str, Any]:
    return {"created": event.created.isoformat(), "kind": event.kind, "action": event.action,
            "status": event.status, "diagnostic": event.diagnostic, "message_id": event.message_id,
            "edition_id": event.edition_id, "attributed_by": event.attributed_by}


def subscriber_view(settings: Settings, engine: Engine, email: str) -> dict[str, Any]:
    """The `show --json` shape; NotFoundError when the address is neither a subscriber nor suppressed."""
    store = subscriber_store(settings, engine)
    address = valid_email(email)
    subscriber = store.get_by_email(address)
    suppression = store.suppression(address)
    if subscriber is None and suppression is None:
        raise NotFoundError(f"no subscriber {address!r}, and the address is not suppressed")
    suppressed = ({"reason": suppression.reason, "since": suppression.created.isoformat()}
                  if suppression else None)
    events = EvidenceStore(engine).events(subscriber.id) if subscriber else []
    votes = FeedbackStore(engine).votes(subscriber_id=subscriber.id) if subscriber else []
    feedback = [{"paper": v.paper_id, "topic": v.topic, "vote": "more" if v.vote > 0 else "less",
                 "at": v.created.isoformat()} for v in votes]
    return {"subscriber": subscriber_json(subscriber) if subscriber else None, "suppressed": suppressed,
            "events": [event_json(e) for e in events], "feedback": feedback}
