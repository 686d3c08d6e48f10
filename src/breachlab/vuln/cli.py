"""``breachlab vuln …`` and ``breachlab quickstart`` — thin: parse, build a config, call ``run()``.

Every command takes ``--config FILE.yaml`` (defaults) and ``--set key=value`` (overrides);
named flags are shortcuts for the most used keys.  Unknown keys are rejected.
"""

from __future__ import annotations

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
    sources: Optional[str] = typer.Option(None, help="Comma-separated: juliet,sven,diversevul,generic."),
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
    model: Optional[str] = typer.Option(None, "--model", "-m", help="'embedded', a .gguf, a model dir or a hub id."),
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
    from breachlab.vuln import evaluate

    if resume is not None:
        if any(v is not None for v in (data, model, adapter, backend, mode, limit, threshold, sources, config, out)) \
                or sets:
            raise typer.BadParameter("--resume reads the run's own config.yaml; give no other options")
        Console().print(f"[green]report:[/green] {evaluate.resume(resume) / 'report.html'}", soft_wrap=True)
        return

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
        from breachlab.vuln.train import TrainConfig
        return TrainConfig

    return {"eval": _eval, "data": _data, "quickstart": _quick, "train": _train}


# ---------------------------------------------------------------------------------------
# quickstart (mounted at the top level: `breachlab quickstart`)
# ---------------------------------------------------------------------------------------
def quickstart(
    n_per_class: Optional[int] = typer.Option(None, "--n-per-class", help="Test samples per class, split over the sources (default 50)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="logit, generate, or both (default; generation on 16 samples)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to evaluate (default: embedded)."),
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


def _mount_subcommands() -> None:
    """Mount scan and train/export/plan/quantbench (their heavy imports stay inside the commands)."""
    from breachlab.vuln import train_cli
    from breachlab.vuln.scan.cli import scan

    app.command("scan")(scan)
    for name in ("train", "export", "plan", "quantbench"):
        app.command(name)(getattr(train_cli, name))


_mount_subcommands()
