"""Lexical similarity between code texts: TF-IDF (1–2-grams, cosine) or BM25, as sparse matrices.

Both take documents as token lists (:func:`breachlab.vuln.data.tokens.code_tokens`) and return a
dense ``(n_queries, n_documents)`` similarity array. TF-IDF cosine lies in [0, 1]; BM25 is
unbounded, so :func:`breachlab.vuln.kb.retrieve.retrieval_score` normalises the difference.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

METHODS = ("tfidf", "bm25")


def _identity(tokens: list[str]) -> list[str]:
    return tokens


class LexicalIndex:
    """An index over ``docs`` (token lists); ``similarity(queries)`` scores queries against them.

    Args:
        docs: the documents' tokens.
        method: ``tfidf`` (1–2-grams, sublinear tf, cosine) or ``bm25`` (unigrams and bigrams,
            k1 = 1.2, b = 0.75).
    """

    def __init__(self, docs: Sequence[list[str]], method: str = "tfidf"):
        from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method
        opts = dict(analyzer="word", tokenizer=_identity, preprocessor=_identity, token_pattern=None,
                    lowercase=False, ngram_range=(1, 2), dtype=np.float32)
        if method == "tfidf":
            self._vec = TfidfVectorizer(sublinear_tf=True, **opts)
            self._docs = self._vec.fit_transform(list(docs))
            return
        self._vec = CountVectorizer(**opts)
        tf = self._vec.fit_transform(list(docs)).tocsr().astype(np.float32)
        n = tf.shape[0]
        df = np.bincount(tf.indices, minlength=tf.shape[1])
        self._idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        lengths = np.asarray(tf.sum(axis=1)).ravel()
        k1, b = 1.2, 0.75
        norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
        rows = np.repeat(np.arange(n), np.diff(tf.indptr))
        tf.data = tf.data * (k1 + 1) / (tf.data + norm[rows])
        self._docs = tf

    def __len__(self) -> int:
        return self._docs.shape[0]

    def similarity(self, queries: Sequence[list[str]]) -> np.ndarray:
        """``(len(queries), len(self))`` similarities (higher = more alike)."""
        q = self._vec.transform(list(queries))
        if self.method == "bm25":
            q = q.tocsr()
            q.data = np.ones_like(q.data)        # each query term once, weighted by its idf
            q = q.multiply(self._idf[None, :]).tocsr()
        return np.asarray((q @ self._docs.T).todense(), dtype=np.float64)
