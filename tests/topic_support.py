"""Shared by the topic-matching tests: a labelled sample made of the real arXiv API fixtures, and the model.

Each paper of ``tests/fixtures/arxiv_api`` is labelled with the archive of its primary category (``cs``,
``cond-mat``, …), the same set as ``bench/topics.py``; its categories are hidden from the matcher.
"""

from __future__ import annotations

import csv
import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import TopicSettings
from newsletter.errors import NewsletterError
from newsletter.matching.evaluate import LabelledPaper
from newsletter.records.papers import Paper
from newsletter.sources.parsing import parse_feed
from tests.conftest import FIXTURES
from tests.services import require

ARCHIVES = {
    "cs": ("Computer science", "Computer science: machine learning, artificial intelligence, language models, "
           "computer vision, information retrieval, networks, distributed systems, security, software and "
           "human-computer interaction."),
    "cond-mat": ("Condensed matter physics", "Condensed matter physics: quantum many-body systems, "
                 "superconductivity, superfluids, magnetism, strongly correlated electrons, phase transitions, "
                 "materials and statistical mechanics."),
    "eess": ("Electrical engineering and systems science", "Signal processing, wireless communications, control "
             "systems, audio and speech processing, and image and video processing."),
    "math": ("Mathematics", "Mathematics: theorems and proofs in algebra, analysis, probability theory, "
             "optimization and control, combinatorics and geometry."),
    "astro-ph": ("Astrophysics", "Astrophysics: stars, exoplanets, galaxies, cosmology, telescopes and "
                 "astronomical surveys."),
    "physics": ("Physics", "Physics: optics, photonics, fluid dynamics, applied, atomic, plasma and "
                "computational physics."),
    "quant-ph": ("Quantum physics", "Quantum physics: quantum computing, quantum information, error-correcting "
                 "codes, qubits, entanglement and quantum optics."),
}
ARCHIVE_TOPICS = [TopicSettings(slug=s, name=n, description=d) for s, (n, d) in ARCHIVES.items()]
ARCHIVE_TOPICS_TOML = "".join(
    f'\n[[topics]]\nslug = "{t.slug}"\nname = "{t.name}"\ndescription = "{t.description}"\n' for t in ARCHIVE_TOPICS
)


def arxiv_api_papers() -> list[Paper]:
    papers: dict[str, Paper] = {}
    for path in sorted((FIXTURES / "arxiv_api").glob("*.xml")):
        for paper in parse_feed("arxiv-api", path.read_bytes(), source=path.name).papers:
            papers.setdefault(paper.paper_id, paper)
    return list(papers.values())


def labelled_archive_sample() -> list[LabelledPaper]:
    return [
        LabelledPaper(paper=dataclasses.replace(p, categories=(), primary_category=None),
                      label=(p.primary_category or "").split(".")[0])
        for p in arxiv_api_papers()
    ]


def fixture_arxiv_papers() -> list[Paper]:
    """Every paper with an abstract and a primary category in the feed fixtures (arXiv API, arXiv RSS, derived)."""
    papers: dict[str, Paper] = {p.paper_id: p for p in arxiv_api_papers()}
    for folder, kind in (("arxiv_rss", "arxiv-rss"), ("derived", "arxiv-api")):
        for path in sorted((FIXTURES / folder).glob("*.xml")):
            try:
                found = parse_feed(kind, path.read_bytes(), source=path.name).papers
            except NewsletterError:
                continue
            for paper in found:
                if paper.abstract and paper.primary_category:
                    papers.setdefault(paper.paper_id, paper)
    return list(papers.values())


def labelled_larger_sample() -> list[LabelledPaper]:
    """The larger labelled set: every arXiv paper of the fixtures, by archive, categories hidden."""
    return [
        LabelledPaper(paper=dataclasses.replace(p, categories=(), primary_category=None),
                      label=(p.primary_category or "").split(".")[0])
        for p in fixture_arxiv_papers()
    ]


def write_labelled_csv(path: Path, papers: list[Paper] | None = None) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "abstract", "label"])
        for paper in papers if papers is not None else arxiv_api_papers():
            writer.writerow([paper.title, paper.abstract, (paper.primary_category or "").split(".")[0]])
    return path


def skip_without_embeddings() -> None:
    """Skip the calling test (fail it under CI) when the optional `embeddings` extra is not installed."""
    require("embeddings")


@pytest.fixture(scope="module")
def minilm() -> Any:
    """The bundled MiniLM encoder, loaded once (per process) with every network connection refused."""
    skip_without_embeddings()
    from newsletter.matching.embeddings import MiniLMEncoder

    encoder = MiniLMEncoder(max_tokens=128)
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network access during the model load")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        encoder.encode(["warm-up"])
    assert attempts == [], "loading the bundled model tried to reach the network"
    return encoder
