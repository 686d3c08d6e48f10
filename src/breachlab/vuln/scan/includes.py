"""Which files the static tools may open: only regular files of the scanned tree (and system headers).

Why: cppcheck, clang-tidy and gcc follow ``#include`` directives.  A hostile tree can point
one at a FIFO or a device (``#include "pipe.h"`` where ``pipe.h`` is a FIFO: the tool blocks
until its timeout), or at a file outside the tree (``#include "../../secret/key"``: the tool
reads it, and its text may end up in a diagnostic).  So before any tool runs, the include
closure of each file is resolved the way a compiler searches (the including file's folder,
then the scan's include folders; ``<…>`` headers not found there are the system's), and a
file whose closure leaves the tree, names a special file or computes its include from a macro
is not given to any tool: the scan notes why, in one line, and goes on.

Only ``stat`` is used on the targets (a FIFO is never opened); headers inside the tree are
read to follow their own includes, at most :data:`MAX_FILES` of them per file.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Sequence

MAX_FILES = 400
MAX_HEADER_BYTES = 2_000_000
_DIRECTIVE = re.compile(rb'^[ \t]*#[ \t]*(?:include|include_next|import)\b[ \t]*(.*)$', re.M)
_QUOTED = re.compile(rb'^"([^"\n]+)"|^<([^>\n]+)>')


def _inside(real: str, roots: Sequence[str]) -> bool:
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _targets(data: bytes) -> list[tuple[str, str | None]]:
    """(kind, name) per include directive: kind ``"`` or ``<``, or ``?`` for a computed one."""
    out: list[tuple[str, str | None]] = []
    for m in _DIRECTIVE.finditer(data):
        rest = m.group(1).strip()
        q = _QUOTED.match(rest)
        if q is None:
            if rest and not rest.startswith((b"//", b"/*")):
                out.append(("?", rest.decode("utf-8", "replace")[:80]))
            continue
        name = (q.group(1) or q.group(2)).decode("utf-8", "replace")
        out.append(('"' if q.group(1) else "<", name))
    return out


def _check_target(path: str, roots: Sequence[str]) -> tuple[str | None, str | None]:
    """(why it may not be opened, its real path to follow) for an existing include target."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return None, None
    if not stat.S_ISREG(st.st_mode):
        return f"names a special file ({'FIFO' if stat.S_ISFIFO(st.st_mode) else 'device or socket'})", None
    if not _inside(real, roots):
        return "leaves the scanned tree", None
    return None, real


def refusal(path: Path, include_dirs: Sequence[Path], roots: Sequence[Path] | None = None) -> str | None:
    """Why no static tool may analyse ``path`` (one line), or None when its include closure is safe.

    ``include_dirs`` are searched after the including file's folder; ``roots`` (default:
    ``include_dirs``) bound the tree.
    """
    real_roots = [os.path.realpath(r) for r in (roots if roots is not None else include_dirs)]
    dirs = [os.path.realpath(d) for d in include_dirs]
    todo = [os.path.realpath(path)]
    seen: set[str] = set()
    while todo:
        cur = todo.pop()
        if cur in seen:
            continue
        seen.add(cur)
        if len(seen) > MAX_FILES:
            return f"more than {MAX_FILES} headers to follow"
        try:
            with open(cur, "rb") as fh:
                data = fh.read(MAX_HEADER_BYTES)
        except OSError:
            continue
        for kind, name in _targets(data):
            label = f"#include {name}" if kind == "?" else f"#include {kind}{name}{'>' if kind == '<' else kind}"
            if kind == "?":
                return f"{label} is computed by a macro (the tools could open any file)"
            if os.path.isabs(name):
                return f"{label} names an absolute path"
            search = ([os.path.dirname(cur)] if kind == '"' else []) + dirs
            found = next((os.path.join(d, name) for d in search if os.path.lexists(os.path.join(d, name))), None)
            if found is None:
                if ".." in Path(name).parts:
                    return f"{label} climbs out of the include folders"
                continue  # a system header (or a missing one: the tools get an empty stub)
            why, follow = _check_target(found, real_roots)
            if why:
                return f"{label} {why}"
            if follow:
                todo.append(follow)
    return None
