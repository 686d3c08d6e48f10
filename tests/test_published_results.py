"""The quickstart's published quality numbers, recomputed from the predictions kept in docs/results/.

``docs/results/quickstart/{zero-shot,fine-tuned}/`` hold the two eval runs of one default
``breachlab quickstart`` (``predictions.jsonl`` + ``manifest.json``; what it ran on is in
``docs/results/quickstart/README.md``).  This test recomputes the numbers of ``claims.json``
with the project's own metric and comparison code.  The tables of README.md and
docs/benchmarks.md are generated from the same predictions (``tests/test_docs_tables.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "quickstart"
ARMS = ("zero-shot", "fine-tuned")
SCOPES = ("all", "juliet", "sven", "pairvul")


def _rows(arm: str) -> list[dict]:
    return [json.loads(line) for line in (RESULTS / arm / "predictions.jsonl").read_text().splitlines()]


def _logit(arm: str, source: str | None = None) -> list[dict]:
    return [r for r in _rows(arm) if r["mode"] == "logit" and (source is None or r["source"] == source)]


def recompute() -> dict[str, str]:
    """Every number of ``claims.json``, as it is printed (three decimals)."""
    from breachlab.vuln import compare
    from breachlab.vuln.summary import summarize

    out: dict[str, str] = {}
    for arm in ARMS:
        for scope in SCOPES:
            s = summarize(_logit(arm, None if scope == "all" else scope), threshold=0.5, n_boot=0)
            out[f"{arm}.{scope}.roc_auc"] = f"{s['auc']['roc_auc']['value']:.3f}"
            out[f"{arm}.{scope}.mcc"] = f"{s['metrics']['mcc']['value']:.3f}"
        gen = [r for r in _rows(arm) if r["mode"] == "generate"]
        out[f"{arm}.generate.parsed"] = f"{sum(r['verdict'] is not None for r in gen)} of {len(gen)}"
    out["n"] = str(len(_logit("fine-tuned")))
    for scope in SCOPES:  # the paired comparison the quickstart prints
        res = compare.compare([RESULTS / a for a in ARMS], source=None if scope == "all" else scope)
        delta = res["modes"]["logit"]["deltas"][0]["metrics"]["roc_auc"]
        out[f"delta.{scope}.roc_auc.significant"] = "significant" if delta["excludes_zero"] else "not significant"
    return out


@pytest.mark.skipif(not (RESULTS / "claims.json").is_file(), reason="no published quickstart results")
def test_claims_json_matches_the_predictions() -> None:
    claims = json.loads((RESULTS / "claims.json").read_text())
    assert recompute() == claims["numbers"]


def test_a_changed_prediction_changes_the_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: flip one fine-tuned verdict and the recomputed numbers move."""
    if not (RESULTS / "claims.json").is_file():
        pytest.skip("no published quickstart results")
    import shutil

    copy = tmp_path / "quickstart"
    shutil.copytree(RESULTS, copy)
    rows = [json.loads(line) for line in (copy / "fine-tuned" / "predictions.jsonl").read_text().splitlines()]
    first = next(r for r in rows if r["mode"] == "logit" and r["label"] == 1)
    first["p_vulnerable"] = 1.0 - first["p_vulnerable"]
    first["verdict"] = "SAFE" if first["verdict"] == "VULNERABLE" else "VULNERABLE"
    (copy / "fine-tuned" / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setitem(globals(), "RESULTS", copy)
    claims = json.loads((copy / "claims.json").read_text())
    assert recompute() != claims["numbers"]
