"""The JSON API's one route table: the Starlette routes and the OpenAPI document are both made from it.

Each ``Operation`` names its method, path, handler (a method of ``ApiHandlers``), its query parameters, the
shape of its request body and its answers. ``starlette_routes`` and ``openapi.document`` read only this
table, so a route cannot exist without its documentation or the other way round (tests/test_api.py checks
the document against the app's routes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from newsletter.config.webhooks import EVENTS
from subscribers.models import STATUSES


@dataclass(frozen=True, kw_only=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any]
    where: str = "query"
    required: bool = False


@dataclass(frozen=True, kw_only=True)
class Operation:
    method: str
    path: str
    handler: str
    summary: str
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    answers: dict[int, str] = field(default_factory=dict)
    writes: bool = False
    """Whether the operation changes something (its token's name is logged, and the audit log records it)."""


STRING = {"type": "string"}
EMAIL = Param(name="email", where="path", required=True, description="The subscriber's address.", schema=STRING)
EDITION = Param(name="id", where="path", required=True, schema=STRING,
                description="The edition's numeric id or its slug (daily-2026-06-12).")
FREQUENCY = {"type": "string", "enum": ["daily", "weekly"]}
TOPICS = {"type": "array", "items": {"type": "string"}, "description": "Topic slugs, in the reader's order."}

OPERATIONS: tuple[Operation, ...] = (
    Operation(method="GET", path="/status", handler="status", summary="What `newsletter status --json` shows.",
              answers={200: "The status view."}),
    Operation(
        method="GET", path="/subscribers", handler="list_subscribers",
        summary="Subscribers in the order they were added, a page at a time (`subscribers list --json`).",
        params=(
            Param(name="status", description="Only subscribers of this status.",
                  schema={"type": "string", "enum": list(STATUSES)}),
            Param(name="topic", description="Only subscribers of this topic (a slug).", schema=STRING),
            Param(name="frequency", description="Only subscribers of this frequency.", schema=FREQUENCY),
            Param(name="limit", description="Subscribers per page (1 to 1000, default 100).",
                  schema={"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
            Param(name="offset", description="How many to skip (default 0).",
                  schema={"type": "integer", "minimum": 0, "default": 0}),
        ),
        answers={200: "A page: count (all that match), limit, offset, subscribers.", 422: "A bad filter."},
    ),
    Operation(
        method="POST", path="/subscribers", handler="add_subscriber", writes=True,
        summary="Add or update a subscriber the operator vouches for: active at once (`subscribers add`).",
        body={"type": "object", "required": ["email"], "additionalProperties": False, "properties": {
            "email": {"type": "string"}, "name": {"type": "string"}, "topics": TOPICS, "frequency": FREQUENCY,
            "force": {"type": "boolean", "description": "Add a suppressed address anyway (`--force`)."}}},
        answers={201: "Added.", 200: "Updated or unchanged.", 409: "The address is suppressed.",
                 422: "Bad input."},
    ),
    Operation(method="GET", path="/subscribers/{email}", handler="show_subscriber", params=(EMAIL,),
              summary="Everything stored about one address (`subscribers show --json`).",
              answers={200: "subscriber, suppressed, events, feedback.", 404: "Not a subscriber, not suppressed."}),
    Operation(
        method="PATCH", path="/subscribers/{email}", handler="update_subscriber", params=(EMAIL,), writes=True,
        summary="New topics and/or frequency for an active or pending subscriber (as the manage page).",
        body={"type": "object", "additionalProperties": False, "minProperties": 1,
              "properties": {"topics": TOPICS, "frequency": FREQUENCY}},
        answers={200: "The subscriber after the change.", 404: "No such subscriber.",
                 409: "Not active or pending.", 422: "Bad input."},
    ),
    Operation(
        method="DELETE", path="/subscribers/{email}", handler="remove_subscriber", writes=True,
        summary="Unsubscribe from everything or one topic, or erase the personal data (`subscribers remove`).",
        params=(EMAIL,
                Param(name="topic", description="Remove only this topic (the last one unsubscribes).", schema=STRING),
                Param(name="delete", description="true: erase the personal data, keep a suppression entry.",
                      schema={"type": "boolean", "default": False})),
        answers={200: "result (unsubscribed, removed-topic, unchanged, deleted) and the subscriber.",
                 404: "No such subscriber.", 422: "Bad input."},
    ),
    Operation(
        method="GET", path="/editions", handler="list_editions", summary="The newest editions first.",
        params=(Param(name="frequency", description="Only editions of this frequency.", schema=FREQUENCY),
                Param(name="limit", description="How many (1 to 365, default 20).",
                      schema={"type": "integer", "minimum": 1, "maximum": 365, "default": 20})),
        answers={200: "count and editions (with approval and delivery counts).", 422: "A bad filter."},
    ),
    Operation(method="GET", path="/editions/{id}", handler="show_edition", params=(EDITION,),
              summary="One edition as every email orders it, its note, pins, drops and approval (`edition show`).",
              answers={200: "The edition.", 404: "No such edition."}),
    Operation(method="POST", path="/editions/{id}/approve", handler="approve_edition", params=(EDITION,),
              writes=True, summary="Approve the edition for sending (`edition approve`).",
              answers={200: "message (as the CLI prints it) and the edition.", 404: "No such edition.",
                       409: "Being sent or sent, or empty."}),
    Operation(
        method="GET", path="/papers", handler="list_papers", summary="Stored papers, newest first (`papers --json`).",
        params=(Param(name="since", description="Only papers first seen at or after this date or time "
                      "(YYYY-MM-DD or YYYY-MM-DDTHH:MM, in the newsletter's time zone).", schema=STRING),
                Param(name="topic", description="Only papers matched to this topic.", schema=STRING),
                Param(name="unmatched", description="true: only papers no topic claims.",
                      schema={"type": "boolean", "default": False}),
                Param(name="limit", description="At most this many papers (1 to 2000, default 200).",
                      schema={"type": "integer", "minimum": 1, "maximum": 2000, "default": 200})),
        answers={200: "count (all that match) and papers (the newest, up to limit).", 422: "A bad filter."},
    ),
    Operation(method="GET", path="/openapi.json", handler="openapi", summary="This document.",
              answers={200: "The OpenAPI 3.1 document."}),
)

WEBHOOK_EVENTS = EVENTS
"""Listed in the document's description so a reader of the API finds the webhooks too."""
