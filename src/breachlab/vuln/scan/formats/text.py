"""Human text through rich: a findings table, the skips and a one-line summary."""

from __future__ import annotations

import io

from breachlab.vuln.scan.finding import ScanReport, Severity

_STYLE = {Severity.CRITICAL: "bold red", Severity.HIGH: "red", Severity.MEDIUM: "yellow", Severity.LOW: "cyan"}


def summary_line(report: ScanReport) -> str:
    s = report.stats
    parts = [f"{len(report.findings)} finding(s)", f"{s.get('files', 0)} file(s)", f"{s.get('functions', 0)} function(s)",
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

    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, color_system="standard" if color else None,
                      highlight=False)
    if report.findings:
        table = Table(title=f"breachlab scan — model {report.settings.get('model_id')}", show_lines=False)
        for col in ("severity", "conf", "location", "function", "rule", "message"):
            table.add_column(col, overflow="fold")
        for f in report.findings:
            table.add_row(f"[{_STYLE[f.severity]}]{f.severity.name}[/]", f"{f.confidence:.2f}",
                          (f"{f.path}:{','.join(map(str, f.lines[:4]))}" if f.lines else f"{f.path}:{f.start_line}-{f.end_line}"), f.function, f.rule_id, f.message)
        console.print(table)
    else:
        console.print("no findings at or above the threshold")
    if report.skipped:
        console.print(f"\nskipped ({len(report.skipped)}):")
        for sk in report.skipped[:50]:
            console.print(f"  {sk.path}: {sk.reason}", markup=False)
        if len(report.skipped) > 50:
            console.print(f"  … and {len(report.skipped) - 50} more (see --format json)")
    for note in report.stats.get("static_notes", []):
        console.print(f"note: {note}", markup=False)
    console.print("\n" + summary_line(report), markup=False)
    return buf.getvalue()
