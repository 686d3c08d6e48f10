"""JSON: the full report (settings, stats, findings, skips) — also the ``--baseline`` input.

A file name that is not UTF-8 keeps its bytes as ``\\udcXX`` escapes: valid JSON that
``json.loads`` turns back into the same Python path (so ``--baseline`` still matches it).
"""

from __future__ import annotations

from breachlab.safetext import json_text
from breachlab.vuln.scan.finding import ScanReport


def render(report: ScanReport) -> str:
    return json_text(report.to_dict(), indent=2, default=str) + "\n"
