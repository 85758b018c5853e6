"""The operator's web console at /admin/ (docs/admin.md): sign-in, overview, editions, readers, topics, mail
that came back and the audit log, server-rendered with the project's Jinja templates (``web/admin/``)."""

from newsletter.web.admin.routes import admin_routes

__all__ = ["admin_routes"]
