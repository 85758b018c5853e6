"""MIME bytes built once per variant, personalised per recipient by splicing, not by rebuilding.

Building a stdlib ``EmailMessage`` per recipient costs ~4 ms, and quoted-printable encoding a 100 KB
body ~1 ms: together more than everything else a send does. So the variant's HTML and text are split at
their placeholders and each piece is quoted-printable encoded once; a recipient's message is the
pre-encoded pieces joined with their own (short) encoded values, each value between QP soft line
breaks so no line grows past the limit. Headers that differ per recipient are formatted per recipient.

Every message is also already in the form SMTP carries after DATA: CRLF line ends only, and no line that
starts with "." (such a dot is written ``=2E``, which any MIME reader decodes back). The sender can then
write it as it is, without a pass over 40 KB per message to double leading dots, and a DKIM signature over
these bytes is over exactly what arrives.
"""

from __future__ import annotations

import binascii
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from newsletter.delivery.headers import MAX_LINE, address_header, fold, list_id_header

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"
QP_LINE = 76
"""RFC 2045 6.7: encoded lines are at most 76 characters, soft break included."""


def _crlf(text: str) -> str:
    return re.sub(r"\r\n|\r|\n", "\r\n", text)


def _without_leading_dots(encoded: bytes) -> bytes:
    """QP text (which starts a line) with every line-initial "." written as "=2E", lines kept within 76."""
    if not encoded.startswith(b".") and b"\r\n." not in encoded:
        return encoded
    lines: list[bytes] = []
    for line in encoded.split(CRLF):
        while line.startswith(b"."):
            line = b"=2E" + line[1:]
            if len(line) <= QP_LINE:
                break
            cut = QP_LINE - 1  # leave room for the soft break's "="; never cut inside an "=XX" escape
            if line[cut - 1 : cut] == b"=":
                cut -= 1
            elif line[cut - 2 : cut - 1] == b"=":
                cut -= 2
            lines.append(line[:cut] + b"=")
            line = line[cut:]
        lines.append(line)
    return CRLF.join(lines)


def _qp_text(text: str) -> bytes:
    """QP for a body fragment: line breaks stay real CRLF line breaks, everything else is encoded."""
    lines = _crlf(text).split("\r\n")
    # b2a_qp wraps a line with "=\n" soft breaks; SMTP wants CRLF everywhere.
    encoded = CRLF.join(binascii.b2a_qp(line.encode("utf-8")).replace(b"\n", CRLF) for line in lines)
    return _without_leading_dots(encoded)


_LINE_BREAKS = re.compile(r"[\r\n]+")


def _qp_value(value: str) -> bytes:
    """A spliced value never carries a line break of its own: a name or a URL is one line."""
    if "\n" in value or "\r" in value:
        value = _LINE_BREAKS.sub(" ", value)
    if not value:
        return b""
    encoded = binascii.b2a_qp(value.encode("utf-8"))
    if b"\n" in encoded:  # soft breaks of a value longer than a line
        encoded = encoded.replace(b"\n", CRLF)
    return _without_leading_dots(encoded)


_QP_PLAIN = re.compile(r"[!-\-/-<>-~](?:[ !-<>-~]{0,74}[!-<>-~])?")
"""A value ``_qp_value`` leaves as it is: 1 to 76 printable ASCII characters without "=", no space at either
end (QP encodes a trailing one), not starting with "." (``=2E``). Names, greetings, addresses and links
mostly are."""
_HTML_SPECIAL = re.compile(r"[&<>\"']")
"""What ``html.escape(quote=True)`` replaces."""


def _value_encodings(value: str, *, in_text: bool, in_html: bool) -> tuple[bytes, bytes]:
    """A value as the text part carries it and, HTML-escaped, as the HTML part does (``b""`` for a part
    without it): ``_qp_value`` of each, with the common case (both the value's own ASCII bytes) found by one
    regular expression instead of two encodings."""
    if _QP_PLAIN.fullmatch(value):
        raw = value.encode("ascii")
        if not in_html:
            return (raw if in_text else b""), b""
        if not _HTML_SPECIAL.search(value):
            return (raw if in_text else b""), raw
        return (raw if in_text else b""), _qp_value(html.escape(value, quote=True))
    return (_qp_value(value) if in_text else b"",
            _qp_value(html.escape(value, quote=True)) if in_html else b"")


class _Body:
    """A document's quoted-printable pieces with a hole per placeholder, as one ``bytes`` format.

    Whether a hole needs a soft break before it depends only on the piece before it, so the breaks are in
    the format already: a recipient's body is one ``%`` of the format with their encoded values, each value
    encoded once per message however often its placeholder occurs (a link in every paper's footer).
    """

    def __init__(self, pieces: Sequence[bytes], names: Sequence[str]) -> None:
        self.names = tuple(names)
        parts: list[bytes] = []
        for before in pieces[:-1]:
            parts.append(before.replace(b"%", b"%%"))
            if not before.endswith(CRLF):  # a value at the start of a line needs no break before it
                parts.append(SOFT_BREAK)
            parts.append(b"%s" + SOFT_BREAK)
        parts.append(pieces[-1].replace(b"%", b"%%"))
        self.format = b"".join(parts)

    def values(self, encoded: Mapping[str, bytes]) -> tuple[bytes, ...]:
        """The encoded value of each hole, in order."""
        return tuple([encoded[name] for name in self.names])

    def render(self, encoded: Mapping[str, bytes]) -> bytes:
        return self.format % self.values(encoded)


def _split(document: str, placeholder: re.Pattern[str]) -> _Body:
    pieces: list[bytes] = []
    names: list[str] = []
    position = 0
    for match in placeholder.finditer(document):
        pieces.append(_qp_text(document[position : match.start()]))
        names.append(match.group("name"))
        position = match.end()
    pieces.append(_qp_text(document[position:]))
    return _Body(pieces, names)


def _list_unsubscribe(urls: Sequence[str]) -> str:
    """Folded between URLs, never inside one: receivers read a URL whole, so a long one makes a long line
    (RFC 5322's 78 is a recommendation; its limit is 998). The first URL goes on a line of its own, folded
    after the colon, when that keeps it within 78 and it would not fit after the name."""
    items = [f"<{url}>" + ("," if index < len(urls) - 1 else "") for index, url in enumerate(urls)]
    name = "List-Unsubscribe:"
    if items and len(f"{name} {items[0]}") > MAX_LINE and len(f" {items[0]}") <= MAX_LINE:
        return name + "\r\n " + "\r\n ".join(items)
    return f"{name} " + "\r\n ".join(items)


@dataclass(frozen=True, kw_only=True)
class RecipientHeaders:
    to_email: str
    to_name: str
    message_id: str
    date: datetime
    list_unsubscribe: Sequence[str]


class MessageTemplate:
    """One variant's message with holes for the recipient; ``render`` fills them in microseconds."""

    def __init__(
        self,
        *,
        boundary_seed: str,
        from_name: str,
        from_address: str,
        subject: str,
        html_document: str,
        text_document: str,
        placeholder: re.Pattern[str],
        list_id: str,
        feedback_id: str,
        list_name: str | None = None,
    ) -> None:
        """``list_id`` is the bare RFC 2919 id (``slug.host``), or for older callers ``phrase <id>``;
        ``list_name`` is its display phrase (the newsletter's name when not given)."""
        self.boundary = f"=_{re.sub(r'[^A-Za-z0-9]', '', boundary_seed)[:40]}"  # "=_" never occurs in QP
        self._html = _split(html_document, placeholder)
        self._text = _split(text_document, placeholder)
        bracketed = re.fullmatch(r"(?P<phrase>.*?)\s*<(?P<id>[^<>]+)>\s*", list_id)
        phrase, ident = (bracketed["phrase"], bracketed["id"]) if bracketed else (from_name, list_id)
        common = [
            address_header("From", from_name, from_address),
            fold("Subject", subject),
            list_id_header(list_name if list_name is not None else phrase, ident),
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            fold("Feedback-ID", feedback_id),
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative;\r\n boundary="{self.boundary}"',
        ]
        common_headers = "\r\n".join(common).encode("ascii")
        part = 'Content-Type: text/{kind}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        text_head = f"--{self.boundary}\r\n{part.format(kind='plain')}".encode("ascii")
        html_head = f"\r\n--{self.boundary}\r\n{part.format(kind='html')}".encode("ascii")
        tail = f"\r\n--{self.boundary}--\r\n".encode("ascii")
        # The whole message as one format: the recipient's headers, then every hole of both parts. A message
        # is then one ``%`` (a single copy of the ~40 KB) of values encoded once each.
        self._format = b"".join([
            b"%s", (CRLF + common_headers + CRLF + CRLF + text_head).replace(b"%", b"%%"), self._text.format,
            html_head.replace(b"%", b"%%"), self._html.format, tail.replace(b"%", b"%%"),
        ])
        self._names = [(name, name in self._text.names, name in self._html.names)
                       for name in sorted({*self._text.names, *self._html.names})]
        self._last: dict[str, tuple[str, bytes, bytes]] = {}
        """Per field, the last value and its two encodings: the readers of a send share some (the web view)."""
        self._date: tuple[datetime, str] | None = None

    def render(self, headers: RecipientHeaders, values: Mapping[str, str]) -> bytes:
        """The complete message; ``values`` are raw: escaped here for HTML, kept as they are for text."""
        text, markup = self._encoded(values)
        second = headers.date.replace(microsecond=0)  # what the Date header shows; many messages share it
        if self._date is None or self._date[0] != second:
            self._date = (second, format_datetime(second))
        per_recipient = "\r\n".join(
            [
                address_header("To", headers.to_name, headers.to_email),
                f"Date: {self._date[1]}",
                f"Message-ID: {headers.message_id}",
                _list_unsubscribe(headers.list_unsubscribe),
            ]
        ).encode("utf-8")
        return self._format % ((per_recipient, *self._text.values(text), *self._html.values(markup)))

    def _encoded(self, values: Mapping[str, str]) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """Each field's value encoded once for the text part and once, HTML-escaped, for the HTML part."""
        text: dict[str, bytes] = {}
        markup: dict[str, bytes] = {}
        last = self._last
        for name, in_text, in_html in self._names:
            value = values[name]
            known = last.get(name)
            if known is None or known[0] != value:
                known = last[name] = (value, *_value_encodings(value, in_text=in_text, in_html=in_html))
            text[name] = known[1]
            markup[name] = known[2]
        return text, markup
