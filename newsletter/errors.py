"""One exception hierarchy for the whole package.

The library raises these; only the CLI turns them into a one-line message and a non-zero exit code.
Errors carry the data a caller needs to act (which key, which source, which recipient).
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base class: anything the operator can fix by changing input, config or environment."""


class ConfigError(NewsletterError):
    """The configuration file is missing, unreadable or invalid.

    ``key`` is the dotted key path (``sources[2].kind``) when one key is at fault.
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        prefix = f"{path}: " if path else ""
        super().__init__(f"{prefix}{message}")


class SourceError(NewsletterError):
    """One source could not be fetched or parsed; the others go on."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"source {source!r}: {reason}")


class SourceTimeoutError(SourceError, TimeoutError):
    """The source did not answer within the configured timeout."""


class StoreError(NewsletterError):
    """The database could not be opened or migrated."""


class TopicError(NewsletterError):
    """A topic slug was named that the configuration does not define."""


class DeliveryError(NewsletterError):
    """Sending cannot go on (the relay refuses our credentials, the ledger cannot be written)."""


class LedgerWriteError(DeliveryError):
    """The delivery ledger cannot be written (locked past busy_timeout, read-only, the server went away)."""


class ClaimLostError(DeliveryError):
    """A claimed row is no longer this sender's: its lease lapsed and another sender claimed it.

    Raised before DATA, so the row is not sent by this sender (its new holder sends it).
    """

    def __init__(self, delivery_id: int) -> None:
        self.delivery_id = delivery_id
        super().__init__(f"delivery {delivery_id} is claimed by another sender")


class TemplateError(NewsletterError):
    """A template is missing, invalid or failed to render; the message names the template and search path."""


class LabelledDataError(NewsletterError):
    """A labelled sample for `topics evaluate` is unreadable or invalid; ``line`` is the CSV line at fault."""

    def __init__(self, path: str, message: str, *, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}, line {line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class InboundError(NewsletterError):
    """Mail that comes back cannot be read: the bounce mailbox refuses the login, or cannot be reached."""


class OperatorError(NewsletterError):
    """An operator account cannot be made or changed (a taken or malformed address, a too short password)."""


class SignInError(OperatorError):
    """A sign-in to the web console was refused: wrong address or password, or too many attempts.

    ``retry_after`` is the seconds to wait when the attempt was refused for its rate, else None.
    """

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class ApiTokenError(NewsletterError):
    """A JSON API token name that is taken, unknown or not acceptable (`newsletter admin token|revoke`)."""


class WebhookError(NewsletterError):
    """A webhook endpoint that cannot be used: its secret is missing or not in the ``whsec_<base64>`` form."""
