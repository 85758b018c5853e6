"""The console's routes, mounted by ``newsletter.web.app.create_app`` beside the public pages.

Every page but the sign-in form and the stylesheet needs a session (``Console.page``); every POST but the
sign-in form needs a session and its CSRF token (``Console.action``). The two upload forms take files up
to ``MAX_UPLOAD_BYTES``; every other request keeps the site's small body limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.middleware import Middleware
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.web.admin.console import MAX_UPLOAD_BYTES, Console, Host
from newsletter.web.admin.editions import EditionPages
from newsletter.web.admin.overview import overview_page
from newsletter.web.admin.readers import ReaderPages
from newsletter.web.admin.reports import ReportPages

Handler = Callable[[Request], Awaitable[Response]]


def admin_routes(web: Host, route: Callable[[str, Handler, str], Route]) -> list[Route]:
    console = Console(web)
    console.home = overview_page(console)
    editions, readers, reports = EditionPages(console), ReaderPages(console), ReportPages(console)
    page, action = console.page, console.action

    def upload(path: str, handler: Handler) -> Route:
        plain = route(path, handler, "POST")
        return Route(path, plain.endpoint, methods=["POST"],
                     middleware=[Middleware(RequestBodyLimitMiddleware, max_body_size=MAX_UPLOAD_BYTES + 64 * 1024)])

    return [
        route("/admin", page(console.home), "GET"),
        route("/admin/", page(console.home), "GET"),
        route("/admin/signin", console.signin_form, "GET"),
        route("/admin/signin", console.signin, "POST"),
        route("/admin/signout", action(console.signout), "POST"),
        route("/admin/static/admin.css", console.stylesheet, "GET"),
        route("/admin/editions", page(editions.index), "GET"),
        route("/admin/editions/{slug}", page(editions.show), "GET"),
        route("/admin/editions/{slug}", action(editions.act), "POST"),
        route("/admin/editions/{slug}/email", page(editions.email), "GET"),
        route("/admin/readers", page(readers.index), "GET"),
        route("/admin/readers", action(readers.add), "POST"),
        upload("/admin/readers/import", action(readers.import_csv, files=True)),
        route("/admin/readers/export.csv", page(readers.export), "GET"),
        route("/admin/readers/{id}", page(readers.show), "GET"),
        route("/admin/readers/{id}", action(readers.act), "POST"),
        route("/admin/topics", page(reports.topics), "GET"),
        route("/admin/topics/suggest", action(reports.suggest), "POST"),
        upload("/admin/topics/evaluate", action(reports.evaluate, files=True)),
        route("/admin/mail", page(reports.mail), "GET"),
        route("/admin/audit", page(reports.audit), "GET"),
    ]
