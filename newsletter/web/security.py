"""The web pages' defences: a signed double-submit CSRF token, security headers, bounded form reading.

**CSRF** (forms whose URL is public or that change preferences: subscribe and manage). The first page view
sets a cookie ``nl_csrf`` holding a random nonce (HttpOnly, SameSite=Lax, Secure over https). The form carries
``csrf_token = <key id>.<itsdangerous signature of that nonce>``, salted for CSRF so no link token can
stand in for it. A POST is accepted only when the form token's signature is valid under a current key, it is
at most ``CSRF_MAX_AGE`` old, and it signs exactly the nonce in the request's cookie. Another site can make a
browser send our cookie, but cannot read it nor our page, so it cannot put the matching token in its form;
and because the token is signed, someone able to plant a cookie (a sibling subdomain) still cannot forge a
pair. No server-side session is kept. Confirm and unsubscribe need no CSRF token: their URL holds a secret,
signed, single-purpose token that a forging site does not have, and RFC 8058 one-click must work without
cookies.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from subscribers.tokens import Keyring

CSRF_COOKIE = "nl_csrf"
CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE = timedelta(days=2)
_SALT = "newsletter-csrf"
_NONCE = re.compile(r"[A-Za-z0-9_-]{22,64}")

PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'none'")
"""Our own pages: no script at all, our stylesheet only, forms post only to us, never framed."""
ARCHIVE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'self'; "
               "frame-ancestors 'none'; base-uri 'none'")
"""Archived editions are the email's HTML: inline styles and remote thumbnails, still no script."""

SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # page URLs hold tokens: never send them to another site
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


class CsrfError(Exception):
    """The form's CSRF token is missing, expired or does not match the cookie."""


class Csrf:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def _serializer(self, key_id: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.keyring.keys[key_id], salt=_SALT)

    @staticmethod
    def cookie_nonce(request: Request) -> str | None:
        value = request.cookies.get(CSRF_COOKIE, "")
        return value if _NONCE.fullmatch(value) else None

    def issue(self, request: Request) -> tuple[str, str | None]:
        """(form token, new cookie nonce or None when the request's cookie is reused)."""
        nonce = self.cookie_nonce(request)
        fresh = None
        if nonce is None:
            nonce = fresh = secrets.token_urlsafe(24)
        key_id = self.keyring.current
        return f"{key_id}.{self._serializer(key_id).dumps(nonce)}", fresh

    def check(self, request: Request, form: FormData) -> None:
        token = form.get(CSRF_FIELD)
        nonce = self.cookie_nonce(request)
        if not isinstance(token, str) or not token:
            raise CsrfError("the form has no security token; reload the page and try again")
        if nonce is None:
            raise CsrfError("this form needs a cookie to be accepted; allow cookies for this site and reload the page")
        key_id, _, payload = token.partition(".")
        if key_id not in self.keyring.keys:
            raise CsrfError("the form's security token is not valid; reload the page and try again")
        try:
            signed = self._serializer(key_id).loads(payload, max_age=int(CSRF_MAX_AGE.total_seconds()))
        except SignatureExpired:
            raise CsrfError("this form has expired; reload the page and try again") from None
        except BadSignature:
            raise CsrfError("the form's security token is not valid; reload the page and try again") from None
        if not isinstance(signed, str) or not secrets.compare_digest(signed, nonce):
            raise CsrfError("the form's security token does not match; reload the page and try again")


def set_csrf_cookie(response: Response, request: Request, nonce: str | None) -> None:
    if nonce is not None:
        response.set_cookie(CSRF_COOKIE, nonce, max_age=int(CSRF_MAX_AGE.total_seconds()) * 4, path="/",
                            httponly=True, samesite="lax", secure=request.url.scheme == "https")


class SecurityHeaders:
    """ASGI middleware: the security headers on every response; a CSP unless the page set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def client_ip(request: Request) -> str:
    """The client address as the server sees it (uvicorn applies X-Forwarded-For from trusted proxies only)."""
    return request.client.host if request.client else "unknown"
