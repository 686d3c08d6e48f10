"""``breachlab vuln kb build DATA --out KB`` — index known vulnerable/fixed pairs for retrieval.

``DATA`` is a data run directory (its ``train`` split by default: never index the split you
test on), a samples JSONL, or your own fixes as JSON lines (format: :mod:`breachlab.vuln.kb.store`).
Writes ``pairs.jsonl``, ``kb.json`` and the run's ``manifest.json`` into ``KB``; opening the KB
checks that the index builds, so a broken KB fails here and not in a later eval.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from breachlab.config import ConfigError, field
from breachlab.errors import UserError
from breachlab.vuln.kb.index import METHODS

log = logging.getLogger("breachlab.vuln.kb")


@dataclass
class KbBuildConfig:
    """What ``breachlab vuln kb build`` indexes."""

    data: str = field("", help="a data run directory, a samples .jsonl, or a JSONL of your own fixes "
                               "({\"vulnerable\", \"fixed\", optional id, cwe, lang, group, source})")
    split: str = field("train", help="which split of a data run directory to index (default train; "
                                     "never the split you evaluate on)")
    sources: list[str] = field(default_factory=list, help="index only pairs from these sources (e.g. [pairvul]); "
                                                          "empty = all")
    exclude_sources: list[str] = field(default_factory=list,
                                       help="leave pairs from these sources out (leave-one-source-out: the source "
                                            "you test on)")
    method: str = field("tfidf", help="similarity: tfidf (1-2-grams of code tokens, cosine) or bm25")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        both = set(self.sources) & set(self.exclude_sources)
        if both:
            raise ConfigError(f"sources and exclude_sources both name {', '.join(sorted(both))}")


def build_pairs(cfg: KbBuildConfig) -> tuple[list, dict, Path]:
    """The cleaned pairs a KB holds, the build's stats, and the file they came from."""
    from breachlab.vuln.kb.store import clean_pairs, read_input

    if not cfg.data:
        raise UserError("no data to index: pass DATA (a data run directory, a samples .jsonl or a fixes .jsonl)")
    pairs, stats, path = read_input(cfg.data, cfg.split)
    have = sorted({p.source for p in pairs})
    if cfg.sources:
        pairs = [p for p in pairs if p.source in cfg.sources]
    if cfg.exclude_sources:
        pairs = [p for p in pairs if p.source not in cfg.exclude_sources]
    pairs, dropped = clean_pairs(pairs)
    if not pairs:
        raise UserError(f"{path}: no vulnerable/fixed pairs to index (sources there: {', '.join(have) or 'none'})")
    by_source: dict[str, int] = {}
    for p in pairs:
        by_source[p.source] = by_source.get(p.source, 0) + 1
    return pairs, {**stats, **dropped, "pairs_by_source": by_source}, path


def run(cfg: KbBuildConfig, out: str | Path | None = None, root: str | Path = "runs") -> Path:
    """Build the KB into a fresh ``vuln-kb`` run directory; returns its path."""
    from breachlab.rundir import RunDir
    from breachlab.vuln.kb.retrieve import KnowledgeBase
    from breachlab.vuln.kb.store import write_kb

    pairs, stats, path = build_pairs(cfg)      # bad input fails here, before anything is written
    KnowledgeBase(pairs, cfg.method)           # the index builds
    rd = RunDir.create("vuln-kb", cfg, root=root, out=out, inputs=[path])
    with rd.running():
        write_kb(rd.path, pairs, {"method": cfg.method, "built_from": str(path), "split": cfg.split, **stats})
        rd.update_manifest(n_pairs=len(pairs))
    log.info("indexed %d pairs from %s", len(pairs), path)
    return rd.path
