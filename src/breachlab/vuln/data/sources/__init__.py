"""Loaders that turn public vulnerability datasets into :class:`~breachlab.vuln.sample.Sample` s.

Every loader returns a :class:`Pool`: the list of its split groups (Juliet test-case family,
SVEN commit, DiverseVul commit, ...) and a ``fetch(groups)`` that yields the samples of those
groups.  Small sources are read whole (:class:`ListPool`); Juliet is lazy, so that building a
200-sample test set parses a few dozen test-case families instead of 100,000 files.

Bad input never produces a traceback: readers here raise :class:`~breachlab.errors.UserError`
naming the file and the line.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from breachlab.errors import UserError
from breachlab.vuln.sample import Sample

C_EXTS = {".c": "c", ".h": "c"}
CPP_EXTS = {".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp"}
OTHER_EXTS = {".py": "python", ".js": "javascript", ".go": "go", ".rb": "ruby", ".java": "java"}


def lang_of_filename(name: str) -> str | None:
    """``foo.cpp`` → ``cpp``; ``foo.c``/``foo.h`` → ``c``; ``foo.py`` → ``python``; unknown → None."""
    ext = os.path.splitext(name.lower())[1]
    return C_EXTS.get(ext) or CPP_EXTS.get(ext) or OTHER_EXTS.get(ext)


def guess_lang(code: str) -> str:
    """C or C++ from the text alone (for sources that do not say): C++-only syntax → ``cpp``."""
    markers = ("::", "template<", "template <", "nullptr", "std::", "class ", "namespace ", "public:", "private:")
    return "cpp" if any(m in code for m in markers) else "c"


class Pool(Protocol):
    """What a loader hands the build pipeline."""

    name: str
    stats: dict[str, Any]

    def groups(self) -> list[str]:
        """Every split group the source holds (cheap: no parsing)."""

    def fetch(self, groups: list[str]) -> list[Sample]:
        """The samples of ``groups`` (any order)."""


class ListPool:
    """A pool over samples already in memory."""

    def __init__(self, name: str, samples: Iterable[Sample], stats: dict[str, Any] | None = None):
        self.name = name
        self.stats = dict(stats or {})
        self._by_group: dict[str, list[Sample]] = {}
        for s in samples:
            self._by_group.setdefault(s.group, []).append(s)

    def groups(self) -> list[str]:
        return list(self._by_group)

    def fetch(self, groups: list[str]) -> list[Sample]:
        return [s for g in groups for s in self._by_group.get(g, [])]


# -- readers with errors that name the file and line ------------------------------------------

def _read_text(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise UserError(f"{path}: the file is empty")
    return text


def iter_json_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) from a JSON-lines file, or from a JSON array file.

    The DiverseVul authors' ``.json`` is really JSON lines, so the format is sniffed from the
    content, not the extension. In an array the line is where the record starts, so an
    error in a pretty-printed 3 MB file (PairVul) still points at its line.
    """
    path = Path(path)
    text = _read_text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from _iter_json_array(path, text)
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        yield lineno, rec


_WS = re.compile(r"\s*")


def _iter_json_array(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records of a JSON array, each with the line its object starts on; the whole file is
    validated (a truncated file fails even after its good records were read)."""
    decoder = json.JSONDecoder()
    pos = _WS.match(text, 0).end() + 1          # past "["
    line, counted, i = 1, 0, 0

    def line_at(p: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, p)
        counted = p
        return line

    pos = _WS.match(text, pos).end()
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            start = line_at(pos)
            try:
                rec, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{exc.lineno}: malformed JSON in item {i} ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise UserError(f"{path}:{start}: item {i} is not a JSON object")
            yield start, rec
            i += 1
            pos = _WS.match(text, pos).end()
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()
                continue
            if text.startswith("]", pos):
                pos += 1
                break
            raise UserError(f"{path}:{line_at(pos)}: malformed JSON after item {i - 1} (expected ',' or ']')")
    if text[pos:].strip():
        raise UserError(f"{path}:{line_at(pos + len(text[pos:]) - len(text[pos:].lstrip()))}: "
                        "malformed JSON (extra data after the array)")


def iter_csv_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) from a CSV/TSV file with a header row."""
    path = Path(path)
    text = _read_text(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    csv.field_size_limit(1 << 30)
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    if not reader.fieldnames:
        raise UserError(f"{path}:1: no header row")
    try:
        for row in reader:
            if None in row:
                raise UserError(f"{path}:{reader.line_num}: more values than header columns")
            yield reader.line_num, row
    except csv.Error as exc:
        raise UserError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def require(rec: dict[str, Any], keys: Iterable[str], where: str) -> None:
    missing = [k for k in keys if k not in rec]
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(missing)} (has: {', '.join(sorted(rec)) or 'none'})")
