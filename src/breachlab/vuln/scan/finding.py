"""One findings model for every output format: ``Finding``, ``Severity`` and ``ScanReport``.

Why one model: the formatters (text, JSON, SARIF, Markdown, HTML) and the baseline all read
the same frozen records, so a field added here shows up everywhere and a golden test of
:meth:`Finding.to_dict` pins what users see.

Severity comes from the CWE *class*, not from the model's confidence: a confident guess of
a memory leak is still less urgent than a plausible out-of-bounds write.  Confidence is
the calibrated P(vulnerable) and is reported separately.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from dataclasses import dataclass
from typing import Any

from breachlab.vuln.cwe import cwe_name
from breachlab.vuln.sample import normalise_cwe


class Severity(enum.IntEnum):
    """Ordered severities; SARIF levels and exit codes compare on the integer value."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> "Severity":
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}: use low, medium, high or critical") from None

    @property
    def sarif_level(self) -> str:
        return {Severity.LOW: "note", Severity.MEDIUM: "warning"}.get(self, "error")

    @property
    def security_severity(self) -> str:
        """GitHub code scanning's numeric ``security-severity`` (0-10) for the rule."""
        return {Severity.LOW: "3.0", Severity.MEDIUM: "5.5", Severity.HIGH: "7.5", Severity.CRITICAL: "9.3"}[self]


# CWE classes -> severity.  Memory writes, use-after-free and injection let an attacker run
# code (CRITICAL); reads, integer errors and path traversal leak or corrupt data (HIGH);
# NULL dereference, resource and logic errors mostly crash or degrade (MEDIUM/LOW).
_CRITICAL = {77, 78, 94, 120, 121, 122, 123, 124, 134, 415, 416, 787, 788, 805, 806}
_HIGH = {20, 22, 23, 36, 89, 119, 125, 126, 127, 129, 131, 170, 190, 191, 193, 194, 195, 197,
         242, 290, 310, 327, 362, 367, 680, 761, 762, 763, 789, 843}
_LOW = {398, 459, 467, 468, 478, 480, 481, 482, 483, 484, 506, 510, 511, 546, 561, 562, 563,
        570, 571, 665, 676, 758}


def severity_for_cwe(cwe: str | None) -> Severity:
    """Severity of a CWE class; unknown or missing CWE → MEDIUM (the model was unsure what)."""
    norm = normalise_cwe(cwe)
    if norm is None:
        return Severity.MEDIUM
    n = int(norm.split("-")[1])
    if n in _CRITICAL:
        return Severity.CRITICAL
    if n in _HIGH:
        return Severity.HIGH
    if n in _LOW:
        return Severity.LOW
    return Severity.MEDIUM


# tools whose reports come from a data- or path-sensitive analysis, not a pattern on a call
_ANALYSERS = ("gcc", "clang-tidy", "cppcheck")


def severity_for_evidence(cwe: str | None, level: int | None, tool: str | None) -> Severity:
    """Severity of a finding from its evidence: the CWE class of the tool's report, capped by
    how strong the report is.  A pattern match (flawfinder) is at most HIGH, a tool's
    level-3 report (cppcheck warning) at most HIGH, a weaker one at most MEDIUM; a finding
    no tool reported (the model's alone) is MEDIUM whatever CWE the model suggested."""
    if tool is None or level is None:
        return Severity.MEDIUM
    sev = severity_for_cwe(cwe)
    cap = Severity.CRITICAL if tool in _ANALYSERS and level >= 4 else Severity.HIGH if level >= 3 else Severity.MEDIUM
    return min(sev, cap)


def rule_id_for(cwe: str | None) -> str:
    """Stable rule id per CWE (``BL-CWE-787``); ``BL-VULN`` when no CWE was named."""
    norm = normalise_cwe(cwe)
    return f"BL-{norm}" if norm else "BL-VULN"


def rule_name_for(cwe: str | None) -> str:
    norm = normalise_cwe(cwe)
    if not norm:
        return "Potentially vulnerable function"
    return cwe_name(norm) or norm


def fingerprint(path: str, function: str, code_digest: str) -> str:
    """Identity of a finding that survives line shifts: file, function name and code hash.

    Lines are deliberately left out so that adding code above a function does not turn an
    old alert into a new one (SARIF ``partialFingerprints``, ``--baseline``).
    """
    return hashlib.sha256(f"{path}\0{function}\0{code_digest}".encode("utf-8", "surrogateescape")).hexdigest()[:32]


@dataclass(frozen=True)
class Finding:
    """One function judged vulnerable at or above the confidence threshold.

    Attributes:
        rule_id: ``BL-CWE-<n>`` or ``BL-VULN``.
        cwe: the CWE of the evidence: the strongest tool report that names one (``CWE-787``);
            None when no tool named one (the model's guess is ``suggested_cwe``, never this).
        severity: from the evidence (:func:`severity_for_evidence`: tool level and CWE).
        confidence: P(vulnerable), after hybrid calibration when static tools ran.
        path: file path relative to the scan root (POSIX separators).
        start_line / end_line: 1-based inclusive span of the function.
        function: (qualified) function name, or the macro name for code inside a macro.
        message: what a reader sees: the model's reason, or static evidence.
        model_id: which model scored it.
        fingerprint: line-independent identity (:func:`fingerprint`).
        sources: what judged it: ``llm``, ``cppcheck``, ``flawfinder``, ``clang-tidy``.
        evidence: static-analysis hits inside the function (``tool:line:rule: text``).
        lines: the flagged lines (what a reviewer must read; SARIF regions point there).
        model_score: the model's P(vulnerable) for this function (None: no model ran).
        verdict: the model's verdict (VULNERABLE/SAFE; None: no model ran).
        suggested_cwe: the CWE the model named in its explanation (a suggestion only).
        flow: the event path of the strongest path-sensitive report, ((line, event), …)
            (GCC's analyzer; SARIF ``codeFlows``).
        precise: a check measured precise by the calibration reported it (the model may rank
            and explain such a finding, never drop it).
    """

    rule_id: str
    cwe: str | None
    severity: Severity
    confidence: float
    path: str
    start_line: int
    end_line: int
    function: str
    message: str
    model_id: str
    fingerprint: str
    sources: tuple[str, ...] = ("llm",)
    evidence: tuple[str, ...] = ()
    lines: tuple[int, ...] = ()
    model_score: float | None = None
    verdict: str | None = None
    suggested_cwe: str | None = None
    flow: tuple[tuple[int, str], ...] = ()
    precise: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")
        if self.start_line < 1 or self.end_line < self.start_line:
            raise ValueError(f"bad line span {self.start_line}-{self.end_line}")

    @property
    def cwe_name(self) -> str | None:
        return cwe_name(self.cwe) if self.cwe else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["severity"] = self.severity.name.lower()
        d["confidence"] = round(self.confidence, 4)
        d["sources"] = list(self.sources)
        d["evidence"] = list(self.evidence)
        d["lines"] = list(self.lines)
        d["cwe_name"] = self.cwe_name
        d["flow"] = [{"line": ln, "event": ev} for ln, ev in self.flow]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Finding":
        kw = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
        kw["severity"] = Severity.parse(str(d["severity"]))
        kw["sources"] = tuple(d.get("sources", ("llm",)))
        kw["evidence"] = tuple(d.get("evidence", ()))
        kw["lines"] = tuple(d.get("lines", ()))
        kw["flow"] = tuple((int(e["line"]), str(e["event"])) for e in d.get("flow", ()))
        return cls(**kw)

    def sort_key(self) -> tuple:
        return (self.path, self.start_line, self.function, self.rule_id)


@dataclass(frozen=True)
class Skipped:
    """A file or function the scan did not judge, and why (binary, too large, loop …)."""

    path: str
    reason: str
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason, **({"line": self.line} if self.line else {})}


@dataclass
class ScanReport:
    """Everything a formatter needs: findings (sorted), skips, counts and settings."""

    findings: list[Finding]
    skipped: list[Skipped]
    stats: dict[str, Any]
    settings: dict[str, Any]
    suppressed: int = 0
    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # per-function scores (benchmarks)

    def to_dict(self) -> dict[str, Any]:
        from breachlab import __version__

        return {
            "tool": {"name": "breachlab", "version": __version__},
            "settings": self.settings,
            "stats": self.stats,
            "suppressed_by_baseline": self.suppressed,
            "findings": [f.to_dict() for f in self.findings],
            "skipped": [s.to_dict() for s in self.skipped],
        }
