"""Editorial control: an editor pins, drops and annotates a built edition, and in approve mode `serve` waits
for `newsletter edition approve`, then sends the edition once. Real SQLite, real SMTP, real `serve`."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.mailsink import MailSink
from tests.support import run, secret_fixture
from tests.test_scheduler import NO_JOBS, _serve, _stop, schedule_config
from tests.test_send import SECRET, add_subscribers, make_config

secret = secret_fixture(SECRET)


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, kind: str) -> str:
    body = message.get_body(preferencelist=(kind,))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())


def shown_papers(output: str, topic: str) -> list[str]:
    """Paper ids listed under one topic by `edition show`, in order."""
    block = output.split(f"({topic}):\n", 1)[1]
    ids = []
    for line in block.splitlines():
        match = re.match(r"  (?:pinned )?(\S+)  ", line)
        if not match:
            break
        ids.append(match.group(1))
    return ids


def test_pinned_first_dropped_gone_and_a_note_in_every_email(tmp_path: Path, sink: MailSink) -> None:
    config = make_config(tmp_path, sink)
    assert run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 8)
    code, output = run(config, "edition", "show")
    assert code == 0, output
    agents = shown_papers(output, "agents")
    assert len(agents) >= 3, output
    first, last = agents[0], agents[-1]
    assert run(config, "edition", "pin", last)[1].endswith(f": pinned {last}\n")
    assert run(config, "edition", "drop", first)[1].endswith(f": dropped {first}\n")
    assert run(config, "edition", "note", "Lab meeting moved to Thursday.")[0] == 0
    code, output = run(config, "edition", "show")
    slug = output.split(":")[0]
    assert shown_papers(output, "agents")[0] == last
    assert first not in shown_papers(output, "agents")
    assert f"dropped: {first}" in output
    assert run(config, "edition", "pin", "2999.99999") == (
        1, f"Error: paper '2999.99999' is not in {slug} (`newsletter edition show` lists its papers)\n")

    code, output = run(config, "send")
    assert code == 0, output
    assert {m.rcpt_tos[0] for m in sink.messages} == set(emails)
    for received in sink.messages:
        message = parsed(received.data)
        html, text = part(message, "html"), part(message, "plain")
        assert "Lab meeting moved to Thursday." in html
        assert "Lab meeting moved to Thursday." in text
        assert f"/abs/{first}" not in html
    agents_reader = parsed(sink.by_recipient()[emails[0]][0].data)  # topics: agents, reasoning
    html = part(agents_reader, "html")
    links = re.findall(r"arxiv\.org/abs/(\d{4}\.\d{4,5})", html)
    assert links[0] == last, links
    assert run(config, "edition", "note", "too late") == (
        1, f"Error: {slug} is being sent or was sent; it can no longer be changed\n")


def status(config: Path) -> dict[str, Any]:
    code, output = run(config, "status", "--json")
    assert code == 0, output
    return dict(json.loads(output[output.index("{"):]))


@pytest.mark.slow
def test_approve_mode_serve_waits_then_sends_the_approved_edition_once(tmp_path: Path, sink: MailSink) -> None:
    schedule = (NO_JOBS.replace('daily = ""', 'daily = "*/2 * * * * *"').replace('retry = ""', 'retry = "* * * * * *"')
                + "approve = true\nlease_seconds = 5")
    config = schedule_config(tmp_path, sink, schedule)
    assert run(config, "fetch")[0] == 0
    emails = add_subscribers(config, 6)
    process = _serve(config)
    deadline = time.monotonic() + 90
    view = status(config)
    while not view["awaiting_approval"]:
        assert time.monotonic() < deadline, view
        assert process.poll() is None, process.communicate()[0].decode()
        time.sleep(0.5)
        view = status(config)
    slug = view["awaiting_approval"][0]
    time.sleep(3)  # more daily and retry runs come and go: still nothing is sent
    assert sink.messages == []
    code, text = run(config, "status")
    assert f"awaiting approval: {slug}" in text
    assert run(config, "edition", "approve", slug) == (
        0, f"{slug}: approved; it will be sent at the next retry run of `serve`\n")
    while len(sink.messages) < len(emails):
        assert time.monotonic() < deadline, len(sink.messages)
        time.sleep(0.2)
    time.sleep(3)  # and it is not sent again by later runs
    code, output = _stop(process)
    assert code == 0, output
    assert {a: len(m) for a, m in sink.by_recipient().items()} == dict.fromkeys(emails, 1)
    assert status(config)["awaiting_approval"] == []
    assert "waiting for approval" in output
