"""The console's readers: search and filter, one reader's history with the evidence, add, remove,
resubscribe (``--force``), CSV import with the CLI's line-by-line report, and export.

Every action calls the use case `newsletter subscribers …` calls (``newsletter.usecases.subscribe``), so
the checks and the words are the same; each is written to the audit log (for an import: its counts).
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.storage.console_reads import reader_deliveries, search_readers
from newsletter.usecases.subscribe import (
    add_subscriber,
    import_lines,
    import_subscribers,
    reader_line,
    remove_subscriber,
    send_confirmations,
    subscriber_store,
)
from newsletter.web.admin.console import MAX_UPLOAD_BYTES, Console, Visit
from newsletter.web.admin.editions import page_number
from newsletter.web.pages import PageError
from subscribers.csvio import export_csv
from subscribers.errors import SubscribersError
from subscribers.evidence import EvidenceStore
from subscribers.feedback import FeedbackStore
from subscribers.models import STATUSES, Subscriber

PER_PAGE = 50


one_line = reader_line


def _choice(value: str | None, allowed: tuple[str, ...] | list[str]) -> str | None:
    return value if value in allowed else None


def readers_context(settings: Settings, engine: Engine, request: Request) -> dict[str, Any]:
    query = request.query_params
    slugs = [t.slug for t in settings.topics]
    filters = {"q": query.get("q", "")[:200], "status": _choice(query.get("status"), STATUSES),
               "topic": _choice(query.get("topic"), slugs),
               "frequency": _choice(query.get("frequency"), ("daily", "weekly"))}
    page = page_number(request)
    rows, total = search_readers(engine, text=filters["q"] or "", status=filters["status"], topic=filters["topic"],
                                 frequency=filters["frequency"], limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    return {"rows": rows, "total": total, "page": page, "pages": max(1, -(-total // PER_PAGE)), "filters": filters,
            "statuses": STATUSES, "topics": settings.topics, "section": "readers",
            "counts": subscriber_store(settings, engine).counts_by_status()}


def reader_context(settings: Settings, engine: Engine, subscriber_id: int) -> dict[str, Any]:
    store = subscriber_store(settings, engine)
    subscriber = store.get(subscriber_id)
    if subscriber is None:
        raise PageError(404, "No such reader", "There is no reader with this number (erased, or never added).")
    return {"reader": subscriber, "suppression": store.suppression(subscriber.email),
            "events": EvidenceStore(engine).events(subscriber.id),
            "votes": FeedbackStore(engine).votes(subscriber_id=subscriber.id),
            "deliveries": reader_deliveries(engine, subscriber.id), "topics": settings.topics, "section": "readers"}


class ReaderPages:
    def __init__(self, console: Console) -> None:
        self.console = console

    async def index(self, request: Request, visit: Visit, *, notice: str = "", error: str = "",
                    report: list[str] | None = None, status: int = 200) -> Response:
        context = await run_in_threadpool(readers_context, self.console.settings, self.console.engine, request)
        return self.console.render(request, "readers", {**context, "notice": notice, "error": error,
                                                        "report": report or []}, visit=visit, status=status)

    async def show(self, request: Request, visit: Visit, *, subscriber_id: int | None = None, notice: str = "",
                   error: str = "", status: int = 200) -> Response:
        if subscriber_id is None:
            raw = str(request.path_params["id"])
            if not raw.isdigit() or len(raw) > 12:
                raise PageError(404, "No such reader", "There is no reader with this number.")
            subscriber_id = int(raw)
        context = await run_in_threadpool(reader_context, self.console.settings, self.console.engine, subscriber_id)
        return self.console.render(request, "reader", {**context, "notice": notice, "error": error}, visit=visit,
                                   status=status)

    async def add(self, request: Request, visit: Visit, form: FormData) -> Response:
        """`subscribers add EMAIL --topics … --frequency … [--confirm] [--force]` from the form."""
        console, now = self.console, self.console.now()
        email = str(form.get("email", ""))
        topics = [str(t) for t in form.getlist("topics")] or None
        frequency = str(form.get("frequency", "")) or None
        pending, force = form.get("confirm") == "yes", form.get("force") == "yes"
        try:
            what, subscriber = await run_in_threadpool(lambda: add_subscriber(
                console.settings, console.engine, email, now=now, name=str(form.get("name", "")) or None,
                topics=topics, frequency=frequency, pending=pending, force=force))  # type: ignore[arg-type]
        except (NewsletterError, SubscribersError) as refused:
            return await self.index(request, visit, error=str(refused), status=400)
        done = f"{what} {one_line(subscriber)}"
        if pending and subscriber.status == "pending":
            sent = await self._confirm([subscriber], now)
            done += ("; confirmation email sent" if sent else
                     "; confirmation email NOT sent (3 already sent this week, or sending failed; see the log)")
        await console.audit(visit, "reader.add", done)
        console.changed()
        return await self.show(request, visit, subscriber_id=subscriber.id, notice=done)

    async def _confirm(self, readers: list[Subscriber], now: datetime) -> int:
        from newsletter.rendering.links import signer_from_settings

        console = self.console
        signer = signer_from_settings(console.settings)
        return await run_in_threadpool(send_confirmations, console.settings, console.engine, signer, readers, now=now)

    async def act(self, request: Request, visit: Visit, form: FormData) -> Response:
        """Remove (all topics or one), erase, or resubscribe one reader."""
        console, now = self.console, self.console.now()
        found = await run_in_threadpool(reader_context, console.settings, console.engine,
                                        int(request.path_params["id"]) if str(request.path_params["id"]).isdigit()
                                        else -1)
        reader: Subscriber = found["reader"]
        action = str(form.get("action", ""))
        try:
            if action == "delete" and form.get("erase") != "yes":
                raise PageError(400, "Not erased", "Tick the box to erase this reader's personal data.")
            if action in ("remove", "remove_topic", "delete"):
                topic = str(form.get("topic", "")) if action == "remove_topic" else None
                result = await run_in_threadpool(lambda: remove_subscriber(
                    console.settings, console.engine, reader.email, now=now, topic=topic, delete=action == "delete"))
                done = result.summary()
            elif action == "resubscribe":
                what, after = await run_in_threadpool(lambda: add_subscriber(
                    console.settings, console.engine, reader.email, now=now, name=None, topics=None, frequency=None,
                    pending=False, force=True))
                done = f"{what} {one_line(after)}"
            else:
                raise PageError(400, "Bad form", f"Unknown action {action[:40]!r}.")
        except (NewsletterError, SubscribersError) as refused:
            return await self.show(request, visit, subscriber_id=reader.id, error=str(refused), status=409)
        await console.audit(visit, f"reader.{action}", done)
        console.changed()
        if action == "delete":
            return await self.index(request, visit, notice=done)
        return await self.show(request, visit, subscriber_id=reader.id, notice=done)

    async def import_csv(self, request: Request, visit: Visit, form: FormData) -> Response:
        """`subscribers import FILE [--dry-run] [--force] [--confirm]` on the uploaded file."""
        console, now = self.console, self.console.now()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return await self.index(request, visit, error="choose a CSV file to import", status=400)
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            return await self.index(request, visit, status=413, error=(
                f"the file is larger than {MAX_UPLOAD_BYTES // 1024 // 1024} MB; import it with "
                "`newsletter subscribers import FILE`"))
        dry_run, force, confirm = (form.get(k) == "yes" for k in ("dry_run", "force", "confirm"))
        try:
            report = await run_in_threadpool(lambda: import_subscribers(
                console.settings, console.engine, data, now=now, confirm=confirm, force=force, dry_run=dry_run))
        except (NewsletterError, SubscribersError) as refused:
            return await self.index(request, visit, error=str(refused), status=400)
        lines = import_lines(report)
        if confirm and not dry_run and report.to_confirm:
            sent = await self._confirm(report.to_confirm, now)
            lines.append(f"{sent} of {len(report.to_confirm)} confirmation emails sent")
        name = (upload.filename or "upload")[:100]
        summary = next(line for line in lines if line.endswith(" not imported"))  # "N rows: N added, …"
        await console.audit(visit, "reader.import", f"{name}: {summary}")
        console.changed()
        if report.errors:  # the CLI's closing line (`subscribers import` then exits 1)
            count = len(report.errors)
            failed = (f"{name}: {count} of {report.rows} row{'' if report.rows == 1 else 's'} "
                      f"{'was' if count == 1 else 'were'} not imported")
            return await self.index(request, visit, error=failed, report=lines, status=422)
        return await self.index(request, visit, notice=f"imported {name}" if not dry_run else f"checked {name}",
                                report=lines)

    async def export(self, request: Request, visit: Visit) -> Response:
        """`subscribers export [--status S]` as a CSV download."""
        console = self.console
        status = _choice(request.query_params.get("status"), STATUSES)

        def write() -> str:
            stream = io.StringIO()
            export_csv(subscriber_store(console.settings, console.engine), stream, status=status)  # type: ignore[arg-type]
            return stream.getvalue()

        text = await run_in_threadpool(write)
        await console.audit(visit, "reader.export", f"status {status}" if status else "every reader")
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="subscribers.csv"',
                                 "cache-control": "no-store"})
