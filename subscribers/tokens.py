"""Signed link tokens: each grants one purpose for one subscriber, and nothing else.

A token is ``<key id>.<subscriber id>[.<timestamp>].<signature>``; it is signed with the key named by the id and
salted with the purpose, so a manage token is useless as an unsubscribe token and vice versa, and old
keys can keep verifying while a new key signs. Confirmation tokens expire after three days.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from itsdangerous import BadSignature, SignatureExpired, Signer, TimestampSigner
from itsdangerous.signer import HMACAlgorithm

from subscribers.errors import ExpiredTokenError, KeyringError, TokenError

Purpose = Literal["confirm", "manage", "unsubscribe", "request", "feedback"]
PURPOSES: tuple[Purpose, ...] = ("confirm", "manage", "unsubscribe", "request", "feedback")
MAX_AGE: dict[str, timedelta | None] = {"confirm": timedelta(days=3), "manage": None, "unsubscribe": None,
                                        "request": timedelta(days=3), "feedback": None}
"""``request`` names one sign-up request (an outbox row), not a subscriber: confirming it applies exactly
the choices of that request. ``confirm`` (a subscriber) is what operator-sent confirmations still use."""
_SALT_PREFIX = "newsletter-token:"


@dataclass(frozen=True)
class Keyring:
    """Signing keys by id; ``current`` signs, every key verifies."""

    keys: dict[str, str]
    current: str

    @classmethod
    def parse(cls, value: str | None, *, variable: str = "NEWSLETTER_SECRET") -> Keyring:
        """Read ``secret`` or ``id:secret,id:secret`` (the first one signs) from an environment value."""
        if not value or not value.strip():
            raise KeyringError(
                f"no signing key: set the environment variable {variable} to a long random string "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        keys: dict[str, str] = {}
        entries = [e.strip() for e in value.split(",") if e.strip()]
        for entry in entries:
            key_id, sep, secret = entry.partition(":")
            if not sep:
                key_id, secret = "k0", entry
            problem = ("its id is not alphanumeric" if not key_id.isalnum() else
                       f"its secret has {len(secret)} characters" if len(secret) < 16 else None)
            if problem is not None:
                which = f"key {entries.index(entry) + 1} of {len(entries)}" if len(entries) > 1 else "the key"
                raise KeyringError(
                    f"{variable}: {which} is not valid ({problem}); expected 'secret' or 'id:secret,id:secret' "
                    "(the first signs, all verify) with alphanumeric ids and secrets of 16 characters or more"
                )
            keys[key_id] = secret
        return cls(keys=keys, current=entries[0].partition(":")[0] if ":" in entries[0] else "k0")

    def secret(self, key_id: str | None = None) -> str:
        return self.keys[key_id or self.current]


class TokenSigner:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._signers: dict[tuple[str, str], Signer] = {}
        self._macs: dict[tuple[str, str], hmac.HMAC] = {}
        """HMACs keyed with what the plain (untimed) signers derive, copied per token: see ``sign``."""

    def _signer(self, key_id: str, purpose: str) -> Signer:
        """A bare HMAC signer over the id (no JSON, no compression: every email signs two of these)."""
        cache_key = (key_id, purpose)
        if cache_key not in self._signers:
            kind = TimestampSigner if MAX_AGE.get(purpose) else Signer
            self._signers[cache_key] = kind(self.keyring.keys[key_id], salt=_SALT_PREFIX + purpose)
        return self._signers[cache_key]

    def sign(self, purpose: Purpose, subscriber_id: int) -> str:
        """``<key id>.<id>[.<timestamp>].<signature>``.

        A send signs three links per reader, so the untimed tokens skip itsdangerous' per-call work (a key
        derivation and an HMAC set-up each time): an HMAC keyed with the key it derives is kept and copied per
        token, with the same algorithm (HMAC-SHA1, its default) and encoding, so the token is byte for byte
        itsdangerous' and ``verify`` reads it with itsdangerous.
        """
        if purpose not in PURPOSES:
            raise TokenError(f"unknown token purpose {purpose!r}")
        key_id = self.keyring.current
        value = str(subscriber_id)
        cache_key = (key_id, purpose)
        mac = self._macs.get(cache_key)
        if mac is None:
            signer = self._signer(key_id, purpose)
            algorithm = signer.algorithm
            if isinstance(signer, TimestampSigner) or type(algorithm) is not HMACAlgorithm:
                return f"{key_id}.{signer.sign(value).decode('ascii')}"
            mac = self._macs[cache_key] = hmac.new(signer.derive_key(), digestmod=algorithm.digest_method)
        token = mac.copy()
        token.update(value.encode("ascii"))
        signature = base64.urlsafe_b64encode(token.digest()).rstrip(b"=").decode("ascii")
        return f"{key_id}.{value}.{signature}"

    def verify(self, purpose: Purpose, token: str) -> int:
        """Return the subscriber id the token was made for, or raise TokenError."""
        key_id, _, payload = token.partition(".")
        if key_id not in self.keyring.keys or not payload or purpose not in PURPOSES:
            raise TokenError("invalid token")
        signer = self._signer(key_id, purpose)
        max_age = MAX_AGE.get(purpose)
        try:
            if isinstance(signer, TimestampSigner):
                value = signer.unsign(payload, max_age=int(max_age.total_seconds()) if max_age else None)
            else:
                value = signer.unsign(payload)
        except SignatureExpired:
            raise ExpiredTokenError("this link has expired") from None
        except BadSignature:
            raise TokenError("invalid token") from None
        text = value.decode("ascii", errors="replace")
        if not text.isdigit():
            raise TokenError("invalid token")
        return int(text)
