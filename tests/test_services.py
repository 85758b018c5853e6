"""A test whose server is missing: skipped with the reason on a developer's machine, failed under CI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CLOSED = "postgresql+psycopg://postgres@127.0.0.1:1/postgres"
"""Nothing listens on port 1: PostgreSQL is "absent" for the run below, whatever runs on this machine."""


def pytest_run(*, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "NEWSLETTER_TEST_STRICT")}
    env.update({"NEWSLETTER_TEST_POSTGRES_URL": CLOSED, "PYTHONPATH": str(ROOT)})
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_postgres_store.py::test_a_bare_postgresql_url_uses_psycopg"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow  # pytest in a new process
def test_without_the_server_the_fast_loop_skips_saying_why() -> None:
    done = pytest_run(ci=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "needs postgresql: PostgreSQL is not reachable at " + CLOSED in done.stdout
    assert "bash scripts/services" in done.stdout
    assert "skipped" in done.stdout.splitlines()[-1]


@pytest.mark.slow  # pytest in a new process
def test_under_ci_a_missing_server_fails_never_skips() -> None:
    done = pytest_run(ci=True)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "needs postgresql, which is missing: PostgreSQL is not reachable" in done.stdout
    assert "skipped" not in done.stdout.splitlines()[-1]
