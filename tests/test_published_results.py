"""The quickstart's published quality numbers, recomputed from the predictions kept in docs/results/.

``docs/results/quickstart/{zero-shot,fine-tuned}/`` hold the two eval runs of one default
``breachlab quickstart`` (``predictions.jsonl`` + ``manifest.json``; what it ran on is in
``docs/results/quickstart/README.md``).  This test recomputes the numbers of ``claims.json``
with the project's own metric and comparison code.  The tables of README.md and
docs/benchmarks.md are generated from the same predictions (``tests/test_docs_tables.py``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "quickstart"
ARMS = ("zero-shot", "fine-tuned")
SCOPES = ("all", "juliet", "sven", "pairvul")


def _tables():
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "scripts" / "docs_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recompute(results: Path = RESULTS) -> dict[str, str]:
    """Every number of ``claims.json``, as it is printed (three decimals), from the predictions
    (through the generator of the published tables, so both read the runs one way)."""
    q = _tables().quickstart_numbers(results)
    out: dict[str, str] = {}
    for arm in ARMS:
        for scope in SCOPES:
            cell = q["scopes"][scope][arm]
            out[f"{arm}.{scope}.roc_auc"] = f"{cell['roc_auc']:.3f}"
            out[f"{arm}.{scope}.mcc"] = f"{cell['mcc']:.3f}"
        parsed, total = q["parsed"][arm]
        out[f"{arm}.generate.parsed"] = f"{parsed} of {total}"
    out["n"] = str(q["scopes"]["all"]["fine-tuned"]["n"])
    for scope in SCOPES:
        significant = q["scopes"][scope]["delta"]["roc_auc"]["excludes_zero"]
        out[f"delta.{scope}.roc_auc.significant"] = "significant" if significant else "not significant"
    return out


@pytest.mark.skipif(not (RESULTS / "claims.json").is_file(), reason="no published quickstart results")
def test_claims_json_matches_the_predictions() -> None:
    claims = json.loads((RESULTS / "claims.json").read_text())
    assert recompute() == claims["numbers"]


def test_a_changed_prediction_changes_the_numbers(tmp_path: Path) -> None:
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
    claims = json.loads((copy / "claims.json").read_text())
    assert recompute(copy) != claims["numbers"]
