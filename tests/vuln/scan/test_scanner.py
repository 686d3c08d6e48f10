"""Golden tests: the fixture project → exact findings with the deterministic fake scorer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from breachlab.vuln.scan.cache import ScoreCache
from breachlab.vuln.scan.finding import Finding, Severity
from breachlab.vuln.scan.formats import render
from breachlab.vuln.scan.scanner import ScanConfig, apply_baseline, scan
from breachlab.vuln.scan.scorers import parse_explanation

GOLDEN = [
    # path, function, start, end, rule, severity, confidence: no tool ran, so no CWE of the
    # evidence (the model's CWE is only a suggestion) and the severity of an unproven finding
    ("cpp/parser.cpp", "net::Parser::read", 9, 12, "BL-VULN", "medium", 0.9),
    ("include/util.h", "log_message", 5, 10, "BL-VULN", "medium", 0.9),
    ("src/copy.c", "copy_name", 5, 10, "BL-VULN", "medium", 0.9),
    ("src/copy.c", "read_line", 25, 29, "BL-VULN", "medium", 0.9),
    ("src/copy.c", "DEFINE_COPY", 39, 42, "BL-VULN", "medium", 0.9),
]
SUGGESTED = ["CWE-787", "CWE-787", "CWE-120", "CWE-242", "CWE-787"]


def llm_only(project: Path, **kw) -> ScanConfig:
    """The model judges every function, no static tool: the pipeline without the tools' variability.

    One function per view (``whole_file_chars=0``): the fake model judges by the calls it sees."""
    return ScanConfig(paths=[str(project)], tools=[], deep=True, **{"whole_file_chars": 0, **kw})


def summary(findings: list[Finding]) -> list[tuple]:
    return [(f.path, f.function, f.start_line, f.end_line, f.rule_id, f.severity.name.lower(), f.confidence)
            for f in findings]


def test_golden_findings(project: Path, fake) -> None:
    report = scan(llm_only(project), fake)
    assert summary(report.findings) == GOLDEN
    assert report.stats["files"] == 3 and report.stats["functions"] == 11
    assert report.stats["lines"] == 86
    copy = report.findings[2]
    assert copy.message == "strcpy copies an unbounded string into a fixed buffer."
    assert copy.model_id == "fake-model" and copy.sources == ("llm",)
    assert [f.suggested_cwe for f in report.findings] == SUGGESTED and all(f.cwe is None for f in report.findings)
    assert len(fake.explained) == 5  # only functions above the threshold are explained


def test_jobs_do_not_change_results(project: Path, fake) -> None:
    one = scan(llm_only(project, jobs=1, chunk_files=1), fake).findings
    many = scan(llm_only(project, jobs=4, chunk_files=2), fake).findings
    assert one == many


def test_min_confidence(project: Path, fake) -> None:
    assert scan(llm_only(project, min_confidence=0.95), fake).findings == []
    low = scan(llm_only(project, min_confidence=0.05, explain=False), fake)
    assert len(low.findings) == 11
    assert low.findings[0].message.startswith("model P(vulnerable)=")


def test_cache_rescans_only_changed_functions(project: Path, fake, tmp_path: Path) -> None:
    cache = ScoreCache(tmp_path / "c.sqlite")
    cfg = llm_only(project)
    first = scan(cfg, fake, cache=cache)
    assert first.stats["scored"] == 11 and first.stats["cached"] == 0
    second = scan(cfg, fake, cache=cache)
    assert second.stats["scored"] == 0 and second.stats["cached"] == 11
    assert second.findings == first.findings
    f = project / "src" / "copy.c"
    f.write_text(f.read_text().replace("return a + b;\n}\n\nint legacy", "return b + a;\n}\n\nint legacy"))
    third = scan(cfg, fake, cache=cache)
    assert third.stats["scored"] == 1 and third.stats["cached"] == 10
    # another model id never reuses the cache
    fake.model_id = "other-model"
    assert scan(cfg, fake, cache=cache).stats["scored"] == 11


def test_fingerprints_survive_line_shifts_and_baseline_suppresses(project: Path, fake, tmp_path: Path) -> None:
    before = scan(llm_only(project), fake)
    base = tmp_path / "baseline.json"
    base.write_text(render(before, "json"))
    f = project / "src" / "copy.c"
    f.write_text("/* new header line */\n\n" + f.read_text() + "\nvoid fresh(char *d) { gets(d); }\n")
    after = scan(llm_only(project), fake)
    assert {x.fingerprint for x in before.findings} <= {x.fingerprint for x in after.findings}
    kept = apply_baseline(after, base)
    assert [(x.function, x.start_line) for x in kept.findings] == [("fresh", 48)]
    assert kept.suppressed == 5


def test_json_round_trip(project: Path, fake) -> None:
    report = scan(llm_only(project), fake)
    data = json.loads(render(report, "json"))
    assert [Finding.from_dict(d) for d in data["findings"]] == report.findings
    assert data["findings"][2]["severity"] == "medium" and data["findings"][2]["suggested_cwe"] == "CWE-120"


def test_severity_order_and_bad_config() -> None:
    assert Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL
    with pytest.raises(ValueError):
        ScanConfig(paths=["."], min_confidence=1.5)
    with pytest.raises(ValueError):
        ScanConfig(paths=["."], tools=["semgrep"])


def test_hostile_tree_never_crashes(tmp_path: Path, fake) -> None:
    (tmp_path / "bin.c").write_bytes(b"\0\0\0")
    (tmp_path / "bad.c").write_bytes(b"void f(void) { char c = '\xff'; }\n")
    (tmp_path / "huge.c").write_text("void h(void) {\n" + "  strcpy(a, b);\n" * 2000 + "}\n")
    (tmp_path / "ok.c").write_text("void g(char *d) { strcpy(d, \"x\"); }\n")
    (tmp_path / "loop.c").symlink_to("loop.c")
    report = scan(llm_only(tmp_path, max_function_lines=1500), fake)
    assert [f.function for f in report.findings] == ["g"]
    reasons = sorted(s.reason.split(" (")[0] for s in report.skipped)
    assert reasons == ["binary file", "function h too long", "not UTF-8", "symlink loop"]


def test_explanation_parsing_distrusts_echo() -> None:
    e = parse_explanation("VULNERABLE — CWE-787: the memcpy length comes from the packet.")
    assert (e.verdict, e.cwe, e.echo) == ("VULNERABLE", "CWE-787", False)
    assert e.reason == "CWE-787: the memcpy length comes from the packet."
    echo = parse_explanation("Is this C function VULNERABLE or SAFE? Explain your reasoning. CWE-79")
    assert echo.echo and echo.cwe is None and echo.reason == ""


def test_whole_file_view_rescores_the_functions_of_a_changed_small_file(project: Path, fake, tmp_path: Path) -> None:
    """The price of whole-file context: the view of every function holds the whole file."""
    cache = ScoreCache(tmp_path / "c.sqlite")
    cfg = ScanConfig(paths=[str(project / "src" / "copy.c")], tools=[], deep=True, explain=False)
    assert scan(cfg, fake, cache=cache).stats["scored"] == 6
    assert scan(cfg, fake, cache=cache).stats["cached"] == 6
    f = project / "src" / "copy.c"
    f.write_text(f.read_text().replace("return a + b;", "return b + a;"))
    assert scan(cfg, fake, cache=cache).stats["scored"] == 6
