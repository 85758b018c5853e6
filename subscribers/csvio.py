"""CSV import and export of the subscriber list (stdlib ``csv``).

Import reads ``email,name,topics,frequency`` (a header line first; topics separated by ``;``, or by ``,`` in a
file whose columns are separated by ``;``; only ``email`` is required). The encoding and the column delimiter
are detected (``subscribers.csvtext``) and reported.
Every row is checked on its own; each bad row is reported with its line number and all of its problems,
and the good rows are imported a chunk (``bulk_store.CHUNK`` rows) per transaction.
Importing is an idempotent upsert: a new address is added, a known one updated, and a row that changes nothing
is counted as unchanged. An empty cell or a missing column leaves a stored value as it is; a new subscriber gets
no name, every topic, daily.

Imported subscribers are active (the operator vouches for their consent), or pending with ``confirm``.
A suppressed address (unsubscribed, bounced, complained, deleted) is reported, never imported, unless
``force``; a known pending address stays pending (its consent was never confirmed) unless ``force``.

Export writes every column of the list, with each reader's suppression entry and mail-back evidence. A row
with a ``status`` cell (an export) is restored as it was: status, consent time, IP and method, suppression
and evidence (``subscribers.consent_store``), so export → import loses no consent record. Cells that a
spreadsheet would run as a formula get a leading ``'``, which import removes.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import IO, Any

from subscribers import bulk_store
from subscribers.addresses import valid_email
from subscribers.consent_store import parse_carried
from subscribers.csvtext import read_csv_text, text_stream
from subscribers.errors import SubscribersError
from subscribers.import_plan import Plan, Wanted, plan_put, plan_restore
from subscribers.models import FREQUENCIES, Frequency, ImportReport, RowError, Status, Subscriber, Suppression
from subscribers.store import SubscriberStore, plain_name

IMPORT_COLUMNS = ("email", "name", "topics", "frequency")
EXPORT_COLUMNS = ("email", "name", "topics", "frequency", "status", "source", "consent_at", "consent_ip",
                  "confirmed_at", "confirmed_ip", "unsubscribed_at", "created", "updated", "suppression",
                  "suppressed_at", "evidence")
_SUBSCRIBER_COLUMNS = EXPORT_COLUMNS[:13]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _unescape(cell: str) -> str:
    cell = cell.strip()
    if cell.startswith("'") and cell[1:2] and cell[1] in _FORMULA_START:
        return cell[1:]
    return cell


def _escape(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _header(row: list[str]) -> list[str]:
    header = [cell.strip().lower().lstrip("\ufeff") for cell in row]
    expected = ",".join(IMPORT_COLUMNS)
    if "email" not in header:
        raise SubscribersError(f"line 1: expected a header line {expected} (only email is required), "
                               f"found {','.join(row)!r}")
    unknown = [h for h in header if h not in EXPORT_COLUMNS]
    if unknown:
        raise SubscribersError(f"line 1: unknown column{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(map(repr, unknown))}; expected: {expected}")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise SubscribersError(f"line 1: column {', '.join(map(repr, twice))} given twice")
    return header


def _check_row(store: SubscriberStore, line: int, header: list[str], cells: list[str],
               seen: dict[str, int]) -> Wanted | RowError:
    if len(cells) > len(header):
        return RowError(line=line, message=f"expected {len(header)} columns ({','.join(header)}), found {len(cells)}")
    values = dict(zip(header, [_unescape(c) for c in cells] + [""] * (len(header) - len(cells)), strict=True))
    problems: list[str] = []
    address = ""
    try:
        address = valid_email(values["email"])
    except SubscribersError as error:
        problems.append(str(error))
    topics: tuple[str, ...] | None = None
    if values.get("topics"):
        try:
            topics = store.check_topics(values["topics"].replace(",", ";").split(";"))
        except SubscribersError as error:
            problems.append(str(error))
    frequency: Frequency | None = None
    if values.get("frequency"):
        chosen = values["frequency"].lower()
        if chosen in FREQUENCIES:
            frequency = chosen
        else:
            problems.append(f"unknown frequency {values['frequency']!r}; expected one of: {', '.join(FREQUENCIES)}")
    name = plain_name(values.get("name", "")) or None
    if name is not None and len(name) > 200:
        problems.append("name longer than 200 characters")
    if address and address in seen:
        problems.append(f"duplicate of line {seen[address]} ({address})")
    carried = parse_carried(values, problems)
    if problems:
        return RowError(line=line, message="; ".join(problems))
    seen[address] = line
    return Wanted(line=line, email=address, name=name, topics=topics, frequency=frequency, carried=carried)


def read_rows(store: SubscriberStore, stream: Iterable[str], *,
              delimiter: str = ",") -> tuple[list[Wanted], list[RowError], int]:
    """Parse and check every row: (good rows, bad rows, number of data rows)."""
    reader = csv.reader(stream, delimiter=delimiter)
    try:
        header = _header(next(reader))
    except StopIteration:
        raise SubscribersError(f"the file is empty; expected a header line {','.join(IMPORT_COLUMNS)}") from None
    except csv.Error as error:
        raise SubscribersError(f"line 1: not CSV: {error}") from None
    good: list[Wanted] = []
    bad: list[RowError] = []
    seen: dict[str, int] = {}
    rows = 0
    last = reader.line_num
    while True:
        start = last + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise SubscribersError(f"line {start}: not CSV: {error}") from None
        last = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        rows += 1
        checked = _check_row(store, start, header, cells, seen)
        (bad if isinstance(checked, RowError) else good).append(checked)  # type: ignore[arg-type]
    return good, bad, rows


Progress = Callable[[int, int], None]
"""Called after each chunk with (rows done, rows in all): the CLI draws a progress bar from it."""


def import_csv(
    store: SubscriberStore,
    stream: IO[str] | bytes,
    *,
    now: datetime,
    confirm: bool = False,
    force: bool = False,
    dry_run: bool = False,
    encoding: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import the good rows of a CSV file and report the others (see the module docstring).

    ``stream`` is text, or the file's bytes, whose encoding is ``encoding`` or else detected. Every row is
    checked once, then the good ones are written ``bulk_store.CHUNK`` at a time, one transaction per chunk
    (each address is in one row only, so chunks never depend on each other; an import stopped half-way is
    finished by importing the file again). ``confirm``: new subscribers are pending; the caller sends their
    confirmation emails (``ImportReport.to_confirm``). ``dry_run``: check everything, change nothing (every
    chunk is rolled back).
    """
    decoded = read_csv_text(stream if isinstance(stream, bytes) else stream.read(), encoding=encoding)
    good, errors, rows = read_rows(store, text_stream(decoded), delimiter=decoded.delimiter)
    report = ImportReport(rows=rows, errors=errors, dry_run=dry_run, encoding=decoded.encoding,
                          delimiter=decoded.delimiter)
    del decoded  # the file's text is not needed any more: a large import holds only its rows
    defaults = store.default_topics()
    done = len(errors)
    good.reverse()  # taken from the end, a chunk at a time, so the rows written are let go as the import goes
    while good:
        chunk = [good.pop() for _ in range(min(bulk_store.CHUNK, len(good)))]
        with store.engine.connect() as connection:
            transaction = connection.begin()
            stored, entries = bulk_store.lookup(connection, [row.email for row in chunk])
            plans = [_plan(row, stored.get(row.email), entries.get(row.email), now=now, defaults=defaults,
                           confirm=confirm, force=force) for row in chunk]
            inserted = bulk_store.apply(connection, plans)
            if dry_run:
                transaction.rollback()
            else:
                transaction.commit()
        for plan in plans:
            _report(report, plan, inserted.get(plan.row.email), confirm=confirm)
        done += len(chunk)
        if progress is not None:
            progress(done, rows)
    errors.sort(key=lambda e: e.line)
    return report


def _plan(row: Wanted, existing: Subscriber | None, entry: Suppression | None, *, now: datetime,
          defaults: tuple[str, ...], confirm: bool, force: bool) -> Plan:
    if row.carried is not None:
        return plan_restore(row, row.carried, existing, entry, now=now, default_topics=defaults, force=force)
    return plan_put(row, existing, entry, now=now, default_topics=defaults, pending=confirm, source="import",
                    force=force)


def _report(report: ImportReport, plan: Plan, inserted: Subscriber | None, *, confirm: bool) -> None:
    if plan.refused is not None:
        report.errors.append(RowError(line=plan.row.line, message=f"{plan.refused.address} is suppressed "
                                      f"({plan.refused.reason}); not imported (use --force to import it anyway)"))
        return
    subscriber = plan.result(inserted)
    {"added": report.added, "updated": report.updated, "unchanged": report.unchanged}[plan.outcome].append(subscriber)
    if subscriber.status != "active" and not (confirm and plan.row.carried is None):
        report.kept.append(subscriber)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return ";".join(value)
    return _escape(_CONTROL.sub("", str(value)))  # a NUL stored before names were cleaned never leaves in a file


def export_csv(store: SubscriberStore, stream: IO[str], *, status: Status | None = None,
               progress: Progress | None = None) -> int:
    """Write the list (or the subscribers of one status) as CSV, a page of readers at a time; returns the number
    of subscribers written."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    total = bulk_store.count(store.engine, status=status) if progress is not None else 0
    count = 0
    for page in bulk_store.export_pages(store.engine, status=status):
        writer.writerows([_cell(getattr(subscriber, column)) for column in _SUBSCRIBER_COLUMNS]
                         + [_escape(extras[column]) for column in EXPORT_COLUMNS[len(_SUBSCRIBER_COLUMNS):]]
                         for subscriber, extras in page)
        count += len(page)
        if progress is not None:
            progress(count, max(total, count))
    return count
