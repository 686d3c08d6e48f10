"""Search a KB: the known pairs most like a function, and the retrieval baseline's score.

The k nearest pairs are ranked by their more similar half (a function resembles both its
vulnerable and its fixed version; which of the two it resembles more is the signal). A pair
with a half that *is* the query (same whitespace-normalised hash) is never returned for it:
an evaluation must not show a model the answer, and a scan gains nothing from its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from breachlab.vuln.data.tokens import code_tokens
from breachlab.vuln.kb.index import LexicalIndex
from breachlab.vuln.kb.store import KnownPair, read_kb
from breachlab.vuln.sample import code_hash


@dataclass(frozen=True)
class Hit:
    """One retrieved pair and how alike the query is to each of its halves."""

    pair: KnownPair
    sim_vulnerable: float
    sim_fixed: float


class KnowledgeBase:
    """Known pairs with a lexical index over both halves of each."""

    def __init__(self, pairs: list[KnownPair], method: str = "tfidf", meta: dict | None = None):
        if not pairs:
            raise ValueError("a knowledge base needs at least one pair")
        self.pairs = pairs
        self.method = method
        self.meta = dict(meta or {})
        self._index = LexicalIndex([code_tokens(p.vulnerable) for p in pairs]
                                   + [code_tokens(p.fixed) for p in pairs], method)
        self._hash_rows: dict[str, set[int]] = {}
        for i, p in enumerate(pairs):
            for h in p.hashes:
                self._hash_rows.setdefault(h, set()).add(i)

    @classmethod
    def load(cls, path: str | Path) -> "KnowledgeBase":
        pairs, meta = read_kb(path)
        return cls(pairs, meta.get("method", "tfidf"), meta)

    def __len__(self) -> int:
        return len(self.pairs)

    def similarities(self, codes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(to vulnerable halves, to fixed halves)``, each ``(len(codes), len(self))``; a pair
        holding the query itself gets ``-inf`` on both (never retrieved, never scored)."""
        sim = self._index.similarity([code_tokens(c) for c in codes])
        n = len(self.pairs)
        sv, sf = sim[:, :n].copy(), sim[:, n:].copy()
        for q, code in enumerate(codes):
            for i in self._hash_rows.get(code_hash(code), ()):
                sv[q, i] = sf[q, i] = -np.inf
        return sv, sf

    def score(self, code: str, k: int = 1) -> float:
        """The retrieval baseline's P(vulnerable) for one function (:func:`retrieval_score`)."""
        sv, sf = self.similarities([code])
        return retrieval_score(sv[0], sf[0], k, self.method)

    def nearest(self, code: str, k: int = 1) -> list[Hit]:
        """The ``k`` pairs nearest to ``code`` (by their more similar half), nearest first."""
        sv, sf = self.similarities([code])
        return hits_from_row(self.pairs, sv[0], sf[0], k)


def hits_from_row(pairs: list[KnownPair], sv: np.ndarray, sf: np.ndarray, k: int) -> list[Hit]:
    """The ``k`` nearest pairs of one query's similarity rows (ties: KB order)."""
    best = np.maximum(sv, sf)
    order = np.argsort(-best, kind="stable")[:k]
    return [Hit(pairs[i], float(sv[i]), float(sf[i])) for i in order if np.isfinite(best[i]) and best[i] > 0]


def retrieval_score(sv: np.ndarray, sf: np.ndarray, k: int = 1, method: str = "tfidf") -> float:
    """P(vulnerable) of the retrieval baseline for one query, in [0, 1].

    ``d`` = mean similarity to the ``k`` nearest vulnerable halves minus mean similarity to the
    ``k`` nearest fixed halves (TF-IDF cosines: ``d`` lies in [-1, 1]; BM25's unbounded scores
    are divided by their sum first); the score is ``(1 + d) / 2``: 0.5 when the query is as
    close to known bugs as to known fixes, or resembles nothing.
    """
    top_v = np.sort(sv[np.isfinite(sv)])[::-1][:k]
    top_f = np.sort(sf[np.isfinite(sf)])[::-1][:k]
    if not top_v.size or not top_f.size:
        return 0.5
    a, b = float(top_v.mean()), float(top_f.mean())
    if method == "bm25":
        total = abs(a) + abs(b)
        return 0.5 if total <= 0 else float(np.clip((1 + (a - b) / total) / 2, 0.0, 1.0))
    return float(np.clip((1 + a - b) / 2, 0.0, 1.0))


def references_for(kb: KnowledgeBase, code: str, k: int = 1) -> list[KnownPair]:
    """The known pairs to show a model beside ``code`` (what eval adds to the prompt, and what
    scan triage can add to its own)."""
    return [h.pair for h in kb.nearest(code, k)]
