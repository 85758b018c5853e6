"""The card's TL;DR (newsletter.records.summaries): the abstract's contribution and result, not its background
opener; at most 220 characters, ending at a sentence; Hugging Face's AI summary fitted the same way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from newsletter.records.summaries import (
    TLDR_CHARS,
    extractive_tldr,
    first_sentence,
    fit_summary,
    split_sentences,
)

ABSTRACT = (
    "Large language models are increasingly used as autonomous agents, yet their reliability remains a "
    "challenge in long-horizon tasks. Existing approaches rely on hand-written prompts. "
    "In this paper, we propose ToolPlan, a planner that learns when to call tools from execution traces. "
    "On WebArena, ToolPlan improves the success rate by 12.4% over the strongest baseline while using "
    "38% fewer tool calls. Code is available at https://github.com/example/toolplan."
)


def test_the_tldr_is_the_contribution_and_the_result_not_the_background() -> None:
    tldr = extractive_tldr(ABSTRACT)
    assert tldr == ("We propose ToolPlan, a planner that learns when to call tools from execution traces. On WebArena, "
                    "ToolPlan improves the success rate by 12.4% over the strongest baseline while using 38% fewer "
                    "tool calls.")
    assert len(tldr) <= TLDR_CHARS
    assert first_sentence(ABSTRACT).startswith("Large language models are increasingly used")


def test_abbreviations_and_initials_do_not_end_a_sentence() -> None:
    text = "We compare tools, e.g. search and code, with J. Smith et al. in 2024. Results differ by 3.5 points."
    assert split_sentences(text) == ["We compare tools, e.g. search and code, with J. Smith et al. in 2024.",
                                     "Results differ by 3.5 points."]


def test_a_long_sentence_is_cut_after_a_clause_and_ends_as_a_sentence() -> None:
    sentence = ("We introduce a benchmark of 800 contamination-free questions synthesised by three cooperating "
                "agents, which keeps the questions fresh over time, prevents memorisation by the models under "
                "test, and lets anyone extend it with new domains, languages and tools at a low cost per question.")
    tldr = extractive_tldr(sentence)
    assert len(tldr) <= TLDR_CHARS
    assert tldr.endswith(".")
    assert sentence.startswith(tldr[:-1])


def test_a_hugging_face_summary_is_fitted_to_the_limit() -> None:
    summary = ("HYDRA-X presents a unified multimodal model that integrates image and video tokenization within a "
               "single Vision Transformer, addressing spatiotemporal reconstruction and semantic awareness through "
               "causal temporal attention and hierarchical compression.")
    assert len(summary) > TLDR_CHARS
    fitted = fit_summary(summary)
    assert fitted == ("HYDRA-X presents a unified multimodal model that integrates image and video tokenization "
                      "within a single Vision Transformer.")
    assert fit_summary("Short. Two sentences.") == "Short. Two sentences."


@given(st.lists(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300), max_size=8))
def test_any_abstract_gives_at_most_220_characters(sentences: list[str]) -> None:
    text = ". ".join(sentences)
    for method in (extractive_tldr, fit_summary, first_sentence):
        assert len(method(text)) <= TLDR_CHARS
