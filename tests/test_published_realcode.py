"""The real-code table in docs/benchmarks.md, recomputed from the committed predictions.

``docs/results/realcode-*/<arm>/predictions.jsonl`` are the eval runs behind the table;
``benchmarks/realcode_table.py`` turns them into ``table.md`` with the project's own metrics.
The test recomputes the table and checks that table.md and docs/benchmarks.md say exactly it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "docs" / "results").glob("realcode-*"))


def _script():
    spec = importlib.util.spec_from_file_location("realcode_table", ROOT / "benchmarks" / "realcode_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("results", RESULTS, ids=[p.name for p in RESULTS])
def test_table_is_recomputed_from_the_predictions(results: Path) -> None:
    got = _script().markdown(_script().table(results))
    assert got == (results / "table.md").read_text().strip()
    assert got in (ROOT / "docs" / "benchmarks.md").read_text()


def test_a_changed_score_changes_the_table(tmp_path: Path) -> None:
    """The check can fail: lower one vulnerable PairVul score and the row moves."""
    src = RESULTS[0]
    arm = next(p for p in sorted(src.iterdir()) if (p / "predictions.jsonl").is_file())
    rows = [json.loads(line) for line in (arm / "predictions.jsonl").read_text().splitlines()]
    target = next(r for r in rows if r["source"] == "pairvul" and r["label"] == 1)
    target["p_vulnerable"] = 0.0
    (tmp_path / arm.name).mkdir()
    (tmp_path / arm.name / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    module = _script()
    changed = module.table(tmp_path, n_boot=0)[arm.name]["pairvul"]
    original = module.table(src, n_boot=0)[arm.name]["pairvul"]
    assert changed["roc_auc"] != original["roc_auc"] and changed["ordered"] != original["ordered"]
