"""PrimeVul's pairwise metrics and low-false-alarm detection rates, as pure functions.

A detector that flags both the vulnerable function and its fix has learned what the code is
*about*, not the bug. PrimeVul (Ding et al., ICSE 2025) therefore scores complete
vulnerable/fixed pairs by what the model said about each half:

* **P-C** (pair-correct): vulnerable half called VULNERABLE and fixed half called SAFE;
* **P-V**: both called VULNERABLE;  **P-B**: both called SAFE;
* **P-R** (reversed): vulnerable half called SAFE *and* fixed half called VULNERABLE.

Each is a fraction of the complete pairs (exactly one vulnerable and one safe row share a
``pair_id``); incomplete pairs are ignored and counted. **Net** = P-C − P-R, the pair
discrimination left after chance: a coin that guesses each function independently gets
P-C = P-R = 0.25 (net 0), and a model that cannot tell a fix from its bug gets as many
reversed pairs as correct ones. A pair with an unparsable half is
in none of the four (``unparsable``), so the five fractions add up to 1 and an unparsable
answer never counts as right. CIs resample whole pairs.

**VD-S** is the false-negative rate at the lowest score threshold whose false-positive rate
is at most 0.5% (a scanner that cries wolf is switched off); the same at 5% is less harsh.
Both need scores (logit mode). Tied scores move across a threshold together, so a
threshold never splits a tie. CIs resample rows, pairs as clusters.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from breachlab.vuln.eval.bootstrap import bootstrap, bootstrap_weights, cluster_codes, percentile_ci
from breachlab.vuln.eval.metrics import CI_LEVEL, grouped_scores

OUTCOMES = ("P-C", "P-V", "P-B", "P-R", "unparsable")
NET = "net"                # P-C − P-R
COIN = {"P-C": 0.25, "P-V": 0.25, "P-B": 0.25, "P-R": 0.25, "unparsable": 0.0, NET: 0.0}  # expected, fair coin
SMALL_PAIRS = 100          # fewer complete pairs than this: CIs of ±0.1 or wider
VDS_FPR = 0.005            # PrimeVul's VD-S operating point
LOOSE_FPR = 0.05
_CODE = {(1, 0): 0, (1, 1): 1, (0, 0): 2, (0, 1): 3}   # (pred on vulnerable, pred on fixed) -> outcome


def complete_pairs(pair_ids: Sequence[str | None], y: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Row indices of the vulnerable and the fixed half of every complete pair, and the
    number of incomplete pairs (one half missing, two halves with the same label, or more
    than two rows). Pairs come in order of first appearance."""
    rows: dict[str, list[int]] = defaultdict(list)
    for i, pid in enumerate(pair_ids):
        if pid is not None and pid != "":
            rows[str(pid)].append(i)
    vul, fix, incomplete = [], [], 0
    for idx in rows.values():
        labels = sorted(int(y[i]) for i in idx)
        if labels != [0, 1]:
            incomplete += 1
            continue
        v, f = (idx[0], idx[1]) if int(y[idx[0]]) == 1 else (idx[1], idx[0])
        vul.append(v)
        fix.append(f)
    return np.asarray(vul, dtype=np.int64), np.asarray(fix, dtype=np.int64), incomplete


def pair_outcomes(pred: Sequence[int], vul: np.ndarray, fix: np.ndarray) -> np.ndarray:
    """Outcome index into :data:`OUTCOMES` per pair; ``pred`` is 1 / 0 / -1 (unparsable)."""
    p = np.asarray(pred, dtype=np.int64)
    pv, pf = p[vul], p[fix]
    out = np.full(len(vul), OUTCOMES.index("unparsable"), dtype=np.int64)
    for (a, b), code in _CODE.items():
        out[(pv == a) & (pf == b)] = code
    return out


def _onehot(codes: np.ndarray) -> np.ndarray:
    return np.eye(len(OUTCOMES))[codes] if codes.size else np.zeros((0, len(OUTCOMES)))


def _with_net(hot: np.ndarray) -> np.ndarray:
    """One-hot outcomes plus a last column: +1 for P-C, -1 for P-R, 0 otherwise (its mean is the net)."""
    net = hot[:, OUTCOMES.index("P-C")] - hot[:, OUTCOMES.index("P-R")]
    return np.concatenate([hot, net[:, None]], axis=1)


def pairwise_metrics(pair_ids: Sequence[str | None], y: Sequence[int], pred: Sequence[int],
                     n_boot: int = 1000, seed: int = 0, level: float = CI_LEVEL) -> dict[str, Any] | None:
    """P-C / P-V / P-B / P-R (and unparsable) over the complete pairs, with pair-bootstrap CIs.

    Returns ``None`` when no row has a ``pair_id``; otherwise ``{"n_pairs", "n_incomplete",
    "small_n", OUTCOME: {"count", "value", "ci"}, ..., "net": {"value", "ci"}}`` (values 0 and
    CIs None when no pair is complete); ``net`` is P-C − P-R, its CI from the same resamples.
    """
    if not any(p not in (None, "") for p in pair_ids):
        return None
    vul, fix, incomplete = complete_pairs(pair_ids, y)
    codes = pair_outcomes(pred, vul, fix)
    n = int(codes.size)
    counts = np.bincount(codes, minlength=len(OUTCOMES))
    boot = np.empty((0, len(OUTCOMES) + 1))
    if n and n_boot > 0:
        hot = _with_net(_onehot(codes))
        boot = np.concatenate([w @ hot / n for w in bootstrap_weights(np.arange(n), n_boot, seed)])
    out: dict[str, Any] = {"n_pairs": n, "n_incomplete": incomplete, "small_n": n < SMALL_PAIRS}
    for j, name in enumerate(OUTCOMES):
        out[name] = {"count": int(counts[j]), "value": float(counts[j] / n) if n else 0.0,
                     "ci": percentile_ci(boot[:, j], level)[0] if boot.size else None}
    out[NET] = {"value": out["P-C"]["value"] - out["P-R"]["value"],
                "ci": percentile_ci(boot[:, -1], level)[0] if boot.size else None}
    return out


def fnr_at_fpr(scores: np.ndarray, y: np.ndarray, max_fpr: float, w: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """False-negative rate at the lowest threshold whose FPR is at most ``max_fpr``.

    Vectorised over rows of bootstrap weights ``w`` (b, n). "Predict VULNERABLE when
    score >= t" with t a distinct score (or above all: nothing flagged, FNR 1). Returns arrays
    ``fnr``, ``fpr`` (achieved) and ``threshold`` (NaN when nothing can be flagged); NaN FNR
    where a resample lacks a class.
    """
    s, yy = np.asarray(scores, dtype=float), np.asarray(y, dtype=float)
    w = np.ones((1, s.size)) if w is None else w
    thr, pos, neg = grouped_scores(s, yy, w)
    tp_c, fp_c = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    p_tot, n_tot = tp_c[:, -1], fp_c[:, -1]
    ok = fp_c <= max_fpr * n_tot[:, None] + 1e-9                      # cumulative: a prefix
    k = ok.sum(axis=1) - 1                                              # last feasible group, -1 = none
    rows = np.arange(w.shape[0])
    tp = np.where(k >= 0, tp_c[rows, np.maximum(k, 0)], 0.0)
    fp = np.where(k >= 0, fp_c[rows, np.maximum(k, 0)], 0.0)
    valid = (p_tot > 0) & (n_tot > 0)
    safe_p, safe_n = np.where(p_tot > 0, p_tot, 1), np.where(n_tot > 0, n_tot, 1)
    return {"fnr": np.where(valid, 1 - tp / safe_p, np.nan), "fpr": np.where(valid, fp / safe_n, np.nan),
            "threshold": np.where(k >= 0, thr[np.maximum(k, 0)], np.nan)}


def low_fpr_metrics(scores: Sequence[float], y: Sequence[int], ids: Sequence[str], pair_ids: Sequence[str | None],
                    n_boot: int = 1000, seed: int = 0, level: float = CI_LEVEL) -> dict[str, Any] | None:
    """VD-S (FNR at FPR <= 0.5%) and FNR at FPR <= 5% over the scored rows, with CIs.

    ``None`` when no row is scored or the scored rows hold one class only. ``allowed_fp`` says
    how many false alarms the budget permits: with fewer than 200 safe rows, VD-S allows none
    and is flagged ``small_n``.
    """
    s = np.asarray(scores, dtype=float)
    has = ~np.isnan(s)
    yy = np.asarray(y)[has]
    if not has.any() or not 0 < yy.sum() < yy.size:
        return None
    s = s[has]
    clusters = cluster_codes([i for i, k in zip(ids, has) if k], [p for p, k in zip(pair_ids, has) if k])
    out: dict[str, Any] = {"n_scored": int(s.size), "n_safe": int(yy.size - yy.sum()), "n_vulnerable": int(yy.sum())}
    for key, rate in (("vd_s", VDS_FPR), ("fnr_at_fpr_5", LOOSE_FPR)):
        point = fnr_at_fpr(s, yy, rate)
        ci = None
        if n_boot > 0:
            boot = bootstrap(lambda w, r=rate: fnr_at_fpr(s, yy, r, w)["fnr"][:, None], clusters, n_boot, seed)
            ci = percentile_ci(boot[:, 0], level)[0]
        allowed = int(np.floor(rate * out["n_safe"] + 1e-9))
        thr = float(point["threshold"][0])
        out[key] = {"max_fpr": rate, "value": float(point["fnr"][0]), "ci": ci, "fpr": float(point["fpr"][0]),
                    "threshold": None if np.isnan(thr) else thr, "allowed_fp": allowed, "small_n": allowed == 0}
    return out


def pairwise_delta(pair_ids: Sequence[str | None], y: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int],
                   n_boot: int = 1000, seed: int = 0, level: float = CI_LEVEL) -> dict[str, Any] | None:
    """``b - a`` for every pair outcome on the same complete pairs, with a paired bootstrap
    (one resample of pairs serves both runs). ``None`` without complete pairs."""
    vul, fix, _ = complete_pairs(pair_ids, y)
    n = int(vul.size)
    if n == 0:
        return None
    ha, hb = _with_net(_onehot(pair_outcomes(pred_a, vul, fix))), _with_net(_onehot(pair_outcomes(pred_b, vul, fix)))
    diff = hb - ha
    boot = (np.concatenate([w @ diff / n for w in bootstrap_weights(np.arange(n), n_boot, seed)])
            if n_boot > 0 else np.empty((0, len(OUTCOMES) + 1)))
    out: dict[str, Any] = {"n_pairs": n, "small_n": n < SMALL_PAIRS}
    for j, name in enumerate((*OUTCOMES, NET)):
        a, b = float(ha[:, j].mean()), float(hb[:, j].mean())
        ci = percentile_ci(boot[:, j], level)[0] if boot.size else None
        out[name] = {"baseline": a, "other": b, "delta": b - a, "ci": ci,
                     "excludes_zero": bool(ci and (ci[0] > 0 or ci[1] < 0))}
    return out


def low_fpr_delta(scores_a: np.ndarray, scores_b: np.ndarray, y: np.ndarray, clusters: np.ndarray,
                  n_boot: int = 1000, seed: int = 0, level: float = CI_LEVEL) -> dict[str, Any] | None:
    """Paired deltas ``b - a`` of VD-S and FNR at FPR <= 5% (rows scored in both runs only)."""
    both = ~np.isnan(scores_a) & ~np.isnan(scores_b)
    if not both.all() or not 0 < y.sum() < y.size:
        return None
    out: dict[str, Any] = {}
    for key, rate in (("vd_s", VDS_FPR), ("fnr_at_fpr_5", LOOSE_FPR)):
        a = float(fnr_at_fpr(scores_a, y, rate)["fnr"][0])
        b = float(fnr_at_fpr(scores_b, y, rate)["fnr"][0])
        ci = None
        if n_boot > 0:
            boot = bootstrap(lambda w, r=rate: (fnr_at_fpr(scores_b, y, r, w)["fnr"]
                                                - fnr_at_fpr(scores_a, y, r, w)["fnr"])[:, None],
                             clusters, n_boot, seed)
            ci = percentile_ci(boot[:, 0], level)[0]
        out[key] = {"baseline": a, "other": b, "delta": b - a, "ci": ci,
                    "excludes_zero": bool(ci and (ci[0] > 0 or ci[1] < 0))}
    return out
