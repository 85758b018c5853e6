"""The web pages' defences: a signed double-submit CSRF token, security headers, bounded form reading.

**CSRF** (forms whose URL is public or that change preferences: subscribe and manage). First, where the POST
comes from: a browser's ``Sec-Fetch-Site: cross-site``/``same-site`` or an ``Origin`` other than this site's is
refused. Then a signed double-submit token: the first page view sets a cookie holding a random nonce —
``__Host-nl_csrf`` over https (Secure, Path=/, no Domain: a sibling subdomain cannot plant or overwrite it),
``nl_csrf`` over plain http — HttpOnly and SameSite=Lax. The form carries ``csrf_token = <key id>.<itsdangerous
signature of [nonce, form]>``, salted for CSRF so no link token can stand in for it, where *form* is the path
the form posts to: a token taken from one form (say the public subscribe page) is refused by another (a
reader's manage page). A POST is accepted only when the signature is valid under a current key, at most
``CSRF_MAX_AGE`` old, and signs exactly the request's cookie nonce and this form. No server-side session is
kept. Confirm and unsubscribe need no CSRF token: their URL holds a secret, signed, single-purpose token that
a forging site does not have, and RFC 8058 one-click must work without cookies.
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
HOST_CSRF_COOKIE = "__Host-nl_csrf"
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
    """Signed double-submit tokens bound to one form, plus a check of where the POST comes from.

    ``allowed_origins`` are the origins a form may be posted from (the public ``base_url``'s); the
    request's own origin (scheme and Host) is always allowed, so a site behind a proxy that rewrites
    the host still works.
    """

    def __init__(self, keyring: Keyring, *, allowed_origins: tuple[str, ...] = ()) -> None:
        self.keyring = keyring
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}

    def _serializer(self, key_id: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.keyring.keys[key_id], salt=_SALT)

    @staticmethod
    def cookie_name(request: Request) -> str:
        """``__Host-`` over https: the browser then refuses the cookie from a sibling subdomain or over http."""
        return HOST_CSRF_COOKIE if request.url.scheme == "https" else CSRF_COOKIE

    @classmethod
    def cookie_nonce(cls, request: Request) -> str | None:
        value = request.cookies.get(cls.cookie_name(request), "")
        return value if _NONCE.fullmatch(value) else None

    def issue(self, request: Request, *, form: str) -> tuple[str, str | None]:
        """(form token for the form posted to ``form``, new cookie nonce or None when the cookie is reused)."""
        nonce = self.cookie_nonce(request)
        fresh = None
        if nonce is None:
            nonce = fresh = secrets.token_urlsafe(24)
        key_id = self.keyring.current
        return f"{key_id}.{self._serializer(key_id).dumps([nonce, form])}", fresh

    def check_origin(self, request: Request) -> None:
        """Refuse a POST a browser says comes from another site (Fetch Metadata, then Origin).

        ``Sec-Fetch-Site`` is sent by every current browser and cannot be set by a page; ``Origin`` covers
        older ones. Clients that send neither (curl, tests, mail clients) fall through to the token check.
        """
        site = request.headers.get("sec-fetch-site", "").lower()
        if site in ("cross-site", "same-site"):
            raise CsrfError("this form was sent from another site; open the page on this site and try again")
        if site:
            return  # same-origin or none (typed, bookmarked): the browser vouches for it
        origin = request.headers.get("origin")
        if origin is None or origin == "null":  # null: what pages under Referrer-Policy: no-referrer send
            return
        own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
        if origin.lower() != own and origin.rstrip("/").lower() not in self.allowed_origins:
            raise CsrfError("this form was sent from another site; open the page on this site and try again")

    def check(self, request: Request, form: FormData, *, target: str) -> None:
        self.check_origin(request)
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
        if not (isinstance(signed, list) and len(signed) == 2 and all(isinstance(v, str) for v in signed)):
            raise CsrfError("the form's security token is not valid; reload the page and try again")
        if not secrets.compare_digest(signed[0], nonce) or signed[1] != target:
            raise CsrfError("the form's security token does not match; reload the page and try again")


def set_csrf_cookie(response: Response, request: Request, nonce: str | None) -> None:
    if nonce is not None:
        response.set_cookie(Csrf.cookie_name(request), nonce, max_age=int(CSRF_MAX_AGE.total_seconds()) * 4,
                            path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https")


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
