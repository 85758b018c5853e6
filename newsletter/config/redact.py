"""Passwords out of every rendering of a URL: errors, run records, `status`, logs.

Broker and database URLs carry credentials (``amqp://user:secret@host``); an error that quotes the URL
used to put the password into the runs table and on the operator's screen.
"""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s/]*)@")


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ``***``."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
