"""CVEfixes (Bhandari et al., 2021) as sampled by VulLLM: real C/C++ functions from CVE-fixing commits.

One JSON line per function: ``id``, ``code``, ``label`` (1 vulnerable, 0 fixed or unrelated),
``pair_id`` (shared by the vulnerable and the fixed version of one function, null for the
unpaired rest) and ``func_name``. The file carries no project, commit or CVE ids, so the split
group is the **function name**: both halves of a pair, and every other version of a function
with that name, land in one split. (A generic name such as ``main`` or a macro such as
``PHP_FUNCTION`` makes a large group: cautious, never leaky.) A row without a name is its own
group. A malformed line stops the build with its file and line: nothing is written.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from breachlab.errors import UserError
from breachlab.vuln.data.sources import ListPool, guess_lang, iter_json_records, require
from breachlab.vuln.sample import SAFE, VULNERABLE, Sample

FIELDS = ("id", "code", "label")
DEFAULT_FILE = "cvefixes_vulllm_test512.jsonl"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_:~]*")


def cvefixes_file(path: str | Path) -> Path:
    """The JSONL file: ``path`` itself, or ``path/cvefixes_vulllm_test512.jsonl`` (or the one .jsonl in it)."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / DEFAULT_FILE).is_file():
        return path / DEFAULT_FILE
    files = sorted(path.glob("*.jsonl"))
    if len(files) != 1:
        raise UserError(f"{path}: expected {DEFAULT_FILE} (or exactly one .jsonl file), found "
                        f"{', '.join(f.name for f in files) or 'none'}")
    return files[0]


def name_group(func_name: Any) -> str | None:
    """The split group of a function name: ``*cJSON_Duplicate`` and ``cJSON_Duplicate`` are one."""
    if not isinstance(func_name, str):
        return None
    m = _NAME.search(func_name)
    return f"fn:{m.group(0)}" if m else None


def _label(value: Any, where: str) -> int:
    if isinstance(value, bool) or str(value).strip() not in ("0", "1"):
        raise UserError(f"{where}: label must be 0 or 1, got {value!r}")
    return VULNERABLE if str(value).strip() == "1" else SAFE


def load_cvefixes(path: str | Path, languages: list[str] | tuple[str, ...] = ("c", "cpp"),
                  unpaired: bool = True) -> ListPool:
    """Every function of the file as a pool (group = function name; pairs share a ``pair_id``).

    ``unpaired``: keep the functions without a pair (True) or only the vulnerable/fixed pairs.
    Raises :class:`~breachlab.errors.UserError` naming file and line for a malformed line, a
    label other than 0/1, empty code, a repeated id, or a ``pair_id`` that is not exactly one
    vulnerable and one safe function.
    """
    file = cvefixes_file(path)
    rows: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    pair_lines: dict[str, list[tuple[int, int]]] = {}
    for lineno, rec in iter_json_records(file):
        where = f"{file}:{lineno}"
        require(rec, FIELDS, where)
        if not isinstance(rec["code"], str) or not rec["code"].strip():
            raise UserError(f"{where}: code must be a non-empty string")
        label = _label(rec["label"], where)
        rid = str(rec["id"])
        if rid in seen:
            raise UserError(f"{where}: id {rid!r} repeats line {seen[rid]}")
        seen[rid] = lineno
        pid = rec.get("pair_id")
        if pid is not None and (not isinstance(pid, str) or not pid.strip()):
            raise UserError(f"{where}: pair_id must be a non-empty string or null, got {pid!r}")
        if pid is not None:
            pair_lines.setdefault(pid, []).append((lineno, label))
        rows.append((lineno, dict(rec, label=label)))
    for pid, halves in pair_lines.items():
        if sorted(lab for _, lab in halves) != [SAFE, VULNERABLE]:
            lines = ", ".join(str(n) for n, _ in halves)
            raise UserError(f"{file}:{halves[-1][0]}: pair_id {pid!r} must join one vulnerable and one safe "
                            f"function (lines {lines})")
    stats: dict[str, Any] = {"rows": len(rows), "pairs": len(pair_lines), "unpaired_rows": 0,
                             "unpaired_dropped": 0, "other_language_rows": 0, "groups": 0}
    # both halves of a pair take one language (C++ if either half reads as C++)
    pair_lang = {pid: "c" for pid in pair_lines}
    for _, rec in rows:
        if rec.get("pair_id") is not None and guess_lang(rec["code"]) == "cpp":
            pair_lang[rec["pair_id"]] = "cpp"
    samples: list[Sample] = []
    for lineno, rec in rows:
        pid = rec.get("pair_id")
        if pid is None:
            stats["unpaired_rows"] += 1
            if not unpaired:
                stats["unpaired_dropped"] += 1
                continue
        code = rec["code"]
        lang = guess_lang(code) if pid is None else pair_lang[pid]
        if lang not in languages:
            stats["other_language_rows"] += 1
            continue
        rid = str(rec["id"])
        ident = rid if rid.startswith("cvefixes") else f"cvefixes:{rid}"
        group = name_group(rec.get("func_name")) or f"row:{ident}"
        samples.append(Sample(id=ident, code=code, label=rec["label"], cwe=None, source="cvefixes", group=group,
                              pair_id=None if pid is None else f"cvefixes-{pid}" if not pid.startswith("cvefixes")
                              else pid, lang=lang,
                              meta={"file": file.name, "line": lineno, "func_name": rec.get("func_name")}))
    stats["groups"] = len({s.group for s in samples})
    stats["largest_group"] = max(Counter(s.group for s in samples).values(), default=0)
    return ListPool("cvefixes", samples, stats)
