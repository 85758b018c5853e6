"""TF-IDF on word stems (issue 24): a topic and a paper that use one word in two forms share a term."""

from __future__ import annotations

import pytest

from newsletter.config import TopicSettings
from newsletter.matching.rules import tfidf_similarities
from newsletter.matching.stemming import stem, stemmed_words
from newsletter.records.papers import Paper


@pytest.mark.parametrize(("word", "expected"), [
    # examples from Porter's paper, step by step
    ("caresses", "caress"), ("ponies", "poni"), ("caress", "caress"), ("cats", "cat"),
    ("feed", "feed"), ("agreed", "agre"), ("plastered", "plaster"), ("bled", "bled"), ("motoring", "motor"),
    ("sing", "sing"), ("conflated", "conflat"), ("troubled", "troubl"), ("sized", "size"), ("hopping", "hop"),
    ("falling", "fall"), ("filing", "file"), ("failing", "fail"), ("happy", "happi"), ("sky", "sky"),
    ("relational", "relat"), ("conditional", "condit"), ("valenci", "valenc"), ("digitizer", "digit"),
    ("vietnamization", "vietnam"), ("predication", "predic"), ("operator", "oper"), ("feudalism", "feudal"),
    ("decisiveness", "decis"), ("hopefulness", "hope"), ("formaliti", "formal"), ("sensitiviti", "sensit"),
    ("triplicate", "triplic"), ("formative", "form"), ("electriciti", "electr"), ("electrical", "electr"),
    ("revival", "reviv"), ("allowance", "allow"), ("inference", "infer"), ("airliner", "airlin"),
    ("adjustable", "adjust"), ("defensible", "defens"), ("replacement", "replac"), ("adoption", "adopt"),
    ("communism", "commun"), ("activate", "activ"), ("homologous", "homolog"), ("effective", "effect"),
    ("bowdlerize", "bowdler"), ("probate", "probat"), ("rate", "rate"), ("cease", "ceas"), ("controll", "control"),
    ("roll", "roll"), ("generalizations", "gener"), ("oscillators", "oscil"),
    # the words of topics and abstracts
    ("auctions", "auction"), ("rendering", "render"), ("rendered", "render"), ("meshes", "mesh"),
    ("segmentation", "segment"), ("equilibria", "equilibria"), ("is", "is"), ("3d", "3d"),
])
def test_porter_stems(word: str, expected: str) -> None:
    assert stem(word) == expected


def test_the_analyzer_drops_stop_words_and_single_characters_and_lower_cases() -> None:
    assert stemmed_words("The Auctions of a 3D mesh, and x-rays") == ["auction", "3d", "mesh", "rai"]


def test_a_paper_using_the_topic_words_in_another_form_is_similar_to_it() -> None:
    """Whole words: "rendering"/"render" and "meshes"/"mesh" are different terms, and the cosine was 0."""
    topic = TopicSettings(slug="graphics", name="Rendering", description="Rendering of meshes.")
    papers = [
        Paper(paper_id="a", title="Render a triangle mesh faster", abstract="We render each mesh on the GPU."),
        Paper(paper_id="b", title="Auction equilibria", abstract="Bidders in second-price auctions."),
    ]
    similarity = tfidf_similarities(papers, [topic])
    assert similarity[0, 0] > 0.3
    assert similarity[1, 0] == 0.0
