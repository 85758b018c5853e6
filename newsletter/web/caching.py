"""HTTP validators for the public pages (archive, edition pages, feeds): ETag, Last-Modified and 304s.

Why: feed readers poll every few minutes and the archive is crawled; a validator lets them ask "changed?"
for the cost of one small indexed query, without the page being rendered or sent again (RFC 9110 §13).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import Response


def etag_of(*parts: object) -> str:
    """A strong entity tag over everything the representation depends on."""
    digest = hashlib.sha256("\0".join(map(str, parts)).encode("utf-8")).hexdigest()[:32]
    return f'"{digest}"'


def http_date(value: datetime) -> str:
    return format_datetime(value.replace(microsecond=0), usegmt=True)


def not_modified(request: Request, etag: str, last_modified: datetime | None) -> bool:
    """True when the client's copy is current: If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)."""
    match = request.headers.get("if-none-match")
    if match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in match.split(",")}
        return "*" in tags or etag in tags
    since = request.headers.get("if-modified-since")
    if since and last_modified is not None:
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        if when.tzinfo is None:
            return False
        return last_modified.replace(microsecond=0) <= when
    return False


def validator_headers(etag: str, last_modified: datetime | None, cache_control: str) -> dict[str, str]:
    headers = {"etag": etag, "cache-control": cache_control}
    if last_modified is not None:
        headers["last-modified"] = http_date(last_modified)
    return headers


def not_modified_response(headers: Mapping[str, str]) -> Response:
    return Response(status_code=304, headers=dict(headers))
