"""JSON: the full report (settings, stats, findings, skips) — also the ``--baseline`` input."""

from __future__ import annotations

import json

from breachlab.vuln.scan.finding import ScanReport


def render(report: ScanReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
