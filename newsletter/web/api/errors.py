"""How the JSON API answers a failure: ``{"error": "..."}`` with the library's (the CLI's) words."""

from __future__ import annotations

from starlette.responses import JSONResponse

from newsletter.errors import ApiTokenError, NewsletterError
from newsletter.usecases.edition_review import EditionError
from subscribers.errors import NotFoundError, StatusError, SubscribersError, SuppressedError


class ApiError(Exception):
    """An answer other than 2xx, with its status and message."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def status_of(error: NewsletterError | SubscribersError) -> int:
    """404 for what does not exist, 409 for a state that refuses the change, 422 for bad input."""
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, EditionError):
        return 404 if str(error).startswith("no edition ") else 409
    if isinstance(error, (StatusError, SuppressedError)):
        return 409
    if isinstance(error, ApiTokenError):
        return 401
    return 422


def answer(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status,
                        headers={"cache-control": "no-store", **(headers or {})})
