"""Word stems for TF-IDF: Porter's suffix-stripping algorithm (1980), in pure Python, and the analyzer that uses it.

Why: a one-sentence topic shares few words with an abstract, and many of the words it does share are in another
form ("equilibria" and "equilibrium", "auctions" and "auction", "rendering" and "rendered", "segmentation" and
"segment"). Matching stems instead of words (measured in docs/benchmarks.md, "TF-IDF on word stems"): the coarse
archive fixtures 0.376 → 0.46, and fewer off-topic papers matched on both labelled sets at the same rule.

The algorithm is M. F. Porter, "An algorithm for suffix stripping", Program 14(3), 1980, as published (not the
later variants with extra rules). No dependency: the stems of a fit are cached, so a 1,000-paper batch stems each
distinct word once.
"""

from __future__ import annotations

import functools
import re

_VOWELS = frozenset("aeiou")
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
"""scikit-learn's default token pattern: runs of two or more word characters."""
STEM_CACHE_SIZE = 1 << 17
"""Distinct words whose stems are kept between fits (a few MB; a paper corpus has ~10^5 distinct words)."""


def _shape(word: str) -> str:
    """"c" or "v" per letter: a, e, i, o, u are vowels, and y after a consonant ("syzygy" → "cvcvcv")."""
    letters: list[str] = []
    for i, char in enumerate(word):
        vowel = char in _VOWELS or (char == "y" and i > 0 and letters[-1] == "c")
        letters.append("v" if vowel else "c")
    return "".join(letters)


def _measure(stem: str) -> int:
    """m in [C](VC)^m[V]: how many vowel-consonant sequences the stem has."""
    return _shape(stem).count("vc")


def _has_vowel(stem: str) -> bool:
    return "v" in _shape(stem)


def _double_consonant(word: str) -> bool:
    return len(word) >= 2 and word[-1] == word[-2] and _shape(word)[-1] == "c"


def _cvc(word: str) -> bool:
    """Ends consonant-vowel-consonant, the last not w, x or y (hop, not hoop or snow)."""
    return len(word) >= 3 and _shape(word).endswith("cvc") and word[-1] not in "wxy"


def _replace(word: str, rules: tuple[tuple[str, str], ...], least: int) -> str:
    """The first rule whose suffix ends ``word`` decides: replaced when the stem's measure exceeds ``least``."""
    for suffix, replacement in rules:
        if word.endswith(suffix):
            stem = word[: len(word) - len(suffix)]
            return stem + replacement if _measure(stem) > least else word
    return word


_STEP2 = (
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"), ("izer", "ize"), ("abli", "able"),
    ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous"), ("ization", "ize"), ("ation", "ate"),
    ("ator", "ate"), ("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"), ("aliti", "al"),
    ("iviti", "ive"), ("biliti", "ble"),
)
_STEP3 = (("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"), ("ful", ""),
          ("ness", ""))
_STEP4 = tuple(sorted(("al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ion", "ou",
                       "ism", "ate", "iti", "ous", "ive", "ize"), key=len, reverse=True))
"""Longest first: the longest suffix that ends the word decides."""


def _step1(word: str) -> str:
    if word.endswith("sses") or word.endswith("ies"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    if word.endswith("eed"):
        return word[:-1] if _measure(word[:-3]) > 0 else word
    for suffix in ("ed", "ing"):
        if word.endswith(suffix) and _has_vowel(word[: -len(suffix)]):
            word = word[: -len(suffix)]
            if word.endswith(("at", "bl", "iz")):
                return word + "e"
            if _double_consonant(word) and word[-1] not in "lsz":
                return word[:-1]
            if _measure(word) == 1 and _cvc(word):
                return word + "e"
            return word
    return word


def _step4(word: str) -> str:
    for suffix in _STEP4:
        if word.endswith(suffix):
            stem = word[: len(word) - len(suffix)]
            if _measure(stem) > 1 and (suffix != "ion" or stem.endswith(("s", "t"))):
                return stem
            return word
    return word


def _step5(word: str) -> str:
    if word.endswith("e"):
        stem = word[:-1]
        measure = _measure(stem)
        if measure > 1 or (measure == 1 and not _cvc(stem)):
            word = stem
    if word.endswith("ll") and _measure(word) > 1:
        word = word[:-1]
    return word


@functools.lru_cache(maxsize=STEM_CACHE_SIZE)
def stem(word: str) -> str:
    """The Porter stem of a lower-case word ("equilibria" → "equilibria", "auctions" → "auction",
    "generalization" → "gener"); words of one or two letters are their own stem."""
    if len(word) <= 2:
        return word
    word = _step1(word)
    if word.endswith("y") and _has_vowel(word[:-1]):
        word = word[:-1] + "i"
    word = _replace(word, _STEP2, 0)
    word = _replace(word, _STEP3, 0)
    word = _step4(word)
    return _step5(word)


@functools.cache
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def stemmed_words(text: str) -> list[str]:
    """A ``TfidfVectorizer`` analyzer: scikit-learn's tokens, lower-cased, English stop words dropped, stemmed."""
    stop = _stop_words()
    return [stem(word) for word in _TOKEN.findall(text.lower()) if word not in stop]
