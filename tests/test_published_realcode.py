"""The real-code tables in docs/realcode.md, recomputed from the committed predictions.

``docs/results/realcode-*/<arm>/predictions.jsonl`` (or ``<arm>/<source>/predictions.jsonl``)
are the eval and retrieval runs behind the tables; ``benchmarks/realcode_table.py`` turns them
into ``table.md`` with the project's own metrics. The test recomputes each table and checks
that table.md and docs/realcode.md say exactly it.
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
    assert got in (ROOT / "docs" / "realcode.md").read_text()


def test_a_changed_score_changes_the_table(tmp_path: Path) -> None:
    """The check can fail: lower one vulnerable PairVul score and the row moves."""
    module = _script()
    src = next(r for r in RESULTS if (r / "zero-shot" / "predictions.jsonl").is_file())
    arm = src / "zero-shot"
    rows = [json.loads(line) for line in (arm / "predictions.jsonl").read_text().splitlines()]
    target = next(r for r in rows if r["source"] == "pairvul" and r["label"] == 1)
    target["p_vulnerable"] = 0.0
    (tmp_path / arm.name).mkdir()
    (tmp_path / arm.name / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    changed = module.table(tmp_path, n_boot=0)[arm.name]["pairvul"]
    original = module.table(src, n_boot=0)[arm.name]["pairvul"]
    assert changed["roc_auc"] != original["roc_auc"] and changed["ordered"] != original["ordered"]


def test_coin_row_and_net_are_there(tmp_path: Path) -> None:
    """Every source with pairs gets the coin's expected row, and the net is P-C − P-R of the cell."""
    module = _script()
    rows = module.table(ROOT / "docs" / "results" / "realcode-heldout", n_boot=0)
    coin = rows[module.COIN_ARM]
    assert coin and all(c["P-C"] == 0.25 and c["net"] == 0.0 for c in coin.values())
    for arm, cells in rows.items():
        for c in cells.values():
            if c["pairs"] and arm != module.COIN_ARM:
                assert c["net"] == pytest.approx(c["P-C"] - c["P-R"])


def test_a_source_in_two_runs_of_one_arm_is_refused(tmp_path: Path) -> None:
    row = {"id": "a", "label": 1, "source": "sven", "mode": "retrieval", "p_vulnerable": 0.7, "verdict": "VULNERABLE"}
    for name in ("x", "y"):
        (tmp_path / "arm" / name).mkdir(parents=True)
        (tmp_path / "arm" / name / "predictions.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match="source sven appears in"):
        _script().arm_rows(tmp_path / "arm")
