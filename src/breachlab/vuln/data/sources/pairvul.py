"""PairVul (the Vul-RAG benchmark): Linux-kernel functions before and after a CVE fix.

Each ``pairvul/{train,test}/*CWE-*.json`` is a JSON array of records with
``code_before_change`` (vulnerable), ``code_after_change`` (fixed), ``cve_id``, ``cwe``,
``patch``, ``function_modified_lines``, ``cve_description`` and an ``id`` that is unique only
within its file. Both halves share a ``pair_id``; the split group is the **CVE**, so that no
CVE straddles train/val/test. Upstream, 249 CVEs sit in both the train and the test split,
so we read both and re-split by CVE; the upstream split stays in each sample's
``meta["upstream_split"]``. Pairs whose halves are equal after whitespace normalisation teach
nothing and are dropped (``identical_pairs`` in the stats). A malformed record stops the
build with its file and line (and record index): nothing is written.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from breachlab.errors import UserError
from breachlab.vuln.data.sources import ListPool, iter_json_records, require
from breachlab.vuln.sample import SAFE, VULNERABLE, Sample, normalise_cwe, normalise_ws

FIELDS = ("cve_id", "code_before_change", "code_after_change")
_CVE = re.compile(r"^CVE-\d{4}-\d+$", re.IGNORECASE)
_CWE_IN_NAME = re.compile(r"CWE-(\d+)", re.IGNORECASE)


def pairvul_files(path: str | Path, splits: list[str] | tuple[str, ...] = ("train", "test")) -> list[tuple[str, Path]]:
    """``(upstream split, file)`` for every ``*CWE-*.json`` under ``path/<split>/``.

    ``path`` may also be one file (its parent folder's name is taken as the split).
    """
    path = Path(path)
    if path.is_file():
        return [(path.parent.name, path)]
    files = [(split, f) for split in splits for f in sorted((path / split).glob("*CWE-*.json"))]
    if not files:
        raise UserError(f"{path}: no PairVul files (expected {path}/train/linux_kernel_CWE-<n>_data.json "
                        f"or {path}/test/*CWE-*.json)")
    return files


def _text(rec: dict[str, Any], key: str, where: str) -> str:
    value = rec[key]
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: {key} must be a non-empty string, got {type(value).__name__}")
    return value


def load_pairvul(path: str | Path, splits: list[str] | tuple[str, ...] = ("train", "test"),
                 languages: list[str] | tuple[str, ...] = ("c", "cpp")) -> ListPool:
    """All PairVul pairs under ``path`` as a pool (group = CVE id; the kernel is C)."""
    samples: list[Sample] = []
    stats: dict[str, Any] = {"pairs_read": 0, "identical_pairs": 0, "other_language_pairs": 0,
                             "upstream_pairs": {}, "cves": 0, "cves_in_several_upstream_splits": 0}
    cve_splits: dict[str, set[str]] = {}
    for split, file in pairvul_files(path, splits):
        name_cwe = _CWE_IN_NAME.search(file.name)
        for index, (lineno, rec) in enumerate(iter_json_records(file)):
            where = f"{file}:{lineno} (record {index})"
            require(rec, FIELDS, where)
            before, after = _text(rec, "code_before_change", where), _text(rec, "code_after_change", where)
            cve = _text(rec, "cve_id", where).strip().upper()
            if not _CVE.match(cve):
                raise UserError(f"{where}: cve_id must look like CVE-YYYY-NNNN, got {rec['cve_id']!r}")
            stats["pairs_read"] += 1
            stats["upstream_pairs"][split] = stats["upstream_pairs"].get(split, 0) + 1
            cve_splits.setdefault(cve, set()).add(split)
            if "c" not in languages:
                stats["other_language_pairs"] += 1
                continue
            if normalise_ws(before) == normalise_ws(after):
                stats["identical_pairs"] += 1
                continue
            cwe = normalise_cwe(rec.get("cwe")) or (f"CWE-{int(name_cwe.group(1))}" if name_cwe else None)
            key = f"{split}/{file.name}/{rec.get('id')}/{index}"
            pair_id = "pairvul-" + hashlib.sha1(key.encode()).hexdigest()[:12]
            meta = {"file": f"{split}/{file.name}", "line": lineno, "record": index, "upstream_id": rec.get("id"),
                    "upstream_split": split, "cve": cve}
            for suffix, code, label in (("vul", before, VULNERABLE), ("fix", after, SAFE)):
                samples.append(Sample(id=f"{pair_id}:{suffix}", code=code, label=label, cwe=cwe, source="pairvul",
                                      group=cve, pair_id=pair_id, lang="c", meta=meta))
    stats["cves"] = len(cve_splits)
    stats["cves_in_several_upstream_splits"] = sum(len(v) > 1 for v in cve_splits.values())
    return ListPool("pairvul", samples, stats)
