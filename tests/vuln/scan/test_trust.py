"""Per-check trust: precise checks pass straight through, the model triages only noisy ones;
the leave-one-source-out selection; CWE ids and names agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from breachlab.vuln.cwe import CWE_NAMES, cwe_label, cwe_name, fix_cwe_names
from breachlab.vuln.scan import calibrate, clangtidy, loso, statictools
from breachlab.vuln.scan.calibration import Calibration, Variant
from breachlab.vuln.scan.candidates import FEATURES
from breachlab.vuln.scan.hybrid import StaticHit
from breachlab.vuln.scan.scanner import ScanConfig, scan, scan_settings
from breachlab.vuln.scan.trust import Trust, measure

DOUBLE_FREE = StaticHit("cppcheck", 4, "doubleFree", "CWE-415", 4, "Memory pointed to by 'p' is freed twice.")
STRCPY = StaticHit("flawfinder", 9, "strcpy", "CWE-120", 4, "Does not check for buffer overflows")
CODE = ("#include <stdlib.h>\nvoid twice(char *p)\n{\n  free(p); free(p);\n}\n\n"
        "void copy(char *d, const char *s)\n{\n  strcpy(d, s);\n}\n")


class SaysSafe:
    """A model that calls everything SAFE (P = 0.01)."""

    model_id = "says-safe"

    def __init__(self) -> None:
        self.scored: list[str] = []

    def score(self, code: str, lang: str, evidence: str = "") -> float:
        self.scored.append(code)
        return 0.01

    def explain(self, code, lang, evidence=""):  # pragma: no cover - not reached for SAFE functions
        raise AssertionError("explain")


def _calibration(cfg: ScanConfig, scorer) -> Calibration:
    trust = Trust({"cppcheck:doubleFree": {"n": 10, "tp": 10}, "flawfinder:strcpy": {"n": 10, "tp": 3}}, 0.6, 2)
    w = {"bias": 0.0, **{k: 0.0 for k in FEATURES}, "llm_logit": 1.0}
    v = Variant(FEATURES, w, 0.5)
    return Calibration(scan_settings(cfg, scorer), {"model": v, "no_model": v}, trust=trust)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "a.c").write_text(CODE)

    def fake_run(tools, files, **kw):
        return {p: [DOUBLE_FREE, STRCPY] for p, _ in files}, [], 0

    monkeypatch.setattr(statictools, "run", fake_run)
    return tmp_path


def test_a_precise_checks_finding_survives_a_model_that_says_safe(tree: Path) -> None:
    model = SaysSafe()
    cfg = ScanConfig(paths=[str(tree)], tools=["cppcheck", "flawfinder"], explain=False)
    report = scan(cfg, model, calibration=_calibration(cfg, model))
    assert [(f.function, f.cwe, f.precise) for f in report.findings] == [("twice", "CWE-415", True)]
    f = report.findings[0]
    assert f.confidence == pytest.approx(11 / 12, abs=1e-6) and f.lines == (4,)
    assert "Double Free" in f.message and f.severity.name == "CRITICAL"
    # the model was asked only about the noisy function (it can change only that outcome), and said SAFE
    assert len(model.scored) == 1 and "strcpy" in model.scored[0]


def test_without_trust_the_same_model_silences_everything(tree: Path) -> None:
    model = SaysSafe()
    cfg = ScanConfig(paths=[str(tree)], tools=["cppcheck", "flawfinder"], explain=False)
    cal = _calibration(cfg, model)
    old = Calibration(cal.settings, cal.variants)  # a version-1 file: no per-check trust
    assert scan(cfg, model, calibration=old).findings == []


def test_trust_smooths_and_falls_back_to_the_tool_level_pool() -> None:
    rows = [{"label": 1, "checks": ["gcc:analyzer-double-free"], "pools": ["gcc@4"]}] * 2 + \
           [{"label": 0, "checks": ["gcc:analyzer-malloc-leak"], "pools": ["gcc@4"]}] * 4
    t = Trust(measure(rows), 0.6, 2)
    assert t.counts["gcc@4"] == {"n": 6, "tp": 2}
    assert t.precision(StaticHit("gcc", 1, "analyzer-double-free", None, 4, "")) == pytest.approx(0.75)
    assert t.is_precise(StaticHit("gcc", 1, "analyzer-double-free", None, 4, ""))
    assert not t.is_precise(StaticHit("gcc", 1, "analyzer-malloc-leak", None, 4, ""))
    unseen = StaticHit("gcc", 1, "analyzer-new-check", None, 4, "")
    assert t.precision(unseen) == pytest.approx(3 / 8)  # the pool gcc@4
    assert Trust.from_dict(t.to_dict()) == t


def _row(source: str, path: str, label: int, *checks: str) -> dict:
    hits = [{"tool": c.split(":")[0], "rule": c.split(":")[1], "line": 1, "level": 4, "cwe": None} for c in checks]
    return {"source": source, "path": path, "label": label, "hits": hits, "p_llm": None}


def test_leave_one_source_out_table_on_a_tiny_fixture() -> None:
    rows = []
    for s in ("a", "b", "c"):
        for i in range(4):  # a precise check on vulnerable files, a noisy one on both
            rows.append(_row(s, f"{s}/v{i}.c", 1, "gcc:analyzer-double-free", "flawfinder:strcpy"))
            rows.append(_row(s, f"{s}/s{i}.c", 0, "flawfinder:strcpy"))
    tab = loso.table(rows, 0.10, model=False, taus=(0.6,))
    assert set(tab["union"]) == {"a", "b", "c"}
    assert all(m["mcc"] == 0.0 and m["recall"] == 1.0 for m in tab["union"].values())  # flags every file
    assert all(m["mcc"] == 1.0 for m in tab["precise@0.6"].values())
    assert all(m["mcc"] == 1.0 for m in tab["gcc"].values())
    assert loso.select(tab).startswith("precise@0.6")
    assert "| precise@0.6 |" in loso.markdown(tab)


def test_calibrate_fit_ships_the_arm_best_on_the_worst_source() -> None:
    rows = []
    for s in ("a", "b", "c"):
        for i in range(4):
            rows.append({**_row(s, f"{s}/v{i}.c", 1, "gcc:analyzer-double-free", "flawfinder:strcpy"),
                         "features": {}, "candidate": True})
            rows.append({**_row(s, f"{s}/s{i}.c", 0, "flawfinder:strcpy"), "features": {}, "candidate": True})
    cal = calibrate.fit(rows, {"tools": ["gcc", "flawfinder"]}, 0.10, 1.0, False, {})
    assert cal.selection["arm"].startswith("precise@") and cal.selection["loso"]
    assert "gcc:analyzer-double-free" in cal.trust.precise_checks()
    assert "flawfinder:strcpy" not in cal.trust.precise_checks()


# ---- CWE id and name always agree --------------------------------------------------------
def test_a_models_wrong_name_beside_an_id_is_replaced_by_the_ids_name() -> None:
    text = "CWE-78 (Uncontrolled Memory Allocation) and CWE-476 (Use After Free); CWE-99999 (Made Up)."
    assert fix_cwe_names(text) == ("CWE-78 (OS Command Injection) and CWE-476 (NULL Pointer Dereference); "
                                   "CWE-99999.")
    assert cwe_label("CWE-786") == "CWE-786 (Access of Memory Location Before Start of Buffer)"
    assert cwe_label(None) is None and cwe_label("CWE-99999") == "CWE-99999"


def test_every_cwe_a_tool_maps_to_has_a_name() -> None:
    mapped = set(clangtidy._CHECK_CWE.values()) | {"CWE-415", "CWE-416", "CWE-401", "CWE-590", "CWE-457"}
    mapped |= {"CWE-786", "CWE-788", "CWE-476", "CWE-690", "CWE-775", "CWE-1341"}  # cppcheck and gcc ids
    assert [c for c in sorted(mapped) if cwe_name(c) is None] == []
    assert all(re.fullmatch(r"[A-Z][\w ,'()/-]+", n) for n in CWE_NAMES.values())


def test_a_clang_array_bound_report_is_never_labelled_with_the_models_cwe(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The cJSON case: clang's security.ArrayBound on a length helper; the model says CWE-78."""
    from breachlab.vuln.scan.scorers import Explanation

    (tmp_path / "a.c").write_text("int len(const char *s)\n{\n  return s[40];\n}\n")
    hit = StaticHit("clang-tidy", 3, "security.ArrayBound",
                    clangtidy.check_cwe("clang-analyzer-security.ArrayBound", ""),
                    4, "Out of bound access to memory")
    monkeypatch.setattr(statictools, "run", lambda tools, files, **kw: ({p: [hit] for p, _ in files}, [], 0))

    class SaysCommandInjection(SaysSafe):
        def score(self, code, lang, evidence=""):
            return 0.99

        def explain(self, code, lang, evidence=""):
            return Explanation("VULNERABLE", "CWE-78", "CWE-78 (Uncontrolled Memory Allocation) in the loop.")

    f = scan(ScanConfig(paths=[str(tmp_path)], tools=["clang-tidy"]), SaysCommandInjection()).findings[0]
    assert (f.cwe, f.cwe_name, f.suggested_cwe) == ("CWE-119", cwe_name("CWE-119"), "CWE-78")
    assert f.severity.name == "HIGH"  # CWE-119 is a HIGH class; the model's CWE-78 (CRITICAL) is not used
    assert "CWE-78 (OS Command Injection)" in f.message and "Uncontrolled Memory Allocation" not in f.message
