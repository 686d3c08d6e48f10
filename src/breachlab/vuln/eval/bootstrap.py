"""Bootstrap confidence intervals that respect vulnerable/fixed pairs.

A pair's halves are not independent samples (same function, one edit apart), so every
resample draws whole clusters — a pair, or a single row — with replacement. Resamples are
expressed as weight matrices so that a statistic over 1,000 resamples is one matrix product.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

from breachlab.vuln.eval.metrics import CI_LEVEL, METRICS, metrics_from_counts


def cluster_codes(ids: Sequence[str], pair_ids: Sequence[str | None]) -> np.ndarray:
    """Integer cluster per row: both halves of a pair share one, other rows are their own."""
    codes: dict[str, int] = {}
    out = np.empty(len(ids), dtype=np.int64)
    for i, (rid, pid) in enumerate(zip(ids, pair_ids)):
        key = f"pair:{pid}" if pid is not None else f"row:{i}:{rid}"
        out[i] = codes.setdefault(key, len(codes))
    return out


def bootstrap_weights(clusters: np.ndarray, n_boot: int, seed: int,
                      chunk_elems: int = 4_000_000) -> Iterator[np.ndarray]:
    """Yield (b, n_rows) float weight matrices: how often each row is drawn per resample.

    Whole clusters are drawn with replacement (a pair's halves are not independent), and a
    resample is expressed as weights so that every statistic is a matrix product instead
    of a Python loop: 1000 resamples of 1000 rows take milliseconds. Seeded and chunked, so
    the same data and seed give the same resamples at any size.
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    n_clusters = int(clusters.max()) + 1 if clusters.size else 0
    rng = np.random.default_rng(seed)
    step = max(1, chunk_elems // max(n_clusters, clusters.size, 1))
    for start in range(0, n_boot, step):
        b = min(step, n_boot - start)
        draws = rng.integers(0, n_clusters, size=(b, n_clusters))
        flat = (draws + np.arange(b)[:, None] * n_clusters).ravel()
        mult = np.bincount(flat, minlength=b * n_clusters).reshape(b, n_clusters)
        yield mult[:, clusters].astype(np.float64)


def bootstrap(stat: Callable[[np.ndarray], np.ndarray], clusters: np.ndarray,
              n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Stack ``stat(weights) -> (b, k)`` over all resamples into an (n_boot, k) array."""
    parts = [np.asarray(stat(w), dtype=float).reshape(w.shape[0], -1)
             for w in bootstrap_weights(clusters, n_boot, seed)]
    return np.concatenate(parts) if parts else np.empty((0, 0))


def percentile_ci(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[list[float] | None, int]:
    """Percentile interval ignoring NaN resamples; ``None`` when none are valid."""
    valid = samples[~np.isnan(samples)]
    if valid.size == 0:
        return None, 0
    a = (1 - level) / 2 * 100
    lo, hi = np.percentile(valid, [a, 100 - a])
    return [float(lo), float(hi)], int(valid.size)


def confusion_stat(y_true: np.ndarray, y_pred: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A bootstrap statistic: weights → all :data:`METRICS` as columns, in order."""
    t, p = y_true.astype(bool), y_pred.astype(bool)
    basis = np.stack([t & p, ~t & p, ~t & ~p, t & ~p], axis=1).astype(float)  # tp fp tn fn

    def stat(w: np.ndarray) -> np.ndarray:
        c = w @ basis
        m = metrics_from_counts(c[:, 0], c[:, 1], c[:, 2], c[:, 3])
        return np.stack([m[k] for k in METRICS], axis=1)
    return stat


def with_ci(point: dict[str, dict], boot: np.ndarray, level: float) -> dict[str, dict]:
    for j, name in enumerate(METRICS):
        ci, valid = percentile_ci(boot[:, j], level) if boot.size else (None, 0)
        point[name].update(ci=ci, n_boot_valid=valid)
    return point
