"""Honest metrics for a VULNERABLE/SAFE classifier, from ``predictions.jsonl`` rows.

Why this module is fussy: the reference post's first number (94.5% accuracy) came from a
95/5 test set where the model said SAFE for everything, and our own zero-shot base model
says VULNERABLE for everything. Both look fine on accuracy/F1. So :func:`summarize` always
reports chance-corrected metrics (MCC, balanced accuracy, ROC-AUC), bootstrap confidence
intervals (resampling vulnerable/fixed pairs as clusters), unparsable answers and prompt
echo separately, and loud warnings when the numbers cannot mean what they seem to.

Conventions (chosen so that nothing crashes on a degenerate run, and nothing hides it):

* A metric whose denominator is zero (precision with no VULNERABLE predictions, recall with
  no vulnerable samples, ...) is reported as ``0.0`` with ``defined: False`` and a note,
  like scikit-learn's ``zero_division=0``. Bootstrap resamples where it is undefined are
  dropped from its CI (``n_boot_valid`` says how many remained).
* MCC is 0 when any marginal is empty (a constant predictor carries no information).
* Unparsable answers (``verdict`` null and no score) count as the *wrong* class in
  ``metrics`` (the honest, deployable number) and are dropped in ``metrics_parsed``.

Everything here is pure: lists/arrays in, JSON-serialisable dicts out, no I/O.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from statistics import NormalDist
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from breachlab.errors import UserError

METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "specificity", "f1", "mcc")
CI_LEVEL = 0.95
SMALL_CWE_N = 10          # per-CWE recall below this n is flagged "indicative only"
SMALL_N = 100             # whole-set size below which CIs are too wide to rank models
IMBALANCE_SHARE = 0.40    # minority-class share below which accuracy is meaningless
DEGENERATE_SHARE = 0.95   # share of one predicted class that makes a predictor degenerate
MAX_CURVE_POINTS = 501    # curves are thinned to this many points for JSON and plots
UNPARSABLE_POLICY = ("metrics: unparsable answers counted as the wrong class; "
                     "metrics_parsed: unparsable answers dropped")

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
    return _point(confusion(y_true, y_pred))


def _point(cm: dict[str, int]) -> dict[str, dict]:
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
def _grouped(scores: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    _, pos, neg = _grouped(scores, y.astype(float), w)
    p_tot, n_tot = pos.sum(axis=1), neg.sum(axis=1)
    neg_below = n_tot[:, None] - np.cumsum(neg, axis=1)           # strictly lower scores
    auc = _div(np.sum(pos * (neg_below + 0.5 * neg), axis=1), p_tot * n_tot)
    tp_c, fp_c = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    prec = np.where(tp_c + fp_c > 0, tp_c / np.where(tp_c + fp_c > 0, tp_c + fp_c, 1), 0.0)
    ap = _div(np.sum(pos * prec, axis=1), p_tot)
    return auc, ap


def _thin(n: int) -> np.ndarray:
    return np.arange(n) if n <= MAX_CURVE_POINTS else np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(int))


def curves(scores: Sequence[float], y_true: Sequence[int]) -> dict[str, Any]:
    """ROC and precision-recall curve points (descending thresholds), plus the best threshold.

    ``best_threshold`` maximises Youden's J (= balanced accuracy) *on this same set*, so it
    is flagged ``optimistic``: choose thresholds on validation data, report on test data.
    """
    s, y = np.asarray(scores, dtype=float), np.asarray(y_true, dtype=float)
    thr, pos, neg = _grouped(s, y, np.ones((1, s.size)))
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


# ---------------------------------------------------------------------------- bootstrap
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


def _with_ci(point: dict[str, dict], boot: np.ndarray, level: float) -> dict[str, dict]:
    for j, name in enumerate(METRICS):
        ci, valid = percentile_ci(boot[:, j], level) if boot.size else (None, 0)
        point[name].update(ci=ci, n_boot_valid=valid)
    return point


# --------------------------------------------------------------------------- row parsing
def split_by_mode(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """Group prediction rows by decision mode; each group is summarised on its own."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[str(r.get("mode") or "unknown")].append(r)
    return dict(out)


def row_prediction(row: dict, threshold: float = 0.5) -> int | None:
    """1 / 0 / None (unparsable) for one row: logit mode thresholds ``p_vulnerable``."""
    verdict = row.get("verdict")
    v = None if verdict is None else str(verdict).strip().upper()
    if v not in (None, "VULNERABLE", "SAFE"):
        raise UserError(f"prediction {row.get('id')}: verdict must be VULNERABLE, SAFE or null, got {verdict!r}")
    if row.get("mode") == "logit" and row.get("p_vulnerable") is not None:
        return int(float(row["p_vulnerable"]) >= threshold)
    return None if v is None else int(v == "VULNERABLE")


def _prepare(rows: Sequence[dict], threshold: float) -> dict[str, Any]:
    """Validate rows and turn them into arrays; ``pred`` is -1 where unparsable."""
    if not rows:
        raise UserError("no predictions to evaluate (empty predictions file?)")
    n = len(rows)
    y, pred = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    score, echo = np.full(n, np.nan), np.zeros(n, dtype=bool)
    for i, r in enumerate(rows):
        rid = r.get("id", f"#{i}")
        if r.get("label") not in (0, 1) or isinstance(r.get("label"), bool):
            raise UserError(f"prediction {rid}: label must be 0 or 1, got {r.get('label')!r}")
        y[i] = r["label"]
        p = r.get("p_vulnerable")
        if p is not None:
            p = float(p)
            if not 0.0 <= p <= 1.0:
                raise UserError(f"prediction {rid}: p_vulnerable must be in [0, 1], got {p}")
            score[i] = p
        v = row_prediction(r, threshold)
        pred[i] = -1 if v is None else v
        echo[i] = bool(r.get("echo"))
    return {
        "ids": [str(r.get("id", i)) for i, r in enumerate(rows)], "y": y, "pred": pred,
        "score": score, "echo": echo,
        "cwe": [r.get("cwe") or "unknown" for r in rows],
        "source": [r.get("source") or "unknown" for r in rows],
        "pair": [None if r.get("pair_id") in (None, "") else str(r["pair_id"]) for r in rows],
    }


NO_PARSED_NOTE = "no answer could be parsed: only accuracy (0 under the unparsable-is-wrong policy) is meaningful"


def policy_predictions(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Predictions with unparsable answers (-1) turned into the wrong class."""
    return np.where(pred < 0, 1 - y, pred)


# ---------------------------------------------------------------------------- breakdowns
def per_cwe(y: np.ndarray, pred: np.ndarray, cwe: Sequence[str]) -> list[dict]:
    """Recall per CWE over vulnerable samples (unparsable = miss), worst first.

    Safe samples that carry a CWE (fixed halves of pairs) add ``n_safe``/``fp`` so a
    CWE that is "caught" only because everything with it is flagged shows itself.
    """
    acc: dict[str, Counter] = defaultdict(Counter)
    for t, p, c in zip(y, pred, cwe):
        a = acc[c]
        if t == 1:
            a["n"] += 1
            a["tp"] += int(p == 1)
        else:
            a["n_safe"] += 1
            a["fp"] += int(p == 1)
    out = []
    for c, a in acc.items():
        if a["n"] == 0:
            continue
        out.append({"cwe": c, "n": a["n"], "tp": a["tp"], "recall": a["tp"] / a["n"],
                    "ci": wilson(a["tp"], a["n"]), "small_n": a["n"] < SMALL_CWE_N,
                    "n_safe": a["n_safe"], "fp": a["fp"]})
    return sorted(out, key=lambda d: (d["recall"], -d["n"], d["cwe"]))


def per_source(prep: dict[str, Any]) -> list[dict]:
    """Point metrics per data source: Juliet numbers must never hide real-code numbers."""
    y, pred, score = prep["y"], prep["pred"], prep["score"]
    src = np.asarray(prep["source"], dtype=object)
    out = []
    for name in sorted(set(prep["source"])):
        m = src == name
        ys, ps = y[m], policy_predictions(y[m], pred[m])
        cm = confusion(ys, ps)
        row = {"source": name, "n": int(m.sum()), "n_vulnerable": int(ys.sum()),
               "n_unparsable": int((pred[m] < 0).sum()), "confusion": cm,
               **{k: v["value"] for k, v in _point(cm).items()}, "roc_auc": None}
        sc = score[m]
        ok = ~np.isnan(sc)
        if ok.any() and 0 < ys[ok].sum() < ok.sum():
            row["roc_auc"] = float(ranking_from_weights(sc[ok], ys[ok], np.ones((1, ok.sum())))[0][0])
        out.append(row)
    return out


def paired(prep: dict[str, Any]) -> dict[str, Any] | None:
    """Vulnerable/fixed pair outcomes; ``None`` when the rows contain no pairs.

    A classifier that flags both halves has learned the *topic* of the code, not the bug:
    only ``correct`` (vuln→VULNERABLE and fixed→SAFE) shows it can tell the fix apart.
    ``ordered`` (scores only) asks the weaker question: is p(vuln half) > p(fixed half)?
    """
    halves: dict[str, list[int]] = defaultdict(list)
    for i, pid in enumerate(prep["pair"]):
        if pid is not None:
            halves[pid].append(i)
    if not halves:
        return None
    y, pred, score = prep["y"], prep["pred"], prep["score"]
    cats = Counter({k: 0 for k in ("correct", "both_vulnerable", "both_safe", "reversed", "unparsable")})
    names = {(1, 0): "correct", (1, 1): "both_vulnerable", (0, 0): "both_safe", (0, 1): "reversed"}
    order = Counter({"ordered": 0, "ties": 0, "misordered": 0})
    n_valid = 0
    for idx in halves.values():
        if len(idx) != 2 or sorted(y[idx].tolist()) != [0, 1]:
            continue
        n_valid += 1
        v, f = (idx[0], idx[1]) if y[idx[0]] == 1 else (idx[1], idx[0])
        cats["unparsable" if pred[v] < 0 or pred[f] < 0 else names[(int(pred[v]), int(pred[f]))]] += 1
        if not (np.isnan(score[v]) or np.isnan(score[f])):
            order["ties" if score[v] == score[f] else "ordered" if score[v] > score[f] else "misordered"] += 1
    n_scored = sum(order.values())
    return {
        "n_pairs": n_valid, "n_invalid": len(halves) - n_valid, "counts": dict(cats),
        "rates": {k: (c / n_valid if n_valid else 0.0) for k, c in cats.items()},
        "pair_correct": {"value": cats["correct"] / n_valid if n_valid else 0.0,
                         "ci": wilson(cats["correct"], n_valid)},
        "ordered": None if n_scored == 0 else {
            "n_scored": n_scored, **dict(order),
            "rate": (order["ordered"] + 0.5 * order["ties"]) / n_scored,
            "ci": wilson(order["ordered"] + 0.5 * order["ties"], n_scored),
            "note": "ties count half; 0.5 = cannot tell the fixed half from the vulnerable one"},
        "note": "a pair is invalid unless it has exactly one vulnerable and one safe half",
    }


# ------------------------------------------------------------------------------ warnings
def _warnings(counts: dict[str, Any], per_cwe_rows: list[dict], auc: dict | None) -> list[dict[str, str]]:
    w: list[dict[str, str]] = []
    n, n_vul = counts["n"], counts["n_vulnerable"]
    minority = min(n_vul, n - n_vul) / n
    majority_name, majority = ("SAFE", (n - n_vul) / n) if n - n_vul >= n_vul else ("VULNERABLE", n_vul / n)
    if minority == 0:
        w.append({"code": "single_class", "message": f"only {majority_name} samples: precision, recall, "
                  "MCC and AUC cannot measure a classifier here"})
    elif minority < IMBALANCE_SHARE:
        w.append({"code": "class_imbalance", "message": f"classes are imbalanced ({minority:.0%} minority): "
                  f"accuracy is meaningless here; majority-class baseline = {majority:.1%} "
                  f"(always answering {majority_name})"})
    parsed = counts["n_parsed"]
    if parsed:
        share_v = counts["n_pred_vulnerable"] / parsed
        if max(share_v, 1 - share_v) >= DEGENERATE_SHARE:
            said = "VULNERABLE" if share_v >= 0.5 else "SAFE"
            w.append({"code": "degenerate_predictor", "message": f"the model says {said} for everything "
                      f"({max(share_v, 1 - share_v):.1%} of parsed answers): accuracy/F1 reflect class "
                      "balance, look at MCC / balanced accuracy / ROC-AUC"})
    if n < SMALL_N:
        w.append({"code": "small_n", "message": f"only {n} samples: confidence intervals are wide; "
                  "differences of a few points between models are noise"})
    if counts["n_unparsable"]:
        w.append({"code": "unparsable", "message": f"{counts['n_unparsable']} of {n} answers "
                  f"({counts['unparsable_rate']:.1%}) had no parsable verdict; `metrics` count them as "
                  "wrong, `metrics_parsed` drop them"})
    if counts["n_echo"]:
        w.append({"code": "prompt_echo", "message": f"{counts['n_echo']} of {n} outputs "
                  f"({counts['echo_rate']:.1%}) reproduce prompt/template text (prompt echo): the "
                  "model completes the template instead of judging the code; change the inference prompt"})
    small = [r["cwe"] for r in per_cwe_rows if r["small_n"]]
    if small:
        w.append({"code": "small_cwe_n", "message": f"{len(small)} of {len(per_cwe_rows)} CWEs have fewer "
                  f"than {SMALL_CWE_N} vulnerable samples: their recall is indicative only"})
    if auc is not None and auc["n_scored"] < n:
        w.append({"code": "partial_scores", "message": f"only {auc['n_scored']} of {n} rows carry "
                  "p_vulnerable: ROC-AUC / PR-AUC are computed on that subset"})
    if auc is not None and auc["score_std"] < 1e-3:
        w.append({"code": "constant_scores", "message": "p_vulnerable is (nearly) constant "
                  f"(std {auc['score_std']:.2g}): the scores do not rank samples"})
    return w


# ---------------------------------------------------------------------------- entry point
def summarize(rows: list[dict], threshold: float = 0.5, n_boot: int = 1000, seed: int = 0) -> dict:
    """Everything a report needs about one decision mode of one run, JSON-serialisable.

    Args:
        rows: ``predictions.jsonl`` rows of a single ``mode`` (see :func:`split_by_mode`).
        threshold: logit mode predicts VULNERABLE when ``p_vulnerable >= threshold``.
        n_boot: bootstrap resamples for the 95% CIs (0 disables CIs).
        seed: bootstrap seed, so a report is reproducible to the digit.

    Returns:
        A dict with keys ``schema, mode, threshold, ci_level, n_boot, seed, bootstrap,
        unparsable_policy, counts, baseline, confusion, confusion_parsed, metrics,
        metrics_parsed, auc, curves, per_cwe, per_source, paired, warnings``.
    """
    modes = sorted({str(r.get("mode") or "unknown") for r in rows})
    if len(modes) > 1:
        raise UserError(f"predictions mix decision modes {modes}: summarise each mode on its own "
                        "(split_by_mode)")
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"threshold must be in [0, 1], got {threshold}")
    prep = _prepare(rows, threshold)
    y, pred, score = prep["y"], prep["pred"], prep["score"]
    pred_all = policy_predictions(y, pred)
    parsed = pred >= 0
    clusters = cluster_codes(prep["ids"], prep["pair"])
    n = len(rows)
    counts = {
        "n": n, "n_vulnerable": int(y.sum()), "n_safe": int(n - y.sum()),
        "n_parsed": int(parsed.sum()), "n_unparsable": int((~parsed).sum()),
        "unparsable_rate": float((~parsed).mean()),
        "n_echo": int(prep["echo"].sum()), "echo_rate": float(prep["echo"].mean()),
        "n_pred_vulnerable": int((pred == 1).sum()), "n_pred_safe": int((pred == 0).sum()),
        "n_scored": int((~np.isnan(score)).sum()), "n_clusters": int(clusters.max()) + 1,
    }
    metrics = _point(confusion(y, pred_all))
    metrics_parsed = _point(confusion(y[parsed], pred[parsed]))
    if n_boot > 0:
        _with_ci(metrics, bootstrap(confusion_stat(y, pred_all), clusters, n_boot, seed), CI_LEVEL)
        cp = cluster_codes([i for i, k in zip(prep["ids"], parsed) if k],
                           [p for p, k in zip(prep["pair"], parsed) if k])
        boot_p = bootstrap(confusion_stat(y[parsed], pred[parsed]), cp, n_boot, seed) if parsed.any() else np.empty(0)
        _with_ci(metrics_parsed, boot_p, CI_LEVEL)
    if not parsed.any():
        # Nothing to read a verdict from: "unparsable = wrong" makes accuracy 0, but it would
        # also make MCC -1 ("perfectly inverted"), which says something false about the model.
        for name in metrics:
            if name != "accuracy":
                metrics[name].update(value=0.0, defined=False, note=NO_PARSED_NOTE, ci=None)
    auc, curve = None, None
    has = ~np.isnan(score)
    if has.any():
        s, ys = score[has], y[has]
        auc = {"n_scored": int(has.sum()), "prevalence": float(ys.mean()), "score_std": float(s.std()),
               "roc_auc": {"value": None, "ci": None}, "pr_auc": {"value": None, "ci": None},
               "best_threshold": None}
        if 0 < ys.sum() < ys.size:
            roc, ap = ranking_from_weights(s, ys, np.ones((1, s.size)))
            auc["roc_auc"]["value"], auc["pr_auc"]["value"] = float(roc[0]), float(ap[0])
            if n_boot > 0:
                sub = cluster_codes([i for i, k in zip(prep["ids"], has) if k],
                                    [p for p, k in zip(prep["pair"], has) if k])
                boot = bootstrap(lambda w: np.stack(ranking_from_weights(s, ys, w), axis=1), sub, n_boot, seed)
                auc["roc_auc"]["ci"] = percentile_ci(boot[:, 0])[0]
                auc["pr_auc"]["ci"] = percentile_ci(boot[:, 1])[0]
            curve = curves(s, ys)
            auc["best_threshold"] = curve.pop("best_threshold")
    cwe_rows = per_cwe(y, pred, prep["cwe"])
    majority = max(counts["n_vulnerable"], counts["n_safe"]) / n
    return {
        "schema": "breachlab.vuln.summary/1",
        "mode": modes[0], "threshold": threshold, "ci_level": CI_LEVEL, "n_boot": n_boot, "seed": seed,
        "bootstrap": "percentile; vulnerable/fixed pairs resampled as clusters" if any(prep["pair"])
                     else "percentile; rows resampled independently",
        "unparsable_policy": UNPARSABLE_POLICY,
        "counts": counts,
        "baseline": {"majority_class": "SAFE" if counts["n_safe"] >= counts["n_vulnerable"] else "VULNERABLE",
                     "majority_accuracy": majority},
        "confusion": confusion(y, pred_all),
        "confusion_parsed": confusion(y[parsed], pred[parsed]),
        "metrics": metrics, "metrics_parsed": metrics_parsed,
        "auc": auc, "curves": curve,
        "per_cwe": cwe_rows, "per_source": per_source(prep), "paired": paired(prep),
        "warnings": _warnings(counts, cwe_rows, auc),
    }
