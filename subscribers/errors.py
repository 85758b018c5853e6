"""The subscriber domain's own exceptions; `newsletter` turns them into one-line CLI errors."""

from __future__ import annotations


class SubscribersError(Exception):
    """Base class: bad input about subscribers (address, topic, token, import row)."""


class TokenError(SubscribersError):
    """A link token is not valid for what it was used for."""


class ExpiredTokenError(TokenError):
    """The token was valid once, but is older than its purpose allows."""


class KeyringError(SubscribersError):
    """The signing key is missing or malformed."""
