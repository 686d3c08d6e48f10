"""DiverseVul (Chen et al., 2023): 330k C/C++ functions from 7,514 commits, ~95% safe.

Read from the authors' JSON-lines file (``diversevul_20230702.json``), any JSON/JSONL file
of the same schema (``func, target, cwe, project, commit_id, hash, size, message``), or the
Hugging Face id ``bstee615/diversevul`` when the ``datasets`` package is installed.  The
split group is the commit: the vulnerable function and its fixed version (same commit) stay
together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

from breachlab.errors import UserError
from breachlab.vuln.data.sources import ListPool, guess_lang, iter_json_records, require
from breachlab.vuln.sample import Sample, normalise_cwe

HUB_ID = "bstee615/diversevul"
FIELDS = ("func", "target", "commit_id")


def _hub_records(hub_id: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise UserError(
            f"{hub_id}: not a local file, and loading from the Hugging Face hub needs the "
            "`datasets` package; download diversevul_20230702.json from "
            "https://github.com/wagner-group/diversevul and pass its path") from None
    ds = datasets.load_dataset(hub_id)
    i = 0
    for split in ds:
        for rec in ds[split]:
            i += 1
            yield i, dict(rec)


def records_to_samples(records: Iterable[tuple[int, dict[str, Any]]], where: str,
                       languages: Iterable[str] = ("c", "cpp")) -> Iterator[Sample]:
    langs = set(languages)
    for lineno, rec in records:
        at = f"{where}:{lineno}"
        require(rec, FIELDS, at)
        code = rec["func"]
        if not isinstance(code, str):
            raise UserError(f"{at}: func must be a string")
        try:
            label = int(rec["target"])
        except (TypeError, ValueError):
            raise UserError(f"{at}: target must be 0 or 1, got {rec['target']!r}") from None
        if label not in (0, 1):
            raise UserError(f"{at}: target must be 0 or 1, got {rec['target']!r}")
        lang = guess_lang(code)
        if lang not in langs:
            continue
        commit = str(rec["commit_id"])
        ident = str(rec.get("hash") or lineno)
        yield Sample(
            id=f"diversevul:{commit[:12]}:{ident}:{lineno}", code=code, label=label,
            cwe=normalise_cwe(rec.get("cwe")), source="diversevul", group=commit, lang=lang,
            meta={"project": rec.get("project"), "commit": commit, "size": rec.get("size"), "line": lineno},
        )


def load_diversevul(path_or_id: str | Path, languages: Iterable[str] = ("c", "cpp")) -> ListPool:
    """DiverseVul from a local JSON/JSONL file or the hub id (never in tests)."""
    path = Path(path_or_id)
    if path.is_file():
        records = iter_json_records(path)
        where = str(path)
    elif str(path_or_id) == HUB_ID:
        records = _hub_records(HUB_ID)
        where = HUB_ID
    else:
        raise UserError(
            f"DiverseVul not found at {path}: download diversevul_20230702.json from "
            "https://github.com/wagner-group/diversevul (or pass the hub id "
            f"{HUB_ID} with the `datasets` package installed)")
    return ListPool("diversevul", records_to_samples(records, where, languages))
