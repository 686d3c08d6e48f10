"""HTML: one self-contained page (no scripts, no external assets) — safe to archive from CI."""

from __future__ import annotations

from html import escape as _html_escape

from breachlab.safetext import printable
from breachlab.vuln.scan.finding import ScanReport
from breachlab.vuln.scan.formats.text import model_label, summary_line

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}
.CRITICAL{color:#fff;background:#b00020}.HIGH{color:#b00020}.MEDIUM{color:#a66b00}.LOW{color:#2a6f97}
code{font-size:90%}td code{word-break:break-all}td:last-child{min-width:24em}"""


def escape(text: object) -> str:
    """HTML-escaped (quotes too) after :func:`~breachlab.safetext.printable`: names and messages are untrusted."""
    return _html_escape(printable(text), quote=True)


def render(report: ScanReport) -> str:
    rows = "".join(
        f"<tr><td class=\"{f.severity.name}\">{f.severity.name}</td><td>{f.confidence:.2f}</td>"
        f"<td><code>{escape(f.path)}:{f.start_line}-{f.end_line}</code></td><td><code>{escape(f.function)}</code></td>"
        f"<td>{escape(f.rule_id)}</td><td>{escape(f.message)}</td></tr>\n" for f in report.findings)
    skipped = "".join(f"<li><code>{escape(s.path)}</code>: {escape(s.reason)}</li>\n" for s in report.skipped)
    body = (f"<table><thead><tr><th>severity</th><th>confidence</th><th>location</th><th>function</th><th>rule</th>"
            f"<th>message</th></tr></thead><tbody>\n{rows}</tbody></table>" if report.findings
            else "<p>No findings at or above the threshold.</p>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>breachlab scan</title>"
            f"<style>{_CSS}</style></head><body>\n<h1>breachlab scan</h1>\n"
            f"<p>Model <code>{escape(model_label(report))}</code> · threshold "
            f"{escape(str(report.settings.get('min_confidence')))} · {escape(summary_line(report))}</p>\n{body}\n"
            + (f"<h2>Skipped ({len(report.skipped)})</h2><ul>\n{skipped}</ul>\n" if skipped else "")
            + "</body></html>\n")
