"""SARIF 2.1.0 for GitHub code scanning and other SARIF viewers.

What GitHub needs beyond schema validity: one rule per ``ruleId`` (de-duplicated, with
``security-severity`` and CWE tags so alerts get a severity), a ``level`` per result, paths
relative to the checkout (``%SRCROOT%``) and ``partialFingerprints`` that do not change when
code above a function moves — our fingerprint is file + function + code hash, not lines.
Skipped files become tool execution notifications, so they are visible in the run.
"""

from __future__ import annotations

import os
from urllib.parse import quote as _quote

from breachlab.safetext import json_text, printable
from breachlab.vuln.scan.finding import Finding, ScanReport, Severity, rule_name_for

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
FINGERPRINT_KEY = "breachlabFunctionHash/v1"


def quote(path: str) -> str:
    """A file name as a relative URI: its own bytes percent-encoded (a name that is not UTF-8 stays exact)."""
    return _quote(os.fsencode(path))


def _rules(report: ScanReport) -> tuple[list[dict], dict[str, int]]:
    rules: list[dict] = []
    index: dict[str, int] = {}
    for f in report.findings:
        if f.rule_id in index:
            # keep the rule at the highest severity any of its results has
            rule = rules[index[f.rule_id]]
            if Severity[rule["properties"]["severity"]] < f.severity:
                rule["properties"]["severity"] = f.severity.name
                rule["properties"]["security-severity"] = f.severity.security_severity
                rule["defaultConfiguration"]["level"] = f.severity.sarif_level
            continue
        name = rule_name_for(f.cwe)
        rule = {
            "id": f.rule_id,
            "name": "".join(w.capitalize() for w in name.replace("-", " ").split() if w.isalnum()) or "Vulnerability",
            "shortDescription": {"text": f"{f.cwe}: {name}" if f.cwe else name},
            "fullDescription": {"text": "A local language model judged this function likely vulnerable"
                                        + (f" to {f.cwe} ({name})." if f.cwe else ".")},
            "defaultConfiguration": {"level": f.severity.sarif_level},
            "properties": {"tags": ["security"] + ([f"external/cwe/{f.cwe.lower()}"] if f.cwe else []),
                           "precision": "medium", "severity": f.severity.name,
                           "security-severity": f.severity.security_severity},
        }
        if f.cwe:
            rule["helpUri"] = f"https://cwe.mitre.org/data/definitions/{f.cwe.split('-')[1]}.html"
        index[f.rule_id] = len(rules)
        rules.append(rule)
    for r in rules:
        r["properties"].pop("severity")
    return rules, index


def _code_flow(f: Finding) -> dict:
    """The analyzer's event path (GCC ``-fanalyzer``) as one SARIF thread flow."""
    return {"threadFlows": [{"locations": [
        {"location": {"physicalLocation": {"artifactLocation": {"uri": quote(f.path), "uriBaseId": "%SRCROOT%"},
                                           "region": {"startLine": ln}},
                      "message": {"text": ev or "event"}}}
        for ln, ev in f.flow]}]}


def to_sarif(report: ScanReport) -> dict:
    from breachlab import __version__

    rules, index = _rules(report)
    results = []
    for f in report.findings:
        results.append({
            "ruleId": f.rule_id,
            "ruleIndex": index[f.rule_id],
            "level": f.severity.sarif_level,
            "message": {"text": printable(f"{f.function}: {f.message}")},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": quote(f.path), "uriBaseId": "%SRCROOT%"},
                    # the flagged line a reviewer must read; the whole function when no tool flagged one
                    "region": ({"startLine": f.lines[0], "endLine": f.lines[0]} if f.lines
                               else {"startLine": f.start_line, "endLine": f.end_line}),
                },
                "logicalLocations": [{"name": printable(f.function), "kind": "function"}],
            }],
            **({"relatedLocations": [
                {"id": i + 1, "message": {"text": "also flagged"},
                 "physicalLocation": {"artifactLocation": {"uri": quote(f.path), "uriBaseId": "%SRCROOT%"},
                                      "region": {"startLine": ln, "endLine": ln}}}
                for i, ln in enumerate(f.lines[1:10])]} if len(f.lines) > 1 else {}),
            **({"codeFlows": [_code_flow(f)]} if f.flow else {}),
            "partialFingerprints": {FINGERPRINT_KEY: f.fingerprint},
            "properties": {"confidence": round(f.confidence, 4), "model": f.model_id, "sources": list(f.sources),
                           "functionLines": [f.start_line, f.end_line],
                           **({"modelScore": f.model_score, "verdict": f.verdict} if f.model_score is not None else {}),
                           **({"evidence": list(f.evidence)} if f.evidence else {}),
                           **({"suggestedCwe": f.suggested_cwe} if f.suggested_cwe else {}),
                           "precise": f.precise},
        })
    notifications = [{"level": "note", "message": {"text": printable(f"skipped {s.path}: {s.reason}")},
                      "locations": [{"physicalLocation": {"artifactLocation": {"uri": quote(s.path),
                                                                               "uriBaseId": "%SRCROOT%"}}}]}
                     for s in report.skipped]
    invocation = {"executionSuccessful": True, "toolExecutionNotifications": notifications}
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "breachlab", "version": __version__, "semanticVersion": __version__,
                                "informationUri": "https://pypi.org/project/breachlab/", "rules": rules}},
            "automationDetails": {"id": "breachlab/vuln-scan/"},
            "invocations": [invocation],
            "results": results,
            "properties": {"model": report.settings.get("model_id"),
                           "minConfidence": report.settings.get("min_confidence"),
                           "suppressedByBaseline": report.suppressed},
        }],
    }


def render(report: ScanReport) -> str:
    return json_text(to_sarif(report), indent=2) + "\n"
