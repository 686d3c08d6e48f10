"""GCC's static analyzer (``gcc -fanalyzer``), one file per process, JSON diagnostics.

Why it is here: it is on nearly every machine that builds C, its path-sensitive checks
(double free, use after free, NULL dereference, leaks, use of uninitialised values) report a
CWE id of their own, and each report carries the *event path* that leads to the defect
("allocated here" → "freed here" → "use after 'free'"), which becomes the finding's evidence
and the SARIF ``codeFlows``.

Safety: analysis only — ``-c -o /dev/null`` compiles to nothing, nothing is linked or run;
the working folder is an empty temporary folder; no ``compile_commands.json`` or project
flags are read.  Headers the tree does not hold get an empty stub (gcc stops at a missing
header), so a file that compiles once its own headers are found is analysed; one that still
does not compile gives no hits and a note.  Includes that leave the scanned tree or name a
special file are refused before any tool runs (:mod:`.includes`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

from breachlab.vuln.scan.hybrid import StaticHit, available
from breachlab.vuln.scan.stubs import add_missing

FLAGS = ("-fanalyzer", "-fdiagnostics-format=json", "-fno-diagnostics-show-caret", "-fmax-errors=20")
SETTINGS = "fanalyzer;json;gnu11/gnu++17"
_MISSING = re.compile(r"^(.+?): No such file or directory$")
_MAX_STUB_ROUNDS = 8


def version() -> str | None:
    """``gcc -dumpfullversion`` (None: no gcc on PATH)."""
    exe = available("gcc")
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, "-dumpfullversion"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip()[:40] or None


def _line(loc: dict[str, Any]) -> int:
    return int(loc.get("line", 0) or 0)


def parse_json(text: str) -> tuple[list[tuple[str, StaticHit]], bool, list[str]]:
    """(file, hit) pairs of ``-Wanalyzer-*`` warnings, whether an error stopped the compile, missing headers.

    ``text`` is gcc's stderr under ``-fdiagnostics-format=json`` (one JSON list; any
    trailing plain text such as "compilation terminated." is ignored).
    """
    start = text.find("[")
    try:
        diags = json.JSONDecoder().raw_decode(text[start:])[0] if start >= 0 else []
    except ValueError:
        return [], False, []
    hits: list[tuple[str, StaticHit]] = []
    error = False
    missing: list[str] = []
    for d in diags if isinstance(diags, list) else []:
        if not isinstance(d, dict):
            continue
        kind, msg = str(d.get("kind", "")), str(d.get("message", ""))
        if "error" in kind:
            error = True
            m = _MISSING.match(msg)
            if m:
                missing.append(m.group(1))
            continue
        option = str(d.get("option", ""))
        if kind != "warning" or not option.startswith("-Wanalyzer-"):
            continue
        locs = d.get("locations") or [{}]
        caret = locs[0].get("caret") or locs[0].get("start") or {}
        cwe = (d.get("metadata") or {}).get("cwe")
        flow = tuple((_line(ev.get("location") or {}), str(ev.get("description", ""))[:200])
                     for ev in d.get("path") or [] if _line(ev.get("location") or {}) > 0)
        hits.append((str(caret.get("file", "")),
                     StaticHit("gcc", _line(caret), option.removeprefix("-W"), f"CWE-{int(cwe)}" if cwe else None,
                               4, msg, flow[:30])))
    return hits, error, missing


def run_file(path: Path, include_dirs: Sequence[Path] = (), timeout: float = 60.0) -> tuple[list[StaticHit], list[str]]:
    """Analyse one file; (hits in that file, notes)."""
    exe = available("gcc")
    if exe is None:
        return [], ["gcc not installed (apt-get install gcc): GCC's analyzer did not run"]
    cpp = Path(path).suffix.lower() not in (".c", ".h")
    real = os.path.realpath(path)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bl-gcc-") as stubs:
        dirs = dict.fromkeys([str(Path(path).parent), *map(str, include_dirs)])
        lang = ["-x", "c++", "-std=gnu++17"] if cpp else ["-x", "c", "-std=gnu11"]
        cmd = [exe, *lang, *FLAGS, *[f"-I{d}" for d in dirs], f"-I{stubs}", "-c", "-o", os.devnull,
               os.path.abspath(path)]
        pairs: list[tuple[str, StaticHit]] = []
        error = False
        for _ in range(_MAX_STUB_ROUNDS):
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                     errors="replace", cwd=stubs)
            except subprocess.TimeoutExpired:
                return [], [f"gcc -fanalyzer timed out after {timeout:.0f}s on {Path(path).name}"]
            except OSError as exc:
                return [], [f"gcc failed to start: {exc}"]
            pairs, error, missing = parse_json(res.stderr)
            if not add_missing(stubs, missing):  # an empty stub for each header the tree lacks, then again
                break
        if error:
            notes.append("gcc: some files do not compile standalone (no analyzer results for them)")
    hits = [h for f, h in pairs if os.path.realpath(f if os.path.isabs(f) else Path(path).parent / f) == real
            or os.path.realpath(f) == real]
    return hits, notes


def run_files(paths: Sequence[Path], include_dirs: Sequence[Path] = (),
              timeout: float = 60.0) -> tuple[dict[Path, list[StaticHit]], list[str]]:
    """Analyse ``paths`` one process each; (hits per path, notes)."""
    out: dict[Path, list[StaticHit]] = {}
    notes: list[str] = []
    for p in paths:
        out[p], n = run_file(p, include_dirs, timeout)
        notes.extend(n)
    return out, notes
