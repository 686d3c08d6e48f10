"""The benchmark-style score of benchmarks/scan_score.py on a hand-made fixture."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _mod():
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "scan_score.py"
    spec = importlib.util.spec_from_file_location("scan_score", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _hit(tool: str, line: int, cwe: str | None = None) -> dict:
    return {"tool": tool, "rule": "r", "line": line, "level": 4, "cwe": cwe}


def test_plus_five_plus_two_minus_one_by_hand() -> None:
    m = _mod()
    labels = {"files": [
        {"path": "v1.c", "file_label": 1, "cwe": "CWE416", "source": "s", "functions": [{"flaw_lines": [10]}]},
        {"path": "v2.c", "file_label": 1, "cwe": "CWE476", "source": "s", "functions": [{"flaw_lines": [50]}]},
        {"path": "v3.c", "file_label": 1, "cwe": "CWE121", "source": "s", "functions": [{"flaw_lines": [5]}]},
        {"path": "s1.c", "file_label": 0, "cwe": "CWE416", "source": "s", "functions": []},
        {"path": "s2.c", "file_label": 0, "cwe": "CWE416", "source": "s", "functions": []},
    ]}
    records = [
        {"path": "v1.c", "hits": [_hit("gcc", 12, "CWE-401")]},   # on a flaw line (±2): +5
        {"path": "v1.c", "hits": [_hit("gcc", 40, "CWE-401")]},   # another finding, unmatched: −1
        {"path": "v2.c", "hits": [_hit("gcc", 20, "CWE-690")]},   # right CWE family (null), off the line: +5
        {"path": "v3.c", "hits": []},                             # missed: 0
        {"path": "s1.c", "hits": [_hit("gcc", 3, "CWE-416")]},    # a finding in a safe file: −1
        {"path": "s2.c", "hits": []},                             # clean safe file: +2
    ]
    r = m.score_files(labels, records, m._union)
    assert r["score"] == 5 - 1 + 5 + 0 - 1 + 2 and r["perfect"] == 3 * 5 + 2 * 2
    assert (r["tp"], r["fp"], r["flaw_line_files"], r["findings"]) == (2, 1, 1, 4)
