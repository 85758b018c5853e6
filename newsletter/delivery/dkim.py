"""Optional DKIM signatures (dkimpy), covering the one-click unsubscribe headers explicitly.

Gmail and Yahoo require List-Unsubscribe and List-Unsubscribe-Post to be covered by a valid DKIM
signature for one-click unsubscribe to count, so they are always in the signed header list.

Over-signing: a header name listed in ``h=`` once more than the message has it signs its *absence*
(RFC 6376 5.4.2), so a relay cannot add a second ``From`` or ``Subject``, a ``Reply-To`` that diverts
replies, or a ``List-*`` header, without breaking the signature. The message carries each of those fields
at most once, so listing them twice (and the absent ones once) is enough.
"""

from __future__ import annotations

from pathlib import Path

import dkim

from newsletter.config import DkimSettings
from newsletter.errors import ConfigError

SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"list-id", b"list-unsubscribe",
    b"list-unsubscribe-post", b"feedback-id", b"mime-version", b"content-type",
)
OVERSIGNED_HEADERS = (
    b"from", b"subject", b"reply-to", b"list-id", b"list-unsubscribe", b"list-unsubscribe-post",
    b"list-help", b"list-subscribe", b"list-post", b"list-owner", b"list-archive",
)
"""Signed once more than they occur: none of them can be added in transit (see the module docstring)."""


class DkimSigner:
    def __init__(self, settings: DkimSettings) -> None:
        path = Path(settings.private_key_path)
        try:
            self.key = path.read_bytes()
        except OSError as error:
            raise ConfigError(
                f"delivery.dkim.private_key_path: cannot read {path}: {error.strerror}", key="delivery.dkim"
            ) from None
        if b"PRIVATE KEY" not in self.key:
            raise ConfigError(f"delivery.dkim.private_key_path: {path} is not a PEM private key", key="delivery.dkim")
        self.selector = settings.selector.encode("ascii")
        self.domain = settings.domain.encode("ascii")

    def sign(self, message: bytes) -> bytes:
        signature: bytes = dkim.sign(
            message, self.selector, self.domain, self.key, canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[*SIGNED_HEADERS, *OVERSIGNED_HEADERS],
        )
        return signature + message
