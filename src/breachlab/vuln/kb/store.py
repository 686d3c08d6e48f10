"""A KB folder on disk and what it can be built from.

A KB folder holds ``pairs.jsonl`` (one known pair per line: ``id, vulnerable, fixed, cwe, source,
group, lang``) and ``kb.json`` (schema, method, counts, what it was built from). Text and JSON
only: the index is rebuilt when the KB is opened.

A KB is built from either

* a data run directory (``breachlab vuln data build``; its ``train`` split by default) or a
  samples JSONL it wrote: the complete vulnerable/fixed pairs (rows sharing a ``pair_id``);
* your own fixes, one JSON object per line::

      {"vulnerable": "<code before the fix>", "fixed": "<code after>",
       "id": "optional", "cwe": "CWE-787 (optional)", "lang": "c | cpp (optional)",
       "group": "optional, e.g. the commit", "source": "optional, e.g. the project"}

A malformed line stops the build with its file and line; nothing is written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from breachlab.errors import UserError
from breachlab.vuln.data.sources import guess_lang, iter_json_records
from breachlab.vuln.sample import code_hash, normalise_cwe, normalise_ws

SCHEMA = "breachlab.vuln.kb/1"
PAIRS = "pairs.jsonl"
META = "kb.json"


@dataclass(frozen=True)
class KnownPair:
    """A known vulnerable function and its fix."""

    id: str
    vulnerable: str
    fixed: str
    cwe: str | None = None
    source: str = "user"
    group: str | None = None
    lang: str = "c"

    @property
    def hashes(self) -> tuple[str, str]:
        """Whitespace-normalised code hashes of both halves (what the leak guard compares)."""
        return code_hash(self.vulnerable), code_hash(self.fixed)


def pairs_from_samples(rows: Iterable[dict[str, Any]], where: str) -> tuple[list[KnownPair], dict[str, int]]:
    """The complete pairs among sample rows (``code, label, pair_id``, as data build writes them)."""
    halves: dict[str, dict[int, dict[str, Any]]] = {}
    singles = 0
    for row in rows:
        pid = row.get("pair_id")
        if not pid:
            singles += 1
            continue
        halves.setdefault(str(pid), {})[int(row["label"])] = row
    pairs, incomplete = [], 0
    for pid, h in halves.items():
        if set(h) != {0, 1}:
            incomplete += 1
            continue
        v, f = h[1], h[0]
        pairs.append(KnownPair(id=pid, vulnerable=v["code"], fixed=f["code"], cwe=v.get("cwe"),
                               source=str(v.get("source") or "unknown"), group=v.get("group"),
                               lang=str(v.get("lang") or "c")))
    return pairs, {"rows_without_pair": singles, "incomplete_pairs": incomplete}


def read_user_fixes(path: Path) -> list[KnownPair]:
    """Pairs from a JSONL of ``{"vulnerable", "fixed", ...}`` objects; errors name file and line."""
    out = []
    for lineno, rec in iter_json_records(path):
        where = f"{path}:{lineno}"
        for key in ("vulnerable", "fixed"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise UserError(f"{where}: {key!r} must be a non-empty string (the code "
                                f"{'before' if key == 'vulnerable' else 'after'} the fix)")
        lang = str(rec.get("lang") or guess_lang(rec["vulnerable"])).lower()
        if lang not in ("c", "cpp"):
            raise UserError(f"{where}: lang must be c or cpp, got {rec.get('lang')!r}")
        ident = str(rec.get("id") or "user-" + hashlib.sha1(f"{lineno}:{rec['vulnerable']}".encode()).hexdigest()[:12])
        out.append(KnownPair(id=ident, vulnerable=rec["vulnerable"], fixed=rec["fixed"],
                             cwe=normalise_cwe(rec.get("cwe")),
                             source=str(rec.get("source") or "user"), group=rec.get("group"), lang=lang))
    return out


def read_input(data: str | Path, split: str = "train") -> tuple[list[KnownPair], dict[str, Any], Path]:
    """Known pairs from a data run directory, a samples JSONL or a user's fixes JSONL."""
    path = Path(data)
    if path.is_dir():
        path = path / f"{split}.jsonl"
        if not path.is_file():
            raise UserError(f"{data} has no {split} split ({path} not found)")
    elif not path.is_file():
        raise UserError(f"{data}: no such data run directory or JSONL file")
    records = list(iter_json_records(path))
    if not records:
        raise UserError(f"{path}: no records")
    first = records[0][1]
    if "vulnerable" in first and "fixed" in first:
        return read_user_fixes(path), {"format": "fixes"}, path
    for lineno, rec in records:
        if not isinstance(rec.get("code"), str) or rec.get("label") not in (0, 1):
            raise UserError(f"{path}:{lineno}: expected a sample (code, label 0/1, pair_id) or a fix "
                            "(vulnerable, fixed)")
    pairs, stats = pairs_from_samples((r for _, r in records), str(path))
    return pairs, {"format": "samples", **stats}, path


def clean_pairs(pairs: list[KnownPair]) -> tuple[list[KnownPair], dict[str, int]]:
    """Drop pairs whose halves are equal (whitespace aside) and repeats of the same pair; ids must be unique."""
    seen_ids: set[str] = set()
    seen: set[tuple[str, str]] = set()
    kept, dropped = [], {"identical_halves": 0, "duplicate_pairs": 0}
    for p in pairs:
        if p.id in seen_ids:
            raise UserError(f"pair id {p.id!r} appears twice: ids must be unique")
        seen_ids.add(p.id)
        if normalise_ws(p.vulnerable) == normalise_ws(p.fixed):
            dropped["identical_halves"] += 1
            continue
        if p.hashes in seen:
            dropped["duplicate_pairs"] += 1
            continue
        seen.add(p.hashes)
        kept.append(p)
    return kept, dropped


def write_kb(out: Path, pairs: list[KnownPair], meta: dict[str, Any]) -> None:
    from breachlab.rundir import atomic_write_json, write_jsonl

    write_jsonl(out / PAIRS, (asdict(p) for p in pairs))
    atomic_write_json(out / META, {"schema": SCHEMA, "n_pairs": len(pairs), **meta})


def read_kb(path: str | Path) -> tuple[list[KnownPair], dict[str, Any]]:
    """The pairs and metadata of a KB folder (``breachlab vuln kb build``)."""
    path = Path(path)
    meta_file, pairs_file = path / META, path / PAIRS
    if not meta_file.is_file() or not pairs_file.is_file():
        raise UserError(f"{path} is not a KB folder (needs {META} and {PAIRS}: "
                        "build one with `breachlab vuln kb build`)")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("schema") != SCHEMA:
        raise UserError(f"{meta_file}: schema {meta.get('schema')!r}, expected {SCHEMA!r}")
    pairs = []
    for lineno, rec in iter_json_records(pairs_file):
        try:
            pairs.append(KnownPair(**rec))
        except TypeError as exc:
            raise UserError(f"{pairs_file}:{lineno}: not a known pair ({exc})") from None
    return pairs, meta
