"""``breachlab vuln kb score KB --data DATA`` — the retrieval baseline, with no model at all.

Each function of the split gets P(vulnerable) from its similarity to the k nearest known
vulnerable halves minus that to the k nearest known fixed halves
(:func:`breachlab.vuln.kb.retrieve.retrieval_score`). The run directory looks like an eval run
(``predictions.jsonl`` with mode ``retrieval``, ``metrics.json``, ``report.md``/``.html``), so
``breachlab vuln compare`` and ``benchmarks/realcode_table.py`` read it as they read a model's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breachlab.config import ConfigError, field

log = logging.getLogger("breachlab.vuln.kb")
MODE = "retrieval"


@dataclass
class KbScoreConfig:
    """How ``breachlab vuln kb score`` runs the retrieval baseline."""

    kb: str = field("", help="KB folder from `breachlab vuln kb build`")
    data: str = field("", help="data run directory or samples .jsonl to score")
    split: str = field("test", help="which split of a data run directory to score")
    sources: list[str] = field(default_factory=list, help="score only samples from these sources; empty = all")
    k: int = field(1, help="how many nearest known vulnerable (and fixed) halves to average")
    threshold: float = field(0.5, help="predict VULNERABLE when the score is at least this (0.5: closer to known bugs)")
    n_boot: int = field(1000, help="bootstrap resamples for the 95% confidence intervals")
    seed: int = field(42, help="seed for bootstrap resampling")

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must lie strictly between 0 and 1, got {self.threshold}")


def score_rows(kb: Any, samples: list, k: int, threshold: float) -> list[dict[str, Any]]:
    """One prediction row per sample (the eval schema, mode ``retrieval``)."""
    from breachlab.vuln.kb.retrieve import hits_from_row, retrieval_score

    start = time.perf_counter()
    sv, sf = kb.similarities([s.code for s in samples])
    per = (time.perf_counter() - start) / max(len(samples), 1)
    rows = []
    for i, s in enumerate(samples):
        p = retrieval_score(sv[i], sf[i], k, kb.method)
        rows.append({"id": s.id, "label": s.label, "cwe": s.cwe, "source": s.source, "pair_id": s.pair_id,
                     "mode": MODE, "model": f"kb:{kb.method}:k={k}", "backend": "kb", "truncated": False,
                     "raw_output": "", "p_vulnerable": p, "verdict": "VULNERABLE" if p >= threshold else "SAFE",
                     "echo": False, "nearest": [h.pair.id for h in hits_from_row(kb.pairs, sv[i], sf[i], k)],
                     "latency_s": round(per, 6)})
    return rows


def run(cfg: KbScoreConfig, out: str | Path | None = None, root: str | Path = "runs") -> Path:
    """Score ``cfg.data`` with the retrieval baseline into a fresh run directory; returns its path."""
    from rich.console import Console

    from breachlab.errors import UserError
    from breachlab.rundir import RunDir, atomic_write_json, write_jsonl
    from breachlab.vuln.eval.evaluate import load_eval_samples
    from breachlab.vuln.eval.report import metrics_table, write_report
    from breachlab.vuln.eval.summary import summarize
    from breachlab.vuln.kb.retrieve import KnowledgeBase
    from breachlab.vuln.sample import only_sources

    if not cfg.kb:
        raise UserError("no KB: pass KB (a folder from `breachlab vuln kb build`)")
    kb = KnowledgeBase.load(cfg.kb)
    samples, data_file = load_eval_samples(cfg.data, cfg.split)
    if cfg.sources:
        samples = only_sources(samples, cfg.sources, where=str(data_file))
    rd = RunDir.create("vuln-eval", cfg, root=root, out=out, seed=cfg.seed,
                       inputs=[data_file, Path(cfg.kb) / "pairs.jsonl"])
    with rd.running():
        rows = score_rows(kb, samples, cfg.k, cfg.threshold)
        write_jsonl(rd / "predictions.jsonl", rows)
        summary = summarize(rows, threshold=cfg.threshold, n_boot=cfg.n_boot, seed=cfg.seed)
        atomic_write_json(rd / "metrics.json", {MODE: summary})
        title = f"retrieval baseline ({kb.method}, k={cfg.k})"
        write_report(rd.path, {title: summary}, {title: rows}, title=title,
                     meta={"kb": cfg.kb, "kb_pairs": len(kb), "data": str(data_file), "samples": len(samples)})
        rd.update_manifest(model_id=f"kb:{kb.method}:k={cfg.k}", backend="kb", n_samples=len(samples))
    Console().print(metrics_table(summary, title))
    return rd.path
