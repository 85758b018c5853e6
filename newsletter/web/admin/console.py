"""What every console page shares: who is signed in, the session cookie, CSRF on every POST, rendering, audit.

**Session.** Signing in (``newsletter.usecases.operators.sign_in``) opens a server-side session; the browser
gets its random id in a cookie that is HttpOnly, SameSite=Strict, Path=/, and over https (the site's
``base_url`` or the request) named ``__Host-nl_admin`` and Secure, so no sibling subdomain or plain-http
page can set or read it. Signing out deletes the session row: the same cookie, replayed, signs in nobody.

**CSRF.** Every POST of a signed-in page carries ``csrf_token``, an HMAC of the session's secret id (so a
page of another session, or another site, cannot know it), compared in constant time; a browser that says
the form came from another site (``Sec-Fetch-Site``/``Origin``) is refused first. The sign-in form, which has
no session yet, uses the public pages' signed double-submit token (``newsletter.web.security``).

Nothing here redirects: a POST answers with the page that shows its result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.config import Settings
from newsletter.errors import SignInError
from newsletter.rendering.templating import RenderEnvironment
from newsletter.storage.console_reads import delivery_counts
from newsletter.storage.operators import Operator
from newsletter.usecases.operators import (
    SESSION_LIFETIME,
    csrf_matches,
    has_operators,
    record_action,
    session_csrf,
    session_operator,
    sign_in,
    sign_out,
)
from newsletter.web.admin.cache import Recent
from newsletter.web.pages import PageError
from newsletter.web.proxies import client_ip
from newsletter.web.security import PAGE_CSP, Csrf, CsrfError, set_csrf_cookie

if TYPE_CHECKING:
    from newsletter.usecases.campaign import Plan

SESSION_COOKIE = "nl_admin"
HOST_SESSION_COOKIE = "__Host-nl_admin"
SIGNIN_FORM = "/admin/signin"
MAX_UPLOAD_BYTES = 4 * 1024 * 1024
"""The largest CSV a console form takes (an import of about 100,000 readers); larger lists: the CLI."""
OVERVIEW_SECONDS = 10.0
"""The overview (status facts and charts) is computed at most this often per console process."""
PLAN_SECONDS = 60.0
"""What a send of an unsent edition would render, kept this long for its page and email frames."""
COUNTS_SECONDS = 60.0
"""A settled edition's delivery counts (nothing pending, claimed or deferred) are kept this long."""


class Host(Protocol):
    """What the console uses of ``newsletter.web.app.WebApp`` (a protocol: no import circle)."""

    settings: Settings
    engine: Engine
    environment: RenderEnvironment
    csrf: Csrf
    clock: Callable[[], datetime]

    def base_context(self, request: Request) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Visit:
    """A request from a signed-in browser."""

    operator: Operator
    token: str

    @property
    def csrf(self) -> str:
        return session_csrf(self.token)


Page = Callable[[Request, Visit], Awaitable[Response]]
Action = Callable[[Request, Visit, FormData], Awaitable[Response]]


class Console:
    def __init__(self, web: Host) -> None:
        self.web = web
        self.settings = web.settings
        self.engine = web.engine
        self.signin_lock = asyncio.Lock()
        self.home: Page | None = None
        """The page a successful sign-in shows (the overview; set by ``routes``)."""
        self.overview: Recent[dict[str, Any]] = Recent(OVERVIEW_SECONDS)
        self.variants: Recent[Any] = Recent(COUNTS_SECONDS)
        """A settled edition's variants (which email each reader got): they change no more."""
        self.plans: Recent[Plan] = Recent(PLAN_SECONDS)
        self._counts: dict[int, tuple[float, dict[str, int]]] = {}

    def edition_counts(self, edition_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """Each edition's ledger rows by state; a settled edition's counts are remembered ``COUNTS_SECONDS``."""
        now = time.monotonic()
        known = {i: found[1] for i in edition_ids
                 if (found := self._counts.get(i)) is not None and now - found[0] < COUNTS_SECONDS}
        computed = delivery_counts(self.engine, [i for i in edition_ids if i not in known])
        for edition_id, counts in computed.items():
            if not (counts["pending"] or counts["claimed"] or counts["deferred"]):
                self._counts[edition_id] = (now, counts)
        return {i: known[i] if i in known else computed[i] for i in edition_ids}

    def changed(self) -> None:
        """Forget what is remembered (after an action that changes counts, such as a retry)."""
        self._counts.clear()
        self.overview.forget()
        self.variants.forget()
        self.plans.forget()

    def now(self) -> datetime:
        return self.web.clock()

    # --- the session cookie ----------------------------------------------------------------------------------

    def secure(self, request: Request) -> bool:
        return self.settings.newsletter.base_url.lower().startswith("https:") or request.url.scheme == "https"

    def cookie_name(self, request: Request) -> str:
        return HOST_SESSION_COOKIE if self.secure(request) else SESSION_COOKIE

    async def visit(self, request: Request) -> Visit | None:
        token = request.cookies.get(self.cookie_name(request), "")
        if not token:
            return None
        operator = await run_in_threadpool(session_operator, self.engine, token, now=self.now())
        return Visit(operator, token) if operator is not None else None

    # --- forms -----------------------------------------------------------------------------------------------

    @staticmethod
    async def read_form(request: Request, *, files: bool = False) -> FormData:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            raise PageError(415, "Not a form", "This address accepts form submissions only.")
        try:
            return await request.form(max_files=1 if files else 0, max_fields=100, max_part_size=MAX_UPLOAD_BYTES)
        except HTTPException as error:
            raise PageError(400, "Bad form", "The form could not be read.") from error

    async def checked(self, request: Request, visit: Visit, *, files: bool = False) -> FormData:
        """The POSTed form of a signed-in page, after the origin and CSRF checks (403 page otherwise)."""
        try:
            self.web.csrf.check_origin(request)
        except CsrfError as error:
            raise PageError(403, "Please try again", str(error)) from None
        form = await self.read_form(request, files=files)
        given = form.get("csrf_token")
        if not isinstance(given, str) or not given:
            raise PageError(403, "Please try again", "the form has no security token; reload the page and try again")
        if not csrf_matches(visit.token, given):
            raise PageError(403, "Please try again",
                            "the form's security token does not match; reload the page and try again")
        return form

    # --- rendering -------------------------------------------------------------------------------------------

    def render(self, request: Request, name: str, context: Mapping[str, Any] | None = None, *,
               visit: Visit | None, status: int = 200, csp: str = PAGE_CSP,
               headers: Mapping[str, str] | None = None) -> HTMLResponse:
        values = {**self.web.base_context(request), "operator": visit.operator.email if visit else None,
                  "csrf": visit.csrf if visit else "", "notice": "", "error": "", **(context or {})}
        html = self.web.environment.render(f"web/admin/{name}.html.j2", values)
        response = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
        response.headers["cache-control"] = "no-store"
        response.headers["content-security-policy"] = csp
        return response

    def signin_page(self, request: Request, *, error: str = "", notice: str = "", status: int = 200,
                    headers: Mapping[str, str] | None = None) -> HTMLResponse:
        token, fresh = self.web.csrf.issue(request, form=SIGNIN_FORM)
        response = self.render(request, "signin", {"signin_csrf": token, "error": error, "notice": notice,
                                                   "has_operators": has_operators(self.engine)},
                               visit=None, status=status, headers=headers)
        set_csrf_cookie(response, request, fresh)
        return response

    async def audit(self, visit: Visit, action: str, detail: str) -> None:
        await run_in_threadpool(record_action, self.engine, visit.operator.email, action, detail, now=self.now())

    # --- wrapping handlers -----------------------------------------------------------------------------------

    def page(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        """A GET page for signed-in operators; others get the sign-in page (401 below /admin/ itself)."""

        async def endpoint(request: Request) -> Response:
            visit = await self.visit(request)
            if visit is None:
                root = request.url.path.rstrip("/").endswith("/admin")
                return await run_in_threadpool(self.signin_page, request, status=200 if root else 401)
            return await handler(request, visit)

        endpoint.__name__ = handler.__name__
        return endpoint

    def action(self, handler: Action, *, files: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """A POST of a signed-in page: session, origin and CSRF checked before ``handler`` runs."""

        async def endpoint(request: Request) -> Response:
            visit = await self.visit(request)
            if visit is None:
                return await run_in_threadpool(
                    self.signin_page, request, status=401,
                    error="You are not signed in (or your session ended): sign in and try again.")
            form = await self.checked(request, visit, files=files)
            return await handler(request, visit, form)

        endpoint.__name__ = handler.__name__
        return endpoint

    # --- sign-in and sign-out --------------------------------------------------------------------------------

    async def signin_form(self, request: Request) -> Response:
        visit = await self.visit(request)
        if visit is not None and self.home is not None:
            return await self.home(request, visit)
        return await run_in_threadpool(self.signin_page, request)

    async def signin(self, request: Request) -> Response:
        form = await self.read_form(request)
        try:
            self.web.csrf.check(request, form, target=SIGNIN_FORM)
        except CsrfError as error:
            return await run_in_threadpool(self.signin_page, request, error=str(error), status=403)
        email, password = str(form.get("email", "")), str(form.get("password", ""))
        async with self.signin_lock:
            try:
                signed = await run_in_threadpool(sign_in, self.engine, email, password,
                                                 client=client_ip(request) or "unknown", now=self.now())
            except SignInError as error:
                status = 429 if error.retry_after else 401
                headers = {"retry-after": str(error.retry_after)} if error.retry_after else None
                return await run_in_threadpool(self.signin_page, request, error=str(error), status=status,
                                               headers=headers)
        visit = Visit(signed.operator, signed.token)
        assert self.home is not None  # set by routes before any request
        response = await self.home(request, visit)
        response.set_cookie(self.cookie_name(request), signed.token, max_age=int(SESSION_LIFETIME.total_seconds()),
                            path="/", httponly=True, samesite="strict", secure=self.secure(request))
        return response

    async def signout(self, request: Request, visit: Visit, form: FormData) -> Response:
        await run_in_threadpool(sign_out, self.engine, visit.token, actor=visit.operator.email, now=self.now())
        response = await run_in_threadpool(self.signin_page, request, notice="You are signed out.")
        response.delete_cookie(self.cookie_name(request), path="/", httponly=True, samesite="strict",
                               secure=self.secure(request))
        return response

    async def stylesheet(self, request: Request) -> Response:
        loader = self.web.environment.jinja.loader
        assert loader is not None  # RenderEnvironment always sets one
        source, _, _ = loader.get_source(self.web.environment.jinja, "web/admin/admin.css")
        return Response(source, media_type="text/css; charset=utf-8", headers={"cache-control": "public, max-age=3600"})
