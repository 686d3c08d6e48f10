"""A deterministic fake scorer and a writable copy of the fixture project."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from breachlab.vuln.scan.scorers import Explanation

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "scan"

# keyword → (CWE, reason): the fake "model" flags exactly the functions that use these
RISKY = {
    "strcpy(": ("CWE-120", "strcpy copies an unbounded string into a fixed buffer."),
    "gets(": ("CWE-242", "gets cannot limit the input length."),
    "sprintf(": ("CWE-787", "sprintf can write past the end of line."),
    "memcpy(": ("CWE-787", "memcpy length is not checked against the destination size."),
}


def _call(key: str, code: str) -> bool:
    return re.search(r"\b" + re.escape(key), code) is not None  # gets( is not fgets(


class FakeScorer:
    """P(vulnerable) 0.9 for code using a risky call, else 0.1; explanations from a table."""

    model_id = "fake-model"

    def __init__(self) -> None:
        self.scored: list[str] = []
        self.evidence: list[str] = []
        self.explained: list[str] = []

    def score(self, code: str, lang: str, evidence: str = "") -> float:
        self.scored.append(code)
        self.evidence.append(evidence)
        return 0.9 if any(_call(k, code) for k in RISKY) else 0.1

    def explain(self, code: str, lang: str, evidence: str = "") -> Explanation:
        self.explained.append(code)
        for key, (cwe, reason) in RISKY.items():
            if _call(key, code):
                return Explanation("VULNERABLE", cwe, reason)
        return Explanation("SAFE", None, "")


@pytest.fixture
def fake() -> FakeScorer:
    return FakeScorer()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The fixture project plus folders git would not keep (build/, .gitignored generated/)."""
    dst = tmp_path / "project"
    shutil.copytree(FIXTURES / "project", dst)
    (dst / "build").mkdir()
    (dst / "build" / "gen.c").write_text("void built(char *d, const char *s) { strcpy(d, s); }\n")
    (dst / "generated").mkdir()
    (dst / "generated" / "out.c").write_text("void ignored(char *d, const char *s) { strcpy(d, s); }\n")
    (dst / "src" / "scratch.tmp.c").write_text("void tmp(char *d, const char *s) { strcpy(d, s); }\n")
    return dst


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREACHLAB_CACHE", str(tmp_path / "cache"))
