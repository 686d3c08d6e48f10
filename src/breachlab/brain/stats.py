"""Statistics the original experiment could not afford (pure functions, numpy/scipy only).

* :func:`bootstrap_diff_ci` — percentile bootstrap CI of mean(a) − mean(b), resampling the
  variants of each condition independently.
* :func:`permutation_test` — two-sided test of mean(a) − mean(b) by relabelling; exact
  (every split) when that is cheaper than ``n_perm`` random ones.
* :func:`fdr_bh` — Benjamini–Hochberg q-values.
* :func:`spin_test` — p-value of a map-to-map Pearson r against random rotations of the
  sphere (Alexander-Bloch et al. 2018): spatially smooth maps correlate by chance far more
  often than a vertex-shuffle null admits; rotating keeps the smoothness.  The right
  hemisphere gets the mirror image of the left rotation, as in the original method.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r over the entries that are finite in both maps."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y / den) if den > 0 else float("nan")


def bootstrap_diff_ci(a, b=None, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high): mean(a) − mean(b) (or mean(a) when ``b`` is None) with a percentile CI."""
    a = np.asarray(a, float)
    rng = np.random.default_rng(seed)
    est = a.mean() - (np.mean(b) if b is not None else 0.0)
    if len(a) < 2 and (b is None or len(b) < 2):
        return float(est), float("nan"), float("nan")
    boots = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(axis=1)
    if b is not None:
        b = np.asarray(b, float)
        boots = boots - b[rng.integers(0, len(b), (n_boot, len(b)))].mean(axis=1)
    lo, hi = np.percentile(boots, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return float(est), float(lo), float(hi)


def permutation_test(a, b, *, n_perm: int = 10000, seed: int = 0) -> tuple[float, float]:
    """(observed mean(a) − mean(b), two-sided p).  Exact when C(n, len(a)) ≤ n_perm.

    The random version counts the observed split as one of the permutations (p ≥ 1/(n+1)), so a
    p-value is never 0.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled = np.concatenate([a, b])
    n, k = len(pooled), len(a)
    if k == 0 or len(b) == 0:
        raise ValueError("both groups need at least one value")
    obs = a.mean() - b.mean()
    total = pooled.sum()
    tol = 1e-12 * max(1.0, abs(obs))
    if math.comb(n, k) <= n_perm:
        idx = np.array(list(itertools.combinations(range(n), k)))
        sa = pooled[idx].sum(axis=1)
        diffs = sa / k - (total - sa) / (n - k)
        return float(obs), float(np.mean(np.abs(diffs) >= abs(obs) - tol))
    rng = np.random.default_rng(seed)
    perms = rng.permuted(np.tile(pooled, (n_perm, 1)), axis=1)
    sa = perms[:, :k].sum(axis=1)
    diffs = sa / k - (total - sa) / (n - k)
    return float(obs), float((1 + np.sum(np.abs(diffs) >= abs(obs) - tol)) / (n_perm + 1))


def fdr_bh(pvals) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q), NaNs passed through."""
    p = np.asarray(pvals, float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    pv = p[ok]
    m = len(pv)
    if m == 0:
        return q
    order = np.argsort(pv)
    ranked = pv[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


def _random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """n uniformly random 3-D rotation matrices (QR of Gaussian matrices, sign-fixed)."""
    m = rng.standard_normal((n, 3, 3))
    q, r = np.linalg.qr(m)
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    det = np.linalg.det(q)
    q[det < 0, :, 0] *= -1
    return q


def spin_permutations(sphere_lh: np.ndarray, sphere_rh: np.ndarray, n_perm: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_perm, n_lh + n_rh) vertex indices: where each vertex lands after a random rotation.

    Computed once and reused for every map pair (a KD-tree query per rotation and hemisphere).
    """
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    rots = _random_rotations(n_perm, rng)
    lh = sphere_lh / np.linalg.norm(sphere_lh, axis=1, keepdims=True)
    rh = sphere_rh / np.linalg.norm(sphere_rh, axis=1, keepdims=True)
    tree_l, tree_r = cKDTree(lh), cKDTree(rh)
    flip = np.diag([-1.0, 1.0, 1.0])
    n_l = len(lh)
    out = np.empty((n_perm, n_l + len(rh)), dtype=np.int32)
    for i, rot in enumerate(rots):
        out[i, :n_l] = tree_l.query(lh @ rot.T)[1]
        out[i, n_l:] = tree_r.query(rh @ (flip @ rot @ flip).T)[1] + n_l
    return out


def spin_test(x: np.ndarray, y: np.ndarray, spins: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """(r, two-sided spin p) for maps ``x`` and ``y`` given :func:`spin_permutations` indices.

    ``mask`` (e.g. cortex without the medial wall) removes vertices of *both* maps from every
    correlation: the medial wall of ``y`` stays out of the observed r, and rotated vertices
    of ``x`` that land in the mask's holes are dropped from that rotation's r.
    """
    x, y = np.asarray(x, float).copy(), np.asarray(y, float).copy()
    if mask is not None:
        x[~mask] = np.nan
        y[~mask] = np.nan
    r_obs = pearson_r(x, y)
    r_null = np.concatenate([_rotated_r(x, y, spins[i:i + 128]) for i in range(0, len(spins), 128)])
    p = (1 + np.sum(np.abs(r_null) >= abs(r_obs))) / (len(r_null) + 1)
    return r_obs, float(p)


def _rotated_r(x: np.ndarray, y: np.ndarray, spins: np.ndarray) -> np.ndarray:
    xs = x[spins]  # (chunk, n_vertices)
    ok = np.isfinite(xs) & np.isfinite(y)[None, :]
    n = ok.sum(axis=1)
    xs = np.where(ok, xs, 0.0)
    yy = np.where(ok, y[None, :], 0.0)
    xc = np.where(ok, xs - (xs.sum(axis=1) / n)[:, None], 0.0)
    yc = np.where(ok, yy - (yy.sum(axis=1) / n)[:, None], 0.0)
    return (xc * yc).sum(axis=1) / np.sqrt((xc ** 2).sum(axis=1) * (yc ** 2).sum(axis=1))


def naive_permutation_r_test(x: np.ndarray, y: np.ndarray, n_perm: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Vertex-shuffle null for r (ignores spatial smoothness: shown for contrast, not for use)."""
    rng = np.random.default_rng(seed)
    r_obs = pearson_r(x, y)
    ok = np.isfinite(x) & np.isfinite(y)
    xv, yv = np.asarray(x, float)[ok], np.asarray(y, float)[ok]
    perms = np.argsort(rng.random((n_perm, len(xv))), axis=1)
    null = np.concatenate([_rotated_r(xv, yv, perms[i:i + 128]) for i in range(0, n_perm, 128)])
    return r_obs, float((1 + np.sum(np.abs(null) >= abs(r_obs))) / (n_perm + 1))
