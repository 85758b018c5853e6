"""Rebuild newsletter/matching/data/arxiv_facets_minilm.npz: the arXiv categories' facet vectors under the bundled
all-MiniLM-L6-v2 (float32 inference, stored as float16, keyed by the SHA-256 of each facet text).

Run after editing newsletter/matching/data/arxiv_categories.tsv or the facet rules (newsletter/matching/evidence.py);
tests/test_relevance.py checks the shipped vectors against the model. Needs the `embeddings` extra.

    python scripts/build_area_vectors.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.matching.background import SHIPPED_VECTORS, area_topics, embedded_facets, facet_digest  # noqa: E402
from newsletter.matching.embeddings import MiniLMEncoder  # noqa: E402


def main() -> int:
    texts = list(dict.fromkeys(text for area in area_topics() for text in embedded_facets(area)))
    vectors = MiniLMEncoder(max_tokens=128, bf16=False).encode(texts)
    target = ROOT / "newsletter" / "matching" / SHIPPED_VECTORS
    np.savez_compressed(target, hashes=np.array([facet_digest(t) for t in texts]), vectors=vectors.astype(np.float16))
    print(f"{len(texts)} area facet vectors written to {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
