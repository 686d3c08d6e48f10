"""``breachlab vuln …`` and ``breachlab quickstart`` — thin: parse, build a config, call ``run()``.

    breachlab vuln train --config configs/vuln/gemma3-270m-lora.yaml --set data=runs/data-juliet-sven
    breachlab vuln train --resume runs/vuln-train-20260101-120000
    accelerate launch -m breachlab.cli vuln train --config configs/vuln/gemma4-e4b-qlora.yaml
    breachlab vuln export RUN_DIR --format adapter,merged,gguf,gguf-lora --quant f16,q8_0,q5_k_m,q4_k_m
    breachlab vuln plan gemma-4-e4b --method qlora --lora-r 16
    breachlab vuln quantbench RUN_DIR --data runs/data-juliet-sven
    breachlab vuln config export                     # every key of a command, its default and help
    breachlab vuln kb build runs/data --out runs/kb  # known pairs for references and the retrieval baseline

Every command that does work takes ``--config FILE.yaml`` (defaults), ``--set key=value``
(overrides) and ``--out DIR``, the shared vocabulary of :mod:`breachlab.cli_options`; named
flags are shortcuts for the most used keys.  Unknown keys are rejected.  Which config class a
command reads comes from the one table in :mod:`breachlab.config_registry`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from breachlab.cli_options import CONFIG_OPT, OUT_OPT, SET_OPT, load_config, out_opt, overrides

app = typer.Typer(help="Fine-tune, evaluate and scan with a local vulnerability classifier.", no_args_is_help=True)
data_app = typer.Typer(help="Build leak-free, balanced datasets (Juliet, SVEN, PairVul, CVEfixes, DiverseVul, "
                            "JSONL/CSV).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
kb_app = typer.Typer(help="Known vulnerable/fixed pairs: references for eval prompts and a retrieval baseline.",
                     no_args_is_help=True)
app.add_typer(kb_app, name="kb")

def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------
@data_app.command("build")
def data_build(
    config: Optional[Path] = CONFIG_OPT,
    sources: Optional[str] = typer.Option(None,
                                          help="Comma-separated: juliet,sven,pairvul,cvefixes,diversevul,generic."),
    n_train: Optional[int] = typer.Option(None, "--n-train", help="Training samples per class."),
    n_val: Optional[int] = typer.Option(None, "--n-val", help="Validation samples per class."),
    n_test: Optional[int] = typer.Option(None, "--n-test", help="Test samples per class."),
    seed: Optional[int] = typer.Option(None, help="Sampling and split seed."),
    sets: Optional[list[str]] = SET_OPT,
    out: Optional[Path] = OUT_OPT,
) -> None:
    """Load, filter, dedup, split by group, balance and leak-check; write train/val/test JSONL."""
    from rich.console import Console

    from breachlab.vuln.data import build as data

    cfg = load_config(data.DataConfig, config, sets, sources=_csv(sources), n_train_per_class=n_train,
                      n_val_per_class=n_val, n_test_per_class=n_test, seed=seed)
    path = data.run(cfg, out=out)
    console = Console()
    console.print(data.render_stats(data.stats_for(path)))
    console.print(f"[green]dataset written to[/green] {path}")


@data_app.command("stats")
def data_stats(path: Path = typer.Argument(..., help="A data run directory or a samples .jsonl file.")) -> None:
    """Class balance, per-source and per-CWE counts, length histogram."""
    from rich.console import Console

    from breachlab.vuln.data import build as data

    Console().print(data.render_stats(data.stats_for(path)))


# ---------------------------------------------------------------------------------------
# kb
# ---------------------------------------------------------------------------------------
@kb_app.command("build")
def kb_build(
    data: Optional[str] = typer.Argument(None, help="Data run directory (its train split), samples .jsonl, "
                                                    "or a JSONL of your own fixes."),
    method: Optional[str] = typer.Option(None, help="tfidf (default) or bm25."),
    config: Optional[Path] = CONFIG_OPT,
    sets: Optional[list[str]] = SET_OPT,
    out: Optional[Path] = OUT_OPT,
) -> None:
    """Index known vulnerable/fixed pairs (local, lexical) into a KB folder."""
    from rich.console import Console

    from breachlab.vuln.kb import build

    cfg = load_config(build.KbBuildConfig, config, sets, data=data, method=method)
    path = build.run(cfg, out=out)
    Console().print(f"[green]KB written to[/green] {path}", soft_wrap=True)


@kb_app.command("score")
def kb_score(
    kb: Optional[str] = typer.Argument(None, help="KB folder from `breachlab vuln kb build`."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Data run directory or samples .jsonl."),
    k: Optional[int] = typer.Option(None, "-k", help="Nearest known halves to average (default 1)."),
    config: Optional[Path] = CONFIG_OPT,
    sets: Optional[list[str]] = SET_OPT,
    out: Optional[Path] = OUT_OPT,
) -> None:
    """The retrieval baseline with no model: an eval-like run directory for the same split."""
    from rich.console import Console

    from breachlab.vuln.eval import retrieval as baseline

    cfg = load_config(baseline.KbScoreConfig, config, sets, kb=kb, data=data, k=k)
    path = baseline.run(cfg, out=out)
    Console().print(f"[green]report:[/green] {path / 'report.html'}", soft_wrap=True)


# ---------------------------------------------------------------------------------------
# eval / compare
# ---------------------------------------------------------------------------------------
@app.command("eval")
def eval_cmd(
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Data run directory or samples .jsonl."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="A named model (breachlab models list; default "
                                        "embedded), a .gguf, a model dir or hf:org/name."),
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
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this interrupted or killed eval run "
                                          "from the predictions it already wrote (its own config; no other options)."),
) -> None:
    """Evaluate a model on a balanced split: predictions.jsonl, metrics with CIs, report."""
    from rich.console import Console

    from breachlab import config as cfgmod
    from breachlab.vuln.eval import evaluate

    if resume is not None:
        if any(v is not None for v in (data, model, adapter, backend, mode, limit, threshold, sources, config, out)) \
                or sets:
            raise typer.BadParameter("--resume reads the run's own config.yaml; give no other options")
        Console().print(f"[green]report:[/green] {evaluate.resume(resume) / 'report.html'}", soft_wrap=True)
        return

    cfg = cfgmod.load(evaluate.EvalConfig, config, overrides(
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
    source: Optional[str] = typer.Option(None, "--source", help="Compare only the samples of this data source."),
    config: Optional[Path] = CONFIG_OPT,
    sets: Optional[list[str]] = SET_OPT,
    out: Optional[Path] = OUT_OPT,
) -> None:
    """Line up eval runs on identical sample ids; deltas with paired CIs and McNemar tests."""
    from dataclasses import asdict

    from rich.console import Console

    from breachlab.rundir import RunDir
    from breachlab.vuln.eval import compare

    if len(runs) < 2:
        raise typer.BadParameter("give at least two run directories")
    cfg = load_config(compare.CompareConfig, config, sets, source=source)
    result = compare.compare(runs, **asdict(cfg))
    run = RunDir.create("vuln-compare", cfg, out=out)
    with run.running():
        md, html = compare.write_compare_report(result, run.path)
    Console().print(md.read_text(encoding="utf-8"))
    Console().print(f"[green]report:[/green] {html}")


@app.command("config")
def config_show(
    words: list[str] = typer.Argument(..., help="a vuln command, e.g. eval, train or data build ('data' alone "
                                                "will do); an unknown one lists them all"),
) -> None:
    """List every config key of a command with its default and help (from the command → config table)."""
    from rich.console import Console
    from rich.table import Table

    from breachlab.config import describe
    from breachlab.config_registry import COMMANDS, commands_of, load_target

    classes = {**commands_of("vuln"), "quickstart": COMMANDS[("quickstart",)]}
    what = " ".join(words)
    if what not in classes:  # one word that starts a single command: `vuln config data` = data build
        starts = [name for name in classes if name.split()[0] == what]
        if len(starts) != 1:
            raise typer.BadParameter(f"choose one of {', '.join(sorted(classes))}")
        what = starts[0]
    from rich.markup import escape

    table = Table("key", "default", "help", title=f"{what} config")
    for key, default, help_text in describe(load_target(classes[what])):  # "[juliet]" is text, not markup
        table.add_row(escape(key), escape(default), escape(help_text))
    Console().print(table)


# ---------------------------------------------------------------------------------------
# quickstart (mounted at the top level: `breachlab quickstart`)
# ---------------------------------------------------------------------------------------
def quickstart(
    n_per_class: Optional[int] = typer.Option(None, "--n-per-class", help="Test samples per class, split over the "
                                              "sources (default 50)."),
    mode: Optional[str] = typer.Option(None, "--mode",
                                       help="logit, generate, or both (default; generation on 16 samples)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to evaluate: a named model (breachlab "
                                        "models list; default embedded), a .gguf or a model dir."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="LoRA adapter for the fine-tuned half: default "
                                          "(shipped, when one ships), none, or a .gguf LoRA / PEFT dir."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder holding juliet/, sven/ and pairvul/ "
                                             "(default: $BREACHLAB_DATA, ../shared/data, ./data)."),
    config: Optional[Path] = CONFIG_OPT,
    sets: Optional[list[str]] = SET_OPT,
    out: Optional[Path] = OUT_OPT,
) -> None:
    """Embedded model → balanced leak-free Juliet+SVEN test set → zero-shot, then fine-tuned → comparison."""
    from rich.console import Console

    from breachlab.vuln import quickstart as qs

    cfg = load_config(qs.QuickstartConfig, config, sets, n_per_class=n_per_class, modes=_csv(mode), model=model,
                      adapter=adapter, data_root=str(data_root) if data_root else None)
    path = qs.run(cfg, out=out)
    report = path / "compare.html" if (path / "compare.html").is_file() else path / "zero-shot" / "report.html"
    Console().print(f"[green]quickstart finished:[/green] {path}  (open {report})")


# ---------------------------------------------------------------------------------------
# train / export / plan / quantbench
# ---------------------------------------------------------------------------------------
@app.command("train")
def train(
    config: Optional[Path] = CONFIG_OPT,
    set_: Optional[list[str]] = SET_OPT,
    resume: Optional[Path] = typer.Option(None, "--resume",
                                          help="continue this run directory from its newest checkpoint"),
    out: Optional[Path] = OUT_OPT,
    root: Path = typer.Option(Path("runs"), "--root", help="parent folder for new run directories"),
) -> None:
    """Fine-tune (LoRA, QLoRA or full) with validation, early stopping and resumable checkpoints."""
    from breachlab.vuln.training.config import TrainConfig
    from breachlab.vuln.training.run import run

    if resume is not None:
        if config is not None or set_:
            raise typer.BadParameter("--resume reads the run's own config.yaml; drop --config/--set")
        path = run(TrainConfig(), resume=resume)
    else:
        cfg = load_config(TrainConfig, config, set_)
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
        verdict = (f", verdict-token NLL {man['best_val_verdict_nll']}"
                   if man.get("best_val_verdict_nll") not in (None, "") else "")
        acc = (f", verdict accuracy {man['best_val_verdict_acc']}" if man.get("best_val_verdict_acc") not in (None, "")
               else "")
        typer.echo(f"best (by {man.get('selected_on', 'loss')}) at step {man['best_step']}: "
                   f"val loss {man['best_val_loss']}{verdict}{acc}"
                   + ("  (stopped early)" if man.get("stopped_early") else ""))


@app.command("export")
def export(
    run_dir: Optional[Path] = typer.Argument(None, help="training run directory (or run: in the config)"),
    format_: Optional[str] = typer.Option(None, "--format", help="adapter, merged, gguf, gguf-lora (comma list; "
                                          "default adapter,merged,gguf)"),
    quant: Optional[str] = typer.Option(None, "--quant", help="GGUF types: f32,f16,bf16,q8_0,q5_k_m,q4_k_m "
                                        "(default f16,q8_0,q5_k_m,q4_k_m)"),
    weights: Optional[str] = typer.Option(None, "--weights", help="best (best validation number, see the run's "
                                          "select_on; default), final, or checkpoint (newest checkpoint of a "
                                          "running/killed run)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="merged safetensors dtype (default bfloat16)"),
    config: Optional[Path] = CONFIG_OPT,
    sets: Optional[list[str]] = SET_OPT,
    out: Optional[Path] = out_opt("RUN_DIR/export"),
) -> None:
    """Export a run: PEFT adapter, merged 16-bit safetensors, GGUF (+ quantised) and GGUF LoRA."""
    from breachlab.vuln.export import ExportConfig, run

    cfg = load_config(ExportConfig, config, sets, run=str(run_dir) if run_dir else None, formats=_csv(format_),
                      quants=_csv(quant), weights=weights, dtype=dtype)
    dest = run(cfg, out=out)
    record = json.loads((dest / "export.json").read_text())
    for name, info in record["files"].items():
        typer.echo(f"{info['bytes'] / 2**20:10.1f} MiB  {dest / name}")


@app.command("plan")
def plan(
    model: Optional[str] = typer.Argument(None, help="preset (gemma-3-270m, gemma-4-e4b, gemma-3-4b-text), "
                                          "config.json or model dir (or model: in the config)"),
    method: Optional[str] = typer.Option(None, "--method", help="full | lora | qlora (default lora)"),
    lora_r: Optional[int] = typer.Option(None, "--lora-r", "--rank", help="LoRA rank (default 16)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="sequences per step per device (default 8)"),
    max_seq_len: Optional[int] = typer.Option(None, "--max-seq-len", "--seq-len",
                                              help="tokens per sequence (default 512)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="weights/compute dtype (default bfloat16)"),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing",
                                                          help="default on"),
    logits: Optional[str] = typer.Option(None, "--logits", help="answer (only answer tokens, as vuln train; "
                                         "default) | all"),
    count: Optional[bool] = typer.Option(None, "--count/--formula",
                                         help="count the activations autograd keeps on a short CPU copy of the model "
                                              "(default; a few seconds, within 5-15% of GPU peaks) or use the quick "
                                              "formula (up to 40% low without checkpointing)"),
    ple_on_cpu: Optional[bool] = typer.Option(None, "--ple-on-cpu/--ple-on-gpu",
                                              help="Gemma 3n/4 per-layer embedding table in CPU memory (default), as "
                                                   "vuln train does on CUDA for LoRA/QLoRA (ple_on_cpu: auto)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of the table"),
    config: Optional[Path] = CONFIG_OPT,
    sets: Optional[list[str]] = SET_OPT,
    out: Optional[Path] = out_opt("print only; with a folder, plan.json and plan.txt are written there too"),
) -> None:
    """Memory table for training MODEL: weights, gradients, optimizer states, activations, logits."""
    from breachlab.vuln.training.plan import format_table
    from breachlab.vuln.training.plan_run import load_plan_config, make_plan, write_plan

    cfg = load_plan_config(config, overrides(sets, model=model, method=method, lora_r=lora_r, batch_size=batch_size,
                                             max_seq_len=max_seq_len, dtype=dtype,
                                             gradient_checkpointing=gradient_checkpointing, logits=logits,
                                             measure=count, ple_on_cpu=ple_on_cpu))
    if cfg.measure and not as_json:
        typer.echo("counting saved activations on a short CPU copy of the model…", err=True)
    p = make_plan(cfg)
    if out is not None:
        write_plan(p, out)
    typer.echo(json.dumps(p.to_dict(), indent=2) if as_json else format_table(p))


@app.command("quantbench")
def quantbench(
    run_dir: Optional[Path] = typer.Argument(None, help="training run directory with an export/gguf folder "
                                             "(or run: in the config)"),
    data: Optional[str] = typer.Option(None, "--data", help="data run directory or test .jsonl"),
    split: Optional[str] = typer.Option(None, "--split", help="split of the data run to use (default test)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most this many samples (class-balanced)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads"),
    config: Optional[Path] = CONFIG_OPT,
    sets: Optional[list[str]] = SET_OPT,
    out: Optional[Path] = out_opt("RUN_DIR/quantbench"),
) -> None:
    """Every exported GGUF precision on one eval set: F1 with CI, agreement with full precision, size, speed."""
    from breachlab.vuln.quantbench import QuantBenchConfig, run

    cfg = load_config(QuantBenchConfig, config, sets, run=str(run_dir) if run_dir else None, data=data, split=split,
                      limit=limit, threads=threads)
    dest = run(cfg, out=out)
    typer.echo((dest / "quantbench.md").read_text())


def _mount_subcommands() -> None:
    """Mount scan and calibrate (their heavy imports stay inside the commands)."""
    from breachlab.vuln.scan.calibrate_cli import calibrate
    from breachlab.vuln.scan.cli import scan

    app.command("scan")(scan)
    app.command("calibrate")(calibrate)


_mount_subcommands()
