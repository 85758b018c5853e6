"""The JSON API as an ASGI app, mounted at ``/api/v1`` by ``newsletter.web.app`` (docs/api.md).

Every request but the OpenAPI document needs ``Authorization: Bearer <token>`` with a token made by
`newsletter admin token NAME`; without one it is 401. Failures are JSON (``{"error": ...}``), also for an
unknown path (404) or method (405), and an unexpected failure is logged and answered 500 without details.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.storage.api_tokens import TokenStore
from newsletter.web.api.errors import ApiError, answer, status_of
from newsletter.web.api.handlers import ApiHandlers
from newsletter.web.api.routes import OPERATIONS, Operation
from subscribers.errors import SubscribersError

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
UNAUTHORIZED = {"www-authenticate": 'Bearer realm="newsletter"'}


def bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _endpoint(operation: Operation, handler: Handler, tokens: TokenStore,
              clock: Callable[[], datetime]) -> Handler:
    public = operation.path == "/openapi.json"

    async def endpoint(request: Request) -> Response:
        try:
            if not public:
                token = bearer(request)
                name = await run_in_threadpool(tokens.check, token, now=clock()) if token else None
                if name is None:
                    raise ApiError(401, "a valid API token is required (Authorization: Bearer <token>; "
                                        "`newsletter admin token NAME` makes one)", headers=UNAUTHORIZED)
                request.state.token = name
            response = await handler(request)
        except ApiError as error:
            return answer(error.status, error.message, error.headers)
        except (NewsletterError, SubscribersError) as error:
            return answer(status_of(error), str(error))
        if operation.writes:
            log.info("api: %s %s by token %r: %d", request.method, request.url.path, request.state.token,
                     response.status_code)
        return response

    endpoint.__name__ = operation.handler
    return endpoint


def routes(settings: Settings, engine: Engine, *, clock: Callable[[], datetime]) -> list[Route]:
    handlers = ApiHandlers(settings, engine, clock=clock)
    tokens = TokenStore(engine)
    return [Route(op.path, _endpoint(op, getattr(handlers, op.handler), tokens, clock), methods=[op.method])
            for op in OPERATIONS]


def api_app(settings: Settings, engine: Engine, *, clock: Callable[[], datetime]) -> Starlette:
    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = {404: "there is nothing at this address of the API (GET /api/v1/openapi.json lists it)",
                   405: "this address of the API does not accept this method"}.get(status, "the request failed")
        return answer(status, message, dict(exc.headers or {}) if isinstance(exc, HTTPException) else None)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("api: unexpected error on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return answer(500, "the request failed; the server's log says why")

    app = Starlette(routes=routes(settings, engine, clock=clock),
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.router.redirect_slashes = False
    return app
