"""Optional DKIM signatures (dkimpy), covering the one-click unsubscribe headers explicitly.

Gmail and Yahoo require List-Unsubscribe and List-Unsubscribe-Post to be covered by a valid DKIM
signature for one-click unsubscribe to count, so they are always in the signed header list.
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
            include_headers=list(SIGNED_HEADERS),
        )
        return signature + message
