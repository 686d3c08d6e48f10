"""One formatter per file; each turns a :class:`~breachlab.vuln.scan.finding.ScanReport` into text."""

from __future__ import annotations

import importlib

from breachlab.vuln.scan.finding import ScanReport

FORMATS = ("text", "json", "sarif", "markdown", "html")


def render(report: ScanReport, fmt: str, **kwargs: object) -> str:
    """Render ``report`` as ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
    module = importlib.import_module(f"breachlab.vuln.scan.formats.{fmt}")
    return module.render(report, **kwargs)
