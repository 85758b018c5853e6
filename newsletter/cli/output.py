"""Feed text made safe for a terminal: every string a feed (or a feed's server) wrote passes through here.

Why: rich reads ``[...]`` as markup, so a paper titled ``… [/INST] …``, or a server's reason phrase or
declared encoding quoted in an error, crashed `papers`, `topics`, `fetch` and then `status` with a
MarkupError; and a raw ESC sequence in a title reached the operator's terminal, where it can retitle the
window, hide text or worse. Markup is escaped and control characters are shown as visible ``\\x1b`` escapes.
"""

from __future__ import annotations

import re

from rich.markup import escape

# C0 (tab and newline too: a table cell or one-line message has no use for them), DEL, C1, lone surrogates
# (no terminal encoding can write them), bidi embeddings, overrides and isolates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: object) -> str:
    """``value`` as one line of text with its control characters made visible, for ``click.echo``."""
    return _CONTROL.sub(_visible, str(value))


def term(value: object) -> str:
    """``value`` for ``console.print`` or a rich table cell: control characters visible, markup escaped."""
    return escape(plain(value))
