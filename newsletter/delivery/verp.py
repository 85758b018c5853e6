"""VERP: a per-message envelope sender that names the edition and the reader, signed.

Bounces go to the envelope sender (the return path), so a bounce to ``bounces+k0-12-345-<sig>@DOMAIN``
says which message failed without parsing anything the remote server wrote. The signature (an HMAC of the
edition and reader ids with the newsletter's key, salted with the purpose) makes a forged or altered
address worthless: a stranger who mails ``bounces+…`` with guessed ids cannot mark anyone bounced.

The token is lowercase letters, digits and ``-`` only, because some mail systems lower-case local parts
and ``+`` is the sub-address delimiter that Postfix and hosted mailboxes understand.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass

from subscribers.tokens import Keyring

_SALT = b"newsletter-verp:"
_SIG_CHARS = 16
"""80 bits of base32: far beyond guessing, short enough for a 64-character local part."""
_TOKEN = re.compile(r"([a-z0-9]+)-([0-9]{1,12})-([0-9]{1,12})-([a-z2-7]{16})")


@dataclass(frozen=True)
class VerpTarget:
    """Whom a bounce address names."""

    edition_id: int
    subscriber_id: int


@functools.lru_cache(maxsize=16)
def _keyed(secret: str) -> hmac.HMAC:
    """The HMAC keyed with one secret and fed the salt: every message of a send copies it (cheaper than a new
    HMAC per message, ~1,000,000 of them for a large list)."""
    return hmac.new(secret.encode(), _SALT, hashlib.sha256)


def _signature(secret: str, edition_id: int, subscriber_id: int) -> str:
    mac = _keyed(secret).copy()
    mac.update(f"{edition_id}-{subscriber_id}".encode())
    return base64.b32encode(mac.digest()).decode("ascii").lower()[:_SIG_CHARS]


def sign_token(keyring: Keyring, *, edition_id: int, subscriber_id: int) -> str:
    key_id = keyring.current
    signature = _signature(keyring.secret(key_id), edition_id, subscriber_id)
    return f"{key_id.lower()}-{edition_id}-{subscriber_id}-{signature}"


def envelope_sender(keyring: Keyring, *, local_part: str, domain: str, edition_id: int, subscriber_id: int) -> str:
    """``LOCAL+TOKEN@DOMAIN``: the MAIL FROM of one reader's copy of one edition."""
    token = sign_token(keyring, edition_id=edition_id, subscriber_id=subscriber_id)
    return f"{local_part}+{token}@{domain}"


class BadToken(ValueError):
    """A VERP-shaped address whose signature does not verify (forged or altered)."""


def verify_token(keyring: Keyring, token: str) -> VerpTarget:
    """The edition and reader a token names; BadToken if it is malformed or its signature is wrong."""
    match = _TOKEN.fullmatch(token.lower())
    if match is None:
        raise BadToken(f"not a VERP token: {token[:60]!r}")
    key_id, edition, subscriber, signature = match.groups()
    secrets = [secret for kid, secret in keyring.keys.items() if kid.lower() == key_id]
    for secret in secrets:
        if hmac.compare_digest(_signature(secret, int(edition), int(subscriber)), signature):
            return VerpTarget(edition_id=int(edition), subscriber_id=int(subscriber))
    raise BadToken(f"VERP token with a bad signature: {token[:60]!r}")


def token_in(address: str, *, local_part: str, domain: str) -> str | None:
    """The token of ``LOCAL+TOKEN@DOMAIN`` (case-insensitive), or None when the address is not ours."""
    local, _, host = address.strip().strip("<>").rpartition("@")
    if host.lower() != domain.lower():
        return None
    prefix, plus, token = local.partition("+")
    if not plus or prefix.lower() != local_part.lower() or not token:
        return None
    return token
