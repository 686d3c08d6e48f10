"""``breachlab vuln …`` and ``breachlab quickstart`` — thin: parse, build a config, call ``run()``.

    breachlab vuln train --config configs/vuln/gemma3-270m-lora.yaml --set data=runs/data-juliet-sven
    breachlab vuln train --resume runs/vuln-train-20260101-120000
    accelerate launch -m breachlab.cli vuln train --config configs/vuln/gemma4-e4b-qlora.yaml
    breachlab vuln export RUN_DIR --format adapter,merged,gguf,gguf-lora --quant f16,q8_0,q5_k_m,q4_k_m
    breachlab vuln plan gemma-4-e4b --method qlora --rank 16
    breachlab vuln quantbench RUN_DIR --data runs/data-juliet-sven

Every command takes ``--config FILE.yaml`` (defaults) and ``--set key=value`` (overrides);
named flags are shortcuts for the most used keys.  Unknown keys are rejected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(help="Fine-tune, evaluate and scan with a local vulnerability classifier.", no_args_is_help=True)
data_app = typer.Typer(help="Build leak-free, balanced datasets (Juliet, SVEN, DiverseVul, JSONL/CSV).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

CONFIG_OPT = typer.Option(None, "--config", "-c", help="YAML config with defaults for this command.")
SET_OPT = typer.Option(None, "--set", help="Override a config key, e.g. --set threshold=0.7 (repeatable).")
OUT_OPT = typer.Option(None, "--out", "-o", help="Run directory to create (default: runs/<command>-<time>).")


def _overrides(sets: list[str] | None, **flags: Any) -> dict[str, Any]:
    from breachlab.config import deep_merge, parse_overrides

    named = {k: v for k, v in flags.items() if v is not None}
    return deep_merge(named, parse_overrides(sets))


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------
@data_app.command("build")
def data_build(
    config: Optional[Path] = CONFIG_OPT,
    sources: Optional[str] = typer.Option(None, help="Comma-separated: juliet,sven,pairvul,diversevul,generic."),
    n_train: Optional[int] = typer.Option(None, "--n-train", help="Training samples per class."),
    n_val: Optional[int] = typer.Option(None, "--n-val", help="Validation samples per class."),
    n_test: Optional[int] = typer.Option(None, "--n-test", help="Test samples per class."),
    seed: Optional[int] = typer.Option(None, help="Sampling and split seed."),
    sets: Optional[list[str]] = SET_OPT,
    out: Optional[Path] = OUT_OPT,
) -> None:
    """Load, filter, dedup, split by group, balance and leak-check; write train/val/test JSONL."""
    from rich.console import Console

    from breachlab import config as cfgmod
    from breachlab.vuln import data

    cfg = cfgmod.load(data.DataConfig, config, _overrides(
        sets, sources=_csv(sources), n_train_per_class=n_train, n_val_per_class=n_val,
        n_test_per_class=n_test, seed=seed))
    path = data.run(cfg, out=out)
    console = Console()
    console.print(data.render_stats(data.stats_for(path)))
    console.print(f"[green]dataset written to[/green] {path}")


@data_app.command("stats")
def data_stats(path: Path = typer.Argument(..., help="A data run directory or a samples .jsonl file.")) -> None:
    """Class balance, per-source and per-CWE counts, length histogram."""
    from rich.console import Console

    from breachlab.vuln import data

    Console().print(data.render_stats(data.stats_for(path)))


# ---------------------------------------------------------------------------------------
# eval / compare
# ---------------------------------------------------------------------------------------
@app.command("eval")
def eval_cmd(
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Data run directory or samples .jsonl."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="A named model (breachlab models list; default embedded), a .gguf, a model dir or hf:org/name."),
    adapter: Optional[str] = typer.Option(
        None, help="LoRA adapter: a PEFT dir, a .gguf LoRA (llama.cpp) or 'default'. Several, comma-separated "
        "(a,b; 'none' = the base model; LABEL=PATH names one): the base is loaded once and each adapter "
        "gets its own run in OUT/<label>/, ready for `vuln compare`."),
    backend: Optional[str] = typer.Option(None, help="auto | llama.cpp | transformers."),
    mode: Optional[str] = typer.Option(None, "--mode", help="logit, generate, or logit,generate (default both)."),
    limit: Optional[int] = typer.Option(None, help="Evaluate at most N samples (balanced)."),
    threshold: Optional[float] = typer.Option(None, help="Logit mode decision threshold on P(vulnerable)."),
    sources: Optional[str] = typer.Option(None, "--sources", help="Only these data sources, e.g. sven or juliet,sven."),
    config: Optional[Path] = CONFIG_OPT,
    sets: Optional[list[str]] = SET_OPT,
    out: Optional[Path] = OUT_OPT,
) -> None:
    """Evaluate a model on a balanced split: predictions.jsonl, metrics with CIs, report."""
    from rich.console import Console

    from breachlab import config as cfgmod
    from breachlab.vuln import evaluate

    cfg = cfgmod.load(evaluate.EvalConfig, config, _overrides(
        sets, data=data, model=model, adapter=adapter, backend=backend, modes=_csv(mode), limit=limit,
        threshold=threshold, sources=_csv(sources)))
    if evaluate.is_multi_adapter(cfg):
        result = evaluate.run_adapters(cfg, out=out)
        console = Console()
        console.print(evaluate.adapters_table(result))
        for r in result.runs:
            console.print(f"[green]{r.label}:[/green] {r.path / 'report.html'}")
        console.print("compare them (the first is the baseline):", highlight=False)
        console.print(f"  {result.compare_hint()}", highlight=False, markup=False, soft_wrap=True)
        return
    path = evaluate.run(cfg, out=out)
    Console().print(f"[green]report:[/green] {path / 'report.html'}")


@app.command("compare")
def compare_cmd(
    runs: list[Path] = typer.Argument(..., help="Two or more eval run directories (e.g. zero-shot, fine-tuned)."),
    out: Optional[Path] = OUT_OPT,
) -> None:
    """Line up eval runs on identical sample ids; deltas with paired CIs and McNemar tests."""
    from rich.console import Console

    from breachlab.rundir import RunDir
    from breachlab.vuln import compare

    if len(runs) < 2:
        raise typer.BadParameter("give at least two run directories")
    result = compare.compare(runs)
    run = RunDir.create("vuln-compare", None, out=out)
    with run.running():
        md, html = compare.write_compare_report(result, run.path)
    Console().print(md.read_text(encoding="utf-8"))
    Console().print(f"[green]report:[/green] {html}")


@app.command("config")
def config_show(
    what: str = typer.Argument(..., help="eval | data | quickstart | train"),
) -> None:
    """List every config key of a command with its default and help."""
    from rich.console import Console
    from rich.table import Table

    from breachlab.config import describe

    classes = _config_classes()
    if what not in classes:
        raise typer.BadParameter(f"choose one of {', '.join(classes)}")
    table = Table("key", "default", "help", title=f"{what} config")
    for key, default, help_text in describe(classes[what]()):
        table.add_row(key, default, help_text)
    Console().print(table)


def _config_classes() -> dict[str, Any]:
    def _eval() -> type:
        from breachlab.vuln.evaluate import EvalConfig
        return EvalConfig

    def _data() -> type:
        from breachlab.vuln.data import DataConfig
        return DataConfig

    def _quick() -> type:
        from breachlab.vuln.quickstart import QuickstartConfig
        return QuickstartConfig

    def _train() -> type:
        from breachlab.vuln.training.config import TrainConfig
        return TrainConfig

    return {"eval": _eval, "data": _data, "quickstart": _quick, "train": _train}


# ---------------------------------------------------------------------------------------
# quickstart (mounted at the top level: `breachlab quickstart`)
# ---------------------------------------------------------------------------------------
def quickstart(
    n_per_class: Optional[int] = typer.Option(None, "--n-per-class", help="Test samples per class, split over the sources (default 50)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="logit, generate, or both (default; generation on 16 samples)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to evaluate: a named model (breachlab models list; default embedded), a .gguf or a model dir."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="LoRA adapter for the fine-tuned half: default "
                                          "(shipped, when one ships), none, or a .gguf LoRA / PEFT dir."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder holding juliet/ and sven/ "
                                             "(default: $BREACHLAB_DATA, ../shared/data, ./data)."),
    config: Optional[Path] = CONFIG_OPT,
    sets: Optional[list[str]] = SET_OPT,
    out: Optional[Path] = OUT_OPT,
) -> None:
    """Embedded model → balanced leak-free Juliet+SVEN test set → zero-shot, then fine-tuned → comparison."""
    from rich.console import Console

    from breachlab import config as cfgmod
    from breachlab.vuln import quickstart as qs

    cfg = cfgmod.load(qs.QuickstartConfig, config, _overrides(
        sets, n_per_class=n_per_class, modes=_csv(mode), model=model, adapter=adapter,
        data_root=str(data_root) if data_root else None))
    path = qs.run(cfg, out=out)
    report = path / "compare.html" if (path / "compare.html").is_file() else path / "zero-shot" / "report.html"
    Console().print(f"[green]quickstart finished:[/green] {path}  (open {report})")


# ---------------------------------------------------------------------------------------
# train / export / plan / quantbench
# ---------------------------------------------------------------------------------------
@app.command("train")
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="training YAML (configs/vuln/*.yaml)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a field: key=value (repeatable)"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue this run directory from its newest checkpoint"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory to create (default runs/vuln-train-<time>)"),
    root: Path = typer.Option(Path("runs"), "--root", help="parent folder for new run directories"),
) -> None:
    """Fine-tune (LoRA, QLoRA or full) with validation, early stopping and resumable checkpoints."""
    from breachlab.config import load, parse_overrides
    from breachlab.vuln.training.config import TrainConfig
    from breachlab.vuln.training.run import run

    if resume is not None:
        if config is not None or set_:
            raise typer.BadParameter("--resume reads the run's own config.yaml; drop --config/--set")
        path = run(TrainConfig(), resume=resume)
    else:
        cfg = load(TrainConfig, config, parse_overrides(set_))
        path = run(cfg, out=out, root=root)
    _print_train_summary(path)


def _print_train_summary(path: Path) -> None:
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


@app.command("export")
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

    cfg = ExportConfig(run=str(run_dir), formats=_comma_list(format_), quants=_comma_list(quant), weights=weights, dtype=dtype)
    dest = run(cfg, out=out)
    record = json.loads((dest / "export.json").read_text())
    for name, info in record["files"].items():
        typer.echo(f"{info['bytes'] / 2**20:10.1f} MiB  {dest / name}")


@app.command("plan")
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


@app.command("quantbench")
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


def _comma_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _mount_subcommands() -> None:
    """Mount scan and calibrate (their heavy imports stay inside the commands)."""
    from breachlab.vuln.scan.calibrate_cli import calibrate
    from breachlab.vuln.scan.cli import scan

    app.command("scan")(scan)
    app.command("calibrate")(calibrate)


_mount_subcommands()
