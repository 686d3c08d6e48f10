"""Markdown: a table per report, for pull-request comments and wikis."""

from __future__ import annotations

from breachlab.vuln.scan.finding import ScanReport
from breachlab.vuln.scan.formats.text import summary_line


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(report: ScanReport) -> str:
    out = ["# breachlab scan", "", f"Model: `{report.settings.get('model_id')}` · threshold "
           f"{report.settings.get('min_confidence')} · {summary_line(report)}", ""]
    if report.findings:
        out += ["| severity | confidence | location | function | rule | message |", "|---|---:|---|---|---|---|"]
        for f in report.findings:
            out.append(f"| {f.severity.name} | {f.confidence:.2f} | `{_cell(f.path)}:{f.start_line}-{f.end_line}` | "
                       f"`{_cell(f.function)}` | {f.rule_id} | {_cell(f.message)} |")
    else:
        out.append("No findings at or above the threshold.")
    if report.skipped:
        out += ["", f"## Skipped ({len(report.skipped)})", ""]
        out += [f"- `{_cell(s.path)}`: {_cell(s.reason)}" for s in report.skipped]
    return "\n".join(out) + "\n"
