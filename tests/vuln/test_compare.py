"""Comparing runs: aligned samples, paired deltas, McNemar, and refusal on mismatched data."""

from __future__ import annotations

import numpy as np
import pytest

from breachlab.errors import UserError
from breachlab.rundir import atomic_write_json, write_jsonl
from breachlab.vuln.eval.compare import compare, write_compare_report


def _row(i, label, pred, *, mode="generate", p=None, pair=None):
    return {"id": f"s{i}", "label": label, "cwe": "CWE-787" if label else None, "source": "juliet",
            "pair_id": pair, "mode": mode, "raw_output": "", "p_vulnerable": p, "echo": False, "latency_s": 0.1,
            "verdict": None if pred is None else ("VULNERABLE" if pred else "SAFE")}


def _run(root, name, rows):
    d = root / name
    d.mkdir()
    atomic_write_json(d / "manifest.json", {"kind": "vuln eval", "command": f"breachlab vuln eval {name}",
                                            "git_sha": "abc123"})
    write_jsonl(d / "predictions.jsonl", rows)
    return d


def _correct_on(n, correct):
    """n balanced samples; the run answers correctly exactly on indices in ``correct``."""
    return [_row(i, i % 2, (i % 2) if i in correct else 1 - i % 2) for i in range(n)]


def test_deltas_and_mcnemar_by_hand(tmp_path):
    a = _run(tmp_path, "a", _correct_on(10, set(range(5))))
    b = _run(tmp_path, "b", _correct_on(10, set(range(9))))
    res = compare([a, b], n_boot=200)
    m = res["modes"]["generate"]
    assert m["n"] == 10 and res["baseline"] == "a"
    d = m["deltas"][0]
    assert d["other"] == "b"
    acc = d["metrics"]["accuracy"]
    assert (acc["baseline"], acc["other"]) == (0.5, 0.9) and acc["delta"] == pytest.approx(0.4)
    assert acc["ci"][0] <= 0.4 <= acc["ci"][1]
    mc = d["mcnemar"]
    assert (mc["baseline_only_correct"], mc["other_only_correct"]) == (0, 4)
    assert mc["p_value"] == pytest.approx(0.125)
    assert set(m["summaries"]) == {"a", "b"}


def test_clear_improvement_on_synthetic_logit_runs(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(400) % 2
    weak = np.clip(rng.normal(0.5 + 0.02 * y, 0.2), 0, 1)
    strong = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
    mk = lambda s: [_row(i, int(t), None, mode="logit", p=float(v), pair=f"p{i // 2}")  # noqa: E731
                    for i, (t, v) in enumerate(zip(y, s))]
    res = compare([_run(tmp_path, "zero-shot", mk(weak)), _run(tmp_path, "finetuned", mk(strong))], n_boot=300)
    d = res["modes"]["logit"]["deltas"][0]["metrics"]
    assert d["roc_auc"]["delta"] > 0.2 and d["roc_auc"]["excludes_zero"]
    assert d["mcc"]["ci"][0] > 0 and d["balanced_accuracy"]["excludes_zero"]
    assert res["modes"]["logit"]["deltas"][0]["mcnemar"]["p_value"] < 1e-4
    md, html = write_compare_report(res, tmp_path / "cmp")
    text = html.read_text(encoding="utf-8")
    assert md.name == "compare.md" and text.count("data:image/png;base64,") == 2
    assert "finetuned vs zero-shot" in text and "McNemar exact" in text


def test_same_run_twice_has_zero_delta(tmp_path):
    rows = _correct_on(30, set(range(0, 30, 3)))
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    res = compare([_run(tmp_path / "one", "run", rows), _run(tmp_path / "two", "run", rows)], n_boot=100)
    assert [r["name"] for r in res["runs"]] == ["run", "run#2"]
    d = res["modes"]["generate"]["deltas"][0]
    assert all(v["delta"] == 0 for v in d["metrics"].values())
    assert d["mcnemar"]["n_discordant"] == 0 and d["mcnemar"]["p_value"] == 1.0


def test_mismatched_ids_are_refused_with_counts(tmp_path):
    a = _run(tmp_path, "a", _correct_on(100, set(range(50))))
    b = _run(tmp_path, "b", _correct_on(90, set(range(50))))
    with pytest.raises(UserError, match=r"10 of 100 \(10\.0%\) are not in every run \(b lacks 10"):
        compare([a, b], n_boot=10)
    res = compare([a, b], n_boot=10, max_missing=0.2)         # within tolerance: intersection
    assert res["modes"]["generate"]["n"] == 90
    assert res["coverage"]["generate"]["missing"] == {"a": 0, "b": 10}
    assert any(w["code"] == "partial_overlap" for w in res["warnings"])


def test_different_labels_are_refused(tmp_path):
    rows = _correct_on(10, set())
    flipped = [dict(r, label=1 - r["label"]) if r["id"] == "s3" else r for r in rows]
    with pytest.raises(UserError, match="disagree on the label"):
        compare([_run(tmp_path, "a", rows), _run(tmp_path, "b", flipped)], n_boot=10)


def test_modes_only_in_one_run_are_skipped(tmp_path):
    gen = _correct_on(10, {1, 2})
    logit = [_row(i, i % 2, None, mode="logit", p=0.3) for i in range(10)]
    res = compare([_run(tmp_path, "a", gen + logit), _run(tmp_path, "b", gen)], n_boot=10)
    assert list(res["modes"]) == ["generate"] and res["modes_skipped"] == ["logit"]
    with pytest.raises(UserError, match="share no decision mode"):
        compare([_run(tmp_path, "c", logit), _run(tmp_path, "d", gen)], n_boot=10)


def test_bad_run_dirs(tmp_path):
    a = _run(tmp_path, "a", _correct_on(4, set()))
    with pytest.raises(UserError, match="at least two"):
        compare([a])
    with pytest.raises(UserError, match="not a breachlab run directory"):
        compare([a, tmp_path / "nope"])
    empty = tmp_path / "empty"
    empty.mkdir()
    atomic_write_json(empty / "manifest.json", {})
    with pytest.raises(UserError, match="no predictions.jsonl"):
        compare([a, empty])
    dup = _run(tmp_path, "dup", _correct_on(4, set()) + _correct_on(1, set()))
    with pytest.raises(UserError, match="appears twice"):
        compare([a, dup])


def test_run_without_parsable_answers_has_no_mcc_delta(tmp_path):
    a = _run(tmp_path, "a", [_row(i, i % 2, None) for i in range(10)])
    b = _run(tmp_path, "b", _correct_on(10, set(range(8))))
    d = compare([a, b], n_boot=50)["modes"]["generate"]["deltas"][0]["metrics"]
    assert d["mcc"]["delta"] is None and d["mcc"]["baseline"] is None and d["mcc"]["other"] is not None
    assert d["accuracy"]["delta"] == pytest.approx(0.8)
    md, _ = write_compare_report(compare([a, b], n_boot=50), tmp_path / "out")
    assert "| MCC | – |" in md.read_text()


def test_source_filter_compares_one_domain_and_skips_modes_without_it(tmp_path):
    def rows(correct):
        out = _correct_on(8, correct)
        for r in out[4:]:
            r["source"] = "sven"
        logit = [dict(r, mode="logit", p=0.9 if r["verdict"] == "VULNERABLE" else 0.1) for r in out]
        return logit + out[:4]  # generate mode: Juliet only
    a, b = _run(tmp_path, "a", rows({0, 1})), _run(tmp_path, "b", rows({0, 1, 4, 5, 6, 7}))
    res = compare([a, b], n_boot=20, source="sven")
    assert set(res["modes"]) == {"logit"} and res["modes"]["logit"]["n"] == 4
    assert "generate" in res["modes_skipped"] and res["source"] == "sven"
    assert res["modes"]["logit"]["deltas"][0]["metrics"]["accuracy"]["delta"] == pytest.approx(1.0)
    with pytest.raises(UserError, match="no decision mode"):
        compare([a, b], n_boot=0, source="diversevul")


def test_pairwise_deltas_over_common_pairs_by_hand(tmp_path):
    # 10 pairs; baseline says VULNERABLE for everything (P-V 1.0), the other gets 6 pairs right
    # and reverses 1; a lone half (pair p99) is ignored by the pairwise metrics
    def rows(outcomes):
        out = []
        for k, (pv, pf) in enumerate(outcomes):
            out += [_row(2 * k, 1, pv, pair=f"p{k}"), _row(2 * k + 1, 0, pf, pair=f"p{k}")]
        return out + [_row(99, 1, 1, pair="p99")]
    a = _run(tmp_path, "a", rows([(1, 1)] * 10))
    b = _run(tmp_path, "b", rows([(1, 0)] * 6 + [(1, 1)] * 3 + [(0, 1)]))
    res = compare([a, b], n_boot=300)
    d = res["modes"]["generate"]["deltas"][0]
    pw = d["pairwise"]
    assert pw["n_pairs"] == 10 and pw["small_n"]
    assert (pw["P-C"]["baseline"], pw["P-C"]["other"]) == (0.0, pytest.approx(0.6))
    assert pw["P-C"]["delta"] == pytest.approx(0.6) and pw["P-C"]["excludes_zero"]
    assert pw["P-V"]["delta"] == pytest.approx(-0.7) and pw["P-R"]["delta"] == pytest.approx(0.1)
    assert d["low_fpr"] is None                           # generate mode: no scores
    s = res["modes"]["generate"]["summaries"]["b"]["pairwise"]
    assert s["n_incomplete"] == 1 and s["P-C"]["count"] == 6
    md, _ = write_compare_report(res, tmp_path / "report")
    text = md.read_text()
    assert "P-C (both right)" in text and "+0.600" in text
    # net P-C − P-R: baseline 0, other 0.6 − 0.1 = 0.5
    assert pw["net"]["delta"] == pytest.approx(0.5) and pw["net"]["excludes_zero"]
    assert "net P-C − P-R" in text and "+0.500" in text
