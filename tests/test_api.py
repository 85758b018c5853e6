"""The JSON API (/api/v1) through a real `newsletter serve` on 127.0.0.1: every route, its errors in the CLI's
words, the OpenAPI document against the routes, and a reader added by the API getting the next edition once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

from newsletter.config import load_settings
from newsletter.storage.db import open_database
from newsletter.web.api.openapi import document
from newsletter.web.api.reference import render as render_reference
from newsletter.web.app import create_app
from tests.conftest import spawn
from tests.mailsink import MailSink
from tests.support import free_port, run, secret_fixture
from tests.test_send import SECRET, add_subscribers, make_config

NO_JOBS = '\n[schedule]\nfetch = ""\ndaily = ""\nweekly = ""\nretry = ""\nhousekeeping = ""\n'

secret = secret_fixture(SECRET)


def api_config(folder: Path, sink: MailSink, extra: str = "") -> Path:
    path = make_config(folder, sink)
    text = path.read_text(encoding="utf-8").replace("\nport = 8000\n", f"\nport = {free_port()}\n")
    path.write_text(text + NO_JOBS + extra, encoding="utf-8")
    return path


def start_serve(config: Path) -> tuple[subprocess.Popen[bytes], str]:
    process = spawn(["--config", str(config), "serve"])
    base = f"http://127.0.0.1:{load_settings(config).web.port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.communicate()[0].decode()
        assert time.monotonic() < deadline, "serve did not start"
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, output
    return output


def make_token(config: Path, name: str = "ci") -> str:
    code, output = run(config, "admin", "token", name, "--json")
    assert code == 0, output
    return str(json.loads(output)["token"])


def cli_error(config: Path, *args: str) -> str:
    """The one-line message of a CLI command that fails (without `Error: `)."""
    code, output = run(config, *args)
    assert code == 1, output
    line = output.strip().splitlines()[-1]
    assert line.startswith("Error: "), output
    return line.removeprefix("Error: ")


def test_the_openapi_document_lists_exactly_the_routes_the_app_serves(tmp_path: Path, sink: MailSink) -> None:
    settings = load_settings(api_config(tmp_path, sink))
    app = create_app(settings, open_database(settings.newsletter.database_url))
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/api/v1")
    served = {(method, route.path) for route in mount.routes if isinstance(route, Route)
              for method in route.methods or () if method != "HEAD"}
    documented = {(method.upper(), path) for path, item in document()["paths"].items() for method in item}
    assert served == documented
    assert len(served) == 11
    for path, item in document()["paths"].items():  # every path parameter is declared, and only those
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(path.replace("}", "{").split("{")[1::2]), path


@pytest.mark.slow  # one `serve`, a fetch and two sends
@pytest.mark.usefixtures("database_url")  # SQLite and the PostgreSQL server
def test_every_route_through_serve(tmp_path: Path, sink: MailSink) -> None:
    config = api_config(tmp_path, sink)
    assert run(config, "fetch")[0] == 0
    add_subscribers(config, 2)  # reader0 (agents, reasoning), reader1 (retrieval)
    token = make_token(config)
    process, base = start_serve(config)
    api = httpx.Client(base_url=f"{base}/api/v1", headers={"authorization": f"Bearer {token}"}, timeout=30)
    anonymous = httpx.Client(base_url=f"{base}/api/v1", timeout=30)

    # the document is public and every route it lists exists on the real server (401, not 404/405)
    spec = anonymous.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.json() == document()
    for path, item in spec.json()["paths"].items():
        if path == "/openapi.json":
            continue
        for method in item:
            answer = anonymous.request(method.upper(), path.replace("{email}", "x@example.org").replace("{id}", "1"))
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert "valid API token is required" in answer.json()["error"]
    wrong = anonymous.get("/status", headers={"authorization": "Bearer nlt_not-a-token"})
    assert wrong.status_code == 401
    assert api.get("/nothing-here").status_code == 404
    assert api.get("/nothing-here").json()["error"].startswith("there is nothing at this address")
    assert api.put("/status").status_code == 405

    # status: the shape of `status --json`
    status = api.get("/status")
    assert status.status_code == 200
    code, output = run(config, "status", "--json")
    assert set(status.json()) == set(json.loads(output))
    assert status.json()["subscribers"]["active"] == 2

    # subscribers: add (the operator vouches: active), again (unchanged), bad input in the CLI's words
    added = api.post("/subscribers", json={"email": "Api.Reader@Example.org", "topics": ["agents"],
                                           "frequency": "daily"})
    assert added.status_code == 201, added.text
    assert added.json()["result"] == "added"
    assert added.json()["subscriber"]["status"] == "active"
    assert added.json()["subscriber"]["topics"] == ["agents"]
    assert added.json()["subscriber"]["source"] == "api"  # how the operator vouched, kept as consent evidence
    again = api.post("/subscribers", json={"email": "api.reader@example.org", "topics": ["agents"]})
    assert again.status_code == 200
    assert again.json()["result"] == "unchanged"
    bad_topic = api.post("/subscribers", json={"email": "x@example.org", "topics": ["no-such-topic"]})
    assert bad_topic.status_code == 422
    assert bad_topic.json()["error"] == cli_error(config, "subscribers", "add", "x@example.org", "--topics",
                                                  "no-such-topic")
    bad_address = api.post("/subscribers", json={"email": "not an address"})
    assert bad_address.status_code == 422
    assert bad_address.json()["error"] == cli_error(config, "subscribers", "add", "not an address")
    assert api.post("/subscribers", json={"email": "y@example.org", "colour": "red"}).status_code == 422
    assert api.post("/subscribers", json=["y@example.org"]).status_code == 422
    assert api.post("/subscribers", content=b"email=y@example.org",
                    headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 415
    assert api.post("/subscribers", content=b"{not json", headers={"content-type": "application/json"}
                    ).status_code == 422

    # list: filters and pages
    page = api.get("/subscribers", params={"status": "active", "topic": "agents", "limit": 1})
    assert page.status_code == 200
    assert page.json()["count"] == 2  # reader0 and the API's reader
    assert [s["email"] for s in page.json()["subscribers"]] == ["reader0@example.com"]
    second = api.get("/subscribers", params={"status": "active", "topic": "agents", "limit": 1, "offset": 1})
    assert [s["email"] for s in second.json()["subscribers"]] == ["api.reader@example.org"]
    assert api.get("/subscribers", params={"frequency": "weekly"}).json()["count"] == 0
    bad_status = api.get("/subscribers", params={"status": "happy"})
    assert bad_status.status_code == 422
    assert "unknown status 'happy'" in bad_status.json()["error"]
    assert api.get("/subscribers", params={"limit": "0"}).status_code == 422

    # one subscriber: the shape of `subscribers show --json`; unknown: 404 in the CLI's words
    shown = api.get("/subscribers/api.reader@example.org")
    assert shown.status_code == 200
    assert shown.json() == json.loads(run(config, "subscribers", "show", "api.reader@example.org", "--json")[1])
    missing = api.get("/subscribers/nobody@example.org")
    assert missing.status_code == 404
    assert missing.json()["error"] == cli_error(config, "subscribers", "show", "nobody@example.org")

    # change preferences; unknown keys and topics refused
    changed = api.patch("/subscribers/reader1@example.com", json={"topics": ["retrieval", "agents"],
                                                                  "frequency": "weekly"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["subscriber"]["topics"] == ["retrieval", "agents"]
    assert changed.json()["subscriber"]["frequency"] == "weekly"
    assert api.patch("/subscribers/reader1@example.com", json={"status": "active"}).status_code == 422
    assert api.patch("/subscribers/reader1@example.com", json={}).status_code == 422
    assert api.patch("/subscribers/nobody@example.org", json={"frequency": "daily"}).status_code == 404

    # remove: one topic, then all; an unsubscribed reader's preferences are refused (409)
    one = api.delete("/subscribers/reader1@example.com", params={"topic": "agents"})
    assert one.json()["result"] == "removed-topic"
    assert one.json()["subscriber"]["topics"] == ["retrieval"]
    gone = api.delete("/subscribers/reader1@example.com")
    assert gone.json() == {"result": "unsubscribed", "subscriber": gone.json()["subscriber"]}
    assert gone.json()["subscriber"]["status"] == "unsubscribed"
    assert api.delete("/subscribers/reader1@example.com").json()["result"] == "unchanged"
    refused = api.patch("/subscribers/reader1@example.com", json={"frequency": "daily"})
    assert refused.status_code == 409
    assert refused.json()["error"] == "reader1@example.com is unsubscribed; preferences cannot be changed"
    assert api.delete("/subscribers/nobody@example.org").status_code == 404
    assert api.delete("/subscribers/reader1@example.com", params={"topic": "agents", "delete": "true"}
                      ).status_code == 422

    # papers: as `papers --json`
    papers = api.get("/papers", params={"since": "2020-01-01", "topic": "agents"})
    assert papers.status_code == 200
    expected = json.loads(run(config, "papers", "--since", "2020-01-01", "--topic", "agents", "--json")[1])
    assert papers.json()["count"] == expected["count"] > 0
    assert [p["id"] for p in papers.json()["papers"]] == [p["id"] for p in expected["papers"]]
    assert api.get("/papers", params={"limit": 1}).json()["papers"][0]["id"]
    assert api.get("/papers", params={"since": "last week"}).status_code == 422
    no_topic = api.get("/papers", params={"topic": "nope"})
    assert no_topic.status_code == 422
    assert no_topic.json()["error"] == cli_error(config, "papers", "--topic", "nope")

    # editions: build today's (as `edition show` does), list, show, approve
    code, output = run(config, "edition", "show")
    assert code == 0, output
    slug = output.split(":")[0]
    listed = api.get("/editions")
    assert listed.status_code == 200
    assert [e["slug"] for e in listed.json()["editions"]] == [slug]
    edition_id = listed.json()["editions"][0]["id"]
    assert api.get("/editions", params={"frequency": "weekly"}).json()["count"] == 0
    detail = api.get(f"/editions/{edition_id}")
    assert detail.status_code == 200
    assert detail.json()["slug"] == slug
    assert sum(len(t["papers"]) for t in detail.json()["topics"]) >= detail.json()["papers"] > 0
    assert api.get(f"/editions/{slug}").json()["id"] == edition_id
    unknown = api.get("/editions/daily-1999-01-01")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == cli_error(config, "edition", "show", "daily-1999-01-01")
    assert api.post("/editions/424242/approve").status_code == 404
    approved = api.post(f"/editions/{edition_id}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["message"] == f"{slug}: approved; it will be sent by `newsletter send`"
    assert approved.json()["edition"]["approved_by"] == "api:ci"
    assert api.post(f"/editions/{slug}/approve").json()["message"] == f"{slug}: already approved"

    # the reader the API added gets the next edition, once
    code, output = run(config, "send")
    assert code == 0, output
    code, output = run(config, "send")
    assert code == 0, output
    received = sink.by_recipient()
    assert len(received["api.reader@example.org"]) == 1
    assert "reader1@example.com" not in received  # unsubscribed by the API before the send
    late = api.post(f"/editions/{edition_id}/approve")
    assert late.status_code == 409
    assert late.json()["error"] == f"{slug} is being sent or was sent; it can no longer be changed"

    # a revoked token stops working at once
    assert run(config, "admin", "revoke", "ci") == (0, "API token 'ci' revoked\n")
    assert api.get("/status").status_code == 401
    output = stop(process)
    assert token not in output


def test_tokens_are_listed_revoked_and_stored_only_as_hashes(tmp_path: Path, sink: MailSink) -> None:
    config = api_config(tmp_path, sink)
    token = make_token(config, "zapier")
    assert token.startswith("nlt_")
    assert len(token) > 40
    code, output = run(config, "admin", "token", "zapier")
    assert code == 1
    assert "Error: a token named 'zapier' exists; revoke it first (`newsletter admin revoke zapier`)" in output
    code, output = run(config, "admin", "tokens")
    assert code == 0
    assert output.startswith("zapier: made ")
    assert "never used" in output
    assert token not in output
    database = Path(load_settings(config).newsletter.database_url.removeprefix("sqlite:///"))
    assert token.encode() not in database.read_bytes()
    code, output = run(config, "admin", "revoke", "nobody")
    assert (code, output) == (1, "Error: no token named 'nobody'; tokens: zapier\n")
    listed: Any = json.loads(run(config, "admin", "tokens", "--json")[1])
    assert [t["name"] for t in listed] == ["zapier"]


def test_docs_api_md_holds_the_route_reference_generated_from_the_openapi_document() -> None:
    documented = (Path(__file__).parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    assert render_reference() in documented, "run: python -m newsletter.web.api.reference (paste into docs/api.md)"
    for path, item in document()["paths"].items():
        for method in item:
            assert f"### `{method.upper()} /api/v1{path}`" in documented


@pytest.mark.usefixtures("database_url")  # the JSON topic filter in SQL: SQLite and PostgreSQL
def test_a_page_of_subscribers_is_the_same_as_the_filtered_list(tmp_path: Path, sink: MailSink) -> None:
    from newsletter.usecases.subscribe import subscriber_store

    settings = load_settings(api_config(tmp_path, sink))
    store = subscriber_store(settings, open_database(settings.newsletter.database_url))
    topic_sets = [("agents",), ("reasoning", "agents"), ("retrieval",), ("safety-alignment", "retrieval")]
    for i in range(23):
        store.add(f"r{i}@example.org", topics=topic_sets[i % 4], frequency="weekly" if i % 3 else "daily",
                  status="unsubscribed" if i % 5 == 0 else "active", now=datetime.now(UTC))
    for filters in ({}, {"topic": "agents"}, {"topic": "retrieval", "status": "active"},
                    {"frequency": "daily", "topic": "reasoning"}, {"status": "unsubscribed"}):
        everything = store.list_all(**filters)  # type: ignore[arg-type]
        for offset in (0, 4, 20):
            total, page = store.page(**filters, limit=4, offset=offset)  # type: ignore[arg-type]
            assert (total, page) == (len(everything), everything[offset:offset + 4]), filters
