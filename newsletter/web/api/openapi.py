"""The OpenAPI 3.1 document of the JSON API, made from the route table (``routes.OPERATIONS``) alone."""

from __future__ import annotations

from typing import Any

from newsletter import __version__
from newsletter.web.api.routes import OPERATIONS, WEBHOOK_EVENTS, Operation

ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string", "description": "What went wrong, in the words the CLI uses."}}}


def _operation(operation: Operation) -> dict[str, Any]:
    public = operation.path == "/openapi.json"  # the document itself needs no token
    answers = operation.answers if public else {**operation.answers, 401: "No valid bearer token."}
    found: dict[str, Any] = {
        "operationId": operation.handler,
        "summary": operation.summary,
        "responses": {
            str(status): {"description": text, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"} if status >= 400 else {"type": "object"}}}}
            for status, text in sorted(answers.items())
        },
    }
    if operation.params:
        found["parameters"] = [{"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                                "description": p.description, "schema": p.schema} for p in operation.params]
    if operation.body is not None:
        found["requestBody"] = {"required": True, "content": {"application/json": {"schema": operation.body}}}
    if public:
        found["security"] = []
    return found


def document(*, server: str = "/api/v1") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Trending-papers newsletter API",
            "version": __version__,
            "description": "The operator's JSON API (docs/api.md). Authenticate with `Authorization: Bearer "
                           "<token>` (`newsletter admin token NAME`). Webhook events (docs/webhooks.md): "
                           + ", ".join(WEBHOOK_EVENTS) + ".",
        },
        "servers": [{"url": server}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR},
        },
        "paths": paths,
    }
