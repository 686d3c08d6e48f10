"""``brain doctor``: the count in its verdict is the number of pieces it marks MISSING."""

from __future__ import annotations

import re

from breachlab.brain.doctor import Check, report, run_checks


def _verdict_count(text: str) -> int:
    m = re.search(r"(\d+) required piece\(s\) MISSING", text)
    return int(m.group(1)) if m else 0


def test_count_matches_the_missing_lines_on_this_machine():
    text, code = report(run_checks("facebook/tribev2", "."))
    marked = [line for line in text.splitlines() if line.startswith("MISSING")]
    assert _verdict_count(text) == len(marked)
    assert code == (1 if marked else 0)


def test_optional_absent_pieces_are_not_counted_as_missing():
    checks = [Check("tribev2", "missing", "not installed", "pip install tribev2"),
              Check("weights", "missing", "not cached", "download", required=False),
              Check("gtts", "warn", "not installed", "pip install gtts", required=False)]
    text, code = report(checks)
    assert code == 1 and _verdict_count(text) == 1
    assert sum(line.startswith("MISSING") for line in text.splitlines()) == 1
    assert "absent  weights" in text and "1 optional piece(s) absent" in text


def test_doctor_compares_the_installed_tribev2_with_the_contract_tested_commit(monkeypatch, tmp_path):
    import hashlib
    import sys
    from pathlib import Path

    from breachlab.brain import doctor

    fake = Path(__file__).parent / "fake_tribev2"
    monkeypatch.syspath_prepend(str(fake))
    src = doctor.upstream_source()
    assert src.status == "warn" and "differs from commit 7239908" in src.detail and "@7239908" in src.fix
    assert "tribev2/demo_utils.py" in src.detail and "tribev2/model.py (absent)" in src.detail
    same = {rel: hashlib.sha256((fake / rel).read_bytes()).hexdigest()
            for rel in ("tribev2/demo_utils.py", "tribev2/main.py")}
    monkeypatch.setattr(doctor, "UPSTREAM_FILES", same)
    assert doctor.upstream_source().status == "ok"
    assert any(c.name == "tribev2 source" for c in doctor._packages())
    for name in list(sys.modules):
        if name.split(".")[0] in ("tribev2", "neuralset"):
            del sys.modules[name]
