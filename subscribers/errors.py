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


class InvalidAddressError(SubscribersError):
    """The text given is not a syntactically valid email address."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"not a valid email address: {address!r} ({reason})")


class UnknownTopicError(SubscribersError):
    """A topic slug that the newsletter does not define; the message names the valid ones."""

    def __init__(self, unknown: list[str], valid: list[str]) -> None:
        self.unknown = unknown
        self.valid = valid
        plural = "s" if len(unknown) > 1 else ""
        super().__init__(f"unknown topic{plural} {', '.join(map(repr, unknown))}; valid topics: {', '.join(valid)}")


class SuppressedError(SubscribersError):
    """The address is on the suppression list; only an explicit override (``force``) subscribes it again."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"{address} is suppressed ({reason}); not subscribed without --force")


class NotFoundError(SubscribersError):
    """No subscriber with that address or id."""


class StatusError(SubscribersError):
    """The operation does not apply to a subscriber in this status (e.g. preferences of a bounced address)."""
