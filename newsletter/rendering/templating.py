"""The sandboxed Jinja environment of the email (and later web) templates.

A template folder named in the config overrides the defaults by name and can extend them with the
``default:`` prefix (a ``ChoiceLoader`` of the user folder, a ``PrefixLoader`` and the default folder).
A missing template is an error naming the templates tried and the search path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    PrefixLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplatesNotFound,
    TemplateSyntaxError,
    UndefinedError,
    select_autoescape,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from newsletter.config import Settings
from newsletter.errors import TemplateError

HTML_TEMPLATE = "email.html.j2"
TEXT_TEMPLATE = "email.txt.j2"
DEFAULT_PREFIX = "default"


def default_template_dir() -> Path:
    """The shipped templates: ``newsletter/_templates`` in a wheel, ``templates/`` in a source checkout."""
    packaged = Path(__file__).parent.parent / "_templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


class RenderEnvironment:
    """The sandboxed Jinja environment: a user folder overrides defaults by name; ``default:NAME`` extends.

    ``fingerprint`` changes whenever a template file or a setting that shapes the email changes; it is
    part of every variant key.
    """

    def __init__(self, settings: Settings, *, template_dir: str | Path | None = None) -> None:
        user = template_dir if template_dir is not None else settings.email.template_dir
        self.default_dir = default_template_dir()
        self.user_dir = Path(user) if user else None
        if self.user_dir is not None and not self.user_dir.is_dir():
            raise TemplateError(f"template folder not found: {self.user_dir} ([email] template_dir)")
        self.search_path = tuple(d for d in (self.user_dir, self.default_dir) if d is not None)
        loaders: list[Any] = []
        if self.user_dir is not None:
            loaders.append(FileSystemLoader(str(self.user_dir)))
        loaders.append(PrefixLoader({DEFAULT_PREFIX: FileSystemLoader(str(self.default_dir))}, delimiter=":"))
        loaders.append(FileSystemLoader(str(self.default_dir)))
        self.jinja = SandboxedEnvironment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(
                enabled_extensions=("html", "htm", "xml", "html.j2"),
                disabled_extensions=("txt", "txt.j2"),
                default_for_string=True,
                default=True,
            ),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.fingerprint = self._fingerprint(settings)

    def _fingerprint(self, settings: Settings) -> str:
        digest = hashlib.sha256()
        for folder in self.search_path:
            for path in sorted(folder.rglob("*.j2")):
                digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
        email = settings.email
        for value in (settings.newsletter.name, settings.newsletter.base_url, settings.newsletter.timezone,
                      email.subject, email.abstract_chars, email.max_html_bytes, email.postal_address,
                      email.accent_color, email.logo_url):
            digest.update(repr(value).encode() + b"\0")
        return digest.hexdigest()[:16]

    def _where(self) -> str:
        return ", ".join(str(d) for d in self.search_path)

    def template(self, name: str) -> Template:
        try:
            return self.jinja.get_template(name)
        except TemplatesNotFound as error:
            raise TemplateError(
                f"template not found; tried {', '.join(map(str, error.templates))} in: {self._where()}"
            ) from None
        except TemplateNotFound as error:
            raise TemplateError(f"template not found; tried {error.name} in: {self._where()}") from None
        except TemplateSyntaxError as error:
            raise TemplateError(f"{error.filename or error.name}:{error.lineno}: {error.message}") from None

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        template = self.template(name)
        try:
            return template.render(context)
        except (TemplatesNotFound, TemplateNotFound) as error:
            tried = error.templates if isinstance(error, TemplatesNotFound) else [error.name]
            raise TemplateError(
                f"{name}: template not found; tried {', '.join(map(str, tried))} in: {self._where()}"
            ) from None
        except TemplateSyntaxError as error:
            raise TemplateError(f"{error.filename or error.name}:{error.lineno}: {error.message}") from None
        except (UndefinedError, SecurityError) as error:
            raise TemplateError(f"{name}: {error}") from None
