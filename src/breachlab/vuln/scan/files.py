"""Which files a scan reads — chosen the way a developer expects, and safe on hostile trees.

* C/C++ sources *and headers* (inline functions and templates live in headers);
* ``.gitignore`` files respected at every level (read with ``pathspec``; ``git`` itself is
  never run: a repository's config can make git execute commands);
* vendored and build folders (``third_party``, ``vendor``, ``build``, ``cmake-build-*`` …)
  skipped below a scan root unless asked for — a root named on the command line is always
  scanned;
* ignore rules (``.gitignore``, vendored/build folders, ``--exclude``) apply only to what a
  folder walk *finds*: a file or folder named on the command line is always scanned;
* directory symlinks are not followed (no loops, no escaping the tree); a file symlink is
  followed only when its target stays inside the scanned root — one that leaves the root is
  reported and never opened (a hostile checkout could point ``a.c`` at ``/etc/passwd``);
  broken links and loops are reported;
* folders are walked with an explicit stack, so a tree thousands of folders deep cannot hit
  Python's recursion limit;
* binary files, files over the size limit, non-UTF-8 files, FIFOs/devices and unreadable
  files are reported as skipped and never crash the scan.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from breachlab.vuln.scan.extract import SOURCE_SUFFIXES, lang_for_suffix
from breachlab.vuln.scan.finding import Skipped

VENDORED_DIRS = ("third_party", "third-party", "thirdparty", "3rdparty", "vendor", "vendored", "external",
                 "extern", "deps", "_deps", "node_modules", "bower_components")
BUILD_DIRS = ("build", "builds", "out", "dist", "cmake-build-*", "CMakeFiles", "bazel-*", "_build", "obj")
ALWAYS_SKIPPED = (".git", ".hg", ".svn", ".venv", "venv", "__pycache__", ".tox", ".cache")


@dataclass(frozen=True)
class SourceFile:
    """A file chosen for scanning: its path, the path shown in reports and its grammar."""

    path: Path
    display: str
    lang: str


def _gitignore(directory: Path) -> object | None:
    gi = directory / ".gitignore"
    try:
        if not gi.is_file():
            return None
        text = gi.read_text("utf-8", "replace")
    except OSError:
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(text.splitlines())


def _ignored(specs: list[tuple[Path, object]], path: Path, is_dir: bool) -> bool:
    """True when any .gitignore on the way down ignores ``path`` (negations work within a file)."""
    for base, spec in specs:
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:
            continue
        if spec.match_file(rel + "/" if is_dir else rel):
            return True
    return False


def _skip_dir(name: str, include_vendored: bool, exclude: tuple[str, ...]) -> bool:
    if name in ALWAYS_SKIPPED or any(fnmatch.fnmatch(name, pat) for pat in exclude):
        return True
    if include_vendored:
        return False
    return any(fnmatch.fnmatch(name, pat) for pat in (*VENDORED_DIRS, *BUILD_DIRS))


def walk(roots: list[Path], *, respect_gitignore: bool = True, include_vendored: bool = False,
         exclude: tuple[str, ...] = ()) -> Iterator[SourceFile | Skipped]:
    """Yield each source file under ``roots`` (sorted, deterministic) or a :class:`Skipped`."""
    seen: set[str] = set()
    cwd = Path.cwd()
    for root in roots:
        root = Path(os.path.abspath(root))
        try:
            st = os.stat(root)
        except OSError as exc:
            yield Skipped(str(root), _os_reason(exc))
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        # report paths relative to the working directory when the root is inside it (so that
        # `scan src/` in a checkout gives `src/a.c`, what SARIF viewers need), else to the root
        base = cwd if (root == cwd or cwd in root.parents) else (root if is_dir else root.parent)
        if not is_dir:
            # a file named explicitly is scanned even when ignored; a symlink among the named
            # files must still stay inside the folder that holds it
            yield from _file(root, _display(root, base), seen, os.path.realpath(root.parent), explicit=True)
            continue
        specs = _ancestor_specs(root) if respect_gitignore else []
        if specs and _ignored(specs, root, True):
            specs = []  # the user named an ignored folder: scan it, its own .gitignore files still apply
        yield from _walk_dir(root, base, specs, seen, respect_gitignore, include_vendored, exclude)


def nothing_to_scan(roots: list[Path], **walk_options: object) -> list[Skipped] | None:
    """None as soon as :func:`walk` yields a source file; else every :class:`Skipped` it yielded.

    Lets a command refuse a scan of nothing before it loads a model.  ``walk_options`` are
    :func:`walk`'s keyword arguments.
    """
    skipped: list[Skipped] = []
    for item in walk(roots, **walk_options):  # type: ignore[arg-type]
        if not isinstance(item, Skipped):
            return None
        skipped.append(item)
    return skipped


def _ancestor_specs(root: Path) -> list[tuple[Path, object]]:
    """.gitignore files above ``root`` up to its repository top (none outside a repository)."""
    chain = []
    for d in root.parents:
        chain.append(d)
        if (d / ".git").exists():
            break
    else:
        return []
    return [(d, spec) for d in reversed(chain) if (spec := _gitignore(d)) is not None]


def _walk_dir(root: Path, base: Path, specs: list, seen: set[str], respect_gitignore: bool,
              include_vendored: bool, exclude: tuple[str, ...]) -> Iterator[SourceFile | Skipped]:
    """Depth-first, sorted walk of ``root`` with an explicit stack (no recursion limit)."""
    real_root = os.path.realpath(root)
    stack: list[tuple[Path, list]] = [(root, specs)]
    while stack:
        directory, dspecs = stack.pop()
        own = _gitignore(directory) if respect_gitignore else None
        if own is not None:
            dspecs = [*dspecs, (directory, own)]
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(_display(directory, base), _os_reason(exc))
            continue
        subdirs: list[Path] = []
        for entry in entries:
            path = Path(entry.path)
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError as exc:
                yield Skipped(_display(path, base), _os_reason(exc))
                continue
            if is_dir:
                if not (_skip_dir(entry.name, include_vendored, exclude) or (dspecs and _ignored(dspecs, path, True))):
                    subdirs.append(path)
                continue
            if lang_for_suffix(path.suffix) is None:
                continue
            if any(fnmatch.fnmatch(entry.name, pat) for pat in exclude):
                continue
            if dspecs and _ignored(dspecs, path, False):
                continue
            display = _display(path, base)
            if is_link:
                try:
                    if Path(path).resolve(strict=True).is_dir():
                        yield Skipped(display, "symlink to a directory: not followed")
                        continue
                except (OSError, RuntimeError) as exc:
                    yield Skipped(display, _os_reason(exc) if isinstance(exc, OSError) else "symlink loop")
                    continue
            yield from _file(path, display, seen, real_root)
        # files of a folder before its sub-folders, sub-folders in name order
        stack.extend((d, dspecs) for d in reversed(subdirs))


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _file(path: Path, display: str, seen: set[str], real_root: str,
          explicit: bool = False) -> Iterator[SourceFile | Skipped]:
    lang = lang_for_suffix(path.suffix)
    if lang is None:
        if explicit:
            yield Skipped(display, f"not a C/C++ file (suffix {path.suffix or 'none'}; "
                                   f"scanned: {', '.join(sorted(SOURCE_SUFFIXES))})")
        return
    try:
        real = os.path.realpath(path, strict=True)
    except OSError as exc:
        yield Skipped(display, _os_reason(exc))
        return
    if not _inside(real, real_root):
        # decided from the resolved path alone: the target is never opened or read
        yield Skipped(display, "symlink leaves the scanned root: not followed")
        return
    try:
        st = os.stat(real)
    except OSError as exc:
        yield Skipped(display, _os_reason(exc))
        return
    if not stat.S_ISREG(st.st_mode):
        yield Skipped(display, "not a regular file (FIFO, device or socket): not read")
        return
    if real in seen:
        return
    seen.add(real)
    yield SourceFile(path=Path(real) if path.is_symlink() else path, display=display, lang=lang)


def _display(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "broken symlink or missing file"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "unreadable: permission denied"
    return f"unreadable: {exc.strerror or exc}"


def read_source(sf: SourceFile, max_bytes: int) -> tuple[bytes | None, Skipped | None]:
    """Read a chosen file with all the hostile-input checks; (bytes, None) or (None, why)."""
    try:
        size = os.stat(sf.path).st_size
        if size > max_bytes:
            return None, Skipped(sf.display, f"file too large ({size:,} bytes > limit {max_bytes:,})")
        # O_NOFOLLOW: a file swapped for a symlink after the walk checked it is not followed
        fd = os.open(sf.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        return None, Skipped(sf.display, _os_reason(exc))
    if len(data) > max_bytes:
        return None, Skipped(sf.display, f"file too large (> limit {max_bytes:,} bytes)")
    if b"\0" in data[:8192]:
        return None, Skipped(sf.display, "binary file (NUL bytes)")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, Skipped(sf.display, f"not UTF-8 (invalid byte at line {line})", line=line)
    return data, None
