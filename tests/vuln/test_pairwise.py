"""PrimeVul pairwise metrics and VD-S against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from breachlab.vuln.eval import pairwise as PW
from breachlab.vuln.eval.summary import summarize


def _pairs(outcomes: list[tuple[int, int]]) -> tuple[list[str | None], list[int], list[int]]:
    """Rows for pairs given (prediction on vulnerable half, prediction on fixed half)."""
    pids, y, pred = [], [], []
    for k, (pv, pf) in enumerate(outcomes):
        pids += [f"p{k}", f"p{k}"]
        y += [1, 0]
        pred += [pv, pf]
    return pids, y, pred


def test_pair_outcomes_hand_counted() -> None:
    # 3 correct, 2 both-vulnerable, 1 both-safe, 1 reversed, 1 with an unparsable half
    pids, y, pred = _pairs([(1, 0), (1, 0), (1, 0), (1, 1), (1, 1), (0, 0), (0, 1), (-1, 0)])
    # incomplete pairs: a lone half, and a "pair" of two vulnerable rows; plus a row without pair
    pids += ["lone", "twins", "twins", None]
    y += [1, 1, 1, 0]
    pred += [1, 1, 0, 0]
    m = PW.pairwise_metrics(pids, y, pred, n_boot=200, seed=1)
    assert m["n_pairs"] == 8 and m["n_incomplete"] == 2 and m["small_n"]
    assert {k: m[k]["count"] for k in PW.OUTCOMES} == {"P-C": 3, "P-V": 2, "P-B": 1, "P-R": 1, "unparsable": 1}
    assert m["P-C"]["value"] == pytest.approx(3 / 8)
    assert m["P-R"]["value"] == pytest.approx(1 / 8)
    assert sum(m[k]["value"] for k in PW.OUTCOMES) == pytest.approx(1.0)
    lo, hi = m["P-C"]["ci"]
    assert 0.0 <= lo < 3 / 8 < hi <= 1.0


def test_order_of_halves_does_not_matter() -> None:
    # the fixed half first in the file: still (pred on vulnerable, pred on fixed) = (0, 1) = reversed
    m = PW.pairwise_metrics(["a", "a"], [0, 1], [1, 0], n_boot=0)
    assert m["P-R"]["count"] == 1 and m["P-R"]["ci"] is None


def test_no_pairs_and_no_complete_pairs() -> None:
    assert PW.pairwise_metrics([None, None], [1, 0], [1, 0]) is None
    m = PW.pairwise_metrics(["a", "b"], [1, 0], [1, 0], n_boot=50)
    assert m["n_pairs"] == 0 and m["n_incomplete"] == 2 and m["P-C"]["value"] == 0.0 and m["P-C"]["ci"] is None


def test_fnr_at_fpr_hand_computed() -> None:
    # 10 safe, 4 vulnerable. Descending: v.9 s.8 v.7 v.6 s.5 v.4 s.3 ...
    scores = np.array([0.9, 0.7, 0.6, 0.4, 0.8, 0.5] + [0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.01, 0.0])
    y = np.array([1, 1, 1, 1, 0, 0] + [0] * 8)
    # FPR <= 0.5% of 10 safe = 0 false positives: threshold 0.9 catches 1 of 4 -> FNR 0.75
    r = PW.fnr_at_fpr(scores, y, 0.005)
    assert r["fnr"][0] == pytest.approx(0.75) and r["fpr"][0] == 0 and r["threshold"][0] == pytest.approx(0.9)
    # FPR <= 10% allows 1 false positive: down to 0.6 catches 3 -> FNR 0.25
    r = PW.fnr_at_fpr(scores, y, 0.10)
    assert r["fnr"][0] == pytest.approx(0.25) and r["fpr"][0] == pytest.approx(0.1)
    # FPR <= 20% allows 2: down to 0.4 catches all
    assert PW.fnr_at_fpr(scores, y, 0.20)["fnr"][0] == pytest.approx(0.0)


def test_fnr_at_fpr_ties_move_together() -> None:
    # the top score is shared by a vulnerable and a safe row: at FPR 0 nothing can be flagged
    scores = np.array([0.9, 0.9, 0.5, 0.1])
    y = np.array([1, 0, 1, 0])
    r = PW.fnr_at_fpr(scores, y, 0.0)
    assert r["fnr"][0] == 1.0 and np.isnan(r["threshold"][0])
    # at FPR <= 50% the tie goes in whole, then 0.5 too
    assert PW.fnr_at_fpr(scores, y, 0.5)["fnr"][0] == 0.0


def test_low_fpr_metrics_flags_small_n_and_has_cis() -> None:
    scores = [0.9, 0.8, 0.7, 0.2, 0.3, 0.1, float("nan")]
    y = [1, 1, 0, 1, 0, 0, 1]
    ids = [str(i) for i in range(7)]
    d = PW.low_fpr_metrics(scores, y, ids, [None] * 7, n_boot=300, seed=0)
    assert d["n_scored"] == 6 and d["n_safe"] == 3
    assert d["vd_s"]["value"] == pytest.approx(1 / 3) and d["vd_s"]["allowed_fp"] == 0 and d["vd_s"]["small_n"]
    assert d["vd_s"]["ci"] is not None
    assert PW.low_fpr_metrics([0.5, 0.4], [1, 1], ["a", "b"], [None, None]) is None


def test_pairwise_delta_paired() -> None:
    pids, y, a = _pairs([(1, 1)] * 6 + [(1, 0)] * 4)      # P-C 0.4, P-V 0.6
    _, _, b = _pairs([(1, 0)] * 8 + [(0, 1)] * 2)           # P-C 0.8, P-R 0.2
    d = PW.pairwise_delta(pids, y, a, b, n_boot=500, seed=0)
    assert d["n_pairs"] == 10
    assert d["P-C"]["delta"] == pytest.approx(0.4) and d["P-V"]["delta"] == pytest.approx(-0.6)
    assert d["P-R"]["delta"] == pytest.approx(0.2)
    assert d["P-V"]["excludes_zero"]


def test_summarize_carries_pairwise_and_per_source() -> None:
    rows = []
    for k in range(5):
        for label, p in ((1, 0.8 if k < 3 else 0.2), (0, 0.3 if k < 4 else 0.9)):
            rows.append({"id": f"s{k}{label}", "label": label, "mode": "logit", "p_vulnerable": p,
                         "verdict": None, "source": "pairvul", "pair_id": f"pv{k}", "cwe": "CWE-416"})
    rows += [{"id": f"j{k}", "label": k % 2, "mode": "logit", "p_vulnerable": 0.5, "verdict": None,
              "source": "juliet", "pair_id": None, "cwe": None} for k in range(4)]
    s = summarize(rows, n_boot=100, seed=0)
    # pairs: 0,1,2 -> (1, 0) correct; 3 -> (0, 0) both safe; 4 -> (0, 1) reversed
    assert s["pairwise"]["n_pairs"] == 5
    assert [s["pairwise"][k]["count"] for k in ("P-C", "P-V", "P-B", "P-R")] == [3, 0, 1, 1]
    by = {r["source"]: r for r in s["per_source"]}
    assert by["pairvul"]["pairwise"]["P-C"]["value"] == pytest.approx(0.6)
    assert by["juliet"]["pairwise"] is None
    assert s["low_fpr"]["vd_s"]["value"] is not None
    assert {w["code"] for w in s["warnings"]} >= {"small_pairs", "vd_s_small_n"}


def test_net_is_correct_minus_reversed_hand_counted() -> None:
    # 5 correct, 2 reversed, 2 both-vulnerable, 1 both-safe: net = 5/10 - 2/10 = 0.3
    pids, y, pred = _pairs([(1, 0)] * 5 + [(0, 1)] * 2 + [(1, 1)] * 2 + [(0, 0)])
    m = PW.pairwise_metrics(pids, y, pred, n_boot=400, seed=3)
    assert m["net"]["value"] == pytest.approx(0.3)
    lo, hi = m["net"]["ci"]
    assert -1.0 <= lo < 0.3 < hi <= 1.0
    # every resample's net is its P-C minus its P-R, so the CI is not P-C's CI shifted
    assert m["net"]["ci"] != [m["P-C"]["ci"][0] - 0.2, m["P-C"]["ci"][1] - 0.2]
    # a coin's expected outcomes: P-C 0.25 and net 0
    assert PW.COIN["P-C"] == 0.25 and PW.COIN["net"] == 0.0
    # all reversed: net -1 with a degenerate CI
    pids, y, pred = _pairs([(0, 1)] * 4)
    m = PW.pairwise_metrics(pids, y, pred, n_boot=100)
    assert m["net"]["value"] == -1.0 and m["net"]["ci"] == [-1.0, -1.0]


def test_net_delta_is_paired() -> None:
    pids, y, a = _pairs([(1, 1)] * 6 + [(1, 0)] * 4)      # net 0.4
    _, _, b = _pairs([(1, 0)] * 8 + [(0, 1)] * 2)           # net 0.6
    d = PW.pairwise_delta(pids, y, a, b, n_boot=300, seed=0)
    assert d["net"]["baseline"] == pytest.approx(0.4) and d["net"]["other"] == pytest.approx(0.6)
    assert d["net"]["delta"] == pytest.approx(0.2)
