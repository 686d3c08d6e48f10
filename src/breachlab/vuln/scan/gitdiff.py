"""``--changed-since GIT_REF``: the line ranges a diff touches, so a PR scan judges only those.

Why git is run here although :mod:`.files` never runs it: a diff needs history.  It runs
with every setting through which a repository's own config could make git execute a command
switched off (external diff, textconv, fsmonitor, pager), with no prompt, on the new side's
line numbers only (``-U0``).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from breachlab.errors import UserError

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
SAFE_GIT = ["-c", "core.fsmonitor=false", "-c", "diff.external=", "-c", "core.pager=cat", "-c", "core.hooksPath=/dev/null"]


def parse_diff(text: str, top: Path) -> dict[str, list[list[int]]]:
    """Unified diff (``-U0``) → {real path of the new file: [[first, last], …]} of added/changed lines.

    A pure deletion marks the line after it (the function around it changed too).
    """
    out: dict[str, list[list[int]]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("+++ "):
            name = line[4:].strip()
            current = None if name == "/dev/null" else os.path.realpath(top / name.removeprefix("b/"))
            continue
        m = _HUNK.match(line)
        if m and current is not None:
            start, count = int(m.group(1)), int(m.group(2) if m.group(2) is not None else 1)
            out.setdefault(current, []).append([start, start + count - 1] if count else [max(start, 1), start + 1])
    return out


def changed_lines(ref: str, paths: list[str]) -> dict[str, list[list[int]]]:
    """Lines changed between ``ref`` and the working tree under ``paths`` (UserError when git fails)."""
    if ref.startswith("-"):
        raise UserError(f"--changed-since {ref!r}: a git revision cannot start with '-'")
    where = Path(paths[0] if paths else ".").resolve()
    cwd = where if where.is_dir() else where.parent
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_EXTERNAL_DIFF": "", "GIT_PAGER": "cat"}
    try:
        top = subprocess.run(["git", *SAFE_GIT, "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True,
                             text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
        if top.returncode != 0:
            raise UserError(f"--changed-since needs a git checkout: {top.stderr.strip().splitlines()[-1] if top.stderr.strip() else 'git failed'}")
        root = Path(top.stdout.strip())
        res = subprocess.run(["git", *SAFE_GIT, "diff", "--no-ext-diff", "--no-textconv", "--no-color", "-U0",
                              ref, "--", *[str(Path(p).resolve()) for p in paths]],
                             cwd=root, capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL,
                             errors="replace")
    except FileNotFoundError:
        raise UserError("--changed-since needs git on PATH") from None
    except subprocess.TimeoutExpired:
        raise UserError("--changed-since: git diff timed out") from None
    if res.returncode != 0:
        msg = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "git diff failed"
        raise UserError(f"--changed-since {ref}: {msg}")
    return parse_diff(res.stdout, root)
