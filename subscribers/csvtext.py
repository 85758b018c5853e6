"""How a subscriber CSV file is read: its text encoding and its column delimiter.

Spreadsheets write CSV in whatever their locale likes. Excel in much of Europe writes Windows-1252 (or
Latin-1) text with ``;`` between columns, because ``,`` is the decimal mark there; Google Sheets and
LibreOffice write UTF-8, sometimes with a byte-order mark. Rather than a traceback on the first accented
name, import detects both and says which it used.

Encoding: the one given (``--encoding``), else UTF-8 (with or without BOM) when the bytes are valid UTF-8,
else Windows-1252 when every byte is defined there, else Latin-1 (which decodes any byte). Valid UTF-8 is
almost never an accident in a non-UTF-8 file, so the order is safe.

Delimiter: ``csv.Sniffer`` on the header line, restricted to ``,``, ``;``, tab and ``|``; the header must then
split into a column named ``email``. The header alone is sniffed because the data rows hold ``;`` between
topics in a comma-separated file, which would fool a sniffer reading the whole sample.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass

from subscribers.errors import SubscribersError

DELIMITERS = ",;\t|"
_NAMES = {",": "','", ";": "';'", "\t": "tabs", "|": "'|'"}


def delimiter_name(delimiter: str) -> str:
    """How a report names the delimiter (a tab is not readable between quotes)."""
    return _NAMES.get(delimiter, repr(delimiter))


@dataclass(frozen=True, kw_only=True)
class CsvText:
    """A decoded CSV file: its text, the encoding it was read with and the column delimiter found."""

    text: str
    encoding: str
    delimiter: str


def decode(data: bytes, *, encoding: str | None = None) -> tuple[str, str]:
    """The text of ``data`` and the encoding used (the module docstring says in which order they are tried)."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise SubscribersError(f"unknown encoding {encoding!r} (try utf-8, cp1252 or latin-1)") from None
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as error:
            line = data[: error.start].count(b"\n") + 1
            raise SubscribersError(f"line {line}: not {encoding} text (byte {data[error.start]:#04x}); "
                                   "leave out --encoding to detect it") from None
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8):].decode("utf-8"), "utf-8 with BOM"
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _splits_into_columns(header: str, delimiter: str) -> bool:
    cells = next(csv.reader([header], delimiter=delimiter), [])
    return "email" in (cell.strip().lower().lstrip("\ufeff") for cell in cells)


def sniff_delimiter(text: str) -> str:
    """The delimiter of the header line (``,`` when the header has one column or nothing fits)."""
    header = text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    try:
        found = csv.Sniffer().sniff(header, delimiters=DELIMITERS).delimiter
    except csv.Error:
        found = ","
    if _splits_into_columns(header, found):
        return found
    return next((d for d in DELIMITERS if _splits_into_columns(header, d)), ",")


def read_csv_text(data: bytes | str, *, encoding: str | None = None) -> CsvText:
    """Decode (bytes only) and find the delimiter; text given as ``str`` counts as already decoded."""
    if isinstance(data, str):
        text, used = data.lstrip("\ufeff"), "text"
    else:
        text, used = decode(data, encoding=encoding)
    return CsvText(text=text, encoding=used, delimiter=sniff_delimiter(text))


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def text_stream(csv_text: CsvText) -> Iterator[str]:
    """The decoded text's lines for ``csv.reader``, ends kept, split where ``io.StringIO(text, newline="")``
    splits them (``\\n``, ``\\r\\n`` or a lone ``\\r``; the csv module joins a quoted cell's lines again).

    Taken one at a time from the text, not copied into a ``StringIO``, which holds four bytes a character:
    for a 100,000-row file that copy was the import's largest allocation."""
    return (match.group() for match in _LINE.finditer(csv_text.text))
