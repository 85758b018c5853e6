"""Logging set-up: readable lines for people, JSON lines for log collectors (`--log-format json`).

Log lines quote what strangers wrote (a bounce's envelope sender, a feed server's reason phrase), and they
go to the operator's terminal: control characters other than newline and tab are written as visible
escapes (``\\x1b``), in both formats, so no escape sequence in a log line reaches a terminal.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def _visible(text: str, *, json_escapes: bool = False) -> str:
    """``text`` with each control character as ``\\xNN`` (or ``\\uNNNN``; always that inside JSON)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 and not json_escapes
                        else f"\\u{ord(m.group()):04x}", text)


class SafeFormatter(logging.Formatter):
    """The readable format, with control characters made visible."""

    def format(self, record: logging.LogRecord) -> str:
        return _visible(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _visible(json.dumps(entry, ensure_ascii=False), json_escapes=True)  # C0 is escaped by json.dumps


def configure_logging(*, level: int, json_lines: bool) -> None:
    handler = logging.StreamHandler()
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Long-running commands (`serve`, `worker`) raise our own loggers to INFO; each command starts from here.
    logging.getLogger("newsletter").setLevel(logging.NOTSET)
    # APScheduler logs every job start at INFO in its own words; ours say what the job did.
    logging.getLogger("apscheduler").setLevel(max(level, logging.WARNING))
