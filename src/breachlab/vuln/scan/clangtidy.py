"""The Clang Static Analyzer through clang-tidy (PyPI ``clang-tidy``), one file at a time.

Why it is here: its path-sensitive checks (null dereference, use-after-free, double free,
division by zero, uninitialised reads) find bugs cppcheck misses and vice versa.  Why one
file at a time and no build: nothing in the scanned tree is built or run, and there is no
compilation database to trust.  Each file is analysed as ``-std=gnu11`` (``-std=gnu++17``
for C++) with the file's folder and the scan roots on the include path.

Safety: ``--config={}`` so that ``.clang-tidy`` files in the scanned tree are ignored, ``--``
so that no ``compile_commands.json`` is read; headers the tree does not contain get an
*empty stub* in a temporary folder (clang stops at a missing header), so a file that
compiles standalone once its own headers are found is analysed; a file that still does not
compile gives no hits and a note, never a failure.

``security.insecureAPI.*`` fires on every ``strcpy``/``memcpy`` (flawfinder already reports
those calls); it is switched off.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from breachlab.vuln.scan.hybrid import StaticHit, available
from breachlab.vuln.scan.stubs import add_missing

CHECKS = ("-*,clang-analyzer-core.*,clang-analyzer-unix.*,clang-analyzer-cplusplus.*,clang-analyzer-security.*,"
          "-clang-analyzer-security.insecureAPI.*")
_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<sev>warning|error): (?P<msg>.*?) "
                   r"\[(?P<check>[\w.,-]+)\]$")
_MISSING = re.compile(r"'([^']+)' file not found")
_MAX_STUB_ROUNDS = 8

_CHECK_CWE = {
    "core.NullDereference": "CWE-476", "core.NonNullParamChecker": "CWE-476", "unix.cstring.NullArg": "CWE-476",
    "core.DivideZero": "CWE-369", "core.StackAddressEscape": "CWE-562", "core.VLASize": "CWE-129",
    "core.UndefinedBinaryOperatorResult": "CWE-457", "core.uninitialized": "CWE-457",
    "core.BitwiseShift": "CWE-758", "unix.MallocSizeof": "CWE-131", "unix.MismatchedDeallocator": "CWE-762",
    "security.ArrayBound": "CWE-119", "unix.cstring.OutOfBounds": "CWE-119", "unix.cstring.BadSizeArg": "CWE-131",
    "cplusplus.NewDeleteLeaks": "CWE-401",
}


def check_cwe(check: str, message: str) -> str | None:
    """CWE of an analyzer report: from the check name, refined by the message for malloc/new."""
    name = check.removeprefix("clang-analyzer-")
    if name in ("unix.Malloc", "cplusplus.NewDelete"):
        m = message.lower()
        if "already released" in m or "double" in m:
            return "CWE-415"
        if "after it is" in m or "released memory" in m:
            return "CWE-416"
        if "leak" in m:
            return "CWE-401"
        if "not allocated" in m or "free()" in m:
            return "CWE-590"
        return "CWE-401"
    if name == "core.CallAndMessage":
        return "CWE-476" if "null" in message.lower() else "CWE-457"
    for prefix, cwe in _CHECK_CWE.items():
        if name == prefix or name.startswith(prefix + "."):
            return cwe
    return None


def parse_output(text: str) -> tuple[list[tuple[str, StaticHit]], bool, list[str]]:
    """(file, hit) pairs of analyzer warnings, whether a compiler error stopped it, missing headers."""
    hits: list[tuple[str, StaticHit]] = []
    error = False
    for raw in text.splitlines():
        m = _LINE.match(raw)
        if not m:
            continue
        check = m.group("check")
        if m.group("sev") == "error" or check.startswith("clang-diagnostic-"):
            error = error or m.group("sev") == "error"
            continue
        if not check.startswith("clang-analyzer-") or ".insecureAPI." in check:
            continue
        msg = m.group("msg")
        hits.append((m.group("file"), StaticHit("clang-tidy", int(m.group("line")),
                                                check.removeprefix("clang-analyzer-"), check_cwe(check, msg), 4, msg)))
    return hits, error, _MISSING.findall(text)


def version() -> str | None:
    exe = available("clang-tidy")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else out.strip()[:40]


def run_files(paths: Sequence[Path], include_dirs: Sequence[Path] = (),
              timeout: float = 300.0) -> tuple[dict[Path, list[StaticHit]], list[str]]:
    """Analyse ``paths`` (one clang-tidy process, same language flags); (hits per path, notes)."""
    out: dict[Path, list[StaticHit]] = {p: [] for p in paths}
    exe = available("clang-tidy")
    if exe is None:
        return out, ["clang-tidy not installed (pip install clang-tidy)"]
    if not paths:
        return out, []
    cpp = Path(paths[0]).suffix.lower() not in (".c", ".h")
    by_real = {os.path.realpath(p): p for p in paths}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bl-stubs-") as stubs:
        dirs = dict.fromkeys([*(str(Path(p).parent) for p in paths), *map(str, include_dirs)])
        flags = ["-std=gnu++17" if cpp else "-std=gnu11", *[f"-I{d}" for d in dirs], f"-I{stubs}",
                 "-Wno-everything", "-ferror-limit=0"]
        for _ in range(_MAX_STUB_ROUNDS):
            cmd = [exe, "--quiet", "--config={}", f"--checks={CHECKS}", *map(str, paths), "--", *flags]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                     errors="replace", cwd=stubs)
            except subprocess.TimeoutExpired:
                return out, [f"clang-tidy timed out after {timeout:.0f}s on {len(paths)} file(s)"]
            except OSError as exc:
                return out, [f"clang-tidy failed to start: {exc}"]
            pairs, error, missing = parse_output(res.stdout + "\n" + res.stderr)
            if not add_missing(stubs, missing):  # an empty stub for each header the tree lacks, then again
                break
        for f, h in pairs:
            key = by_real.get(os.path.realpath(f))
            if key is not None:
                out[key].append(h)
        if error:
            notes.append("clang-tidy: some files do not compile standalone (no analyzer results for them)")
    return out, notes


def run_file(path: Path, include_dirs: Sequence[Path] = (),
             timeout: float = 60.0) -> tuple[list[StaticHit], str | None]:
    """Analyse one file; (hits, note)."""
    hits, notes = run_files([path], include_dirs, timeout)
    return hits[path], (notes[0] if notes else None)
