"""The console's read-mostly pages: topics (counts, unmatched papers, `topics suggest`, `topics evaluate` on an
uploaded labelled CSV), mail that came back (`inbound --quarantined`: quarantined, forged and unattributed
messages) and the audit log.

Suggest and evaluate call the same library functions as the CLI commands (``matching.suggest``,
``matching.evaluate``); their results are shown, never applied: an operator pastes suggested topics into
config.toml as with the CLI.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.matching.coverage import store_warnings
from newsletter.storage.inbound import InboundLog
from newsletter.storage.papers import PaperStore
from newsletter.usecases.operators import audit_log
from newsletter.web.admin.console import MAX_UPLOAD_BYTES, Console, Visit

UNMATCHED_SHOWN = 50
AUDIT_PAGE = 100


def topics_context(settings: Settings, engine: Engine) -> dict[str, Any]:
    store = PaperStore(engine)
    counts = store.match_counts()
    unmatched = store.papers(unmatched=True)
    return {"topics": [{"slug": t.slug, "name": t.name, "count": counts.get(t.slug, 0)} for t in settings.topics],
            "papers": store.count_papers(), "unmatched_count": len(unmatched),
            "unmatched": unmatched[:UNMATCHED_SHOWN], "warnings": store_warnings(settings.topics, settings.matching,
                                                                                 store),
            "section": "topics", "suggestions": None, "evaluation": None}


def suggest_toml(settings: Settings, engine: Engine) -> str:
    from newsletter.matching.suggest import suggest_from_store, to_toml  # scikit-learn, when used

    suggestions = suggest_from_store(settings, PaperStore(engine), since=None, clusters=None, min_size=3, examples=3)
    return to_toml(suggestions, since=None)


def evaluate_upload(settings: Settings, engine: Engine, data: bytes, name: str) -> dict[str, Any]:
    from newsletter.matching.evaluate import evaluate_sample  # scikit-learn, when used

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "labelled.csv"
        path.write_bytes(data)
        try:
            result = evaluate_sample(settings, PaperStore(engine), path)[0]
        except NewsletterError as error:  # the message names the temporary file: name the upload instead
            raise NewsletterError(str(error).replace(str(path), name)) from None
    return result.as_json()


def mail_context(engine: Engine) -> dict[str, Any]:
    log = InboundLog(engine)
    refused = log.recent(outcome="forged", limit=100) + log.recent(outcome="unattributed", limit=100)
    return {"quarantined": log.recent(outcome="quarantined", limit=100),
            "refused": sorted(refused, key=lambda r: r.id, reverse=True), "section": "mail"}


class ReportPages:
    def __init__(self, console: Console) -> None:
        self.console = console

    async def topics(self, request: Request, visit: Visit, *, extra: dict[str, Any] | None = None,
                     status: int = 200) -> Response:
        context = await run_in_threadpool(topics_context, self.console.settings, self.console.engine)
        return self.console.render(request, "topics", {**context, **(extra or {})}, visit=visit, status=status)

    async def suggest(self, request: Request, visit: Visit, form: FormData) -> Response:
        console = self.console
        try:
            toml = await run_in_threadpool(suggest_toml, console.settings, console.engine)
        except NewsletterError as error:
            return await self.topics(request, visit, extra={"error": str(error)}, status=409)
        await console.audit(visit, "topics.suggest", f"{toml.count('[[topics]]')} suggested")
        return await self.topics(request, visit, extra={"suggestions": toml})

    async def evaluate(self, request: Request, visit: Visit, form: FormData) -> Response:
        console = self.console
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return await self.topics(request, visit, extra={"error": "choose a labelled CSV file"}, status=400)
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        name = (upload.filename or "upload.csv")[:100]
        if len(data) > MAX_UPLOAD_BYTES:
            return await self.topics(request, visit, status=413, extra={
                "error": f"{name} is too large for the console; run `newsletter topics evaluate FILE`"})
        try:
            result = await run_in_threadpool(evaluate_upload, console.settings, console.engine, data, name)
        except NewsletterError as error:
            return await self.topics(request, visit, extra={"error": str(error)}, status=400)
        await console.audit(visit, "topics.evaluate", f"{name}: macro-F1 {result['macro_f1']}")
        return await self.topics(request, visit, extra={"evaluation": result, "evaluated": name})

    async def mail(self, request: Request, visit: Visit) -> Response:
        context = await run_in_threadpool(mail_context, self.console.engine)
        return self.console.render(request, "mail", context, visit=visit)

    async def audit(self, request: Request, visit: Visit) -> Response:
        raw = request.query_params.get("before", "")
        before = int(raw) if raw.isdigit() and len(raw) < 12 else None
        entries = await run_in_threadpool(audit_log, self.console.engine, limit=AUDIT_PAGE, before_id=before)
        return self.console.render(request, "audit", {"entries": entries, "section": "audit",
                                                      "more": len(entries) == AUDIT_PAGE}, visit=visit)
