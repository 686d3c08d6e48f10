"""``breachlab vuln eval --data RUN_DIR [--model …] [--mode logit,generate]`` — honest evaluation.

Writes into a run directory: ``predictions.jsonl`` (one row per sample and mode, enough to
recompute every metric), ``metrics.json`` (per mode: metrics with bootstrap CIs, AUCs,
per-CWE, paired, warnings), ``report.md`` + ``report.html``, and prints the metrics table.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breachlab.config import ConfigError, field
from breachlab.rundir import RunDir, atomic_write_json
from breachlab.vuln.sample import Sample

log = logging.getLogger("breachlab.vuln.evaluate")


@dataclass
class EvalConfig:
    """How to evaluate a model on a labelled split."""

    data: str = field("", help="data run directory (from `breachlab vuln data build`) or a samples .jsonl file")
    split: str = field("test", help="which split of a data run directory to evaluate")
    model: str = field("embedded", help="'embedded', a .gguf file, a transformers directory or a hub id")
    backend: str = field("auto", help="auto | llama.cpp | transformers (auto: GGUF → llama.cpp)")
    adapter: str | None = field(None, help="LoRA adapter: a PEFT directory (transformers) or a GGUF LoRA (llama.cpp)")
    modes: list[str] = field(default_factory=lambda: ["logit", "generate"],
                             help="decision modes: logit (one forward pass, P(VULNERABLE) vs P(SAFE)) and/or generate")
    threshold: float = field(0.5, help="logit mode: predict VULNERABLE when P(vulnerable) >= threshold")
    max_new_tokens: int = field(64, help="generate mode: tokens to generate per sample")
    limit: int | None = field(None, help="evaluate at most this many samples (class balance kept)")
    sources: list[str] = field(default_factory=list, help="evaluate only samples from these sources (e.g. [sven]); empty = all")
    n_ctx: int = field(2048, help="context window; longer functions are shortened from the end and flagged")
    threads: int | None = field(None, help="CPU threads (default: all cores)")
    device: str = field("cpu", help="transformers device: cpu or cuda")
    n_boot: int = field(1000, help="bootstrap resamples for the 95% confidence intervals")
    seed: int = field(42, help="seed for bootstrap resampling")
    allow_pickle: bool = field(False, help="allow loading pickled (.bin) weights — only for checkpoints you trust")

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in ("logit", "generate")]
        if bad or not self.modes:
            raise ConfigError(f"modes must be a non-empty subset of logit, generate; got {self.modes}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must lie strictly between 0 and 1, got {self.threshold}")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens must be at least 1")
        if self.limit is not None and self.limit < 2:
            raise ConfigError("limit must be at least 2 (one sample per class)")
        if self.n_boot < 0:
            raise ConfigError("n_boot must be >= 0")


def load_eval_samples(data: str | Path, split: str = "test") -> tuple[list[Sample], Path]:
    """Samples from a data run directory or a .jsonl file; returns them and the file read."""
    from breachlab.errors import UserError
    from breachlab.vuln.sample import read_samples

    if not str(data):
        raise UserError("no evaluation data: pass --data RUN_DIR (from `breachlab vuln data build`) or a .jsonl file")
    path = Path(data)
    if path.is_dir():
        path = path / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"evaluation data not found: {path}")
    samples = read_samples(path)
    if not samples:
        raise UserError(f"{path} holds no samples")
    return samples, path


def balanced_limit(samples: list[Sample], limit: int | None) -> list[Sample]:
    """At most ``limit`` samples, half of each class where possible, keeping file order."""
    if limit is None or limit >= len(samples):
        return samples
    per_class = limit // 2
    out, counts = [], {0: 0, 1: 0}
    for s in samples:
        if counts[s.label] < per_class:
            out.append(s)
            counts[s.label] += 1
    return out


def evaluate_samples(run: RunDir, cfg: EvalConfig, samples: list[Sample], *, title: str,
                     meta: dict[str, Any] | None = None, progress: bool = True) -> dict[str, dict]:
    """Predict every sample in every mode, then write predictions, metrics and the report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from breachlab.vuln.backends import load_backend
    from breachlab.vuln.metrics import summarize
    from breachlab.vuln.predict import predict_one
    from breachlab.vuln.report import metrics_table, write_report

    console = Console(stderr=True)
    backend = load_backend(cfg.model, backend=cfg.backend, adapter=cfg.adapter, n_ctx=cfg.n_ctx,
                           threads=cfg.threads, device=cfg.device, allow_pickle=cfg.allow_pickle)
    partial = run / "predictions.partial.jsonl"
    rows_by_mode: dict[str, list[dict]] = {mode: [] for mode in cfg.modes}
    with partial.open("w", encoding="utf-8") as sink, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, disable=not progress, transient=False,
    ) as bar:
        task = bar.add_task(f"{'+'.join(cfg.modes)} {backend.model_id}", total=len(samples) * len(cfg.modes))
        for sample in samples:
            for mode in cfg.modes:
                row = predict_one(backend, sample, mode, threshold=cfg.threshold, max_new_tokens=cfg.max_new_tokens)
                rows_by_mode[mode].append(row)
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                sink.flush()
                bar.advance(task)
    partial.rename(run / "predictions.jsonl")
    backend.close()

    summaries = {mode: summarize(rows, threshold=cfg.threshold, n_boot=cfg.n_boot, seed=cfg.seed)
                 for mode, rows in rows_by_mode.items()}
    atomic_write_json(run / "metrics.json", summaries)
    names = {mode: f"{title} · {mode}" for mode in summaries}
    meta = {"model": backend.model_id, "backend": backend.name, "samples": len(samples), **(meta or {})}
    write_report(run.path, {names[m]: s for m, s in summaries.items()},
                 {names[m]: rows_by_mode[m] for m in summaries}, title=title, meta=meta)
    out = Console()
    for mode, summary in summaries.items():
        out.print(metrics_table(summary, names[mode]))
    run.update_manifest(model_id=backend.model_id, backend=backend.name, n_samples=len(samples),
                        throughput={m: _throughput(r) for m, r in rows_by_mode.items()})
    return summaries


def _throughput(rows: list[dict]) -> dict[str, float]:
    total = sum(r["latency_s"] for r in rows)
    return {"samples": len(rows), "seconds": round(total, 2),
            "samples_per_s": round(len(rows) / total, 3) if total else 0.0}


def run(cfg: EvalConfig, out: str | Path | None = None, root: str | Path = "runs", progress: bool = True) -> Path:
    """Evaluate ``cfg.model`` on ``cfg.data``; returns the run directory."""
    samples, data_file = load_eval_samples(cfg.data, cfg.split)
    if cfg.sources:
        from breachlab.vuln.sample import only_sources

        samples = only_sources(samples, cfg.sources, where=str(data_file))
    samples = balanced_limit(samples, cfg.limit)
    run_dir = RunDir.create("vuln-eval", cfg, root=root, out=out, seed=cfg.seed, inputs=[data_file])
    with run_dir.running():
        log.info("evaluating %s on %d samples from %s", cfg.model, len(samples), data_file)
        evaluate_samples(run_dir, cfg, samples, title=f"{Path(cfg.model).name if cfg.model != 'embedded' else 'embedded'}"
                         f"{' + adapter' if cfg.adapter else ''}", meta={"data": str(data_file)}, progress=progress)
    return run_dir.path
