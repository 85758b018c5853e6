"""Messages built once per variant and spliced per recipient are standard MIME a mail client reads."""

from __future__ import annotations

import email
import email.policy
import html
import re
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.config import DkimSettings
from newsletter.delivery.dkim import DkimSigner
from newsletter.delivery.mime import MessageTemplate, RecipientHeaders
from newsletter.errors import ConfigError

NONCE = re.compile(r"__nlabc_(?P<name>[a-z_]+)__")
HTML = (
    '<html><body><p>__nlabc_greeting__</p><a href="__nlabc_manage_url__">manage</a>'
    + "<p>Über lange Zeilen = kein Problem, " * 60
    + '</p><a href="__nlabc_unsubscribe_url__">unsubscribe</a></body></html>'
)
TEXT = "__nlabc_greeting__\n\n" + "A paper line with é and = signs\n" * 50 + ".a line starting with a dot\n"
VALUES = {
    "greeting": 'Hi <b>"Bob" & Co</b>,',
    "manage_url": "https://papers.example.org/manage/k0.NDI.abc?x=1&y=2",
    "unsubscribe_url": "https://papers.example.org/unsubscribe/k0.NDI.def",
}


def template(subject: str = "Trending Papers: 3 new papers on Agents") -> MessageTemplate:
    return MessageTemplate(boundary_seed="0123456789abcdef", from_name="Trending Papers",
                           from_address="papers@example.org", subject=subject, html_document=HTML,
                           text_document=TEXT, placeholder=NONCE, list_id="Trending Papers <papers.example.org>",
                           feedback_id="daily-2026-04-27:daily:newsletter:example.org")


def headers(name: str = "Zoë Example") -> RecipientHeaders:
    return RecipientHeaders(to_email="zoe@example.com", to_name=name, message_id="<abc123@example.org>",
                            date=datetime(2026, 4, 27, 7, 0, tzinfo=UTC),
                            list_unsubscribe=[VALUES["unsubscribe_url"], "mailto:papers@example.org?subject=u"])


def parse(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_spliced_message_parses_with_both_parts_and_escaped_values() -> None:
    raw = template().render(headers(), VALUES)
    message = parse(raw)
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = list(message.iter_parts())
    assert text_part.get_content_type() == "text/plain"  # text first, then HTML
    assert html_part.get_content_type() == "text/html"
    text = text_part.get_content().replace("\r\n", "\n")
    assert text == TEXT.replace("__nlabc_greeting__", VALUES["greeting"])
    body = html_part.get_content()
    assert html.escape(VALUES["greeting"]) in body
    assert 'href="https://papers.example.org/manage/k0.NDI.abc?x=1&amp;y=2"' in body
    assert "Über lange Zeilen" in body


def test_lines_stay_short_and_end_in_crlf() -> None:
    raw = template().render(headers(), VALUES | {"greeting": "x" * 500})
    _head, body = raw.split(b"\r\n\r\n", 1)
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert b"\n" not in raw.replace(b"\r\n", b"")


LINE = st.lists(st.sampled_from([".", "=", " ", "é", "\t", "A", "-", "<__nlabc_greeting__>"]), max_size=90).map("".join)
VALUE = st.text(st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from([".", "\r", "\n", "="]), max_size=200)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(lines=st.lists(LINE, min_size=1, max_size=8), greeting=VALUE)
def test_every_message_is_ready_for_smtp_data_as_it_is(lines: list[str], greeting: str) -> None:
    """CRLF only, no line starting with "." (SMTP would eat it), QP lines within 76, content unchanged."""
    text = "\n".join(lines)
    document = MessageTemplate(boundary_seed="0123456789abcdef", from_name="P", from_address="p@example.org",
                               subject="s", html_document=text, text_document=text, placeholder=NONCE,
                               list_id="P <p.example.org>", feedback_id="f")
    raw = document.render(headers(), {"greeting": greeting})
    assert raw.count(b"\n") == raw.count(b"\r") == raw.count(b"\r\n")
    assert not raw.startswith(b".")
    assert b"\r\n." not in raw
    _head, body = raw.split(b"\r\n\r\n", 1)
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    text_part, html_part = list(parse(raw).iter_parts())
    flat = re.sub(r"[\r\n]+", " ", greeting)  # a spliced value is one line
    assert text_part.get_content().replace("\r\n", "\n") == text.replace("<__nlabc_greeting__>", f"<{flat}>")
    escaped = html.escape(flat, quote=True)
    assert html_part.get_content().replace("\r\n", "\n") == text.replace("<__nlabc_greeting__>", f"<{escaped}>")


def test_headers_for_one_click_unsubscribe_and_threading() -> None:
    message = parse(template().render(headers(), VALUES))
    assert message["To"] == "Zoë Example <zoe@example.com>"
    assert message["Message-ID"] == "<abc123@example.org>"
    assert message["Date"] == "Mon, 27 Apr 2026 07:00:00 +0000"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"] == (
        "<https://papers.example.org/unsubscribe/k0.NDI.def>, <mailto:papers@example.org?subject=u>"
    )
    assert message["List-Id"] == "Trending Papers <papers.example.org>"
    assert message["Feedback-ID"] == "daily-2026-04-27:daily:newsletter:example.org"


@pytest.mark.parametrize("hostile", ["Papers\r\nBcc: victim@example.com", "Papers\nX-Injected: 1"])
def test_no_header_injection_through_subject_or_name(hostile: str) -> None:
    raw = template(subject=hostile).render(headers(name=hostile), VALUES)
    message = parse(raw)
    assert message["Bcc"] is None
    assert message["X-Injected"] is None
    assert "victim@example.com" in message["Subject"] or "X-Injected" in message["Subject"]


def test_dkim_signature_verifies_and_covers_one_click_headers(dkim_key: tuple[Path, bytes]) -> None:
    key, record = dkim_key
    signer = DkimSigner(DkimSettings(selector="news", domain="example.org", private_key_path=str(key)))
    signed = signer.sign(template().render(headers(), VALUES))

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"news._domainkey.example.org."
        return record

    assert dkim.verify(signed, dnsfunc=dns)
    signature = parse(signed)["DKIM-Signature"].replace(" ", "").replace("\t", "")
    signed_headers = re.search(r"h=([^;]+)", signature).group(1).lower().split(":")  # type: ignore[union-attr]
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= set(signed_headers)
    tampered = signed.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                              b"List-Unsubscribe-Post: List-Unsubscribe=Nope")
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_missing_dkim_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"delivery\.dkim\.private_key_path: cannot read .*nope\.pem"):
        DkimSigner(DkimSettings(selector="s", domain="example.org", private_key_path=str(tmp_path / "nope.pem")))
