"""Bearer tokens of the JSON API: made, listed, checked and revoked by name.

A token is 256 random bits (``secrets.token_urlsafe(32)``), shown once; only its SHA-256 is stored. A
fast hash is enough for a secret with that much entropy (nobody can guess their way back), and the lookup
is by the hash, compared once more in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from newsletter.errors import ApiTokenError
from newsletter.storage.api_tables import api_tokens

TOKEN_PREFIX = "nlt_"  # noqa: S105 - a public prefix, not a secret
"""Tokens start with this, so a leaked one is recognisable (secret scanners, logs)."""


@dataclass(frozen=True, kw_only=True)
class ApiToken:
    name: str
    created: datetime
    last_used: datetime | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str, *, now: datetime) -> str:
        """A new token named ``name``; the token itself is returned once and never stored."""
        name = name.strip()
        if not name or len(name) > 100 or not name.isprintable():
            raise ApiTokenError("a token name is 1 to 100 printable characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with self.engine.begin() as connection:
                connection.execute(api_tokens.insert().values(name=name, token_hash=token_hash(token), created=now))
        except IntegrityError:
            raise ApiTokenError(f"a token named {name!r} exists; revoke it first (`newsletter admin revoke "
                             f"{name}`)") from None
        return token

    def check(self, token: str, *, now: datetime) -> str | None:
        """The name of the token, or None when it is not a valid (unrevoked) token."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        wanted = token_hash(token)
        with self.engine.begin() as connection:
            row = connection.execute(
                sa.select(api_tokens.c.name, api_tokens.c.token_hash).where(api_tokens.c.token_hash == wanted)
            ).first()
            if row is None or not hmac.compare_digest(str(row.token_hash), wanted):
                return None
            connection.execute(api_tokens.update().where(api_tokens.c.name == row.name).values(last_used=now))
            return str(row.name)

    def tokens(self) -> list[ApiToken]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(api_tokens).order_by(api_tokens.c.created, api_tokens.c.name))
            return [ApiToken(name=r.name, created=r.created, last_used=r.last_used) for r in rows]

    def revoke(self, name: str) -> None:
        """Delete the token: requests with it are refused from now on."""
        with self.engine.begin() as connection:
            deleted = connection.execute(api_tokens.delete().where(api_tokens.c.name == name))
        if not deleted.rowcount:
            known = ", ".join(t.name for t in self.tokens()) or "none"
            raise ApiTokenError(f"no token named {name!r}; tokens: {known}")
