"""The one exception a handler raises to end a request with an error page (rendered by ``WebApp.error_page``)."""

from __future__ import annotations

from collections.abc import Mapping


class PageError(Exception):
    """Ends a request with an error page of this status."""

    def __init__(self, status: int, title: str, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        self.status, self.title, self.message, self.headers = status, title, message, dict(headers or {})
        super().__init__(f"{status} {title}: {message}")
