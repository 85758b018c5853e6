"""Header fields on the wire: only display phrases encoded, words within 75, lines folded at 78,
List-Id keeps its raw <id>, and DKIM signs the absence of headers a relay could add."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from datetime import UTC, datetime
from email.header import decode_header, make_header
from pathlib import Path

import dkim
import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.config import DkimSettings, Settings
from newsletter.delivery.dkim import DkimSigner
from newsletter.delivery.headers import MAX_ENCODED_WORD, MAX_LINE, address_header, fold, list_id_header
from newsletter.delivery.message import message_template, sendable_message
from newsletter.rendering.links import recipient_links, signer_from_settings
from tests.email_support import email_settings, fix_tokens

ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
NONCE = "0123456789abcdef"
NAME = "Новости трендовых статей — Ежедневный обзор исследований машинного обучения"
SUBJECT = "12 new in Агенты, Рассуждения: Über große Sprachmodelle, die über ihre eigenen Schlüsse nachdenken"


def rfc2047(raw: bytes, name: str) -> str:
    """A header decoded strictly by RFC 2047, with the folding removed."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    return str(make_header(decode_header(str(message[name]))))


def header_block(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def assert_well_formed(raw: bytes) -> None:
    lines = header_block(raw)
    # a URL cannot be folded (receivers' one-click unsubscribe reads it whole): it gets a line of its own, and
    # a line that folding after the colon would bring within 78 is folded there
    def unfoldable(line: bytes) -> bool:
        url = re.fullmatch(rb"(List-Unsubscribe:)?( <[^\s<>]+>,?)", line)
        return url is not None and (url.group(1) is None or len(url.group(2)) > MAX_LINE)

    too_long = [line for line in lines if len(line) > MAX_LINE and not unfoldable(line)]
    assert not too_long, too_long
    words = [word for line in lines for word in ENCODED_WORD.findall(line)]
    assert all(len(word) <= MAX_ENCODED_WORD for word in words), max(words, key=len)


@pytest.fixture
def unicode_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    fix_tokens(monkeypatch)
    settings = email_settings(tmp_path)
    return dataclasses.replace(settings, newsletter=dataclasses.replace(settings.newsletter, name=NAME))


def unicode_message(settings: Settings, *, reader: str = "Zoë Ångström-Çelik, PhD") -> bytes:
    template = message_template(settings, key="k" * 32, subject=SUBJECT, html="<p>__nl0123456789abcdef_greeting__</p>",
                                text="__nl0123456789abcdef_greeting__\n", nonce=NONCE,
                                edition_slug="daily-2026-04-27", frequency="daily")
    recipient = recipient_links(settings, signer_from_settings(settings), subscriber_id=7, email="zoe@example.com",
                                name=reader, edition_slug="daily-2026-04-27")
    return sendable_message(template, recipient, settings=settings, message_id="<m1@example.org>",
                            date=datetime(2026, 4, 27, 7, 0, tzinfo=UTC))


def test_a_non_ascii_name_keeps_the_raw_list_id_and_short_lines(unicode_settings: Settings) -> None:
    raw = unicode_message(unicode_settings)
    assert_well_formed(raw)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    list_id = str(message["List-Id"])
    assert list_id.startswith(NAME)
    assert re.fullmatch(r".* <(?P<id>[^<>]+)>", list_id)["id"] == "newsletter.papers.example.org"  # type: ignore[index]
    assert b" <newsletter.papers.example.org>" in raw  # the id itself is never inside an encoded word
    assert message["Subject"] == SUBJECT
    # RFC 2047 6.2: white space between adjacent encoded words is dropped (the legacy decoder does that;
    # the policy parser puts a space where the folder split a word)
    assert rfc2047(raw, "From") == f"{NAME} <papers@example.org>"
    assert message["From"].addresses[0].addr_spec == "papers@example.org"
    assert message["To"].addresses[0].display_name == "Zoë Ångström-Çelik, PhD"  # the comma stays in the phrase
    assert message["To"].addresses[0].addr_spec == "zoe@example.com"
    # only the phrase is encoded: the ASCII words of the subject stay readable on the wire
    assert b"Subject: 12 new in " in raw
    assert b"<zoe@example.com>" in raw


@hypothesis_settings(max_examples=150, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from(" é—数😀,\"<>()"), max_size=160))
@example("00000000000¡¡¡¡¡\U00010000\U00010000\U00010000—— ¡ ¡")  # the policy's folder once lost a space here
def test_any_text_folds_into_short_lines_that_parse_back(text: str) -> None:
    for line in (fold("Subject", text), address_header("From", text, "news@example.org"),
                 list_id_header(text, "news.example.org")):
        raw = (line + "\r\n\r\n").encode("ascii")
        words = [len(w) for w in ENCODED_WORD.findall(raw)]
        assert all(n <= MAX_ENCODED_WORD for n in words)
        if not any(len(word) > 70 for word in text.split()):  # a single long ASCII word cannot be folded
            assert all(len(part) <= MAX_LINE for part in header_block(raw))
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        if line.startswith("Subject"):
            assert parsed["Subject"] == " ".join(text.split())
        elif line.startswith("From"):
            assert parsed["From"].addresses[0].addr_spec == "news@example.org"
            phrase = " ".join(text.split())
            if not phrase.isascii():  # decoded strictly by RFC 2047: the phrase comes back exactly
                assert rfc2047(raw, "From") == f"{phrase} <news@example.org>"
        else:
            assert re.fullmatch(r"(.+ )?<news\.example\.org>", str(parsed["List-Id"]))


@pytest.mark.parametrize("added", [
    b"Reply-To: attacker@evil.example\r\n",
    b"Subject: Urgent: confirm your password\r\n",
    b"From: Someone Else <boss@example.org>\r\n",
    b"List-Unsubscribe: <https://evil.example/u>\r\n",
    b"List-Help: <https://evil.example/help>\r\n",
])
def test_dkim_breaks_when_a_relay_adds_a_header(unicode_settings: Settings, dkim_key: tuple[Path, bytes],
                                                added: bytes) -> None:
    key, record = dkim_key
    signer = DkimSigner(DkimSettings(selector="news", domain="example.org", private_key_path=str(key)))
    signed = signer.sign(unicode_message(unicode_settings))

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record

    assert dkim.verify(signed, dnsfunc=dns)
    assert_well_formed(signed)
    signature, _, rest = signed.partition(b"\r\nTo: ")
    # added after the signature, where a relay would put it, and before it: both must fail
    assert not dkim.verify(signature + b"\r\n" + added + b"To: " + rest, dnsfunc=dns)
    assert not dkim.verify(added + signed, dnsfunc=dns)
