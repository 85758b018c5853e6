"""The "more like this" / "less like this" links of the emails: a confirmation page (GET) and the vote (POST).

Why like unsubscribe: mail scanners and link previews open every link of an email, so a GET only shows a
page with one button and changes nothing; the vote is the POST of that button. The link carries a signed
token for the reader (purpose "feedback", ``subscribers.tokens``) and names the paper, topic and vote in its
query; an unknown paper, topic or vote is a 404 page. The vote is stored by ``subscribers.feedback``.

A vote counts only where it should (issue 24): the reader must be active and receive the topic, and the
ledger must show a ``sent`` email of theirs that carried the paper in an edition listing it under that topic,
sent at most ``[feedback] link_max_age_days`` ago. Anything else is a 404 or 410 page, on GET and POST alike,
and records nothing; so a reader can only vote on what they were sent, where it was sent to them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from newsletter.config import Settings
from newsletter.storage.editions import EditionStore
from newsletter.storage.papers import PaperStore
from newsletter.storage.variant_readers import sent_with_paper
from newsletter.web.pages import PageError
from subscribers.feedback import FeedbackStore
from subscribers.models import Subscriber
from subscribers.schema import VOTES
from subscribers.tokens import Purpose


class WebApp(Protocol):
    """What these pages use of ``newsletter.web.app.WebApp`` (a protocol, so the two modules are no circle)."""

    settings: Settings
    engine: Engine
    clock: Callable[[], datetime]

    def subscriber_for(self, purpose: Purpose, token: str) -> Subscriber: ...

    def manage_url(self, request: Request, subscriber_id: int) -> str: ...

    def page(self, request: Request, name: str, context: Mapping[str, Any] | None = None) -> HTMLResponse: ...

    async def read_form(self, request: Request) -> FormData: ...


def feedback_url(base_url: str, token: str, *, paper_id: str, topic: str, vote: str) -> str:
    """The link an email shows under a paper (``token``: ``signer.sign("feedback", subscriber_id)``)."""
    return (f"{base_url.rstrip('/')}/feedback/{token}?paper={quote(paper_id, safe='')}&topic={quote(topic)}"
            f"&vote={vote}")


class FeedbackPages:
    """The two handlers, over the web app's settings, signer and clock."""

    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.papers = PaperStore(web.engine)
        self.votes = FeedbackStore(web.engine)

    def _check(self, subscriber: Subscriber, paper_id: str, topic: str, vote: str, *, done: bool) -> tuple[str, str]:
        """(paper title, topic name), or a 404/410 page when this reader may not vote so (see the module doc).

        A page without a vote (the plain-text part's one link per paper) offers both buttons; a POST must name
        its vote.
        """
        names = {t.slug: t.name for t in self.web.settings.topics}
        paper = self.papers.get(paper_id) if paper_id else None
        if (vote not in VOTES and (done or vote)) or topic not in names or paper is None:
            raise PageError(404, "This link is not valid", "Check that the whole link from the email was opened.")
        if subscriber.status != "active":
            raise PageError(410, "This subscription is not active",
                            "Only readers who receive the newsletter can vote on its papers; nothing was recorded.")
        if topic not in subscriber.topics:
            raise PageError(404, "You do not receive this topic",
                            "Votes count only in the topics you receive; nothing was recorded.")
        sent = sent_with_paper(self.web.engine, subscriber.id, paper.paper_id)
        editions = EditionStore(self.web.engine)
        under_topic = [when for edition_id, when in sent.items()
                       if (edition := editions.get_by_id(edition_id)) is not None
                       and topic in edition.topic_map
                       and any(e.paper_id == paper.paper_id for e in edition.topic_map[topic].entries)]
        if not under_topic:
            raise PageError(404, "This paper was not sent to you in this topic",
                            "Votes count only on papers your emails carried in that topic; nothing was recorded.")
        max_age = timedelta(days=self.web.settings.feedback.link_max_age_days)
        if max(under_topic) < self.web.clock() - max_age:
            days = f"{self.web.settings.feedback.link_max_age_days:g}"
            raise PageError(410, "This link has expired",
                            f"Votes count for {days} days after an email arrives; nothing was recorded.")
        return paper.title, names[topic]

    def _context(self, request: Request, subscriber: Subscriber, paper_id: str, topic: str, vote: str,
                 *, done: bool) -> dict[str, object]:
        title, topic_name = self._check(subscriber, paper_id, topic, vote, done=done)
        return {"paper_id": paper_id, "topic": topic, "vote": vote, "title": title, "topic_name": topic_name,
                "done": done, "manage_url": self.web.manage_url(request, subscriber.id)}

    async def page(self, request: Request) -> Response:
        """GET: a page with the link's button (both without a vote); nothing is recorded."""
        subscriber = await run_in_threadpool(self.web.subscriber_for, "feedback", request.path_params["token"])
        query = request.query_params
        context = await run_in_threadpool(self._context, request, subscriber, query.get("paper", ""),
                                          query.get("topic", ""), query.get("vote", ""), done=False)
        return self.web.page(request, "feedback", context)

    async def vote(self, request: Request) -> Response:
        """POST: record the vote (the latest click on a paper and topic counts)."""
        subscriber = await run_in_threadpool(self.web.subscriber_for, "feedback", request.path_params["token"])
        form = await self.web.read_form(request)
        paper_id, topic, vote = (str(form.get(k, "")) for k in ("paper", "topic", "vote"))
        context = await run_in_threadpool(self._context, request, subscriber, paper_id, topic, vote, done=True)
        await run_in_threadpool(self.votes.record, subscriber.id, paper_id=paper_id, topic=topic, vote=vote,
                                now=self.web.clock())
        return self.web.page(request, "feedback", context)


def feedback_routes(
    web: WebApp, route: Callable[[str, Callable[[Request], Awaitable[Response]], str], Route]
) -> list[Route]:
    """The routes ``create_app`` mounts: GET shows the confirmation, POST records the vote."""
    pages = FeedbackPages(web)
    return [route("/feedback/{token}", pages.page, "GET"), route("/feedback/{token}", pages.vote, "POST")]
