"""``--changed-since GIT_REF``: the line ranges a diff touches, so a PR scan judges only those.

Why git is run here although :mod:`.files` never runs it: a diff needs history.  The scanned
checkout is untrusted, and its ``.git/config`` or ``.gitattributes`` can name commands that git
would run (clean/smudge/process filters, textconv and external diff drivers, fsmonitor, pager,
hooks, ssh/askpass/credential helpers).  So git is asked only for objects, never for a diff
against the work tree: ``rev-parse`` (the top folder and the ref's tree), ``ls-tree`` (the
ref's blobs), ``ls-files`` (what is tracked now) and ``cat-file --batch`` (the old contents,
raw: no filter, no textconv).  The work-tree side is read here in Python and compared
line by line with :mod:`difflib`.  Every call also runs with the system and global config
ignored, the command-running keys overridden on the command line (which wins over the
repository's own config), no prompt, no pager and no optional lock.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import subprocess
from pathlib import Path

from breachlab.errors import UserError
from breachlab.vuln.scan.extract import SOURCE_SUFFIXES

# Command-line config wins over every config file (the repository's included), so these keys
# cannot be turned into commands by the scanned checkout.  Filters and diff drivers have
# per-name keys (filter.NAME.clean): those are never consulted because no command below
# converts work-tree content or diffs it.
SAFE_GIT = [
    "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "core.pager=cat",
    "-c", "diff.external=", "-c", "core.sshCommand=false", "-c", "core.askPass=", "-c", "credential.helper=",
    "-c", "core.gitProxy=", "-c", "core.editor=false", "-c", "gpg.program=false", "-c", "log.showSignature=false",
    "-c", "core.alternateRefsCommand=", "-c", "protocol.allow=never", "-c", "core.untrackedCache=false",
    "-c", "uploadpack.packObjectsHook=", "-c", "status.showUntrackedFiles=no",
]


def safe_env() -> dict[str, str]:
    """The environment of every git call: no system or global config, no prompt, no pager, no lock."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_ATTR_NOSYSTEM="1",
               GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat", PAGER="cat", GIT_EXTERNAL_DIFF="", GIT_ASKPASS="",
               SSH_ASKPASS="", GIT_OPTIONAL_LOCKS="0", GIT_NO_REPLACE_OBJECTS="1")
    return env


def _safe_directories() -> list[str]:
    """``safe.directory`` entries of the user's own (global/system) config, kept as ``-c`` overrides.

    Ignoring the global config would otherwise refuse checkouts the user marked safe (CI
    containers often do).  Only this one key is read, by a ``git config --get-all`` that reads
    no repository.
    """
    out: list[str] = []
    for scope in ("--system", "--global"):
        try:
            res = subprocess.run(["git", "config", scope, "--get-all", "safe.directory"], capture_output=True,
                                 text=True, timeout=30, stdin=subprocess.DEVNULL, cwd=os.path.expanduser("~"),
                                 env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
        except (OSError, subprocess.TimeoutExpired):
            continue
        out += [line for line in res.stdout.splitlines() if line.strip()]
    return [arg for d in out for arg in ("-c", f"safe.directory={d}")]


def _git(args: list[str], cwd: Path, *, safe: list[str], stdin: bytes | None = None,
         timeout: int = 300) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "--no-pager", *SAFE_GIT, *safe, *args], cwd=cwd, capture_output=True,
                              timeout=timeout, env=safe_env(), input=stdin,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise UserError("--changed-since needs git on PATH") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"--changed-since: git {args[0]} timed out") from None


def _last_line(res: subprocess.CompletedProcess, default: str) -> str:
    err = res.stderr.decode("utf-8", "replace").strip()
    return err.splitlines()[-1] if err else default


def line_ranges(old: list[str], new: list[str]) -> list[list[int]]:
    """[[first, last], …] (1-based, new side) of the lines ``new`` adds or changes against ``old``.

    A pure deletion marks the line before and the line after it (the function around it
    changed too), as ``git diff -U0`` hunks ``+N,0`` do.
    """
    out: list[list[int]] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, _i1, _i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "insert"):
            out.append([j1 + 1, j2])
        elif tag == "delete":
            out.append([max(j1, 1), j1 + 1])
    return out


def _blob_id(data: bytes, hexlen: int) -> str:
    """The id git gives ``data`` as a blob (sha1, or sha256 in a sha256 repository)."""
    algo = hashlib.sha1 if hexlen == 40 else hashlib.sha256
    return algo(b"blob %d\0" % len(data) + data).hexdigest()


def _lines(data: bytes) -> list[str]:
    lines = [line.rstrip("\r") for line in data.decode("utf-8", "surrogateescape").split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def _read_blobs(root: Path, ids: list[str], safe: list[str]) -> dict[str, bytes]:
    """Raw contents of ``ids`` through one ``git cat-file --batch`` (no filter, no textconv)."""
    if not ids:
        return {}
    res = _git(["cat-file", "--batch"], root, safe=safe, stdin="".join(f"{i}\n" for i in ids).encode())
    if res.returncode != 0:
        raise UserError(f"--changed-since: {_last_line(res, 'git cat-file failed')}")
    out: dict[str, bytes] = {}
    data, pos = res.stdout, 0
    for oid in ids:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        size = int(header[2])
        out[oid] = data[end + 1:end + 1 + size]
        pos = end + 1 + size + 1
    return out


def _under(path: str, tops: list[str]) -> bool:
    return any(path == t or path.startswith(t.rstrip(os.sep) + os.sep) for t in tops)


def changed_lines(ref: str, paths: list[str]) -> dict[str, list[list[int]]]:
    """Lines changed between ``ref`` and the working tree under ``paths`` (UserError when git fails).

    Returns {real path of a tracked C/C++ source: [[first, last], …]} for every such file whose
    work-tree content differs from ``ref``'s (a file new since ``ref`` is changed as a whole).
    Line endings are compared without their ``\\r``.
    """
    if ref.startswith("-"):
        raise UserError(f"--changed-since {ref!r}: a git revision cannot start with '-'")
    where = Path(paths[0] if paths else ".").resolve()
    cwd = where if where.is_dir() else where.parent
    safe = _safe_directories()
    top = _git(["rev-parse", "--show-toplevel"], cwd, safe=safe, timeout=60)
    if top.returncode != 0:
        raise UserError(f"--changed-since needs a git checkout: {_last_line(top, 'git failed')}")
    root = Path(os.fsdecode(top.stdout.strip()))
    tree = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{tree}}"], root, safe=safe, timeout=60)
    if tree.returncode != 0:
        raise UserError(f"--changed-since {ref}: not a revision of {root} ({_last_line(tree, 'unknown revision')})")
    tree_id = tree.stdout.decode().strip()
    listing = _git(["ls-tree", "-r", "-z", "--full-tree", tree_id], root, safe=safe)
    tracked = _git(["ls-files", "-z", "--cached", "--full-name"], root, safe=safe)
    for res in (listing, tracked):
        if res.returncode != 0:
            raise UserError(f"--changed-since {ref}: {_last_line(res, 'git failed')}")
    old: dict[str, str] = {}
    for entry in listing.stdout.split(b"\0"):
        if not entry:
            continue
        meta, _, name = entry.partition(b"\t")
        mode, kind, oid = meta.split()
        if kind == b"blob" and not mode.startswith(b"12"):  # symlinks are not code
            old[os.fsdecode(name)] = oid.decode()
    now = {os.fsdecode(n) for n in tracked.stdout.split(b"\0") if n}
    tops = [os.path.realpath(p) for p in paths] or [os.path.realpath(".")]
    hexlen = len(tree_id)
    work: dict[str, tuple[str, bytes]] = {}
    for name in sorted(now | set(old)):
        if os.path.splitext(name)[1].lower() not in SOURCE_SUFFIXES:
            continue  # the scan reads only C/C++ sources: no other file is read or hashed
        file = root / name
        real = os.path.realpath(file)
        if not _under(real, tops) or file.is_symlink() or not file.is_file():
            continue  # deleted, not regular, or outside the scanned paths: no new lines to judge
        data = file.read_bytes()
        if name in old and _blob_id(data, hexlen) == old[name]:
            continue
        work[name] = (real, data)
    blobs = _read_blobs(root, sorted({old[n] for n in work if n in old}), safe)
    out: dict[str, list[list[int]]] = {}
    for name, (real, data) in work.items():
        ranges = line_ranges(_lines(blobs[old[name]]) if name in old else [], _lines(data))
        if ranges:
            out[real] = ranges
    return out
