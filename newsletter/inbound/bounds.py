"""Bounds on one incoming message, checked on its bytes before any parser or detector sees it.

Why: the bounce domain's MX is public, so anyone can hand the listener a message up to
``max_message_bytes``. Before these checks, 2,000 nested multiparts made the stdlib parser raise
RecursionError (a 500 reply, nothing recorded), and a 2 MB message of 199,000 parts kept a core busy for
~30 s in flufl.bounce's detectors, which walk every line of every part.

The checks are counts over the raw bytes (C-speed ``bytes.count`` and one regular expression), so they
cost a few milliseconds for any message the listener accepts, and each is an upper bound of what the
parser would build:

* **lines**: every line ending the parser splits on (``\\r\\n``, ``\\r`` or ``\\n``);
* **containers** (``multipart/*`` and ``message/*`` Content-Type headers at the start of a line): the
  nesting depth cannot exceed their number (a ``multipart/digest`` part without a header is a
  ``message/rfc822`` that still needs a header of its own to nest further, so depth is at most twice it);
* **parts**: the lines that open a part of a declared boundary (``--BOUNDARY`` at the start of a line).

A message past a bound is quarantined and acknowledged: retrying it would not help.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONTAINER = re.compile(rb"(?im)^content-type:[ \t\r\n]*(?:multipart|message)/")
_BOUNDARY = re.compile(rb"""(?i)boundary[ \t]*=[ \t]*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))""")


@dataclass(frozen=True)
class MessageBounds:
    """The most a message may hold before it is quarantined unread (``[inbound]`` settings)."""

    max_bytes: int
    max_lines: int
    max_parts: int
    max_containers: int


def _line_starts(raw: bytes, prefix: bytes) -> int:
    """How many lines start with ``prefix``, for any of the three line endings."""
    count = raw.count(b"\n" + prefix) + raw.count(b"\r" + prefix)  # "\r\n--b" is in the first count only
    return count + (1 if raw.startswith(prefix) else 0)


def over_bounds(raw: bytes, bounds: MessageBounds) -> str | None:
    """Why the message is past a bound (for the log and the quarantine list), or None when it is within all."""
    if len(raw) > bounds.max_bytes:
        return f"{len(raw)} bytes, more than max_message_bytes ({bounds.max_bytes})"
    lines = raw.count(b"\n") + raw.count(b"\r") - raw.count(b"\r\n") + 1
    if lines > bounds.max_lines:
        return f"{lines} lines, more than max_message_lines ({bounds.max_lines})"
    containers = len(_CONTAINER.findall(raw))
    if containers > bounds.max_containers:
        return f"{containers} multipart or message parts, more than max_mime_containers ({bounds.max_containers})"
    boundaries = {quoted or bare for quoted, bare in _BOUNDARY.findall(raw)}
    if len(boundaries) > 2 * bounds.max_containers:
        return f"{len(boundaries)} MIME boundaries, more than {2 * bounds.max_containers}"
    parts = sum(_line_starts(raw, b"--" + boundary) for boundary in boundaries)
    if parts > bounds.max_parts:
        return f"{parts} MIME part delimiters, more than max_mime_parts ({bounds.max_parts})"
    return None
