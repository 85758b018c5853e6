"""The JSON API's handlers: each reads its input, calls the library function the CLI calls, answers JSON.

Input is checked here only as far as JSON goes (types, known keys); everything else is checked by the
library, and its errors are answered with their own words: 404 for an unknown address or edition, 409 for
a change the subscriber's state refuses, 422 for bad input (``errors.answer``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from newsletter.config import Settings
from newsletter.service.status import status_view
from newsletter.storage.editions import EditionStore
from newsletter.storage.papers import PaperStore
from newsletter.usecases import edition_review
from newsletter.usecases.reports import papers_view
from newsletter.usecases.subscribe import add_subscriber, remove_subscriber, subscriber_json, subscriber_store
from newsletter.usecases.subscriber_view import subscriber_view
from newsletter.web.api.errors import ApiError
from newsletter.web.api.openapi import document
from subscribers.addresses import valid_email
from subscribers.models import Frequency, Status

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BODY = 64 * 1024


def _json(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(value, status_code=status, headers={"cache-control": "no-store"})


def _integer(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(422, f"{name} must be a whole number from {low} to {high}, not {raw[:20]!r}")
    return int(raw)


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(422, f"{name} must be true or false, not {raw[:20]!r}")
    return raw in ("true", "1")


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(422, f"{name} must be a string")
    return value


def _topics(body: dict[str, Any]) -> list[str] | None:
    value = body.get("topics")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ApiError(422, "topics must be a list of topic slugs")
    return [t.strip() for t in value if t.strip()]


class ApiHandlers:
    def __init__(self, settings: Settings, engine: Engine, *, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock

    async def body(self, request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "the body must be JSON (content-type: application/json)")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, "the body is larger than any request of this API")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(422, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(422, "the body must be a JSON object")
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise ApiError(422, f"unknown key {unknown[0]!r}; expected: {', '.join(allowed)}")
        return body

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(function, *args, **kwargs)

    # --- routes ---------------------------------------------------------------------------------------------

    async def status(self, request: Request) -> Response:
        return _json(await self.run(status_view, self.settings, self.engine, now=self.clock()))

    async def list_subscribers(self, request: Request) -> Response:
        limit = _integer(request, "limit", 100, 1, 1000)
        offset = _integer(request, "offset", 0, 0, 10**9)
        query = request.query_params
        store = subscriber_store(self.settings, self.engine)
        total, page = await self.run(store.page, status=cast(Status | None, query.get("status") or None),
                                     frequency=cast(Frequency | None, query.get("frequency") or None),
                                     topic=query.get("topic") or None, limit=limit, offset=offset)
        return _json({"count": total, "limit": limit, "offset": offset,
                      "subscribers": [subscriber_json(s) for s in page]})

    async def add_subscriber(self, request: Request) -> Response:
        body = await self.body(request, ("email", "name", "topics", "frequency", "force"))
        email = _text(body, "email")
        if not email:
            raise ApiError(422, "email is required")
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise ApiError(422, "force must be true or false")
        what, subscriber = await self.run(
            add_subscriber, self.settings, self.engine, email, now=self.clock(), name=_text(body, "name"),
            topics=_topics(body), frequency=cast(Frequency | None, _text(body, "frequency")), pending=False,
            force=force, source="api")
        return _json({"result": what, "subscriber": subscriber_json(subscriber)}, 201 if what == "added" else 200)

    async def show_subscriber(self, request: Request) -> Response:
        return _json(await self.run(subscriber_view, self.settings, self.engine, request.path_params["email"]))

    async def update_subscriber(self, request: Request) -> Response:
        body = await self.body(request, ("topics", "frequency"))
        if not body:
            raise ApiError(422, "nothing to change: give topics and/or frequency")
        store = subscriber_store(self.settings, self.engine)
        subscriber = await self.run(store.require, valid_email(request.path_params["email"]))
        frequency = _text(body, "frequency") or subscriber.frequency
        topics = _topics(body)
        after = await self.run(store.update_preferences, subscriber.id,
                               topics=list(subscriber.topics) if topics is None else topics, frequency=frequency,
                               now=self.clock())
        return _json({"subscriber": subscriber_json(after)})

    async def remove_subscriber(self, request: Request) -> Response:
        topic = request.query_params.get("topic") or None
        delete = _flag(request, "delete")
        if delete and topic:
            raise ApiError(422, "delete and topic do not go together")
        removal = await self.run(remove_subscriber, self.settings, self.engine, request.path_params["email"],
                                 now=self.clock(), topic=topic, delete=delete)
        if removal.deleted:
            result = "deleted"
        elif not removal.changed:
            result = "unchanged"
        elif topic and removal.subscriber.status != "unsubscribed":
            result = "removed-topic"
        else:
            result = "unsubscribed"
        return _json({"result": result, "subscriber": None if removal.deleted else subscriber_json(removal.subscriber)})

    async def list_editions(self, request: Request) -> Response:
        limit = _integer(request, "limit", 20, 1, 365)
        frequency = request.query_params.get("frequency") or None
        if frequency not in (None, "daily", "weekly"):
            raise ApiError(422, f"unknown frequency {frequency!r}; expected one of: daily, weekly")

        def read() -> list[dict[str, Any]]:
            editions = EditionStore(self.engine).editions(frequency=cast(Frequency | None, frequency), limit=limit)
            return [edition_review.edition_json(self.engine, e) for e in editions]

        found = await self.run(read)
        return _json({"count": len(found), "editions": found})

    async def show_edition(self, request: Request) -> Response:
        def read() -> dict[str, Any]:
            edition = edition_review.stored_edition(self.engine, request.path_params["id"])
            return edition_review.edition_json(self.engine, edition, papers=True)

        return _json(await self.run(read))

    async def approve_edition(self, request: Request) -> Response:
        def approve() -> dict[str, Any]:
            edition = edition_review.stored_edition(self.engine, request.path_params["id"])
            message = edition_review.approve(self.settings, self.engine, edition, now=self.clock(),
                                             by=f"api:{request.state.token}")
            return {"message": message, "edition": edition_review.edition_json(self.engine, edition)}

        return _json(await self.run(approve))

    async def list_papers(self, request: Request) -> Response:
        raw = request.query_params.get("since") or None
        since = None
        if raw is not None:
            try:
                since = datetime.fromisoformat(raw)
            except ValueError:
                raise ApiError(422, f"since must be a date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM), not "
                                    f"{raw[:30]!r}") from None
            if since.tzinfo is None:
                since = since.replace(tzinfo=ZoneInfo(self.settings.newsletter.timezone))
        limit = _integer(request, "limit", 200, 1, 2000)
        view = await self.run(papers_view, self.settings, PaperStore(self.engine), now=self.clock(), since=since,
                              topic=request.query_params.get("topic") or None, unmatched=_flag(request, "unmatched"))
        return _json({"count": len(view.papers), "papers": view.papers[:limit]})

    async def openapi(self, request: Request) -> Response:
        return _json(document())
