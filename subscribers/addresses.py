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

import functools
import hashlib
import re

from email_validator import EmailNotValidError, validate_email

from subscribers.errors import InvalidAddressError

MAX_LENGTH = 320
_HASH_PREFIX = "newsletter-suppression-v1:"
_EMAIL_MAX_OCTETS = 254
_ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
_DOT_ATOM = re.compile(f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*\\Z")
"""RFC 5322 dot-atom text in ASCII: the local parts email-validator accepts as they are (its ``DOT_ATOM_TEXT``)."""


def normalise_email(email: str) -> str:
    """Trimmed and lower-case, without any syntax check (for look-ups of stored addresses)."""
    return email.strip().lower()


@functools.lru_cache(maxsize=4096)
def _domain(domain: str) -> tuple[str, str] | None:
    """email-validator's (normalised, IDNA ASCII) forms of the part after the @, or None when it refuses it."""
    try:
        result = validate_email("a@" + domain, check_deliverability=False)
    except EmailNotValidError:
        return None
    return result.domain, result.ascii_domain


def valid_email(email: str) -> str:
    """The normal form of a syntactically valid address, or InvalidAddressError with the reason.

    The common address (an ASCII dot-atom before the @) is checked with the domain's verdict cached: the domain
    check (IDNA, special-use names) is most of email-validator's time, and a list has few domains for many
    readers. The result is what email-validator gives for the whole address (it validates the local part and
    the domain independently and then the lengths, as done here); anything else goes through it whole.
    """
    text = email.strip()
    if not text:
        raise InvalidAddressError(email, "it is empty")
    if len(text) > MAX_LENGTH:
        raise InvalidAddressError(text[:40] + "…", f"longer than {MAX_LENGTH} characters")
    local, at, domain = text.rpartition("@")
    if at and _DOT_ATOM.match(local):
        forms = _domain(domain)
        if forms is not None and all(len(f"{local}@{d}".encode()) <= _EMAIL_MAX_OCTETS for d in (domain, *forms)):
            return normalise_email(f"{local}@{forms[0]}")
    return full_valid_email(text)


def full_valid_email(text: str) -> str:
    """``valid_email`` through email-validator for the whole address (the slow path, and its reference)."""
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
