"""A TF-IDF space fitted on a corpus read a chunk at a time, with the very rows ``TfidfVectorizer`` would give.

Why: matching the 100,000 papers of one large feed held every paper, its text and scikit-learn's lists of every
word at once (issue 30: 1.4 GB). Here the words of each chunk are counted as it comes (scikit-learn's own
analyzer, words numbered in the order first seen, as ``CountVectorizer`` does), and only the counts are kept;
``fit`` then sorts the vocabulary and weighs the counts exactly as ``TfidfVectorizer.fit_transform`` does
(sublinear term frequency, smoothed IDF, L2 rows, float32). The rows are the same bit for bit whatever the
chunks (``tests/test_matching_chunks.py`` compares them with scikit-learn's), so similarities — and matches —
do not depend on how the corpus was cut.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize


def new_vectorizer() -> TfidfVectorizer:
    """The TF-IDF settings of the `tfidf` method (``rules.tfidf_score``)."""
    return TfidfVectorizer(stop_words="english", sublinear_tf=True, dtype=np.float32)


class TfidfSpace:
    """Add the corpus block by block (``add``), ``fit`` once, then read each block's rows (``block``) and turn
    other texts (facets, example papers) into rows of the same space (``transform``)."""

    def __init__(self) -> None:
        self._analyze = new_vectorizer().build_analyzer()
        self._vocabulary: dict[str, int] = {}
        self._blocks: list[sp.csr_array] = []
        self._idf: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self._idf is not None

    def add(self, texts: Iterable[str]) -> int:
        """Count a block of the corpus (its new words join the vocabulary); returns the block's index."""
        if self.fitted:
            raise RuntimeError("the space is already fitted")
        self._blocks.append(self._count(texts, grow=True))
        return len(self._blocks) - 1

    def _count(self, texts: Iterable[str], *, grow: bool) -> sp.csr_array:
        """``CountVectorizer._count_vocab``: per text, each word's count, in the order the words first came."""
        vocabulary = self._vocabulary
        analyze = self._analyze
        columns: list[int] = []
        values = array("i")
        indptr = [0]
        for text in texts:
            counter: dict[int, int] = {}
            for word in analyze(text):
                index = vocabulary.get(word)
                if index is None:
                    if not grow:
                        continue
                    index = vocabulary[word] = len(vocabulary)
                counter[index] = counter.get(index, 0) + 1
            columns.extend(counter.keys())
            values.extend(counter.values())
            indptr.append(len(columns))
        matrix = sp.csr_array(
            (np.frombuffer(values, dtype=np.intc), np.asarray(columns, dtype=np.int32),
             np.asarray(indptr, dtype=np.int32)),
            shape=(len(indptr) - 1, len(vocabulary)),
            dtype=np.float32,
        )
        matrix.sort_indices()
        return matrix

    def fit(self) -> None:
        """Sort the vocabulary, count document frequencies over every block, and weigh every block in place."""
        if self.fitted:
            return
        if not self._vocabulary:
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        size = len(self._vocabulary)
        remap = np.empty(size, dtype=np.int32)
        for new, (word, old) in enumerate(sorted(self._vocabulary.items())):
            self._vocabulary[word] = new
            remap[old] = new
        frequency = np.zeros(size, dtype=np.int64)
        samples = 0
        for position, block in enumerate(self._blocks):
            indices = remap.take(block.indices, mode="clip")
            frequency += np.bincount(indices, minlength=size)
            samples += block.shape[0]
            self._blocks[position] = sp.csr_array((block.data, indices, block.indptr), shape=(block.shape[0], size))
        # TfidfTransformer.fit with smooth_idf: idf = ln((1 + n) / (1 + df)) + 1, in the counts' dtype
        df = frequency.astype(np.float32)
        df += 1.0
        idf = np.full_like(df, fill_value=samples + 1, dtype=np.float32)
        idf /= df
        np.log(idf, out=idf)
        idf += 1.0
        self._idf = idf
        self._blocks = [_weigh(block, idf) for block in self._blocks]

    def block(self, index: int) -> sp.csr_array:
        """The TF-IDF rows of block ``index`` (in the order ``add`` was called; negative counts from the end)."""
        if not self.fitted:
            raise RuntimeError("fit the space first")
        return self._blocks[index]

    def transform(self, texts: Iterable[str]) -> sp.csr_array:
        """Rows of texts outside the corpus (``TfidfVectorizer.transform``): unknown words are left out."""
        if self._idf is None:
            raise RuntimeError("fit the space first")
        return _weigh(self._count(texts, grow=False), self._idf)


def _weigh(counts: sp.csr_array, idf: np.ndarray) -> sp.csr_array:
    """``TfidfTransformer.transform`` (sublinear tf, idf, L2 norm) of a count matrix, in place."""
    np.log(counts.data, counts.data)
    counts.data += 1.0
    counts.data *= idf[counts.indices]
    weighed: sp.csr_array = normalize(counts, norm="l2", copy=False)
    return weighed
