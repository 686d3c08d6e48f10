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
