"""``breachlab vuln train|export|plan|quantbench`` — typer command functions (mounted by vuln/cli.py).

    breachlab vuln train --config configs/vuln/gemma3-270m-lora.yaml --set data=runs/data-juliet-sven
    breachlab vuln train --resume runs/vuln-train-20260101-120000
    accelerate launch -m breachlab.cli vuln train --config configs/vuln/gemma4-e4b-qlora.yaml
    breachlab vuln export RUN_DIR --format adapter,merged,gguf,gguf-lora --quant f16,q8_0,q5_k_m,q4_k_m
    breachlab vuln plan gemma-4-e4b --method qlora --rank 16
    breachlab vuln quantbench RUN_DIR --data runs/data-juliet-sven

Heavy libraries are imported inside each command so ``--help`` answers at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="training YAML (configs/vuln/*.yaml)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a field: key=value (repeatable)"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue this run directory from its newest checkpoint"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory to create (default runs/vuln-train-<time>)"),
    root: Path = typer.Option(Path("runs"), "--root", help="parent folder for new run directories"),
) -> None:
    """Fine-tune (LoRA, QLoRA or full) with validation, early stopping and resumable checkpoints."""
    from breachlab.config import load, parse_overrides
    from breachlab.vuln.train import TrainConfig, run

    if resume is not None:
        if config is not None or set_:
            raise typer.BadParameter("--resume reads the run's own config.yaml; drop --config/--set")
        path = run(TrainConfig(), resume=resume)
    else:
        cfg = load(TrainConfig, config, parse_overrides(set_))
        path = run(cfg, out=out, root=root)
    _print_summary(path)


def _print_summary(path: Path) -> None:
    import os

    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun/accelerate: the main process speaks
        return
    man = json.loads((path / "manifest.json").read_text())
    if "trainable_params" not in man:
        return
    typer.echo(f"run: {path}")
    typer.echo(f"trainable {man['trainable_params']:,} / {man['total_params']:,} ({man['trainable_percent']}%)")
    typer.echo(f"steps {man['steps']}  {man['tokens_per_second']} tok/s  {man['samples_per_second']} samples/s  "
               f"peak {man['peak_memory_bytes'] / 2**30:.2f} GiB ({man['peak_memory_kind']})")
    if man.get("best_val_loss") is not None:
        verdict = (f", verdict-token NLL {man['best_val_verdict_nll']}" if man.get("best_val_verdict_nll") not in (None, "")
                   else "")
        acc = (f", verdict accuracy {man['best_val_verdict_acc']}" if man.get("best_val_verdict_acc") not in (None, "")
               else "")
        typer.echo(f"best (by {man.get('selected_on', 'loss')}) at step {man['best_step']}: val loss {man['best_val_loss']}"
                   f"{verdict}{acc}" + ("  (stopped early)" if man.get("stopped_early") else ""))


def export(
    run_dir: Path = typer.Argument(..., help="training run directory"),
    format_: str = typer.Option("adapter,merged,gguf", "--format", help="adapter, merged, gguf, gguf-lora (comma list)"),
    quant: str = typer.Option("f16,q8_0,q5_k_m,q4_k_m", "--quant", help="GGUF types: f32,f16,bf16,q8_0,q5_k_m,q4_k_m"),
    weights: str = typer.Option("best", "--weights", help="best (best validation number, see the run's select_on), final, or checkpoint (newest checkpoint of a running/killed run)"),
    dtype: str = typer.Option("bfloat16", "--dtype", help="merged safetensors dtype"),
    out: Optional[Path] = typer.Option(None, "--out", help="export folder (default RUN_DIR/export)"),
) -> None:
    """Export a run: PEFT adapter, merged 16-bit safetensors, GGUF (+ quantised) and GGUF LoRA."""
    from breachlab.vuln.export import ExportConfig, run

    cfg = ExportConfig(run=str(run_dir), formats=_split(format_), quants=_split(quant), weights=weights, dtype=dtype)
    dest = run(cfg, out=out)
    record = json.loads((dest / "export.json").read_text())
    for name, info in record["files"].items():
        typer.echo(f"{info['bytes'] / 2**20:10.1f} MiB  {dest / name}")


def plan(
    model: str = typer.Argument(..., help="preset (gemma-3-270m, gemma-4-e4b, gemma-3-4b-text), config.json or model dir"),
    method: str = typer.Option("lora", "--method", help="full | lora | qlora"),
    rank: int = typer.Option(16, "--rank", help="LoRA rank"),
    batch_size: int = typer.Option(8, "--batch-size", help="sequences per step per device"),
    seq_len: int = typer.Option(512, "--seq-len", help="tokens per sequence"),
    dtype: str = typer.Option("bfloat16", "--dtype", help="weights/compute dtype"),
    gradient_checkpointing: bool = typer.Option(True, "--gradient-checkpointing/--no-gradient-checkpointing"),
    logits: str = typer.Option("answer", "--logits", help="answer (only answer tokens, as vuln train) | all"),
    count: bool = typer.Option(True, "--count/--formula",
                               help="count the activations autograd keeps on a short CPU copy of the model "
                                    "(a few seconds, within 5-15% of GPU peaks) or use the quick formula "
                                    "(up to 40% low without checkpointing)"),
    ple_on_cpu: bool = typer.Option(True, "--ple-on-cpu/--ple-on-gpu",
                                    help="Gemma 3n/4 per-layer embedding table in CPU memory, as vuln train does "
                                         "on CUDA for LoRA/QLoRA (ple_on_cpu: auto)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of the table"),
) -> None:
    """Memory table for training MODEL: weights, gradients, optimizer states, activations, logits."""
    from breachlab.vuln.plan import format_table, plan as make_plan

    if count and not as_json:
        typer.echo("counting saved activations on a short CPU copy of the model…", err=True)
    p = make_plan(model, method, rank, batch_size=batch_size, seq_len=seq_len, dtype=dtype,
                  gradient_checkpointing=gradient_checkpointing, logits=logits, measure=count,
                  ple_on_cpu=ple_on_cpu)
    typer.echo(json.dumps(p.to_dict(), indent=2) if as_json else format_table(p))


def quantbench(
    run_dir: Path = typer.Argument(..., help="training run directory with an export/gguf folder"),
    data: str = typer.Option(..., "--data", help="data run directory or test .jsonl"),
    split: str = typer.Option("test", "--split", help="split of the data run to use"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most this many samples (class-balanced)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads"),
) -> None:
    """Every exported GGUF precision on one eval set: F1 with CI, agreement with full precision, size, speed."""
    from breachlab.vuln.quantbench import QuantBenchConfig, run

    dest = run(QuantBenchConfig(run=str(run_dir), data=data, split=split, limit=limit, threads=threads))
    typer.echo((dest / "quantbench.md").read_text())


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
