"""SVEN (He & Vechev, 2023): real vulnerability-fixing commits as vulnerable/fixed pairs.

Each JSON line holds ``func_src_before`` (vulnerable) and ``func_src_after`` (fixed).  Both
halves share a ``pair_id``; the split group is the commit, so that two pairs from one commit
never land on both sides of a split.  Pairs whose halves are equal after whitespace
normalisation teach nothing and are dropped (``identical_pairs`` in the stats).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from breachlab.errors import UserError
from breachlab.vuln.data.sources import ListPool, iter_json_records, lang_of_filename, require
from breachlab.vuln.sample import SAFE, VULNERABLE, Sample, normalise_cwe, normalise_ws

FIELDS = ("func_src_before", "func_src_after", "vul_type", "file_name")


def sven_files(path: str | Path, splits: list[str] | tuple[str, ...] = ("train", "val")) -> list[Path]:
    """The ``cwe-*.jsonl`` files under ``path/<split>/`` (or ``path`` itself if it is a file)."""
    path = Path(path)
    if path.is_file():
        return [path]
    files = [f for split in splits for f in sorted((path / split).glob("*.jsonl"))]
    if not files:
        files = sorted(path.glob("*.jsonl"))
    if not files:
        raise UserError(f"{path}: no SVEN files (expected {path}/train/cwe-*.jsonl)")
    return files


def load_sven(path: str | Path, splits: list[str] | tuple[str, ...] = ("train", "val"),
              languages: list[str] | tuple[str, ...] = ("c", "cpp")) -> ListPool:
    """All SVEN pairs under ``path`` in ``languages`` as a pool (group = commit)."""
    samples: list[Sample] = []
    stats: dict[str, Any] = {"pairs_read": 0, "identical_pairs": 0, "other_language_pairs": 0}
    seen: set[str] = set()
    for file in sven_files(path, splits):
        for lineno, rec in iter_json_records(file):
            where = f"{file}:{lineno}"
            require(rec, FIELDS, where)
            before, after = rec["func_src_before"], rec["func_src_after"]
            if not isinstance(before, str) or not isinstance(after, str):
                raise UserError(f"{where}: func_src_before/func_src_after must be strings")
            stats["pairs_read"] += 1
            lang = lang_of_filename(str(rec["file_name"]))
            if lang not in languages:
                stats["other_language_pairs"] += 1
                continue
            if normalise_ws(before) == normalise_ws(after):
                stats["identical_pairs"] += 1
                continue
            commit = str(rec.get("commit_link") or f"{file.name}:{lineno}")
            key = f"{commit}|{rec['file_name']}|{rec.get('func_name', '')}|{lineno}"
            pair_id = "sven-" + hashlib.sha1(key.encode()).hexdigest()[:12]
            if pair_id in seen:
                continue
            seen.add(pair_id)
            cwe = normalise_cwe(rec["vul_type"])
            meta = {"file": file.name, "line": lineno, "file_name": rec["file_name"],
                    "func_name": rec.get("func_name"), "commit": commit}
            for suffix, code, label in (("vul", before, VULNERABLE), ("fix", after, SAFE)):
                samples.append(Sample(id=f"{pair_id}:{suffix}", code=code, label=label, cwe=cwe,
                                      source="sven", group=commit, pair_id=pair_id, lang=lang, meta=meta))
    return ListPool("sven", samples, stats)
