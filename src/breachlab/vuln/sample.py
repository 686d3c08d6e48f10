"""The one record every vuln stage passes around: a labelled function."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from breachlab.errors import UserError

VULNERABLE = 1
SAFE = 0
LABEL_NAMES = {VULNERABLE: "VULNERABLE", SAFE: "SAFE"}

_WS = re.compile(r"\s+")


def normalise_ws(code: str) -> str:
    """Collapse all whitespace so that reformatted copies of a function compare equal."""
    return _WS.sub(" ", code).strip()


def code_hash(code: str) -> str:
    """Hash of the whitespace-normalised code: the key for exact dedup and leak checks."""
    return hashlib.sha256(normalise_ws(code).encode("utf-8")).hexdigest()[:16]


def normalise_cwe(value: Any) -> str | None:
    """``787``, ``'CWE-787'``, ``'cwe787'``, ``['CWE-787']`` → ``'CWE-787'``; unknown → None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        for v in value:
            norm = normalise_cwe(v)
            if norm:
                return norm
        return None
    m = re.search(r"(\d+)", str(value))
    return f"CWE-{int(m.group(1))}" if m else None


@dataclass(frozen=True)
class Sample:
    """A function with its label.

    Attributes:
        id: stable unique id (source + origin), used to line up predictions across runs.
        code: the function source as the model sees it (already neutralised for Juliet).
        label: 1 = vulnerable, 0 = safe.
        cwe: ``CWE-<n>`` or None when unknown.
        source: ``juliet``, ``sven``, ``pairvul``, ``cvefixes``, ``diversevul`` or ``generic``.
        group: the split key; samples sharing it never straddle train/val/test
            (Juliet test-case family, SVEN commit, PairVul CVE, CVEfixes function name,
            DiverseVul commit).
        pair_id: set when the sample is one half of a vulnerable/fixed pair.
        lang: ``c`` or ``cpp``.
        meta: free-form provenance (file, project, commit, ...).
    """

    id: str
    code: str
    label: int
    cwe: str | None
    source: str
    group: str
    pair_id: str | None = None
    lang: str = "c"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label not in (SAFE, VULNERABLE):
            raise ValueError(f"sample {self.id}: label must be 0 or 1, got {self.label!r}")

    @property
    def hash(self) -> str:
        return code_hash(self.code)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Sample":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def read_samples(path: str | Path, *, unique_ids: bool = False) -> list[Sample]:
    """Read a samples JSONL written by ``breachlab vuln data build``; errors name the line.

    A line that is not a JSON object, or not UTF-8, is refused (ValueError ``FILE:LINE: …``);
    with ``unique_ids`` (evaluation: a sample counted twice skews every metric) so is an id
    seen on an earlier line.
    """
    path = Path(path)
    out: list[Sample] = []
    first_line: dict[str, int] = {}
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ValueError(f"a JSON {type(data).__name__}, not an object")
                sample = Sample.from_dict(data)
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{lineno}: not a valid sample ({exc})") from None
            if unique_ids and sample.id in first_line:
                raise ValueError(f"{path}:{lineno}: sample id {sample.id!r} already on line {first_line[sample.id]} "
                                 "(each sample is scored once: remove the duplicate)")
            first_line.setdefault(sample.id, lineno)
            out.append(sample)
    return out


def iter_dicts(samples: Iterable[Sample]) -> Iterator[dict[str, Any]]:
    for s in samples:
        yield s.to_dict()


def only_sources(samples: list, sources: list[str], *, where: str) -> list:
    """The samples whose ``source`` is in ``sources``; a clear error when none are."""
    kept = [s for s in samples if s.source in sources]
    if not kept:
        found = sorted({s.source for s in samples})
        raise UserError(f"{where}: no samples from {', '.join(sources)} (the data holds: {', '.join(found) or 'none'})")
    return kept


def load_split(path_or_run_dir: str | Path, split: str = "test") -> list[Sample]:
    """The samples of one split from a run directory, or of a JSONL file."""
    path = Path(path_or_run_dir)
    if path.is_dir():
        file = path / f"{split}.jsonl"
        if not file.is_file():
            have = sorted(p.stem for p in path.glob("*.jsonl"))
            raise UserError(f"{path} has no {split} split (has: {', '.join(have) or 'none'})")
        path = file
    elif not path.is_file():
        raise UserError(f"{path}: no such run directory or JSONL file")
    try:
        return read_samples(path)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
