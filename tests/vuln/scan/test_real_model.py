"""One real scan: the embedded Gemma 3 270M through llama.cpp on a fixture file."""

from __future__ import annotations

from pathlib import Path

import pytest

from breachlab.vuln.scan.scanner import BackendScorer, ScanConfig, scan

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "scan" / "project" / "src" / "copy.c"


@pytest.mark.slow
def test_real_llama_cpp_scan(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from breachlab.vuln.backends import load_backend

    scorer = BackendScorer(load_backend("embedded", backend="llama.cpp", n_ctx=2048))
    report = scan(ScanConfig(paths=[str(FIXTURE)], tools=[], deep=True, min_confidence=0.0, explain_tokens=32,
                             keep_records=True), scorer)
    assert report.stats["functions"] == 6 and report.stats["scored"] == 6
    assert all(0.0 <= r["p_llm"] <= 1.0 for r in report.records)
    assert len(report.findings) == 6 and report.stats["explained"] == 6
    for f in report.findings:
        assert f.model_id.startswith("gemma-3-270m") and f.message  # a reason, or an honest "echoed" note
