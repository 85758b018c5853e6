"""The envelope sender (MAIL FROM) of each message: the signed VERP address when [inbound] names a domain.

Remote servers send bounces to the envelope sender, so with VERP a bounce names the edition and reader it
is about (``newsletter.delivery.verp``) and no parsing of the remote server's text is needed to attribute it.
Without [inbound] domain, every message goes out from ``from_address`` as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from newsletter.config import Settings
from newsletter.delivery.verp import envelope_sender
from newsletter.storage.ledger import Delivery
from subscribers.tokens import Keyring

EnvelopeSender = Callable[[Delivery], str]


def verp_sender(settings: Settings) -> EnvelopeSender | None:
    """Delivery row → its VERP MAIL FROM; None when inbound mail is off."""
    inbound = settings.inbound
    if not inbound.domain:
        return None
    variable = settings.newsletter.secret_env
    keyring = Keyring.parse(os.environ.get(variable), variable=variable)

    def sender(delivery: Delivery) -> str:
        return envelope_sender(keyring, local_part=inbound.bounce_local_part, domain=inbound.domain,
                               edition_id=delivery.edition_id, subscriber_id=delivery.subscriber_id)

    return sender
