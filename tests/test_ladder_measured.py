"""The quality numbers `breachlab models list` shows come from committed predictions.

Every :class:`breachlab.ladder.Measured` whose source is a ``docs/results/`` arm folder is
recomputed here from that folder's ``predictions.jsonl`` with the project's own metrics.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from breachlab.ladder import LADDER

ROOT = Path(__file__).resolve().parents[1]
BACKED = [(m.name, x) for m in LADDER for x in m.measured if x.source.startswith("docs/results/")]


def _realcode():
    spec = importlib.util.spec_from_file_location("realcode_table", ROOT / "benchmarks" / "realcode_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("model", "measured"), BACKED, ids=[f"{n}:{x.what}" for n, x in BACKED])
def test_measured_roc_auc_recomputes_from_its_predictions(model: str, measured) -> None:
    assert "ROC-AUC" in measured.what, "only ROC-AUC numbers are recomputed here: extend the test"
    source = next(s for s in ("pairvul", "sven", "juliet") if s in measured.what.lower())
    script = _realcode()
    rows = script.arm_rows(ROOT / measured.source)[source]
    assert round(script.cell(rows, n_boot=0)["roc_auc"], 3) == measured.value


def test_some_ladder_numbers_are_backed() -> None:
    assert BACKED, "no ladder number names its committed predictions"
