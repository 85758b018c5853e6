"""The subscriber web pages (Starlette): subscribe, confirm, manage, unsubscribe, the archive and Atom feeds.

``create_app(settings, engine)`` returns the ASGI app; `newsletter web` serves it with uvicorn and
`newsletter serve` runs it on the scheduler's event loop. Pages are Jinja templates in ``templates/web/``
rendered by the project's sandboxed, autoescaping environment (a user's template folder overrides them).

Rules every handler follows (``docs/subscribers.md``):

* GET never changes anything: links in emails lead to a page with a button, the button POSTs.
* ``POST /subscribe`` answers the same page whatever the address (no enumeration); it is rate-limited per
  client IP (429 past the limit) and sends at most 3 confirmation emails per address per 7 days (in the DB).
* Tokens grant one purpose for one subscriber: a bad, tampered or cross-purpose token is 404, an expired
  confirmation link 410. Forms are checked for a CSRF token (``newsletter.web.security``) except confirm and
  the RFC 8058 one-click unsubscribe, which needs no cookie and answers 200 without a redirect.
* No redirects at all (so no open redirect), security headers and a script-free CSP on every response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route

from newsletter.config import Settings
from newsletter.errors import ConfigError, TemplateError
from newsletter.rendering.links import signer_from_settings
from newsletter.rendering.templating import RenderEnvironment
from newsletter.storage.editions import EditionStore
from newsletter.storage.outbox import ConfirmationOutbox, OutboxItem
from newsletter.storage.reader_feeds import ReaderFeeds
from newsletter.usecases.subscribe import subscriber_store
from newsletter.usecases.webhooks import attach, check_secrets, run_webhooks
from newsletter.web.admin import admin_routes
from newsletter.web.api import api_app
from newsletter.web.archive_pages import SMALL_NUMBER, ArchivePages
from newsletter.web.feedback import feedback_routes
from newsletter.web.guards import BodyDeadline
from newsletter.web.outbox import ConfirmationSender
from newsletter.web.pages import PageError
from newsletter.web.proxies import TrustedProxies, client_ip
from newsletter.web.reader_feed import STOPPED, feed_urls, reader_feed_routes
from newsletter.web.security import (
    PAGE_CSP,
    SECURITY_HEADERS,
    Csrf,
    CsrfError,
    SecurityHeaders,
    set_csrf_cookie,
)
from newsletter.web.signup import SignUps
from subscribers.addresses import MAX_LENGTH, sendable_email
from subscribers.errors import ExpiredTokenError, NotFoundError, StatusError, SubscribersError, TokenError
from subscribers.models import Subscriber
from subscribers.rate_limit_store import RateLimits
from subscribers.tokens import Purpose, TokenSigner

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
HONEYPOT_FIELD = "website"
ONE_CLICK = ("List-Unsubscribe", "One-Click")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class WebApp(ArchivePages):
    """The handlers and what they share; ``create_app`` wires them into Starlette."""

    def __init__(self, settings: Settings, engine: Engine, *, signer: TokenSigner,
                 clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.engine = engine
        self.store = subscriber_store(settings, engine)
        self.limits = RateLimits(engine)
        self.editions = EditionStore(engine)
        self.signer = signer
        self.csrf = Csrf(signer.keyring, allowed_origins=(_origin(settings.newsletter.base_url),))
        self.clock = clock
        self.environment = RenderEnvironment(settings)
        self.rate_lock = asyncio.Lock()
        self.outbox = ConfirmationOutbox(engine)
        self.signups = SignUps(self.store, self.outbox, self.limits)
        self.sender = ConfirmationSender(settings, engine, signer, environment=self.environment,
                                         clock=lambda: self.clock())
        ArchivePages.__init__(self)

    # --- rendering -----------------------------------------------------------------------------------------

    def base_context(self, request: Request) -> dict[str, Any]:
        newsletter = self.settings.newsletter
        return {
            "newsletter": {"name": newsletter.name, "base_url": newsletter.base_url},
            "root": request.scope.get("root_path", "").rstrip("/"),
            "path": request.url.path,
            "postal_address": self.settings.email.postal_address,
        }

    def page(self, request: Request, name: str, context: Mapping[str, Any] | None = None, *, status: int = 200,
             csrf: bool = False, headers: Mapping[str, str] | None = None,
             background: BackgroundTask | None = None) -> HTMLResponse:
        values = {**self.base_context(request), **(context or {})}
        fresh = None
        if csrf:
            values["csrf_token"], fresh = self.csrf.issue(request, form=self.form_target(request, name))
        html = self.environment.render(f"web/{name}.html.j2", values)
        response = HTMLResponse(html, status_code=status, headers=dict(headers or {}), background=background)
        response.headers["cache-control"] = "no-store"
        set_csrf_cookie(response, request, fresh)
        return response

    @staticmethod
    def form_target(request: Request, name: str | None = None) -> str:
        """The path (below the site's root) a page's form posts to, which its CSRF token is bound to."""
        if name == "index":
            return "/subscribe"
        path, root = str(request.scope.get("path", "")), str(request.scope.get("root_path", ""))
        return path[len(root):] if root and path.startswith(root) else path

    def error_page(self, request: Request, error: PageError) -> HTMLResponse:
        response = self.page(request, "error", {"status": error.status, "title": error.title,
                                                "message": error.message}, status=error.status, headers=error.headers)
        for name, value in {**SECURITY_HEADERS, "content-security-policy": PAGE_CSP}.items():
            response.headers.setdefault(name, value)  # also outside the middleware (Starlette's 500 handler)
        return response

    # --- request helpers -----------------------------------------------------------------------------------

    @staticmethod
    async def read_form(request: Request) -> FormData:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise PageError(413, "Too large", "This request is larger than any form on this site.")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            raise PageError(415, "Not a form", "This address accepts form submissions only.")
        try:
            return await request.form(max_files=0, max_fields=100, max_part_size=MAX_BODY_BYTES)
        except HTTPException as error:
            raise PageError(400, "Bad form", "The form could not be read.") from error

    def subscriber_for(self, purpose: Purpose, token: str) -> Subscriber:
        try:
            subscriber_id = self.signer.verify(purpose, token)
        except ExpiredTokenError:
            raise PageError(410, "This link has expired",
                            "Confirmation links work for 3 days. Subscribe again to get a new one.") from None
        except TokenError:
            raise PageError(404, "This link is not valid",
                            "Check that the whole link from the email was opened.") from None
        subscriber = self.store.get(subscriber_id)
        if subscriber is None:
            raise PageError(404, "This link is not valid", "There is no subscription for this link any more.")
        return subscriber

    def topics_view(self, chosen: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Every topic, the chosen ones first in the reader's order, with their position (1, 2, …)."""
        topics = {t.slug: t for t in self.settings.topics}
        ordered = [topics[s] for s in chosen if s in topics] + [t for t in self.settings.topics if t.slug not in chosen]
        return [
            {"slug": t.slug, "name": t.name, "description": t.description, "checked": t.slug in chosen,
             "position": chosen.index(t.slug) + 1 if t.slug in chosen else ""}
            for t in ordered
        ]

    def ordered_topics(self, form: FormData) -> list[str]:
        """Checked topics ordered by their position fields (then config order)."""
        index = {t.slug: i for i, t in enumerate(self.settings.topics)}
        checked = [str(v) for v in form.getlist("topics")]

        def position(slug: str) -> tuple[int, int]:
            raw = str(form.get(f"position-{slug}", "")).strip()
            if raw and not SMALL_NUMBER.fullmatch(raw):
                raise SubscribersError(f"the position of a topic must be a whole number, not {raw[:20]!r}")
            return (int(raw) if raw else 10_000, index.get(slug, 10_000))

        return sorted(dict.fromkeys(checked), key=position)

    def manage_url(self, request: Request, subscriber_id: int) -> str:
        return f"{self.base_context(request)['root']}/manage/{self.signer.sign('manage', subscriber_id)}"

    # --- subscribe -----------------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return self.subscribe_form(request)

    def subscribe_form(self, request: Request, *, email: str = "", chosen: tuple[str, ...] = (),
                       frequency: str = "daily", error: str = "", status: int = 200) -> HTMLResponse:
        return self.page(request, "index", {"topics": self.topics_view(chosen), "email": email, "frequency": frequency,
                                            "error": error, "honeypot": HONEYPOT_FIELD}, status=status, csrf=True)

    async def subscribe(self, request: Request) -> Response:
        form = await self.read_form(request)
        try:
            self.csrf.check(request, form, target=self.form_target(request))
        except CsrfError as error:
            raise PageError(403, "Please try again", str(error)) from None
        if str(form.get(HONEYPOT_FIELD, "")).strip():
            log.info("subscribe: honeypot field filled; nothing stored or sent")
            return self.page(request, "check_inbox")
        email = str(form.get("email", ""))
        topics = [str(t) for t in form.getlist("topics")]
        frequency = str(form.get("frequency", "daily"))
        ip = client_ip(request)
        now = self.clock()
        async with self.rate_lock:
            allowed = await run_in_threadpool(self.limits.allow_subscribe_from, ip or "unknown",
                                              limit=self.settings.web.subscribe_limit_per_ip, now=now)
        if not allowed:
            raise PageError(429, "Too many requests",
                            "Too many subscribe requests came from your network. Please try again in an hour.",
                            headers={"retry-after": "3600"})
        try:
            sendable_email(email)
            chosen = self.store.check_topics(topics, required=True)
            chosen_frequency = self.store.check_frequency(frequency)
        except SubscribersError as error:
            return self.subscribe_form(request, email=email[:MAX_LENGTH], chosen=tuple(topics),
                                       frequency=frequency, error=str(error), status=400)
        async with self.rate_lock:
            await run_in_threadpool(self.signups.accept, email, topics=chosen, frequency=chosen_frequency, ip=ip,
                                    now=now)
        self.sender.wake()
        return self.page(request, "check_inbox")

    # --- confirm -------------------------------------------------------------------------------------------

    def request_for(self, token: str) -> tuple[OutboxItem | None, Subscriber]:
        """The sign-up request a link names (and its subscriber); links of operator-sent confirmations name
        the subscriber only (``confirm`` tokens), and get (None, subscriber)."""
        try:
            item_id = self.signer.verify("request", token)
        except ExpiredTokenError:
            raise PageError(410, "This link has expired",
                            "Confirmation links work for 3 days. Subscribe again to get a new one.") from None
        except TokenError:
            return None, self.subscriber_for("confirm", token)
        item = self.outbox.get(item_id)
        subscriber = self.store.get(item.subscriber_id) if item is not None else None
        if item is None or subscriber is None:
            raise PageError(404, "This link is not valid", "There is no subscription request for this link any more.")
        return item, subscriber

    async def confirm_page(self, request: Request) -> Response:
        item, subscriber = await run_in_threadpool(self.request_for, request.path_params["token"])
        if item is None and subscriber.status not in ("pending", "active"):
            raise PageError(410, "This link is no longer valid", "This subscription request is closed.")
        if subscriber.status in ("bounced", "complained"):
            raise PageError(410, "This link is no longer valid", "This subscription request is closed.")
        active = item.state == "confirmed" if item is not None else subscriber.status == "active"
        return self.page(request, "confirm", {"email": subscriber.email, "active": active})

    async def confirm(self, request: Request) -> Response:
        item, subscriber = await run_in_threadpool(self.request_for, request.path_params["token"])
        now = self.clock()
        try:
            if item is not None:
                outcome, after = await run_in_threadpool(self.signups.confirm, item, ip=client_ip(request), now=now)
            else:
                outcome, after = await run_in_threadpool(self.store.confirm, subscriber.id, ip=client_ip(request),
                                                         now=now)
        except NotFoundError:
            raise PageError(404, "This link is not valid", "There is no subscription for this link any more.") from None
        if outcome == "not-pending":
            raise PageError(410, "This link is no longer valid", "This subscription request is closed.")
        return self.page(request, "confirmed", {"email": after.email, "manage_url": self.manage_url(request, after.id),
                                                "topics": self.topic_names(after.topics),
                                                "frequency": after.frequency})

    def topic_names(self, slugs: tuple[str, ...]) -> list[str]:
        names = {t.slug: t.name for t in self.settings.topics}
        return [names.get(s, s) for s in slugs]

    # --- manage --------------------------------------------------------------------------------------------

    def manage_form(self, request: Request, subscriber: Subscriber, *, notice: str = "", error: str = "",
                    chosen: tuple[str, ...] | None = None, frequency: str | None = None,
                    status: int = 200) -> HTMLResponse:
        return self.page(request, "manage", {
            "email": subscriber.email,
            "status": subscriber.status,
            "topics": self.topics_view(subscriber.topics if chosen is None else chosen),
            "frequency": frequency or subscriber.frequency,
            "notice": notice,
            "error": error,
            "feeds": None if subscriber.status in STOPPED else feed_urls(self, subscriber.id, now=self.clock()),
        }, status=status, csrf=True)

    async def manage_page(self, request: Request) -> Response:
        subscriber = await run_in_threadpool(self.subscriber_for, "manage", request.path_params["token"])
        return self.manage_form(request, subscriber)

    async def manage(self, request: Request) -> Response:
        subscriber = await run_in_threadpool(self.subscriber_for, "manage", request.path_params["token"])
        form = await self.read_form(request)
        try:
            self.csrf.check(request, form, target=self.form_target(request))
        except CsrfError as error:
            raise PageError(403, "Please try again", str(error)) from None
        action = str(form.get("action", "save"))
        now = self.clock()
        frequency = str(form.get("frequency", subscriber.frequency))
        try:
            topics = self.ordered_topics(form)
        except SubscribersError as error:
            return self.manage_form(request, subscriber, error=str(error), status=400)
        try:
            if action == "save":
                after = await run_in_threadpool(self.store.update_preferences, subscriber.id, topics=topics,
                                                frequency=frequency, now=now)
                return self.manage_form(request, after, notice="Your preferences are saved.")
            if action == "unsubscribe":
                await run_in_threadpool(self.store.unsubscribe, subscriber.id, now=now)
                found = await run_in_threadpool(self.store.get, subscriber.id)
                after = found or subscriber
                return self.manage_form(request, after, notice="You are unsubscribed from every topic.")
            if action == "rotate_feed":
                await run_in_threadpool(lambda: ReaderFeeds(self.engine).rotate(subscriber.id, now=now))
                return self.manage_form(request, subscriber, notice="Your feed has a new address: the old one no "
                                                                   "longer works. Update your feed reader.")
            if action == "resubscribe":
                after = await run_in_threadpool(self.store.resubscribe, subscriber.id, topics=topics,
                                                frequency=frequency, ip=client_ip(request), now=now)
                return self.manage_form(request, after, notice="Welcome back: you are subscribed again.")
        except StatusError as error:
            raise PageError(409, "Not possible for this subscription", str(error)) from None
        except NotFoundError:
            raise PageError(404, "This link is not valid", "There is no subscription for this link any more.") from None
        except SubscribersError as error:
            return self.manage_form(request, subscriber, error=str(error), chosen=tuple(topics), frequency=frequency,
                                    status=400)
        raise PageError(400, "Bad form", f"Unknown action {action[:40]!r}.")

    # --- unsubscribe ---------------------------------------------------------------------------------------

    async def unsubscribe_page(self, request: Request) -> Response:
        subscriber = await run_in_threadpool(self.subscriber_for, "unsubscribe", request.path_params["token"])
        return self.page(request, "unsubscribe", {"email": subscriber.email,
                                                  "subscribed": subscriber.status in ("active", "pending"),
                                                  "one_click": ONE_CLICK})

    async def unsubscribe(self, request: Request) -> Response:
        """RFC 8058 one-click: the body is ``List-Unsubscribe=One-Click`` (urlencoded or multipart)."""
        subscriber = await run_in_threadpool(self.subscriber_for, "unsubscribe", request.path_params["token"])
        form = await self.read_form(request)
        if form.get(ONE_CLICK[0]) != ONE_CLICK[1]:
            raise PageError(400, "Bad request", "An unsubscribe request carries List-Unsubscribe=One-Click.")
        await run_in_threadpool(self.store.unsubscribe, subscriber.id, now=self.clock())
        return self.page(request, "unsubscribed", {"email": subscriber.email,
                                                   "manage_url": self.manage_url(request, subscriber.id)})

    async def stylesheet(self, request: Request) -> Response:
        loader = self.environment.jinja.loader
        assert loader is not None  # RenderEnvironment always sets one
        source, _, _ = loader.get_source(self.environment.jinja, "web/web.css")
        return Response(source, media_type="text/css; charset=utf-8", headers={"cache-control": "public, max-age=3600"})


def _handle(app: WebApp, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except PageError as error:
            return app.error_page(request, error)

    endpoint.__name__ = handler.__name__
    return endpoint


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    signer: TokenSigner | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Starlette:
    """The web app as an ASGI application (run it with any ASGI server, on any event loop).

    ``signer`` defaults to the key in the environment variable named by ``[newsletter] secret_env`` (a
    missing key is a ConfigError now, not at the first request); ``clock`` to the real UTC time.
    """
    if signer is None:
        try:
            signer = signer_from_settings(settings)
        except SubscribersError as error:
            raise ConfigError(str(error)) from None
    check_secrets(settings)  # a webhook without its signing secret fails `serve` and `web` at start
    attach(settings, engine)
    web = WebApp(settings, engine, signer=signer, clock=clock or (lambda: datetime.now(UTC)))
    try:
        web.environment.template("web/base.html.j2")
    except TemplateError as error:
        raise ConfigError(f"the web templates cannot be loaded: {error}") from None

    def route(path: str, handler: Callable[[Request], Awaitable[Response]], method: str) -> Route:
        return Route(path, _handle(web, handler), methods=[method])

    routes = [
        route("/", web.index, "GET"),
        route("/subscribe", web.subscribe, "POST"),
        route("/confirm/{token}", web.confirm_page, "GET"),
        route("/confirm/{token}", web.confirm, "POST"),
        route("/manage/{token}", web.manage_page, "GET"),
        route("/manage/{token}", web.manage, "POST"),
        route("/unsubscribe/{token}", web.unsubscribe_page, "GET"),
        route("/unsubscribe/{token}", web.unsubscribe, "POST"),
        route("/archive", web.archive_index, "GET"),
        route("/archive/{slug}", web.archive_edition, "GET"),
        route("/topics/{slug}.atom", web.topic_feed, "GET"),
        *feedback_routes(web, route),
        *reader_feed_routes(web, route),
        *admin_routes(web, route),
        route("/healthz", web.healthz, "GET"),
        route("/static/web.css", web.stylesheet, "GET"),
        Mount("/api/v1", app=api_app(settings, engine, clock=web.clock)),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        titles = {404: "Not found", 405: "Method not allowed", 413: "Too large"}
        message = {404: "There is nothing at this address.",
                   405: "This address does not accept this kind of request.",
                   413: "This request is larger than any form on this site."}.get(status, "The request failed.")
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        return web.error_page(request, PageError(status, titles.get(status, "Error"), message, headers=headers))

    async def server_error(request: Request, exc: Exception) -> Response:
        """Starlette's own 500 page sits outside every middleware: this one carries the security headers."""
        log.error("unexpected error on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return web.error_page(request, PageError(500, "Something went wrong", "The request failed; please try "
                                                 "again later."))

    background: list[Callable[[], Coroutine[Any, Any, None]]] = [web.sender.run]  # what runs as long as the server
    if settings.webhooks:  # the webhook outbox's delivery loop (docs/webhooks.md)
        background.append(lambda: run_webhooks(settings, engine))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        """The background sender of confirmation emails (and the webhooks' delivery loop) live as long as the
        server (any ASGI server)."""
        tasks = [asyncio.create_task(job()) for job in background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(BodyDeadline, seconds=settings.web.body_timeout_seconds),
                                Middleware(TrustedProxies, trusted=settings.web.trusted_proxies),
                                Middleware(SecurityHeaders),
                                # here, not Starlette(max_body_size=...): that one answers outside SecurityHeaders
                                Middleware(RequestBodyLimitMiddleware, max_body_size=MAX_BODY_BYTES)],
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.router.redirect_slashes = False  # no redirects at all: nothing to turn into an open redirect
    app.state.web = web
    app.state.background = background
    return app
