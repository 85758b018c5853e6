"""Word stems for TF-IDF: Porter's suffix-stripping algorithm (1980), through PyStemmer, and the analyzer that uses it.

Why: a one-sentence topic shares few words with an abstract, and many of the words it does share are in another
form ("equilibria" and "equilibrium", "auctions" and "auction", "rendering" and "rendered", "segmentation" and
"segment"). Matching stems instead of words (measured in docs/benchmarks.md, "TF-IDF on word stems"): the coarse
archive fixtures 0.376 → 0.46, and fewer off-topic papers matched on both labelled sets at the same rule.

The algorithm is M. F. Porter, "An algorithm for suffix stripping", Program 14(3), 1980, as the Snowball project
publishes it (``porter``, not its later ``english``), run by PyStemmer's C code: a few µs per distinct word, cached
here so a 1,000-paper batch stems each distinct word once.
"""

from __future__ import annotations

import functools
import re

import Stemmer

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
"""scikit-learn's default token pattern: runs of two or more word characters."""
STEM_CACHE_SIZE = 1 << 17
"""Distinct words whose stems are kept between fits (a few MB; a paper corpus has ~10^5 distinct words)."""
_PORTER = Stemmer.Stemmer("porter")


@functools.lru_cache(maxsize=STEM_CACHE_SIZE)
def stem(word: str) -> str:
    """The Porter stem of a lower-case word ("equilibria" → "equilibria", "auctions" → "auction",
    "generalization" → "gener"); words of one or two letters are their own stem (Snowball's Porter would cut
    "is" to "i" and "cs" to "c")."""
    if len(word) <= 2:
        return word
    return str(_PORTER.stemWord(word))


@functools.cache
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def stemmed_words(text: str) -> list[str]:
    """A ``TfidfVectorizer`` analyzer: scikit-learn's tokens, lower-cased, English stop words dropped, stemmed."""
    stop = _stop_words()
    return [stem(word) for word in _TOKEN.findall(text.lower()) if word not in stop]
