"""Human text through rich: a findings table, the skips and a one-line summary.

Names and messages come from the scanned tree and the model: they are shown as plain text
(never rich markup) through :func:`breachlab.safetext.printable`, so a ``[bold]`` or an escape
sequence in a file name is printed, not obeyed.
"""

from __future__ import annotations

import io

from breachlab.safetext import printable
from breachlab.vuln.scan.finding import ScanReport, Severity

_STYLE = {Severity.CRITICAL: "bold red", Severity.HIGH: "red", Severity.MEDIUM: "yellow", Severity.LOW: "cyan"}


def model_label(report: ScanReport) -> str:
    """The model a report's decisions used, or that none did (the static tools decided alone)."""
    model = report.settings.get("model_id")
    return str(model) if model else "none (static tools only)"


def summary_line(report: ScanReport) -> str:
    s = report.stats
    parts = [f"{len(report.findings)} finding(s)", f"{s.get('files', 0)} file(s)",
             f"{s.get('functions', 0)} function(s)",
             f"{s.get('lines', 0)} line(s)", f"{len(report.skipped)} skipped",
             f"{s.get('candidates', 0)} flagged by tools", f"{s.get('scored', 0)} scored by the model",
             f"{s.get('cached', 0)} scores and {s.get('static_cached', 0)} tool runs from the cache",
             f"{s.get('seconds', 0):.1f}s"]
    if s.get("unchanged"):
        parts.append(f"{s['unchanged']} function(s) outside the diff")
    if s.get("lines_cut"):
        parts.append(f"{s['lines_cut']} over-long line(s) cut for the model")
    if report.suppressed:
        parts.append(f"{report.suppressed} suppressed by baseline")
    return ", ".join(parts)


def render(report: ScanReport, width: int = 120, color: bool = False) -> str:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, color_system="standard" if color else None,
                      highlight=False)
    if report.findings:
        table = Table(title=Text(f"breachlab scan — model {printable(model_label(report))}"),
                      show_lines=False)
        for col in ("severity", "conf", "location", "function", "rule", "message"):
            table.add_column(col, overflow="fold")
        for f in report.findings:
            where = ",".join(map(str, f.lines[:4])) if f.lines else f"{f.start_line}-{f.end_line}"
            table.add_row(Text(f.severity.name, style=_STYLE[f.severity]), f"{f.confidence:.2f}",
                          Text(f"{printable(f.path)}:{where}"), Text(printable(f.function)),
                          Text(printable(f.rule_id)), Text(printable(f.message)))
        console.print(table)
    else:
        console.print("no findings at or above the threshold")
    if report.skipped:
        console.print(f"\nskipped ({len(report.skipped)}):")
        for sk in report.skipped[:50]:
            console.print(f"  {printable(sk.path)}: {printable(sk.reason)}", markup=False, highlight=False)
        if len(report.skipped) > 50:
            console.print(f"  … and {len(report.skipped) - 50} more (see --format json)")
    for note in report.stats.get("static_notes", []):
        console.print(f"note: {printable(note)}", markup=False, highlight=False)
    console.print("\n" + summary_line(report), markup=False)
    return buf.getvalue()
