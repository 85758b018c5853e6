"""Operator accounts of the web console: create, change, remove, sign in and out, and the audit log.

Used by `newsletter admin …` and by ``newsletter.web.admin``. Passwords are hashed with Argon2id
(``argon2-cffi``'s defaults: 64 MiB, 3 passes), never stored or logged. A session is a random 256-bit id
in the browser's cookie and its SHA-256 in the database, so signing out (deleting the row) revokes the
cookie for good. Failed sign-ins are counted per account and per client network (``subscribers``'
``RateLimits``, kept in the database): past ``ACCOUNT_FAILURES`` for one account or ``NETWORK_FAILURES``
from one network within ``FAILURE_WINDOW``, sign-in is refused without checking the password.

``record_action`` is the one way to append to the audit log: the console calls it for every action, and
other front ends (the JSON API) can call it with their own actor names.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.engine import Engine

from newsletter.errors import OperatorError, SignInError
from newsletter.storage.operators import AuditEntry, Operator, OperatorStore
from subscribers.addresses import address_hash, ip_hash, valid_email
from subscribers.errors import InvalidAddressError
from subscribers.rate_limit_store import RateLimits, network_key

MIN_PASSWORD = 12
"""Characters at least: long enough that the rate limit, not the guessing, is what stops an attacker."""
MAX_PASSWORD = 1024
SESSION_LIFETIME = timedelta(hours=12)
"""A session ends this long after sign-in, whatever happens (signing out ends it sooner)."""
ACCOUNT_FAILURES = 5
NETWORK_FAILURES = 20
FAILURE_WINDOW = timedelta(minutes=15)
WRONG = "wrong email address or password"

_hasher = PasswordHasher()
_UNKNOWN_HASH = _hasher.hash(secrets.token_urlsafe(16))
"""Checked against when the address has no account, so a wrong address takes as long as a wrong password."""


@dataclass(frozen=True)
class SignedIn:
    operator: Operator
    token: str
    """The session's random id: goes in the cookie only, never stored."""
    expires: datetime


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def operator_email(email: str) -> str:
    """The address as accounts are keyed: normalised like subscribers' (``valid_email``)."""
    try:
        return valid_email(email)
    except InvalidAddressError as error:
        raise OperatorError(str(error)) from None


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise OperatorError(f"the password must be at least {MIN_PASSWORD} characters long")
    if len(password) > MAX_PASSWORD:
        raise OperatorError(f"the password must be at most {MAX_PASSWORD} characters long")
    return password


def add_operator(engine: Engine, email: str, password: str, *, now: datetime | None = None,
                 actor: str = "cli") -> Operator:
    address = operator_email(email)
    store = OperatorStore(engine)
    added = store.add(address, _hasher.hash(check_password(password)), now=_now(now))
    if added is None:
        raise OperatorError(f"{address} already has an account (`newsletter admin passwd {address}` changes its "
                            "password)")
    record_action(engine, actor, "operator.add", address, now=now)
    return added


def _require(engine: Engine, email: str) -> Operator:
    address = operator_email(email)
    found = OperatorStore(engine).get_by_email(address)
    if found is None:
        raise OperatorError(f"no operator account {address!r} (`newsletter admin list` shows them)")
    return found


def change_password(engine: Engine, email: str, password: str, *, now: datetime | None = None,
                    actor: str = "cli") -> Operator:
    """Set a new password; every session of the account ends (it signs in again)."""
    found = _require(engine, email)
    OperatorStore(engine).set_password(found.id, _hasher.hash(check_password(password)), now=_now(now))
    record_action(engine, actor, "operator.passwd", found.email, now=now)
    return found


def remove_operator(engine: Engine, email: str, *, now: datetime | None = None, actor: str = "cli") -> Operator:
    found = _require(engine, email)
    OperatorStore(engine).remove(found.id)
    record_action(engine, actor, "operator.remove", found.email, now=now)
    return found


def list_operators(engine: Engine) -> list[Operator]:
    return OperatorStore(engine).all()


def has_operators(engine: Engine) -> bool:
    return OperatorStore(engine).count() > 0


# --- sign-in and sessions ----------------------------------------------------------------------------------


def _session_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _throttled(limits: RateLimits, keys: tuple[str, str], now: datetime) -> bool:
    account, network = keys
    return (limits.count("signin-account", account, window=FAILURE_WINDOW, now=now) >= ACCOUNT_FAILURES
            or limits.count("signin-ip", network, window=FAILURE_WINDOW, now=now) >= NETWORK_FAILURES)


def sign_in(engine: Engine, email: str, password: str, *, client: str, now: datetime | None = None) -> SignedIn:
    """Check the password and open a session; a refusal is a ``SignInError`` (the same words for a wrong
    address and a wrong password). A wrong password is audited with the address as typed and the client;
    attempts refused for their rate are not (they would let anyone fill the log).

    Callers serialise concurrent sign-ins (the web app holds a lock): the failure count is read, then added to.
    """
    when = _now(now)
    typed = " ".join(email.split())[:320]
    try:
        address = valid_email(typed)
    except InvalidAddressError:
        address = typed.lower()
    limits = RateLimits(engine)
    keys = (address_hash(address), ip_hash(network_key(client)))
    if _throttled(limits, keys, when):  # not audited: a flood of refused attempts must not fill the log
        raise SignInError("too many failed sign-ins; wait 15 minutes and try again",
                          retry_after=int(FAILURE_WINDOW.total_seconds()))
    store = OperatorStore(engine)
    found = store.get_by_email(address)
    if not _verified(found.password_hash if found else _UNKNOWN_HASH, password) or found is None:
        limits.allow("signin-account", keys[0], limit=10**9, window=FAILURE_WINDOW, now=when)
        limits.allow("signin-ip", keys[1], limit=10**9, window=FAILURE_WINDOW, now=when)
        record_action(engine, address or "?", "signin.failed", f"from {client}", now=when)
        raise SignInError(WRONG)
    token = secrets.token_urlsafe(32)
    expires = when + SESSION_LIFETIME
    store.open_session(_session_hash(token), found.id, now=when, expires=expires)
    record_action(engine, found.email, "signin", f"from {client}", now=when)
    return SignedIn(found, token, expires)


def _verified(stored: str, password: str) -> bool:
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def session_operator(engine: Engine, token: str, *, now: datetime | None = None) -> Operator | None:
    """Who a cookie's session id signs in, or None (unknown, expired or signed out)."""
    if not token or len(token) > 100:
        return None
    return OperatorStore(engine).session_operator(_session_hash(token), now=_now(now))


def sign_out(engine: Engine, token: str, *, actor: str, now: datetime | None = None) -> None:
    if OperatorStore(engine).close_session(_session_hash(token)):
        record_action(engine, actor, "signout", "", now=now)


def session_csrf(token: str) -> str:
    """The CSRF token of a session's forms: derived from its secret id, so only that browser's pages hold it."""
    return hmac.new(token.encode("utf-8", "replace"), b"newsletter-admin-csrf", hashlib.sha256).hexdigest()


def csrf_matches(token: str, given: str) -> bool:
    return bool(given) and hmac.compare_digest(session_csrf(token).encode(), given.encode("utf-8", "replace"))


# --- audit log ---------------------------------------------------------------------------------------------


def record_action(engine: Engine, actor: str, action: str, detail: str, *, now: datetime | None = None) -> None:
    """Append one entry to the audit log: ``actor`` (an operator's address, "cli", an API token's name),
    ``action`` (a short dotted name such as ``edition.approve``) and ``detail`` (what it was done to)."""
    OperatorStore(engine).record(actor=actor, action=action, detail=detail, now=_now(now))


def audit_log(engine: Engine, *, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
    return OperatorStore(engine).audit(limit=limit, before_id=before_id)
