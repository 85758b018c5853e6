"""The console's editions: the list, one edition as each variant's email will look, and the editor's actions.

Actions call the same use cases as `newsletter edition pin|drop|note|approve`, `send --to` and
`deliveries retry` (``newsletter.usecases.review`` and ``copies``), so they refuse the same things with the
same words; each is written to the audit log. The email is shown in a sandboxed frame: its page is served
with a CSP ``sandbox`` (no script, no forms, no navigation of the console) and may be framed only by the
console itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.editions.review import apply_review
from newsletter.errors import NewsletterError
from newsletter.records.editions import Edition
from newsletter.storage.console_reads import count_editions, edition_page
from newsletter.usecases.campaign import Plan
from newsletter.usecases.copies import send_copy
from newsletter.usecases.email_views import edition_variants, plan_of, variant_html
from newsletter.usecases.review import (
    EditionError,
    approve_edition,
    drop_paper,
    is_sending,
    pin_paper,
    retry_deliveries,
    review_of,
    set_note,
    stored_edition,
)
from newsletter.web.admin.console import Console, Visit
from newsletter.web.pages import PageError
from newsletter.web.security import PAGE_CSP
from subscribers.errors import SubscribersError

PER_PAGE = 50
EDITION_CSP = PAGE_CSP.replace("default-src 'none';", "default-src 'none'; frame-src 'self';")
"""The edition page frames its emails (served by this console); nothing else changes."""
EMAIL_CSP = ("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
             "frame-ancestors 'self'; base-uri 'none'; form-action 'none'")
"""An email's HTML in the frame: its inline styles and remote images, no script, framed only by us."""
RETRY_STATES = ("failed", "deferred", "ambiguous")


def page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1


def editions_context(console: Console, *, page: int) -> dict[str, Any]:
    engine = console.engine
    rows = edition_page(engine, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    counts = console.edition_counts([r.id for r in rows])
    total = count_editions(engine)
    return {"rows": [{"row": r, "counts": counts[r.id]} for r in rows], "page": page, "total": total,
            "pages": max(1, -(-total // PER_PAGE)), "section": "editions"}


def planned(console: Console, edition: Edition, *, now: datetime) -> Plan | None:
    """The plan of an edition not being sent yet (None once its ledger is written), remembered briefly.

    Rendering every variant costs seconds for a large list, and the page and each of its email frames need
    it; the key holds the editor's review, so a pin, drop or note (from here or the CLI) makes a new plan.
    """
    if is_sending(console.engine, edition):
        return None
    review = review_of(console.engine, edition)
    key = (edition.id, review.pinned, review.dropped, review.note)
    return console.plans.get(key, lambda: plan_of(console.settings, console.engine, edition, now=now))


def edition_context(console: Console, edition: Edition, *, now: datetime) -> dict[str, Any]:
    settings, engine = console.settings, console.engine
    review = review_of(engine, edition)
    shaped = apply_review(edition, review)
    counts = console.edition_counts([edition.id])[edition.id]
    settled = sum(counts.values()) > 0 and not (counts["pending"] or counts["claimed"] or counts["deferred"])
    try:
        variants = [] if edition.is_empty else console.variants.get(
            edition.id, lambda: edition_variants(settings, engine, edition, now=now,
                                                 planned=planned(console, edition, now=now)),
            keep=lambda _: settled)
        variants_error = ""
    except NewsletterError as error:
        variants, variants_error = [], str(error)
    return {"edition": edition, "shaped": shaped, "review": review, "sending": is_sending(engine, edition),
            "counts": counts, "variants": variants, "variants_error": variants_error,
            "dropped": [(p, edition.papers[p].title if p in edition.papers else p) for p in review.dropped],
            "approve_needed": settings.schedule.approve, "retry_states": RETRY_STATES, "section": "editions"}


class EditionPages:
    def __init__(self, console: Console) -> None:
        self.console = console

    def _edition(self, slug: str) -> Edition:
        try:
            return stored_edition(self.console.engine, slug)
        except EditionError:
            raise PageError(404, "No such edition", "There is no edition of this name.") from None

    async def index(self, request: Request, visit: Visit) -> Response:
        context = await run_in_threadpool(editions_context, self.console, page=page_number(request))
        return self.console.render(request, "editions", context, visit=visit)

    async def show(self, request: Request, visit: Visit, *, notice: str = "", error: str = "",
                   status: int = 200) -> Response:
        console = self.console
        edition = await run_in_threadpool(self._edition, request.path_params["slug"])
        context = await run_in_threadpool(edition_context, console, edition, now=console.now())
        return console.render(request, "edition", {**context, "notice": notice, "error": error}, visit=visit,
                              status=status, csp=EDITION_CSP)

    async def email(self, request: Request, visit: Visit) -> Response:
        console = self.console
        edition = await run_in_threadpool(self._edition, request.path_params["slug"])
        key = request.query_params.get("variant", "")
        now = console.now()
        html = await run_in_threadpool(lambda: variant_html(
            console.settings, console.engine, edition, key, now=now,
            planned=planned(console, edition, now=now))) if key else None
        if html is None:
            raise PageError(404, "No such email", "This edition has no email of this variant.")
        return HTMLResponse(html, headers={"content-security-policy": EMAIL_CSP, "x-frame-options": "SAMEORIGIN",
                                           "cache-control": "no-store"})

    async def act(self, request: Request, visit: Visit, form: FormData) -> Response:
        """One editor's action (the form's ``action``); the page again, with what was done or why not."""
        console = self.console
        edition = await run_in_threadpool(self._edition, request.path_params["slug"])
        action = str(form.get("action", ""))
        paper = str(form.get("paper", "")).strip()
        now = console.now()
        try:
            if action == "pin":
                done = await run_in_threadpool(pin_paper, console.engine, edition, paper, now=now)
            elif action == "drop":
                done = await run_in_threadpool(drop_paper, console.engine, edition, paper, now=now)
            elif action == "note":
                done = await run_in_threadpool(set_note, console.engine, edition, str(form.get("note", "")), now=now)
            elif action == "approve":
                done = await run_in_threadpool(approve_edition, console.settings, console.engine, edition, now=now,
                                               by=visit.operator.email)
            elif action == "copy":
                done = await self._copy(edition, form, now)
            elif action == "retry":
                done = await self._retry(edition, form, now)
            else:
                raise PageError(400, "Bad form", f"Unknown action {action[:40]!r}.")
        except (NewsletterError, SubscribersError) as refused:
            await console.audit(visit, f"edition.{action}.refused", f"{edition.slug}: {refused}")
            return await self.show(request, visit, error=str(refused), status=409)
        await console.audit(visit, f"edition.{action}", done)
        console.changed()
        return await self.show(request, visit, notice=done)

    async def _copy(self, edition: Edition, form: FormData, now: datetime) -> str:
        to = str(form.get("to", "")).strip()
        whose = str(form.get("subscriber", "")).strip() or None
        console = self.console
        copy = await run_in_threadpool(lambda: send_copy(console.settings, console.engine, frequency=edition.frequency,
                                                         to=to, now=now, day=edition.date, subscriber_email=whose))
        return f"sent a test copy of {copy.edition} ({copy.whose}) to {to} via {copy.via}"

    async def _retry(self, edition: Edition, form: FormData, now: datetime) -> str:
        state = str(form.get("state", "failed"))
        if state not in RETRY_STATES:
            raise EditionError(f"cannot re-queue {state[:20]!r} deliveries (failed, deferred or ambiguous)")
        if state == "ambiguous" and form.get("include_ambiguous") != "yes":
            raise EditionError("re-queueing ambiguous deliveries may send a second copy; tick the box to confirm")
        email = str(form.get("email", "")).strip() or None
        return await run_in_threadpool(lambda: retry_deliveries(self.console.engine, edition.slug, states=[state],
                                                                email=email, now=now))
