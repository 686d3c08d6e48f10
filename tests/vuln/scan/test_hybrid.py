"""Static-tool parsing, the combiner and candidates-only hybrid mode."""

from __future__ import annotations

from pathlib import Path

from breachlab.vuln.scan import hybrid
from breachlab.vuln.scan.scanner import ScanConfig, scan

CPPCHECK_XML = """<?xml version="1.0" encoding="UTF-8"?>
<results version="2"><cppcheck version="2.22.0"/><errors>
<error id="arrayIndexOutOfBounds" severity="error" msg="Array 'buf[10]' accessed at index 10." cwe="788" file0="a.c">
  <location file="a.c" line="6" column="8"/></error>
<error id="missingIncludeSystem" severity="information" msg="Include file not found."><location file="a.c" line="1"/></error>
<error id="unusedVariable" severity="style" msg="Unused variable: x" cwe="563"><location file="a.c" line="3"/></error>
</errors></results>"""

FLAWFINDER_CSV = """File,Line,Column,DefaultLevel,Level,Category,Name,Warning,Suggestion,Note,CWEs,Context,Fingerprint,ToolVersion,RuleId,HelpUri
a.c,5,5,4,4,buffer,strcpy,Does not check for buffer overflows when copying to destination [MS-banned] (CWE-120).,x,,CWE-120,ctx,fp,2.0.20,FF1001,u
a.c,4,5,2,2,buffer,char,"Statically-sized arrays can be improperly restricted (CWE-119!/CWE-120).",x,,CWE-119!/CWE-120,ctx,fp,2.0.20,FF1013,u
"""


def test_parse_tool_outputs() -> None:
    cc = hybrid.parse_cppcheck_xml("Checking a.c ...\n" + CPPCHECK_XML)
    assert cc == [("a.c", hybrid.StaticHit("cppcheck", 6, "arrayIndexOutOfBounds", "CWE-788", 4,
                                           "Array 'buf[10]' accessed at index 10."))]
    ff = hybrid.parse_flawfinder_csv(FLAWFINDER_CSV)
    assert [(f, h.line, h.rule, h.cwe, h.level) for f, h in ff] == [
        ("a.c", 5, "strcpy", "CWE-120", 4), ("a.c", 4, "char", "CWE-119", 2)]
    assert ff[0][1].message == "Does not check for buffer overflows when copying to destination [MS-banned]"
    assert hybrid.static_cwe([h for _, h in ff + cc]) == "CWE-788"


def test_combiner_is_monotone_in_evidence() -> None:
    w = {"bias": -2.0, "llm_logit": 0.5, "cppcheck": 2.0, "flawfinder_level": 1.0, "flawfinder_count": 0.5}
    strong = hybrid.StaticHit("flawfinder", 3, "strcpy", "CWE-120", 4, "")
    none = hybrid.combine(0.5, [], w)
    assert abs(none - 1 / (1 + 2.718281828459045 ** 2)) < 1e-9
    assert hybrid.combine(0.5, [strong], w) > none
    assert hybrid.combine(0.9, [strong], w) > hybrid.combine(0.5, [strong], w)


def test_evidence_block_is_a_safe_comment() -> None:
    hit = hybrid.StaticHit("cppcheck", 12, "bufferAccessOutOfBounds", "CWE-788", 4, "write */ past end")
    block = hybrid.evidence_block([hit], start_line=10)
    assert block.startswith("/* static analysis hints") and block.endswith("*/\n")
    assert block.count("*/") == 1 and "line 3: bufferAccessOutOfBounds CWE-788" in block


def test_candidates_only_scores_flagged_functions(project: Path, fake) -> None:
    cfg = ScanConfig(paths=[str(project)], hybrid=["cppcheck", "flawfinder"], hybrid_candidates_only=True,
                     explain=False, keep_records=True)
    report = scan(cfg, fake, weights={"llm_logit": 1.0})
    assert report.stats["not_scored"] + report.stats["scored"] == 11
    scored = {r["function"] for r in report.records if r["p_llm"] is not None}
    assert scored == {r["function"] for r in report.records if r["tools"]}
    assert "add" not in scored and "copy_name" in scored


def test_evidence_can_stay_out_of_the_prompt(project: Path, fake) -> None:
    scan(ScanConfig(paths=[str(project)], hybrid=["flawfinder"], evidence_in_prompt=False, explain=False), fake)
    assert fake.scored and not any(c.startswith("/* static analysis") for c in fake.scored)
