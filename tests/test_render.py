"""Rendering through the real pipeline: golden files, hostile feed text, the size budget, personalisation.

Regenerate the golden files after an intended change of the templates or the render context with
``python -m pytest tests/test_render.py --update-golden`` and review the diff.
"""

from __future__ import annotations

import dataclasses
import difflib
import email
import email.policy
import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from newsletter.config import Settings, TopicSettings
from newsletter.delivery.message import message_template, sendable_message
from newsletter.editions.build import build_edition
from newsletter.editions.selection import Selection, group_by_variant, select
from newsletter.errors import ConfigError, TemplateError
from newsletter.matching.refresh import refresh_matches
from newsletter.records.editions import Edition
from newsletter.records.papers import Paper
from newsletter.records.summaries import TLDR_CHARS
from newsletter.rendering import render
from newsletter.rendering.links import Recipient, recipient_links, signer_from_settings
from newsletter.rendering.render import RenderedVariant, RenderEnvironment, render_variant
from subscribers.store import SubscriberStore
from tests.email_support import FIXTURE_SOURCES, NOW, email_settings, fetch, fix_tokens, stores

GOLDEN = Path(__file__).parent / "golden"
NONCE = "0" * 16
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    """Collects what the checks need and fails on unbalanced markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> closes nothing"
        assert self.stack.pop() == tag, f"</{tag}> closes the wrong element"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(document: str) -> Page:
    page = Page()
    page.feed(document)
    page.close()
    assert page.stack == [], f"unclosed elements: {page.stack}"
    return page


def check_golden(request: pytest.FixtureRequest, name: str, actual: str) -> None:
    path = GOLDEN / name
    if request.config.getoption("--update-golden"):
        path.write_text(actual, encoding="utf-8")
        return
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(list(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), str(path),
                                                 "rendered"))[:60])
        pytest.fail(f"{name} differs from the golden file; if intended, run "
                    f"`python -m pytest tests/test_render.py --update-golden`\n{diff}")


def recipient_for(settings: Settings, edition: Edition, *, name: str = "Ada Lovelace", subscriber_id: int = 1,
                  address: str = "ada@example.org") -> Recipient:
    return recipient_links(settings, signer_from_settings(settings), subscriber_id=subscriber_id, email=address,
                           name=name, edition_slug=edition.slug, issued=NOW)  # a fixed feed token


@pytest.fixture
def golden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Selection]:
    fix_tokens(monkeypatch)
    settings = email_settings(tmp_path, email="max_papers_per_topic = 3")
    # a margin lets a paper join a second topic by similarity, so the golden email shows "Also in"
    settings = dataclasses.replace(settings, matching=dataclasses.replace(settings.matching, margin=0.05))
    store, editions = stores(settings)
    fetch(settings, store)
    edition = build_edition(settings, store, editions, frequency="daily", now=NOW + timedelta(hours=1))
    return settings, select(edition, ["reasoning", "agents", "medical"], max_per_topic=3)


def test_golden_email(request: pytest.FixtureRequest, golden: tuple[Settings, Selection]) -> None:
    settings, selection = golden
    variant = render_variant(selection, settings=settings, environment=RenderEnvironment(settings), nonce=NONCE)
    html_part, text_part = variant.personalise(recipient_for(settings, selection.edition))
    check_golden(request, "email.html", html_part)
    check_golden(request, "email.txt", text_part)
    assert variant.subject == "MiniMax Sparse Attention, Robust-U1 and 7 more"
    assert variant.paper_ids == selection.paper_ids
    page = parse(html_part)
    cards = [attrs["data-paper"] for tag, attrs in page.tags if "data-paper" in attrs]
    assert cards == list(selection.paper_ids)
    assert len(set(cards)) == len(cards) == 9  # no paper twice in one email
    assert "Also in: LLM agents" in html_part
    assert '<style>' in html_part  # the kept block: media queries and Outlook.com dark mode survive
    assert "@media (prefers-color-scheme: dark)" in html_part
    assert "[data-ogsb] .card" in html_part  # Outlook.com: its background attribute for backgrounds
    assert "!important" in html_part


def hostile_paper(number: int, **fields: object) -> Paper:
    values: dict[str, object] = {
        "paper_id": f"2604.9{number:04d}",
        "title": f'<script>alert("x")</script> Agents {{{{ 7*7 }}}} {{% if true %}}yes{{% endif %}} #{number}',
        "abstract": "An agent <img src=x onerror=alert(1)> with {{ config }} and {% for x in y %}loop{% endfor %}.",
        "authors": ("<b>Mallory</b>", 'Eve "onerror=alert(2)"'),
        "categories": ("cs.MA",),
        "primary_category": "cs.MA",
        "abs_url": f'https://arxiv.org/abs/2604.9{number:04d}"><script>alert(3)</script>',
        "pdf_url": "javascript:alert(4)",
        "code_url": "https://github.com/x/y?a=1&b=<2>",
        "thumbnail_url": 'https://example.org/t.png" onerror="alert(5)',
        "upvotes": 3,
        "sources": ("hostile",),
        "published": NOW,
    }
    values.update(fields)
    return Paper(**values)  # type: ignore[arg-type]


def test_hostile_feed_text_comes_out_as_inert_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fix_tokens(monkeypatch)
    settings = email_settings(tmp_path, sources=FIXTURE_SOURCES[:1])
    store, editions = stores(settings)
    store.upsert([hostile_paper(1), hostile_paper(2, ai_summary="Summary </p><script>alert(6)</script>")], now=NOW)
    refresh_matches(settings, store)  # the matching step, as `fetch` runs it after storing
    edition = build_edition(settings, store, editions, frequency="daily", now=NOW + timedelta(hours=1))
    selection = select(edition, ["agents"], max_per_topic=10)
    assert len(selection.paper_ids) == 2
    variant = render_variant(selection, settings=settings, environment=RenderEnvironment(settings))
    html_part, text_part = variant.personalise(recipient_for(settings, edition))
    page = parse(html_part)
    assert "script" not in {tag for tag, _ in page.tags}
    for tag, attrs in page.tags:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        for name in ("href", "src"):
            if name in attrs:
                assert re.fullmatch(r"https?://[^\s\"'<>]+", attrs[name] or ""), attrs[name]
    shown = "".join(page.text)
    assert '<script>alert("x")</script> Agents {{ 7*7 }} {% if true %}yes{% endif %} #1' in shown
    assert "{{ config }} and {% for x in y %}loop{% endfor %}" in shown
    assert "Summary </p><script>alert(6)</script>" in shown
    assert "49" not in shown
    assert "javascript:" not in html_part
    assert '&lt;script&gt;alert("x")' in html_part or "&lt;script&gt;alert(&#34;x&#34;)" in html_part
    # the text part carries the same words, raw and inert (text/plain), and no unsafe link
    assert '<script>alert("x")</script> Agents {{ 7*7 }} {% if true %}yes{% endif %} #1' in " ".join(text_part.split())
    assert "javascript:" not in text_part
    assert "Code: https://github.com/x/y?a=1&b=%3C2%3E" in text_part


def test_the_size_budget_holds_for_200_papers_in_one_topic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fix_tokens(monkeypatch)
    settings = email_settings(tmp_path, sources=FIXTURE_SOURCES[:1], email="max_papers_per_topic = 200")
    store, editions = stores(settings)
    words = "agents plan and call tools in long multi-step workflows with careful evaluation " * 20
    store.upsert(
        [Paper(paper_id=f"2604.{i:05d}", title=f"Agent study number {i} on tool use", abstract=words,
               authors=tuple(f"Author {i}-{j}" for j in range(8)), categories=("cs.MA",), primary_category="cs.MA",
               abs_url=f"https://arxiv.org/abs/2604.{i:05d}", pdf_url=f"https://arxiv.org/pdf/2604.{i:05d}",
               thumbnail_url=f"https://cdn.example.org/{i}.png", upvotes=i, sources=("many",), published=NOW)
         for i in range(200)],
        now=NOW,
    )
    refresh_matches(settings, store)  # the matching step, as `fetch` runs it after storing
    edition = build_edition(settings, store, editions, frequency="daily", now=NOW + timedelta(hours=1))
    selection = select(edition, ["agents"], max_per_topic=200)
    assert selection.paper_count == 200
    variant = render_variant(selection, settings=settings, environment=RenderEnvironment(settings))
    html_part, text_part = variant.personalise(recipient_for(settings, edition))
    assert len(html_part.encode("utf-8")) < settings.email.max_html_bytes
    assert variant.size_bytes < settings.email.max_html_bytes
    shown, hidden = len(variant.paper_ids), len(variant.hidden_paper_ids)
    assert shown + hidden == 200
    assert 20 < shown < 200
    assert variant.paper_ids == selection.paper_ids[:shown]  # the best ones stay, in rank order
    page = parse(html_part)  # complete markup: every element closed, nothing cut
    cards = [attrs["data-paper"] for _, attrs in page.tags if "data-paper" in attrs]
    assert cards == list(variant.paper_ids)
    more = [attrs for tag, attrs in page.tags if tag == "a" and attrs.get("href", "").endswith("#agents")]
    assert more == [{"class": "ml", "href": f"https://papers.example.org/archive/{edition.slug}#agents"}]
    assert f"{hidden} more papers on LLM agents on the web" in html_part
    assert f"{hidden} more papers on LLM agents on the web:\n   https://papers.example.org/archive/" in text_part
    summaries = re.findall(r'<p class="s">(agents plan[^<]*)</p>', html_part)
    lines = re.findall(r'<p class="rs">(agents plan[^<]*)</p>', html_part)  # the compact rows' one line
    assert len(summaries) == settings.email.full_cards_per_section
    assert len(summaries) + len(lines) == shown
    # whole papers move to the web; every full card keeps its whole TL;DR
    assert all(TLDR_CHARS - 20 <= len(s) <= TLDR_CHARS for s in summaries)
    assert html_part.rstrip().endswith("</html>")


def test_personal_values_are_escaped_in_html_and_raw_in_text(golden: tuple[Settings, Selection]) -> None:
    settings, selection = golden
    variant = render_variant(selection, settings=settings, environment=RenderEnvironment(settings), nonce=NONCE)
    name = '<b>"Bob"&Co</b> Builder'  # the greeting uses the first name only
    html_part, text_part = variant.personalise(recipient_for(settings, selection.edition, name=name))
    assert "Hi &lt;b&gt;&quot;Bob&quot;&amp;Co&lt;/b&gt;, here are" in html_part
    assert '<b>"Bob"' not in html_part
    assert 'Hi <b>"Bob"&Co</b>, here are' in text_part
    assert NONCE not in html_part
    assert NONCE not in text_part
    crlf = variant.personalise(recipient_for(settings, selection.edition, name="Bob\r\nBcc: eve@example.org"))
    assert "Hi Bob," in crlf[1]
    assert "Hi Ada, here are" in variant.personalise(recipient_for(settings, selection.edition,
                                                                  name="Dr. Ada  Lovelace"))[1]
    nameless = variant.personalise(recipient_for(settings, selection.edition, name=""))
    assert "Hello, here are the new papers" in nameless[1]
    # a forged placeholder in a name is not substituted again
    forged = variant.personalise(recipient_for(settings, selection.edition, name=f"__nl{NONCE}_unsubscribe_url__"))
    assert f"Hi __nl{NONCE}_unsubscribe_url__," in forged[1]


def test_ten_subscribers_with_three_topic_sets_cost_three_renders(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fix_tokens(monkeypatch)
    settings = email_settings(tmp_path)
    store, editions = stores(settings)
    fetch(settings, store)
    subscribers = SubscriberStore(store.engine)
    topic_sets = [("agents",), ("reasoning", "medical"), ("medical", "agents")]
    for i in range(10):
        subscribers.add(f"reader{i}@example.org", name=f"Reader {i}", topics=topic_sets[i % 3], now=NOW)
    edition = build_edition(settings, store, editions, frequency="daily", now=NOW + timedelta(hours=1))
    readers = subscribers.list_active(frequency="daily")
    sent = editions.already_sent_many([r.id for r in readers], paper_ids=list(edition.papers))
    groups = group_by_variant(edition, [(r.id, r.topics) for r in readers],
                              max_per_topic=settings.email.max_papers_per_topic, already_sent=sent)
    environment = RenderEnvironment(settings)
    before = render.stats.inline_calls
    variants: dict[int, RenderedVariant] = {}
    for group in groups:
        variant = render_variant(group.selection, settings=settings, environment=environment)
        variants.update({sid: variant for sid in group.subscriber_ids})
    outputs = {r.id: variants[r.id].personalise(recipient_for(settings, edition, name=r.name, subscriber_id=r.id,
                                                              address=r.email)) for r in readers}
    assert render.stats.inline_calls - before == 3
    assert sorted(len(g.subscriber_ids) for g in groups) == [3, 3, 4]
    assert len({v.key for v in variants.values()}) == 3
    assert len({html for html, _ in outputs.values()}) == 10  # each one personal
    assert all("Hi Reader," in outputs[r.id][1] and r.email in outputs[r.id][1] for r in readers)


def test_a_template_folder_overrides_by_name_and_extends_the_default(tmp_path: Path,
                                                                    golden: tuple[Settings, Selection]) -> None:
    settings, selection = golden
    mine = tmp_path / "my-templates"
    mine.mkdir()
    (mine / "email.html.j2").write_text(
        '{% extends "default:email.html.j2" %}{% block footer %}{{ super() }}'
        '<p class="custom">Sent from {{ newsletter.name }} with care</p>{% endblock %}', encoding="utf-8")
    environment = RenderEnvironment(settings, template_dir=mine)
    variant = render_variant(selection, settings=settings, environment=environment, nonce=NONCE)
    assert "Sent from Test Papers with care</p>" in variant.html
    assert ">Unsubscribe</a>" in variant.html
    assert environment.fingerprint != RenderEnvironment(settings).fingerprint
    assert variant.key != render_variant(selection, settings=settings, environment=RenderEnvironment(settings)).key
    (mine / "email.html.j2").write_text('{% include "missing.html.j2" %}', encoding="utf-8")
    with pytest.raises(TemplateError) as caught:
        render_variant(selection, settings=settings, environment=RenderEnvironment(settings, template_dir=mine))
    assert str(caught.value) == (
        f"email.html.j2: template not found; tried missing.html.j2 in: {mine}, {render.default_template_dir()}"
    )
    with pytest.raises(TemplateError, match=re.escape("template not found; tried nope.html.j2 in: ")):
        environment.template("nope.html.j2")
    (mine / "email.html.j2").write_text("{{ newsletter.__class__.__mro__ }}", encoding="utf-8")
    with pytest.raises(TemplateError, match=re.escape("email.html.j2: access to attribute '__class__'")):
        render_variant(selection, settings=settings, environment=RenderEnvironment(settings, template_dir=mine))
    (mine / "email.html.j2").write_text("{{ no_such_variable }}", encoding="utf-8")
    with pytest.raises(TemplateError, match=re.escape("email.html.j2: 'no_such_variable' is undefined")):
        render_variant(selection, settings=settings, environment=RenderEnvironment(settings, template_dir=mine))


def test_the_subject_is_one_line_whatever_the_text(tmp_path: Path) -> None:
    settings = email_settings(tmp_path, email='subject = "{name} {frequency} {date}: {count} on {topics}"')
    crafted = TopicSettings(slug="agents", name="LLM\r\nBcc: eve@example.org", keywords=("agent",))
    settings = dataclasses.replace(settings, topics=(crafted,))
    store, editions = stores(settings)
    store.upsert([hostile_paper(1)], now=NOW)
    refresh_matches(settings, store)  # the matching step, as `fetch` runs it after storing
    edition = build_edition(settings, store, editions, frequency="daily", now=NOW + timedelta(hours=1))
    subject = render.subject_line(select(edition, ["agents"], max_per_topic=5), settings=settings)
    assert subject == "Test Papers daily 27 April 2026: 1 on LLM Bcc: eve@example.org"
    with pytest.raises(ConfigError, match=re.escape(
            "email.subject: expected a subject with only the fields {name}, {count}, {topics}, {date}, "
            "{frequency}, {top}, {lead}, {weekly}, found '{name}: {nope}'")):
        email_settings(tmp_path, email='subject = "{name}: {nope}"')


def test_the_complete_message(golden: tuple[Settings, Selection]) -> None:
    settings, selection = golden
    variant = render_variant(selection, settings=settings, environment=RenderEnvironment(settings), nonce=NONCE)
    recipient = recipient_for(settings, selection.edition, name='Ada "The Countess" Lovelace')
    template = message_template(settings, key=variant.key, subject=variant.subject, html=variant.html,
                                text=variant.text, nonce=variant.nonce, edition_slug=selection.edition.slug,
                                frequency=selection.edition.frequency)
    raw = sendable_message(template, recipient, settings=settings, date=NOW, message_id="<x1@example.org>")
    assert b"\r\n" in raw
    assert not re.search(rb"[^\r]\n", raw)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["From"] == "Test Papers <papers@example.org>"
    assert message["To"] == '"Ada \\"The Countess\\" Lovelace" <ada@example.org>'
    assert message["Subject"] == variant.subject
    assert message["Date"] == "Mon, 27 Apr 2026 08:00:00 +0000"
    assert message["Message-ID"] == "<x1@example.org>"
    assert message["List-Id"] == "Test Papers <test-papers.papers.example.org>"
    token = recipient.unsubscribe_url.rpartition("/")[2]
    assert message["List-Unsubscribe"].strip() == (  # folded after the colon: the unfolded value starts with a space
        f"<{recipient.unsubscribe_url}>, <mailto:papers@example.org?subject=unsubscribe%20{token}>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    text, html_part = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    expected_html, expected_text = variant.personalise(recipient)
    assert text.get_content().replace("\r\n", "\n") == expected_text
    assert html_part.get_content().replace("\r\n", "\n").rstrip("\n") == expected_html.rstrip("\n")
