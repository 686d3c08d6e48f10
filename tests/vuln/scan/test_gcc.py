"""GCC's analyzer as a scan tool: the JSON parser on a captured diagnostic, and a real run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from breachlab.vuln.scan import gccanalyzer, statictools
from breachlab.vuln.scan.hybrid import StaticHit

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "scan"


def test_parser_reads_the_captured_diagnostics_cwe_rule_line_and_event_path() -> None:
    text = (FIX / "gcc_uaf.json").read_text("utf-8") + "\ncompilation terminated.\n"
    hits, error, missing = gccanalyzer.parse_json(text)
    assert not error and not missing
    (f1, uaf), (f2, dbl) = hits
    assert f1 == f2 == "gcc_uaf.c"
    assert (uaf.tool, uaf.line, uaf.rule, uaf.cwe) == ("gcc", 11, "analyzer-use-after-free", "CWE-416")
    assert (dbl.line, dbl.rule, dbl.cwe) == (19, "analyzer-double-free", "CWE-415")
    assert uaf.flow[0] == (6, "allocated here") and (9, "freed here") in uaf.flow
    assert uaf.flow[-1][0] == 11 and "use after" in uaf.flow[-1][1]
    assert [ln for ln, _ in dbl.flow] == [17, 18, 19]


def test_parser_reports_a_missing_header_and_ignores_garbage() -> None:
    text = ('[{"kind": "fatal error", "locations": [], "message": "foo/bar.h: No such file or directory"}]\n'
            "compilation terminated.\n")
    hits, error, missing = gccanalyzer.parse_json(text)
    assert hits == [] and error and missing == ["foo/bar.h"]
    assert gccanalyzer.parse_json("not json at all") == ([], False, [])
    assert gccanalyzer.parse_json("") == ([], False, [])


def test_a_cached_hit_comes_back_with_its_flow_as_tuples() -> None:
    h = StaticHit("gcc", 3, "analyzer-double-free", "CWE-415", 4, "m", [[1, "a"], [3, "b"]])  # as JSON gives it
    assert h.flow == ((1, "a"), (3, "b")) and h.check == "gcc:analyzer-double-free"


def test_gcc_is_a_default_tool() -> None:
    assert "gcc" in statictools.DEFAULT_TOOLS


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc here")
def test_real_gcc_run_finds_the_double_free_and_stubs_a_missing_header(tmp_path: Path) -> None:
    src = tmp_path / "a.c"
    src.write_text('#include <stdlib.h>\n#include "nothere.h"\nvoid f(void){int *q = malloc(4);\n'
                   "free(q);\nfree(q);}\n")
    hits, notes = gccanalyzer.run_file(src)
    assert any(h.cwe == "CWE-415" and h.line == 5 for h in hits), (hits, notes)
    assert not list(tmp_path.glob("*.o"))  # analysis only: no object file


def test_missing_gcc_is_a_one_line_note(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gccanalyzer, "available", lambda tool: None)
    hits, notes = gccanalyzer.run_file(tmp_path / "x.c")
    assert hits == [] and len(notes) == 1 and "gcc not installed" in notes[0]


def test_the_event_path_reaches_the_finding_and_sarif_code_flows(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from breachlab.vuln.scan.formats import render
    from breachlab.vuln.scan.scanner import ScanConfig, scan

    text = (FIX / "gcc_uaf.json").read_text("utf-8")
    (tmp_path / "gcc_uaf.c").write_text((FIX / "gcc_uaf.c").read_text())
    hits = [h for _, h in gccanalyzer.parse_json(text)[0]]
    monkeypatch.setattr(statictools, "run", lambda tools, files, **kw: ({p: hits for p, _ in files}, [], 0))
    report = scan(ScanConfig(paths=[str(tmp_path)], tools=["gcc"]), None)
    uaf = next(f for f in report.findings if f.function == "use_after_free")
    assert uaf.cwe == "CWE-416" and uaf.flow[0] == (6, "allocated here") and uaf.severity.name == "CRITICAL"
    assert uaf.message.startswith("gcc analyzer-use-after-free at line 11:") and "(Use After Free)" in uaf.message
    doc = json.loads(render(report, "sarif"))
    try:
        import jsonschema

        from .test_formats import sarif_schema

        jsonschema.Draft4Validator(sarif_schema()).validate(doc)  # codeFlows as the schema defines them
    except ImportError:
        pass
    res = next(r for r in doc["runs"][0]["results"] if r["message"]["text"].startswith("use_after_free"))
    steps = res["codeFlows"][0]["threadFlows"][0]["locations"]
    assert [s["location"]["physicalLocation"]["region"]["startLine"] for s in steps][:2] == [6, 7]
    assert steps[0]["location"]["message"]["text"] == "allocated here"


def test_stubs_are_written_only_inside_their_folder(tmp_path: Path) -> None:
    from breachlab.vuln.scan.stubs import add_missing

    stubs = tmp_path / "stubs"
    stubs.mkdir()
    assert add_missing(stubs, ["a.h", "sub/b.h", "../escape.h", "/etc/abs.h"]) is True
    assert (stubs / "a.h").read_text() == "" and (stubs / "sub" / "b.h").exists()
    assert not (tmp_path / "escape.h").exists() and sorted(p.name for p in stubs.rglob("*.h")) == ["a.h", "b.h"]
    assert add_missing(stubs, ["a.h", "../escape.h"]) is False  # nothing new: the analyzer stops retrying
