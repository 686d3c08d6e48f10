"""Any labelled JSONL/JSON/CSV/TSV file, mapped onto samples through a column mapping."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from breachlab.errors import UserError
from breachlab.vuln.data.sources import (
    ListPool,
    guess_lang,
    iter_csv_records,
    iter_json_records,
    lang_of_filename,
    require,
)
from breachlab.vuln.sample import SAFE, VULNERABLE, Sample, normalise_cwe


@dataclass
class ColumnMap:
    """Which columns hold what.  ``vulnerable_values`` are compared as lower-case strings."""

    code: str = "code"
    label: str = "label"
    vulnerable_values: list[str] = field(default_factory=lambda: ["1", "true", "vulnerable", "yes"])
    cwe: str | None = None
    group: str | None = None
    id: str | None = None
    lang: str | None = None


def load_generic(path: str | Path, columns: ColumnMap, languages: Iterable[str] = ("c", "cpp")) -> ListPool:
    """Samples from a table; rows without a group column become their own group."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"generic data not found at {path}")
    is_table = path.suffix.lower() in (".csv", ".tsv")
    records = iter_csv_records(path) if is_table else iter_json_records(path)
    # a mapped CWE column must exist in a table's header; a JSON record may leave it out
    needed = [c for c in (columns.code, columns.label, columns.group, columns.id) if c]
    if is_table and columns.cwe:
        needed.append(columns.cwe)
    vulnerable = {str(v).strip().lower() for v in columns.vulnerable_values}
    langs = set(languages)
    samples = []
    stats = {"rows": 0, "other_language_rows": 0}
    for lineno, rec in records:
        where = f"{path}:{lineno}"
        require(rec, needed, where)
        code = rec[columns.code]
        if not isinstance(code, str) or not code.strip():
            raise UserError(f"{where}: column {columns.code!r} must hold non-empty code")
        stats["rows"] += 1
        label = VULNERABLE if str(rec[columns.label]).strip().lower() in vulnerable else SAFE
        raw_lang = str(rec.get(columns.lang) or "") if columns.lang else ""
        lang = (lang_of_filename("x." + raw_lang) or raw_lang.lower()) if raw_lang else guess_lang(code)
        if lang not in langs:
            stats["other_language_rows"] += 1
            continue
        ident = str(rec[columns.id]) if columns.id else hashlib.sha1(f"{lineno}:{code}".encode()).hexdigest()[:12]
        samples.append(Sample(
            id=f"generic:{ident}", code=code, label=label,
            cwe=normalise_cwe(rec.get(columns.cwe)) if columns.cwe else None,
            source="generic", group=str(rec[columns.group]) if columns.group else f"generic:{ident}",
            lang=lang, meta={"file": path.name, "line": lineno},
        ))
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise UserError(f"{path}: id {dup!r} appears more than once in column {columns.id!r}")
    return ListPool("generic", samples, stats)
