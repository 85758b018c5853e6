"""What some tests need beyond `pip install -e '.[test]'`: servers, Debian programs, samples, optional extras.

A test names its needs with ``@pytest.mark.needs("postgresql", …)`` (tests using the PostgreSQL fixtures get
the marker by themselves, see ``conftest.py``). Before it runs, each need is checked once per session:

* on a developer's machine a missing need **skips** the test and says which need and why, so the fast loop
  (``pytest -m "not slow"``) passes on a fresh clone with no services;
* under CI (``CI=true``) or ``scripts/test`` (``NEWSLETTER_TEST_STRICT=1``) it **fails** the test instead:
  there everything must run, and a missing server is an error, never a silent skip.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

STRICT_ENV = "NEWSLETTER_TEST_STRICT"
HOW_TO_START = "start the services with `bash scripts/services` (scripts/test and .ci/run do this)"
ADMIN_URL_ENV = "NEWSLETTER_TEST_POSTGRES_URL"
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_URL_ENV = "NEWSLETTER_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
AMQP_URL_ENV = "NEWSLETTER_TEST_AMQP_URL"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
CORPUS_ENV = "NEWSLETTER_TEST_CACHE"
"""Where downloaded test samples live (default ``~/.cache/newsletter-tests``)."""
SCALE_HINT = "pip install -e '.[scale]'"


def strict() -> bool:
    """Whether a missing need fails (CI, scripts/test) rather than skips (a developer's fast loop)."""
    return (os.environ.get("CI", "").lower() in ("1", "true", "yes")
            or os.environ.get(STRICT_ENV, "") not in ("", "0"))


def unavailable(need: str, reason: str) -> NoReturn:
    """Skip, or under CI fail, the running test: ``need`` is missing for ``reason``."""
    if strict():
        pytest.fail(f"needs {need}, which is missing: {reason}", pytrace=False)
    pytest.skip(f"needs {need}: {reason}")


def admin_url() -> str:
    return os.environ.get(ADMIN_URL_ENV) or DEFAULT_ADMIN_URL


def redis_url() -> str:
    return os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


def amqp_url() -> str:
    return os.environ.get(AMQP_URL_ENV) or DEFAULT_AMQP_URL


def cache_dir() -> Path:
    return Path(os.environ.get(CORPUS_ENV) or Path.home() / ".cache" / "newsletter-tests")


def _module(name: str, hint: str) -> str | None:
    if importlib.util.find_spec(name) is not None:
        return None
    return f"the Python package {name} is not installed ({hint})"


def _port(url: str, default_port: int, what: str) -> str | None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as error:
        return f"{what} is not reachable at {host}:{port} ({error.strerror or error}): {HOW_TO_START}"


def _postgresql() -> str | None:
    missing = _module("psycopg", SCALE_HINT)
    if missing:
        return missing
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    engine = sa.create_engine(admin_url(), poolclass=sa.NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as error:
        return (f"PostgreSQL is not reachable at {make_url(admin_url()).render_as_string()} "
                f"({str(error).splitlines()[0]}): {HOW_TO_START}")
    finally:
        engine.dispose()
    return None


def _redis() -> str | None:
    return _module("redis", SCALE_HINT) or _port(redis_url(), 6379, "Redis")


def _program(path: str, package: str) -> Callable[[], str | None]:
    def check() -> str | None:
        found = os.access(path, os.X_OK) if path.startswith("/") else shutil.which(path) is not None
        return None if found else f"{path} is not installed (Debian package {package}; scripts/test installs it)"
    return check


def _chromium() -> str | None:
    return _program("/usr/bin/chromium", "chromium")() or _module("playwright", "pip install -e '.[test]'")


def _bounce_corpus() -> str | None:
    from tests.inbound_support import CORPUS_CACHE

    if (CORPUS_CACHE / "tests" / "data").is_dir():
        return None
    return (f"flufl.bounce's bounce samples are not in {CORPUS_CACHE}: run `bash scripts/test` once, or "
            "`python3 -c 'from tests.inbound_support import fetch_bounce_corpus; fetch_bounce_corpus()'`")


def _embeddings() -> str | None:
    from newsletter.matching.extra import INSTALL_HINT, missing_extra

    missing = missing_extra()
    return f"the embeddings extra is not installed (missing: {', '.join(missing)}); {INSTALL_HINT}" if missing else None


CHECKS: dict[str, Callable[[], str | None]] = {
    "postgresql": _postgresql,
    "redis": _redis,
    "rabbitmq": lambda: _port(amqp_url(), 5672, "RabbitMQ"),
    "celery": lambda: _module("celery", SCALE_HINT),
    "redis-server": _program("/usr/bin/redis-server", "redis-server"),
    "postfix": _program("/usr/sbin/postfix", "postfix"),
    "dovecot": _program("/usr/sbin/dovecot", "dovecot-imapd"),
    "spamassassin": _program("/usr/bin/spamassassin", "spamassassin"),
    "openssl": _program("openssl", "openssl"),
    "chromium": _chromium,
    "bounce-corpus": _bounce_corpus,
    "embeddings": _embeddings,
}
"""Each need: a check returning None when it is there, else why not (one line, with how to get it)."""


@functools.cache
def problem(need: str) -> str | None:
    """Why ``need`` is missing, or None; checked once per session."""
    if need not in CHECKS:
        raise ValueError(f"unknown need {need!r}; known: {', '.join(CHECKS)}")
    return CHECKS[need]()


def require(*needs: str) -> None:
    """Skip (or under CI fail) the running test unless every need is there."""
    for need in needs:
        reason = problem(need)
        if reason is not None:
            unavailable(need, reason)
