"""Email addresses: syntax check, the one normal form they are stored and compared in, and their hash.

Syntax only: ``email-validator`` with ``check_deliverability=False`` (no DNS lookup, so a subscribe request
never waits on, or leaks to, a resolver). Special-use domains (``.invalid``, ``.test``, ``localhost``) and
bracketed IP addresses are refused, as email-validator does by default.

The normal form is email-validator's normalised address (Unicode NFC, IDNA domain in Unicode), trimmed and
lower-cased as a whole. Lower-casing the local part is not what RFC 5321 promises, but every mailbox
provider in practice treats it case-insensitively, and one form per person is what consent and suppression
need.

The suppression hash is SHA-256 of ``"newsletter-suppression-v1:" + normal form``: deliberately *not* an
HMAC under the signing key. The suppression list must keep working forever — after the key is rotated or
lost, in a restored backup, and for `subscribers import` run where the key is not set — because a list
that silently stops matching would email people who asked never to be emailed again. The cost: whoever
holds the database can test whether a given address is on the list; they cannot list the addresses. That is
the same question the operator must be able to ask.
"""

from __future__ import annotations

import hashlib

from email_validator import EmailNotValidError, validate_email

from subscribers.errors import InvalidAddressError

MAX_LENGTH = 320
_HASH_PREFIX = "newsletter-suppression-v1:"


def normalise_email(email: str) -> str:
    """Trimmed and lower-case, without any syntax check (for look-ups of stored addresses)."""
    return email.strip().lower()


def valid_email(email: str) -> str:
    """The normal form of a syntactically valid address, or InvalidAddressError with the reason."""
    text = email.strip()
    if not text:
        raise InvalidAddressError(email, "it is empty")
    if len(text) > MAX_LENGTH:
        raise InvalidAddressError(text[:40] + "…", f"longer than {MAX_LENGTH} characters")
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        reason = str(error).rstrip(".")
        raise InvalidAddressError(text, reason[:1].lower() + reason[1:]) from None
    return normalise_email(result.normalized)


def sendable_email(email: str) -> str:
    """``valid_email``, and also refused when the part before the @ is not ASCII.

    Such an address can only be delivered over SMTPUTF8 through every relay on the way; rather than take a
    sign-up whose confirmation can never be sent (it crashed with UnicodeEncodeError, after the quota slot
    was used), the form says so. An internationalised *domain* is fine: it is sent in its IDNA (ASCII) form.
    """
    address = valid_email(email)
    local = address.rpartition("@")[0]
    if not local.isascii():
        raise InvalidAddressError(email.strip()[:80], "the part before the @ has non-ASCII characters, which this "
                                  "newsletter cannot deliver to; please use another address")
    return address


def address_hash(email: str) -> str:
    """The suppression-list key of an address (64 hex characters); see the module docstring."""
    return hashlib.sha256((_HASH_PREFIX + normalise_email(email)).encode("utf-8")).hexdigest()


def ip_hash(ip: str) -> str:
    """The rate-limit key of a client IP address (the address itself is not kept for rate limiting)."""
    return hashlib.sha256(("newsletter-ip-v1:" + ip.strip().lower()).encode("utf-8")).hexdigest()
