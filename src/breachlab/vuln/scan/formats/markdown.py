"""Markdown: a table per report, for pull-request comments and wikis.

File names, function names and messages come from the scanned tree and the model, so none
of them can add markup: names sit in code spans whose backtick fence is longer than any
backtick run inside them (a code span shows HTML as text), and messages have HTML and
inline Markdown punctuation escaped (``@`` too: no mention pings a team).  Every value passes
:func:`breachlab.safetext.printable` first (undecodable bytes, control characters).
"""

from __future__ import annotations

import re

from breachlab.safetext import printable
from breachlab.vuln.scan.finding import ScanReport
from breachlab.vuln.scan.formats.text import model_label, summary_line

_PUNCT = re.compile(r"([\\`*_\[\]|~])")  # what can open emphasis, code, links or cells inline


def _flat(text: object) -> str:
    return printable(str(text).replace("\r", " ").replace("\n", " "))


def code(text: object) -> str:
    """``text`` as an inline code span that nothing inside can close; ``|`` escaped for tables."""
    body = _flat(text).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or not body.strip() else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _cell(text: object) -> str:
    """Plain text for a table cell: HTML and inline Markdown punctuation escaped."""
    body = _PUNCT.sub(r"\\\1", _flat(text))
    return body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("@", "&#64;")


def render(report: ScanReport) -> str:
    out = ["# breachlab scan", "", f"Model: {code(model_label(report))} · threshold "
           f"{_cell(report.settings.get('min_confidence'))} · {_cell(summary_line(report))}", ""]
    if report.findings:
        out += ["| severity | confidence | location | function | rule | message |", "|---|---:|---|---|---|---|"]
        for f in report.findings:
            out.append(f"| {f.severity.name} | {f.confidence:.2f} | {code(f'{f.path}:{f.start_line}-{f.end_line}')} | "
                       f"{code(f.function)} | {_cell(f.rule_id)} | {_cell(f.message)} |")
    else:
        out.append("No findings at or above the threshold.")
    if report.skipped:
        out += ["", f"## Skipped ({len(report.skipped)})", ""]
        out += [f"- {code(s.path)}: {_cell(s.reason)}" for s in report.skipped]
    return "\n".join(out) + "\n"
