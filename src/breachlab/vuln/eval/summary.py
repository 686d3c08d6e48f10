"""One summary of one decision mode of one run: what ``metrics.json`` and the reports hold.

Why it is fussy: a zero-shot model that says VULNERABLE for everything, or a 95/5 test set
answered SAFE throughout, both look fine on accuracy and F1. So :func:`summarize` always
reports chance-corrected metrics (MCC, balanced accuracy, ROC-AUC) with bootstrap CIs
(vulnerable/fixed pairs resampled as clusters), unparsable answers and prompt echo
separately, PrimeVul's pairwise metrics and VD-S where pairs and scores exist
(:mod:`breachlab.vuln.eval.pairwise`), and loud warnings when the numbers cannot mean what they
seem to. Unparsable answers count as the *wrong* class in ``metrics`` and are dropped in
``metrics_parsed``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Sequence

import numpy as np

from breachlab.errors import UserError
from breachlab.vuln.eval.bootstrap import bootstrap, cluster_codes, confusion_stat, percentile_ci, with_ci
from breachlab.vuln.eval.metrics import CI_LEVEL, confusion, curves, point_metrics, ranking_from_weights, wilson
from breachlab.vuln.eval.pairwise import SMALL_PAIRS, low_fpr_metrics, pairwise_metrics
from breachlab.vuln.eval.rows import NO_PARSED_NOTE, policy_predictions, prepare_rows

SMALL_CWE_N = 10          # per-CWE recall below this n is flagged "indicative only"
SMALL_N = 100             # whole-set size below which CIs are too wide to rank models
IMBALANCE_SHARE = 0.40    # minority-class share below which accuracy is meaningless
DEGENERATE_SHARE = 0.95   # share of one predicted class that makes a predictor degenerate
UNPARSABLE_POLICY = ("metrics: unparsable answers counted as the wrong class; "
                     "metrics_parsed: unparsable answers dropped")


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


def per_source(prep: dict[str, Any], n_boot: int = 0, seed: int = 0) -> list[dict]:
    """Point metrics per data source: Juliet numbers must never hide real-code numbers.

    A source with vulnerable/fixed pairs (SVEN, PairVul) also carries its ``pairwise``
    metrics and its ``low_fpr`` rates (VD-S), with CIs when ``n_boot`` > 0.
    """
    y, pred, score = prep["y"], prep["pred"], prep["score"]
    src = np.asarray(prep["source"], dtype=object)
    out = []
    for name in sorted(set(prep["source"])):
        m = src == name
        ys, ps = y[m], policy_predictions(y[m], pred[m])
        cm = confusion(ys, ps)
        row = {"source": name, "n": int(m.sum()), "n_vulnerable": int(ys.sum()),
               "n_unparsable": int((pred[m] < 0).sum()), "confusion": cm,
               **{k: v["value"] for k, v in point_metrics(cm).items()}, "roc_auc": None}
        sc = score[m]
        ok = ~np.isnan(sc)
        if ok.any() and 0 < ys[ok].sum() < ok.sum():
            row["roc_auc"] = float(ranking_from_weights(sc[ok], ys[ok], np.ones((1, ok.sum())))[0][0])
        idx = np.flatnonzero(m)
        pairs = [prep["pair"][i] for i in idx]
        row["pairwise"] = pairwise_metrics(pairs, ys, pred[m], n_boot, seed)
        row["low_fpr"] = low_fpr_metrics(sc, ys, [prep["ids"][i] for i in idx], pairs, n_boot, seed)
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
def _warnings(counts: dict[str, Any], per_cwe_rows: list[dict], auc: dict | None,
              pairwise: dict | None = None, low_fpr: dict | None = None) -> list[dict[str, str]]:
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
    if pairwise is not None and pairwise["small_n"]:
        w.append({"code": "small_pairs", "message": f"only {pairwise['n_pairs']} complete vulnerable/fixed pairs "
                  f"(fewer than {SMALL_PAIRS}): P-C/P-V/P-B/P-R are indicative only"})
    if pairwise is not None and pairwise["n_incomplete"]:
        w.append({"code": "incomplete_pairs", "message": f"{pairwise['n_incomplete']} pairs lack a half or have "
                  "two of one label: left out of the pairwise metrics"})
    if low_fpr is not None and low_fpr["vd_s"]["small_n"]:
        w.append({"code": "vd_s_small_n", "message": f"VD-S allows no false alarm among {low_fpr['n_safe']} safe "
                  "samples (FPR <= 0.5%): it needs at least 200 safe samples to mean more than that"})
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
        metrics_parsed, auc, curves, per_cwe, per_source, paired, pairwise, low_fpr,
        warnings``; ``pairwise`` (P-C/P-V/P-B/P-R, None without pairs) and ``low_fpr``
        (VD-S and FNR at FPR <= 5%, None without scores of both classes) come from
        :mod:`breachlab.vuln.eval.pairwise`.
    """
    modes = sorted({str(r.get("mode") or "unknown") for r in rows})
    if len(modes) > 1:
        raise UserError(f"predictions mix decision modes {modes}: summarise each mode on its own "
                        "(split_by_mode)")
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"threshold must be in [0, 1], got {threshold}")
    prep = prepare_rows(rows, threshold)
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
    metrics = point_metrics(confusion(y, pred_all))
    metrics_parsed = point_metrics(confusion(y[parsed], pred[parsed]))
    if n_boot > 0:
        with_ci(metrics, bootstrap(confusion_stat(y, pred_all), clusters, n_boot, seed), CI_LEVEL)
        cp = cluster_codes([i for i, k in zip(prep["ids"], parsed) if k],
                           [p for p, k in zip(prep["pair"], parsed) if k])
        boot_p = bootstrap(confusion_stat(y[parsed], pred[parsed]), cp, n_boot, seed) if parsed.any() else np.empty(0)
        with_ci(metrics_parsed, boot_p, CI_LEVEL)
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
    pairwise = pairwise_metrics(prep["pair"], y, pred, n_boot, seed)
    low_fpr = low_fpr_metrics(score, y, prep["ids"], prep["pair"], n_boot, seed)
    majority = max(counts["n_vulnerable"], counts["n_safe"]) / n
    return {
        "schema": "breachlab.vuln.eval.summary/1",
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
        "per_cwe": cwe_rows, "per_source": per_source(prep, n_boot, seed), "paired": paired(prep),
        "pairwise": pairwise, "low_fpr": low_fpr,
        "warnings": _warnings(counts, cwe_rows, auc, pairwise, low_fpr),
    }
