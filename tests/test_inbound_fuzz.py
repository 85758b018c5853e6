"""Hostile input: whatever bytes arrive, the processor answers with an outcome (never an exception, which
the listener would turn into a 5xx and lose the message), and junk never changes a reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.inbound.classify import InboundAddresses, classify
from tests.inbound_support import CORPUS_CACHE, DOMAIN, make_inbound

pytestmark = pytest.mark.needs("bounce-corpus")
SAMPLES = sorted((CORPUS_CACHE / "tests" / "data").glob("*.txt"))
"""Empty when the samples were not fetched: the tests are then skipped (failed under CI) by their marker."""
ADDRESSES = InboundAddresses(domain=DOMAIN)


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A real bounce, cut, spliced with random bytes, or with its MIME boundaries broken."""
    raw = draw(st.sampled_from(SAMPLES)).read_bytes()
    how = draw(st.sampled_from(["cut", "splice", "boundary", "random"]))
    if how == "cut":
        return raw[: draw(st.integers(0, len(raw)))]
    if how == "splice":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(max_size=200)) + raw[at:]
    if how == "boundary":
        return raw.replace(b"boundary=", b"boundary=" + draw(st.binary(max_size=8)))
    return draw(st.binary(max_size=2000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mangled())
def test_classify_never_raises_on_mangled_mail(raw: bytes) -> None:
    verdict = classify(raw, recipients=[f"bounces@{DOMAIN}"], addresses=ADDRESSES)
    assert verdict.kind in ("hard-bounce", "soft-bounce", "delay", "complaint", "unsubscribe", "auto-reply",
                            "other", "unparseable")


def test_random_junk_never_changes_a_reader(tmp_path: Path) -> None:
    inbound = make_inbound(f"sqlite:///{tmp_path / 'fuzz.db'}")
    reader = inbound.add("bystander@example.net")

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.binary(max_size=3000))
    def junk(raw: bytes) -> None:
        outcome = inbound.processor.handle(raw, recipients=[inbound.verp(reader)], door="smtp")
        assert outcome.outcome in ("ignored", "quarantined", "duplicate", "unattributed"), outcome

    junk()
    assert inbound.statuses() == {"bystander@example.net": "active"}
