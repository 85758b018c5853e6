"""Header fields as they go on the wire: RFC 2047 only where needed, words of at most 75, lines folded.

Encoding a whole header value as one encoded word (what ``email.header.Header`` does) hides structure a
reader needs: ``List-Id: =?utf-8?b?...?=`` no longer shows the ``<list-id>`` RFC 2919 requires, and a
single word can run far past RFC 2047's 75 characters on a line of 170. The stdlib's ``email.policy``
header classes know each field's grammar instead: they encode only the display phrase (or the non-ASCII
words of unstructured text), keep addresses and ``<ids>`` raw, and fold at whitespace.

They fold at ``max_line_length`` but let an encoded word use the whole line ("=?utf-8?q?...?=" of 76
after one leading space), one over RFC 2047's limit; folding at 76 keeps every word within 75 and every
line within RFC 5322's recommended 78.
"""

from __future__ import annotations

import base64
import email
import re
from email.header import Header
from email.policy import SMTP
from email.utils import formataddr

FOLD_AT = 76
"""Fold lines at 76: encoded words then stay at or under 75 characters (see the module docstring)."""
MAX_LINE = 78
MAX_ENCODED_WORD = 75
POLICY = SMTP.clone(max_line_length=FOLD_AT)
ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _one_line(value: str) -> str:
    """No CR/LF (or other whitespace run) from any source can start a new header field."""
    return " ".join(value.split())


def fold(name: str, value: str) -> str:
    """``Name: value`` folded per the field's grammar, lines joined by CRLF, no final CRLF."""
    value = _one_line(value)
    if value.isascii():
        return _fold_ascii(f"{name}: {value}")  # no encoding needed: fold at spaces, without the policy's parse
    folded = str(POLICY.header_factory(name, value).fold(policy=POLICY)).rstrip("\r\n")
    if str(email.message_from_string(folded + "\r\n\r\n", policy=POLICY)[name]) == value:
        return folded
    # The policy's folder can drop the space between two encoded words ("—— ¡" came back "——¡"; found by
    # tests/test_headers.py): then the whole value goes in encoded words, which keep their spaces.
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n", maxlinelen=FOLD_AT)
    return f"{name}: {encoded}"


def _fold_ascii(line: str) -> str:
    """Greedy folding at spaces. (The policy would move a value that fits on a line of its own to the next
    line, "Subject:\r\n 9 new…", which parsers read back with a leading space.)"""
    if len(line) <= FOLD_AT:
        return line
    lines: list[str] = []
    current = ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > FOLD_AT:
            lines.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return "\r\n".join(lines)


def address_header(name: str, display_name: str, address: str) -> str:
    """``From``/``To``: only the display phrase is encoded (or quoted); the address stays raw.

    Built here rather than by the policy, which parses the address back (~3 ms: per reader, that is more
    than the rest of a send costs). An ASCII phrase is quoted when it needs it (``formataddr``); a
    non-ASCII one becomes B-encoded words split between characters, at spaces where they fit, so decoders
    that drop the folding between words (RFC 2047 6.2) join them back exactly.
    """
    display_name = _one_line(display_name)
    if not display_name:
        return f"{name}: {address}"
    if display_name.isascii():
        return _fold_ascii(f"{name}: {formataddr((display_name, address))}")
    lines = [f"{name}:"]
    for word in _encoded_words(display_name, first=FOLD_AT - len(name) - 2):
        if len(lines) == 1 and len(lines[0]) + 1 + len(word) <= FOLD_AT:
            lines[0] = f"{lines[0]} {word}"
        else:
            lines.append(f" {word}")
    bracketed = f"<{address}>"
    if len(lines[-1]) + 1 + len(bracketed) <= FOLD_AT:
        lines[-1] = f"{lines[-1]} {bracketed}"
    else:
        lines.append(f" {bracketed}")
    return "\r\n".join(lines)


_EW_PREFIX, _EW_SUFFIX = "=?utf-8?b?", "?="


def _ew_length(text: str) -> int:
    return len(_EW_PREFIX) + 4 * -(-len(text.encode("utf-8")) // 3) + len(_EW_SUFFIX)


def _encoded_words(text: str, *, first: int) -> list[str]:
    """B-encoded words of at most ``first`` characters for the first and 75 for the others."""
    words: list[str] = []
    limit = min(first, MAX_ENCODED_WORD)
    while text:
        end = len(text)
        while _ew_length(text[:end]) > limit:
            end -= 1
        if end < len(text):
            space = text.rfind(" ", 0, end)
            if space > 0:
                end = space + 1  # the space stays inside the word: whitespace between words is dropped
        chunk, text = text[:end], text[end:]
        words.append(_EW_PREFIX + base64.b64encode(chunk.encode("utf-8")).decode("ascii") + _EW_SUFFIX)
        limit = MAX_ENCODED_WORD
    return words


def list_id_header(phrase: str, list_id: str) -> str:
    """RFC 2919 ``List-Id: phrase <id>``: the phrase may be encoded, the ``<id>`` never is."""
    phrase = _one_line(re.sub(r'[<>"]', " ", phrase))
    ident = f"<{list_id}>"
    if not phrase:
        return f"List-Id: {ident}"
    # The phrase is folded on its own: the policy may merge a following ASCII word into an encoded word.
    folded = fold("List-Id", phrase)
    last = folded.rpartition("\r\n")[2]
    return f"{folded} {ident}" if len(last) + 1 + len(ident) <= FOLD_AT else f"{folded}\r\n {ident}"
