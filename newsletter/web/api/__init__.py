"""The JSON API under ``/api/v1`` (docs/api.md): one route table (``routes``) makes the routes and the OpenAPI
document (``openapi``); handlers call the same library functions as the CLI."""

from newsletter.web.api.app import api_app as api_app
