"""Run the static tools on files: one tool × one file per job, in parallel, cached by content.

Why per file: a result then depends only on the file's bytes, the tool and its version, so
it can be cached by ``sha256(bytes)`` and a re-scan of an unchanged tree runs no tool at all.
Why threads: each job is a child *process* (cppcheck, flawfinder, clang-tidy); the threads
only wait for them, so ``jobs`` threads keep ``jobs`` cores busy without pickling anything.
"""

from __future__ import annotations

import functools
import hashlib
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from breachlab.vuln.scan import clangtidy, hybrid
from breachlab.vuln.scan.hybrid import StaticHit

TOOLS = ("cppcheck", "flawfinder", "clang-tidy")
DEFAULT_TOOLS = TOOLS
_TRANSIENT = re.compile(r"timed out|failed to start|not installed")
SETTINGS_VERSION = {"cppcheck": "warning,portability;max-configs=1", "flawfinder": "minlevel=1",
                    "clang-tidy": clangtidy.CHECKS}


@functools.lru_cache(maxsize=None)
def tool_version(tool: str) -> str | None:
    """The installed version of ``tool`` (None: not installed); part of the cache key."""
    if tool == "clang-tidy":
        return clangtidy.version()
    exe = hybrid.available(tool)
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (res.stdout or res.stderr).strip().splitlines()[0][:60] if (res.stdout or res.stderr).strip() else "?"


def _run_one(tool: str, path: Path, include_dirs: Sequence[Path], timeout: float) -> tuple[list[StaticHit], str | None]:
    if tool == "clang-tidy":
        return clangtidy.run_file(path, include_dirs, timeout=min(timeout, 120.0))
    runner = hybrid.run_cppcheck if tool == "cppcheck" else hybrid.run_flawfinder
    pairs, note = runner([path], timeout=timeout)
    return [h for f, h in pairs if Path(f) == path or Path(f).name == path.name], note


def _key(tool: str, digest: str) -> str:
    raw = f"static\0{tool}\0{tool_version(tool)}\0{SETTINGS_VERSION[tool]}\0{digest}"
    return hashlib.sha256(raw.encode()).hexdigest()


def run(tools: Sequence[str], files: Sequence[tuple[Path, str]], *, cache: Any, jobs: int = 2,
        include_dirs: Sequence[Path] = (), timeout: float = 300.0) -> tuple[dict[Path, list[StaticHit]], list[str], int]:
    """Hits per file for ``files`` = [(path, sha256 of its bytes)]; (hits, notes, cached runs).

    ``cache`` is a :class:`~breachlab.vuln.scan.cache.ScoreCache` (entries are keyed by tool,
    tool version, tool settings and content hash).  A missing tool is a note, not an error.
    """
    out: dict[Path, list[StaticHit]] = {p: [] for p, _ in files}
    notes: list[str] = []
    todo: list[tuple[str, Path, str]] = []
    cached = 0
    for tool in tools:
        if tool_version(tool) is None:
            notes.append(f"{tool} not installed (pip install {tool}): its checks did not run")
            continue
        for path, digest in files:
            entry = cache.get(_key(tool, digest))
            if entry is not None and "hits" in entry:
                out[path].extend(StaticHit(**h) for h in entry["hits"])
                if entry.get("note"):
                    notes.append(entry["note"])
                cached += 1
            else:
                todo.append((tool, path, digest))

    def job(item: tuple[str, Path, str]) -> tuple[str, Path, str, list[StaticHit], str | None]:
        tool, path, digest = item
        hits, note = _run_one(tool, path, include_dirs, timeout)
        return tool, path, digest, hits, note

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for tool, path, digest, hits, note in pool.map(job, todo):
            out[path].extend(hits)
            if note:
                notes.append(note)
            if not note or not _TRANSIENT.search(note):  # a timeout or a failed start is retried next time
                cache.put(_key(tool, digest), {"hits": [asdict(h) for h in hits], "note": note})
    for path in out:
        out[path].sort(key=lambda h: (h.line, h.tool, h.rule))
    return out, notes, cached
