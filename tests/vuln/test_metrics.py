"""Metrics against hand-computed answers, and the traps the reference post fell into."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from breachlab.errors import UserError
from breachlab.vuln.eval import bootstrap as B, metrics as M, rows as RW, summary as SUM


def row(i, label, *, verdict=None, p=None, mode="generate", cwe=None, source="juliet", pair=None, echo=False):
    return {"id": str(i), "label": label, "cwe": cwe, "source": source, "pair_id": pair, "mode": mode,
            "raw_output": "", "verdict": verdict, "p_vulnerable": p, "echo": echo, "latency_s": 0.1}


def gen_rows(labels, preds, **kw):
    """preds: 1 / 0 / None (unparsable) → generate-mode rows."""
    return [row(i, t, verdict=None if p is None else ("VULNERABLE" if p else "SAFE"), **kw)
            for i, (t, p) in enumerate(zip(labels, preds))]


def codes(summary):
    return {w["code"] for w in summary["warnings"]}


# ------------------------------------------------------------------------------ confusion
Y = [1, 1, 1, 0, 0, 0, 0, 1]
P = [1, 0, 1, 0, 1, 0, 0, 0]


def test_confusion_by_hand():
    assert M.confusion(Y, P) == {"tp": 2, "fp": 1, "tn": 3, "fn": 2}


def test_metrics_by_hand():
    m = {k: v["value"] for k, v in M.classification_metrics(Y, P).items()}
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(4 / 7)
    assert m["balanced_accuracy"] == pytest.approx(0.625)
    assert m["mcc"] == pytest.approx(4 / math.sqrt(3 * 4 * 4 * 5))


@pytest.mark.parametrize("pred, expected", [
    ([1, 1, 0, 0], 1.0),     # perfect
    ([0, 0, 1, 1], -1.0),    # perfectly inverted
    ([1, 1, 1, 1], 0.0),     # constant predictor carries no information
    ([1, 0, 1, 0], 0.0),     # chance
])
def test_mcc_known_values(pred, expected):
    assert M.classification_metrics([1, 1, 0, 0], pred)["mcc"]["value"] == pytest.approx(expected)


def test_no_positive_predictions_is_flagged_not_nan():
    m = M.classification_metrics([1, 0, 1, 0], [0, 0, 0, 0])
    assert m["precision"] == {"value": 0.0, "defined": False, "note": M._UNDEFINED_NOTES["precision"]}
    assert m["f1"]["defined"] and m["f1"]["value"] == 0.0      # 2tp / (2tp+fp+fn) = 0 / 2
    assert m["recall"]["value"] == 0.0 and m["recall"]["defined"]
    assert m["mcc"]["value"] == 0.0


def test_single_class_labels():
    m = M.classification_metrics([1, 1, 1], [1, 0, 1])
    assert not m["specificity"]["defined"] and not m["balanced_accuracy"]["defined"]
    assert m["recall"]["value"] == pytest.approx(2 / 3)


def test_matches_sklearn_on_random_arrays():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    m = {k: v["value"] for k, v in M.classification_metrics(y, p).items()}
    assert m["mcc"] == pytest.approx(sk.matthews_corrcoef(y, p))
    assert m["f1"] == pytest.approx(sk.f1_score(y, p))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, p))


def test_confusion_rejects_bad_input():
    with pytest.raises(ValueError):
        M.confusion([1, 2], [1, 0])
    with pytest.raises(ValueError):
        M.confusion([1, 0, 1], [1, 0])


# --------------------------------------------------------------------------- small stats
def test_mcnemar_exact_by_hand():
    assert M.mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert M.mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert M.mcnemar_exact(4, 4) == 1.0
    assert M.mcnemar_exact(0, 0) == 1.0


def test_wilson_interval():
    lo, hi = M.wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    assert M.wilson(0, 4)[0] == 0.0 and M.wilson(4, 4)[1] == 1.0
    assert M.wilson(0, 0) is None


# ------------------------------------------------------------------------------ bootstrap
def _random_rows(n, seed, acc=0.7):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    p = np.where(rng.random(n) < acc, y, 1 - y)
    return gen_rows(y.tolist(), p.tolist())


def test_ci_contains_point_and_narrows_with_n():
    small, big = SUM.summarize(_random_rows(100, 1), n_boot=500), SUM.summarize(_random_rows(2000, 1), n_boot=500)
    for s in (small, big):
        for name in M.METRICS:
            lo, hi = s["metrics"][name]["ci"]
            assert lo <= s["metrics"][name]["value"] <= hi
    width = lambda s: np.diff(s["metrics"]["accuracy"]["ci"])[0]  # noqa: E731
    assert width(big) < width(small) / 2.5     # ~ sqrt(20) narrower


def test_bootstrap_is_seeded():
    rows = _random_rows(1000, 2)
    assert SUM.summarize(rows, seed=5)["metrics"]["mcc"]["ci"] == SUM.summarize(rows, seed=5)["metrics"]["mcc"]["ci"]
    assert SUM.summarize(rows, seed=5)["metrics"]["mcc"]["ci"] != SUM.summarize(rows, seed=6)["metrics"]["mcc"]["ci"]
    y = np.arange(1000) % 2
    stat = B.confusion_stat(y, y)
    boot = B.bootstrap(stat, np.arange(1000), n_boot=1000, seed=0)
    assert boot.shape == (1000, len(M.METRICS))


def test_pairs_are_resampled_as_clusters():
    ids = [str(i) for i in range(10)]
    pairs = ["a", "a", "b", "b", "c", "c", None, None, "d", "d"]
    cl = B.cluster_codes(ids, pairs)
    assert cl[0] == cl[1] and cl[2] == cl[3] and cl[6] != cl[7]
    for w in B.bootstrap_weights(cl, 200, 0):
        assert (w[:, 0] == w[:, 1]).all() and (w[:, 8] == w[:, 9]).all()
        assert (w.sum(axis=1) > 0).all()


def test_cluster_bootstrap_is_wider_when_pair_halves_agree():
    # each pair is answered all-right or all-wrong: correlated halves; ignoring that
    # would pretend to have twice the information.
    rng = np.random.default_rng(0)
    ok = rng.random(200) < 0.6
    rows = []
    for k, good in enumerate(ok):
        rows += [row(2 * k, 1, verdict="VULNERABLE" if good else "SAFE", pair=f"p{k}"),
                 row(2 * k + 1, 0, verdict="SAFE" if good else "VULNERABLE", pair=f"p{k}")]
    clustered = SUM.summarize(rows)
    flat = SUM.summarize([{**r, "pair_id": None} for r in rows])
    w = lambda s: np.diff(s["metrics"]["accuracy"]["ci"])[0]  # noqa: E731
    assert w(clustered) > 1.25 * w(flat)
    assert "clusters" in clustered["bootstrap"]


# ---------------------------------------------------------------------------------- ranking
def test_auc_perfect_and_constant():
    y = [0, 0, 0, 1, 1, 1]
    perfect = SUM.summarize([row(i, t, p=s, mode="logit") for i, (t, s) in enumerate(zip(y, [.1, .2, .3, .7, .8, .9]))])
    assert perfect["auc"]["roc_auc"]["value"] == 1.0 and perfect["auc"]["pr_auc"]["value"] == 1.0
    const = SUM.summarize([row(i, t, p=0.99, mode="logit") for i, t in enumerate(y)])
    assert const["auc"]["roc_auc"]["value"] == 0.5
    assert const["auc"]["pr_auc"]["value"] == pytest.approx(0.5)   # = prevalence
    assert "constant_scores" in codes(const)


def test_auc_matches_sklearn_with_ties():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 400)
    s = np.round(np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1), 1)   # many ties
    roc, ap = M.ranking_from_weights(s, y, np.ones((1, y.size)))
    assert roc[0] == pytest.approx(sk.roc_auc_score(y, s))
    assert ap[0] == pytest.approx(sk.average_precision_score(y, s))


def test_curves_and_optimistic_threshold():
    y = [0, 0, 1, 1, 0, 1, 1]
    s = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.3]
    c = M.curves(s, y)
    assert c["roc"]["fpr"][0] == 0.0 and c["roc"]["fpr"][-1] == 1.0 and c["roc"]["tpr"][-1] == 1.0
    assert c["pr"]["precision"][0] == 1.0 and c["pr"]["recall"][-1] == 1.0
    best = c["best_threshold"]
    assert best["optimistic"] and best["threshold"] == 0.3 and best["balanced_accuracy"] == pytest.approx(5 / 6)


def test_logit_mode_thresholds_scores():
    rows = [row(0, 1, p=0.5, mode="logit"), row(1, 0, p=0.49, mode="logit")]
    assert SUM.summarize(rows, threshold=0.5, n_boot=0)["confusion"] == {"tp": 1, "fp": 0, "tn": 1, "fn": 0}
    assert SUM.summarize(rows, threshold=0.6, n_boot=0)["confusion"] == {"tp": 0, "fp": 0, "tn": 1, "fn": 1}


# ------------------------------------------------------------------------------- breakdowns
def test_per_cwe_counts_sorted_worst_first():
    rows = ([row(i, 1, verdict="VULNERABLE", cwe="CWE-787") for i in range(3)]
            + [row(3, 1, verdict="SAFE", cwe="CWE-787"), row(4, 1, verdict="SAFE", cwe="CWE-416"),
               row(5, 1, verdict=None, cwe="CWE-416"), row(6, 0, verdict="VULNERABLE", cwe="CWE-416"),
               row(7, 1, verdict="VULNERABLE", cwe=None)])
    per = SUM.summarize(rows, n_boot=0)["per_cwe"]
    assert [(r["cwe"], r["n"], r["tp"]) for r in per] == [("CWE-416", 2, 0), ("CWE-787", 4, 3), ("unknown", 1, 1)]
    assert per[0]["n_safe"] == 1 and per[0]["fp"] == 1
    assert all(r["small_n"] for r in per)


def test_per_source():
    rows = gen_rows([1, 0, 1, 0], [1, 0, 0, 1])
    rows[2]["source"] = rows[3]["source"] = "sven"
    src = {r["source"]: r for r in SUM.summarize(rows, n_boot=0)["per_source"]}
    assert src["juliet"]["accuracy"] == 1.0 and src["sven"]["accuracy"] == 0.0 and src["sven"]["n"] == 2


def test_pair_categories():
    def pair(k, v, f, pv=None, pf=None):
        mode = "logit" if pv is not None else "generate"
        return [row(f"v{k}", 1, verdict=v, p=pv, mode=mode, pair=str(k)),
                row(f"f{k}", 0, verdict=f, p=pf, mode=mode, pair=str(k))]
    V, S = "VULNERABLE", "SAFE"
    rows = (pair(0, V, S) + pair(1, V, V) + pair(2, S, S) + pair(3, S, V) + pair(4, None, S) + pair(5, V, S)
            + [row("lonely", 1, verdict=V, pair="9")])
    p = SUM.summarize(rows, n_boot=0)["paired"]
    assert p["n_pairs"] == 6 and p["n_invalid"] == 1
    assert p["counts"] == {"correct": 2, "both_vulnerable": 1, "both_safe": 1, "reversed": 1, "unparsable": 1}
    assert p["pair_correct"]["value"] == pytest.approx(2 / 6) and p["ordered"] is None

    logit = pair(0, None, None, .9, .2) + pair(1, None, None, .3, .6) + pair(2, None, None, .5, .5)
    o = SUM.summarize(logit, n_boot=0)["paired"]["ordered"]
    assert (o["ordered"], o["misordered"], o["ties"]) == (1, 1, 1) and o["rate"] == 0.5
    assert SUM.summarize(gen_rows([1, 0], [1, 0]), n_boot=0)["paired"] is None


# --------------------------------------------------------------------------------- the traps
def test_post_accuracy_trap_95_5_mostly_safe():
    # the post: 200 random samples, 195 safe + 5 vulnerable, 94.5% accuracy, model says SAFE
    labels = [0] * 195 + [1] * 5
    preds = [0] * 188 + [1] * 7 + [1] + [0] * 4          # tn 188, fp 7, tp 1, fn 4
    s = SUM.summarize(gen_rows(labels, preds))
    assert s["metrics"]["accuracy"]["value"] == pytest.approx(0.945)
    assert {"class_imbalance", "degenerate_predictor"} <= codes(s)
    msg = " ".join(w["message"] for w in s["warnings"])
    assert "accuracy is meaningless here; majority-class baseline = 97.5%" in msg
    assert "the model says SAFE for everything" in msg
    assert s["baseline"] == {"majority_class": "SAFE", "majority_accuracy": 0.975}


def test_vulnerable_for_everything():
    # feasibility run: zero-shot base model, p ≈ 0.99 for every sample of a balanced set
    rows = [row(i, i % 2, p=0.99, mode="logit") for i in range(200)]
    s = SUM.summarize(rows)
    assert s["metrics"]["accuracy"]["value"] == 0.5
    assert s["metrics"]["f1"]["value"] == pytest.approx(2 / 3)     # looks fine, means nothing
    assert s["metrics"]["mcc"]["value"] == 0.0 and s["metrics"]["balanced_accuracy"]["value"] == 0.5
    assert s["auc"]["roc_auc"]["value"] == 0.5
    assert "degenerate_predictor" in codes(s) and "class_imbalance" not in codes(s)
    assert any("the model says VULNERABLE for everything" in w["message"] for w in s["warnings"])


def test_small_n_warning():
    assert "small_n" in codes(SUM.summarize(_random_rows(40, 0), n_boot=50))
    assert "small_n" not in codes(SUM.summarize(_random_rows(200, 0), n_boot=50))


def test_unparsable_counted_both_ways():
    rows = gen_rows([1, 1, 0, 0], [1, None, 0, None])
    rows[1]["echo"] = True
    s = SUM.summarize(rows, n_boot=0)
    assert s["counts"]["n_unparsable"] == 2 and s["counts"]["unparsable_rate"] == 0.5 and s["counts"]["n_echo"] == 1
    assert s["confusion"] == {"tp": 1, "fp": 1, "tn": 1, "fn": 1}          # wrong class
    assert s["confusion_parsed"] == {"tp": 1, "fp": 0, "tn": 1, "fn": 0}   # dropped
    assert s["metrics"]["accuracy"]["value"] == 0.5 and s["metrics_parsed"]["accuracy"]["value"] == 1.0
    assert "wrong class" in s["unparsable_policy"] and "dropped" in s["unparsable_policy"]
    assert {"unparsable", "prompt_echo"} <= codes(s)


def test_all_unparsable_does_not_crash():
    s = SUM.summarize(gen_rows([1, 0, 1], [None, None, None]), n_boot=100)
    assert s["counts"]["n_parsed"] == 0 and s["metrics"]["accuracy"]["value"] == 0.0
    assert s["metrics_parsed"]["accuracy"]["defined"] is False
    json.dumps(s, allow_nan=False)


@pytest.mark.parametrize("labels, preds", [([1, 1, 1], [1, 0, None]), ([0, 0], [0, 0]), ([1, 0], [1, 0])])
def test_summary_is_strict_json(labels, preds):
    rows = gen_rows(labels, preds)
    for r, p in zip(rows, [0.3, 0.7, 0.5]):
        r["p_vulnerable"] = p
    s = SUM.summarize(rows, n_boot=50)
    json.dumps(s, allow_nan=False)
    assert set(s) >= {"metrics", "metrics_parsed", "confusion", "auc", "curves", "per_cwe", "per_source",
                      "paired", "counts", "warnings"}


@pytest.mark.parametrize("bad, match", [
    ([], "no predictions"),
    ([row(0, 2, verdict="SAFE")], "label must be 0 or 1"),
    ([row(0, 1, verdict="MAYBE")], "verdict must be"),
    ([row(0, 1, p=1.5, mode="logit")], r"p_vulnerable must be in \[0, 1\]"),
    ([row(0, 1, verdict="SAFE"), row(1, 0, p=0.2, mode="logit")], "mix decision modes"),
])
def test_bad_input_is_a_user_error(bad, match):
    with pytest.raises(UserError, match=match):
        SUM.summarize(bad)


def test_split_by_mode():
    rows = [row(0, 1, verdict="SAFE"), row(0, 1, p=0.2, mode="logit")]
    assert {k: len(v) for k, v in RW.split_by_mode(rows).items()} == {"generate": 1, "logit": 1}


def test_nothing_parsable_gives_accuracy_zero_and_no_mcc():
    """All answers unparsable (e.g. every one echoes the prompt): not an 'inverted' model."""
    s = SUM.summarize(gen_rows([1, 0] * 5, [None] * 10), n_boot=50)
    assert s["metrics"]["accuracy"]["value"] == 0.0 and s["metrics"]["accuracy"]["defined"]
    for name in ("mcc", "balanced_accuracy", "precision", "recall", "f1"):
        assert s["metrics"][name]["defined"] is False and s["metrics"][name]["ci"] is None
        assert "no answer could be parsed" in s["metrics"][name]["note"]
    some = SUM.summarize(gen_rows([1, 0] * 5, [None] * 9 + [0]), n_boot=0)
    assert some["metrics"]["mcc"]["defined"]  # one parsed answer: the policy applies as before
