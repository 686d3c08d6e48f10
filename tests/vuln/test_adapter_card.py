"""The shipped adapter's model card says what its card.json says (every number, every CI)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ADAPTERS = Path(__file__).resolve().parents[2] / "src" / "breachlab" / "data" / "adapters"
CARDS = sorted(p for p in ADAPTERS.glob("*") if (p / "card.json").is_file())
METRICS = {"ROC-AUC": ["roc_auc"], "MCC": ["mcc"], "balanced accuracy": ["balanced_accuracy"],
           "recall / specificity": ["recall", "specificity"]}


def _f(x: float) -> str:
    return f"{x:.3f}"


@pytest.mark.parametrize("folder", CARDS, ids=[p.name for p in CARDS])
def test_card_table_values_come_from_card_json(folder: Path) -> None:
    card = json.loads((folder / "card.json").read_text())
    text = (folder / "README.md").read_text()
    rows = re.findall(r"^\| (\w+) \| ([^|]+?) \| ([^|]+?) \| ([^|]+?) \|", text, flags=re.M)
    checked = 0
    for source, metric, zero, tuned in rows:
        if metric not in METRICS:
            continue
        held = card["heldout"][source.lower()]
        keys = METRICS[metric]
        assert zero == " / ".join(_f(held["zero_shot"][k]["value"]) for k in keys), (source, metric)
        assert tuned == " / ".join(_f(held["fine_tuned"][k]["value"]) for k in keys), (source, metric)
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("folder", CARDS, ids=[p.name for p in CARDS])
def test_card_prose_cis_come_from_card_json(folder: Path) -> None:
    card = json.loads((folder / "card.json").read_text())
    text = " ".join((folder / "README.md").read_text().split())
    claims = re.findall(r"(ROC-AUC|MCC) goes from ([\d.]+) to \*\*([\d.]+)\*\* \[([\d.]+), ([\d.]+)\]", text)
    assert claims, "the card states the adapter's held-out values with CIs"
    tuned = card["heldout"]["juliet"]["fine_tuned"]
    zero = card["heldout"]["juliet"]["zero_shot"]
    for metric, before, value, lo, hi in claims:
        key = METRICS[metric][0]
        assert before == _f(zero[key]["value"]) and value == _f(tuned[key]["value"])
        assert [lo, hi] == [_f(c) for c in tuned[key]["ci"]], metric
