"""Pure classification metrics: confusion counts, MCC, Wilson intervals, ROC/PR from scores.

Why this module is fussy: the reference post's first number (94.5% accuracy) came from a
95/5 test set where the model said SAFE for everything, and our own zero-shot base model
says VULNERABLE for everything. Both look fine on accuracy/F1, so the summary built on
these functions (:mod:`breachlab.vuln.eval.summary`) always reports chance-corrected metrics.

Conventions (chosen so that nothing crashes on a degenerate run, and nothing hides it):

* A metric whose denominator is zero (precision with no VULNERABLE predictions, recall with
  no vulnerable samples, ...) is reported as ``0.0`` with ``defined: False`` and a note,
  like scikit-learn's ``zero_division=0``.
* MCC is 0 when any marginal is empty (a constant predictor carries no information).
* Every function is vectorised over bootstrap weights where a CI needs it
  (:mod:`breachlab.vuln.eval.bootstrap`).

Everything here is pure: lists/arrays in, JSON-serialisable dicts out, no I/O.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "specificity", "f1", "mcc")
CI_LEVEL = 0.95
MAX_CURVE_POINTS = 501    # curves are thinned to this many points for JSON and plots

_UNDEFINED_NOTES = {
    "accuracy": "no samples",
    "balanced_accuracy": "needs both classes among the labels",
    "precision": "no VULNERABLE predictions; reported as 0",
    "recall": "no vulnerable samples; reported as 0",
    "specificity": "no safe samples; reported as 0",
    "f1": "no vulnerable samples and no VULNERABLE predictions; reported as 0",
    "mcc": "",
}


# --------------------------------------------------------------------------- basic counts
def _as_binary(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1")
    return arr.astype(bool)


def confusion(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, int]:
    """Counts ``tp, fp, tn, fn`` with VULNERABLE (1) as the positive class."""
    t, p = _as_binary(y_true, "y_true"), _as_binary(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({t.size} vs {p.size})")
    return {"tp": int(np.sum(t & p)), "fp": int(np.sum(~t & p)),
            "tn": int(np.sum(~t & ~p)), "fn": int(np.sum(t & ~p))}


def _div(num: Any, den: Any) -> np.ndarray:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, num / safe, np.nan)


def metrics_from_counts(tp: Any, fp: Any, tn: Any, fn: Any) -> dict[str, np.ndarray]:
    """All :data:`METRICS` from confusion counts; vectorised (counts may be arrays).

    Undefined values are NaN here; :func:`classification_metrics` turns them into flagged
    zeros. Counts may be fractional (bootstrap weights), hence floats throughout.
    """
    tp, fp, tn, fn = (np.asarray(x, dtype=float) for x in (tp, fp, tn, fn))
    recall, specificity = _div(tp, tp + fn), _div(tn, tn + fp)
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1.0), 0.0)
    return {
        "accuracy": _div(tp + tn, tp + fp + tn + fn),
        "balanced_accuracy": (recall + specificity) / 2,
        "precision": _div(tp, tp + fp),
        "recall": recall,
        "specificity": specificity,
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "mcc": mcc,
    }


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, dict]:
    """Point estimates ``{name: {"value", "defined", "note"}}`` (no NaN, ever)."""
    return point_metrics(confusion(y_true, y_pred))


def point_metrics(cm: dict[str, int]) -> dict[str, dict]:
    raw = metrics_from_counts(cm["tp"], cm["fp"], cm["tn"], cm["fn"])
    out = {}
    for name in METRICS:
        v = float(raw[name])
        ok = not math.isnan(v)
        out[name] = {"value": v if ok else 0.0, "defined": ok, "note": None if ok else _UNDEFINED_NOTES[name]}
    return out


def wilson(k: float, n: float, level: float = CI_LEVEL) -> list[float] | None:
    """Wilson score interval for k/n: sane at k=0, k=n and small n (per-CWE, pair rates)."""
    if n <= 0:
        return None
    z = _z(level)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _z(level: float) -> float:
    return NormalDist().inv_cdf((1 + level) / 2)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of b vs c discordant pairs at p=1/2."""
    n = int(b) + int(c)
    if n == 0:
        return 1.0
    k = min(int(b), int(c))
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


# ------------------------------------------------------------------------------ ranking
def grouped_scores(scores: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positive/negative weight per distinct score, scores descending; ``w`` is (b, n)."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ws = w[:, order]
    pos = np.add.reduceat(ws * y[order], starts, axis=1)
    neg = np.add.reduceat(ws * (1 - y[order]), starts, axis=1)
    return s[starts], pos, neg


def ranking_from_weights(scores: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision for each row of weights ``w`` (b, n); NaN if one class.

    Ties get half credit (Mann-Whitney); AP is scikit-learn's step-wise definition
    ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds. Weights make it a bootstrap.
    """
    _, pos, neg = grouped_scores(scores, y.astype(float), w)
    p_tot, n_tot = pos.sum(axis=1), neg.sum(axis=1)
    neg_below = n_tot[:, None] - np.cumsum(neg, axis=1)           # strictly lower scores
    auc = _div(np.sum(pos * (neg_below + 0.5 * neg), axis=1), p_tot * n_tot)
    tp_c, fp_c = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    prec = np.where(tp_c + fp_c > 0, tp_c / np.where(tp_c + fp_c > 0, tp_c + fp_c, 1), 0.0)
    ap = _div(np.sum(pos * prec, axis=1), p_tot)
    return auc, ap


def _thin(n: int) -> np.ndarray:
    return np.arange(n) if n <= MAX_CURVE_POINTS else np.unique(
        np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(int))


def curves(scores: Sequence[float], y_true: Sequence[int]) -> dict[str, Any]:
    """ROC and precision-recall curve points (descending thresholds), plus the best threshold.

    ``best_threshold`` maximises Youden's J (= balanced accuracy) *on this same set*, so it
    is flagged ``optimistic``: choose thresholds on validation data, report on test data.
    """
    s, y = np.asarray(scores, dtype=float), np.asarray(y_true, dtype=float)
    thr, pos, neg = grouped_scores(s, y, np.ones((1, s.size)))
    pos, neg = pos[0], neg[0]
    tp_c, fp_c = np.cumsum(pos), np.cumsum(neg)
    p_tot, n_tot = tp_c[-1], fp_c[-1]
    tpr, fpr = tp_c / max(p_tot, 1), fp_c / max(n_tot, 1)
    prec = tp_c / np.maximum(tp_c + fp_c, 1)
    j = tpr - fpr
    k = int(np.argmax(j))
    keep = _thin(thr.size)
    r = lambda a: [round(float(x), 6) for x in a]  # noqa: E731 - keeps the JSON small
    return {
        "roc": {"fpr": [0.0] + r(fpr[keep]), "tpr": [0.0] + r(tpr[keep]), "thresholds": [None] + r(thr[keep])},
        "pr": {"recall": [0.0] + r(tpr[keep]), "precision": [1.0] + r(prec[keep]), "thresholds": [None] + r(thr[keep])},
        "best_threshold": {
            "threshold": float(thr[k]), "criterion": "max Youden J (tpr - fpr)",
            "tpr": float(tpr[k]), "fpr": float(fpr[k]), "balanced_accuracy": float((1 + j[k]) / 2),
            "optimistic": True,
            "note": "chosen on the evaluation set itself: optimistic; pick thresholds on validation data",
        },
    }
