"""Ledger row → the exact bytes handed to the relay: one MIME template per variant, readers spliced in.

Kept apart from ``campaign`` (which builds editions and so imports the topic matcher, scikit-learn and
all): a sending process needs only this, and starts in a fraction of the time and memory.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from newsletter.config import Settings
from newsletter.delivery.message import message_template, sendable_message
from newsletter.delivery.mime import MessageTemplate
from newsletter.records.editions import Edition
from newsletter.rendering.links import recipient_links
from newsletter.storage.ledger import Delivery, Ledger, StoredVariant
from subscribers.tokens import TokenSigner

if TYPE_CHECKING:
    from newsletter.delivery.dkim import DkimSigner


class MessageFactory:
    """Ledger row → the exact bytes handed to the relay; one MIME template per variant, cached."""

    def __init__(
        self,
        *,
        settings: Settings,
        ledger: Ledger,
        signer: TokenSigner,
        edition: Edition,
        clock: Callable[[], datetime],
        dkim: DkimSigner | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.signer = signer
        self.edition = edition
        self.clock = clock
        self.dkim = dkim
        self._templates: dict[str, MessageTemplate] = {}

    def template(self, key: str) -> MessageTemplate:
        if key not in self._templates:
            self._templates[key] = template_for(self.ledger.variant(self.edition.id, key), settings=self.settings,
                                                edition=self.edition)
        return self._templates[key]

    def build(self, delivery: Delivery) -> bytes:
        recipient = recipient_links(
            self.settings, self.signer, subscriber_id=delivery.subscriber_id, email=delivery.email,
            name=delivery.name, edition_slug=self.edition.slug, issued=self.clock(),
        )
        raw = sendable_message(self.template(delivery.variant_key), recipient, settings=self.settings,
                               message_id=delivery.message_id, date=self.clock())
        return self.dkim.sign(raw) if self.dkim is not None else raw


def template_for(variant: StoredVariant, *, settings: Settings, edition: Edition) -> MessageTemplate:
    return message_template(settings, key=variant.key, subject=variant.subject, html=variant.html, text=variant.text,
                            nonce=variant.nonce, edition_slug=edition.slug, frequency=edition.frequency)
