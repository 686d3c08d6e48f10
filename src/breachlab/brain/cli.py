"""``breachlab brain …`` — the scam-message brain-encoding experiment.

    breachlab brain corpus seed --out corpus.yaml [--force]
    breachlab brain corpus import-sms --n-per-class 50 --out sms.yaml [--config configs/brain/import_sms.yaml]
    breachlab brain corpus show corpus.yaml
    breachlab brain render corpus.yaml --out runs/render-seed [--config configs/brain/render.yaml] [--set fidelity=high]
    breachlab brain synth runs/render-seed --out runs/synth-seed          # SYNTHETIC predictions
    breachlab brain encode runs/render-seed --backend fake --out runs/encode-fake
    breachlab brain analyze runs/synth-seed --out runs/analyze-seed       # tables, figures, report.html
    breachlab brain config analyze                                        # every key, default and help

Thin: parse, build a config (defaults ← ``--config`` YAML ← ``--set``, the shared vocabulary of
:mod:`breachlab.cli_options`), call one stage in ``stages.py``.  Which config class a command
reads comes from the one table in :mod:`breachlab.config_registry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from breachlab.cli_options import CONFIG_OPT, OUT_OPT, SET_OPT, load_config

app = typer.Typer(help="The scam-message brain-encoding experiment (TRIBE v2).", no_args_is_help=True)
corpus_app = typer.Typer(help="Make, import and inspect stimulus corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")

FORCE_OPT = typer.Option(False, "--force", help="overwrite the file if it exists")


def _refuse_overwrite(out: Path, force: bool) -> None:
    from breachlab.errors import UserError

    if out.exists() and not force:
        raise UserError(f"{out} exists; pass --force to overwrite it")


def _say(line: str) -> None:
    """Progress and labels go to stderr, so stdout stays the run directory a script can read."""
    typer.echo(line, err=True)


@corpus_app.command("seed")
def corpus_seed(out: Path = typer.Option(..., "--out", "-o", help="file to write (.yaml or .json)"),
                force: bool = FORCE_OPT) -> None:
    """Write the shipped seed corpus (post 3's messages, EN + JA, 4 variants each)."""
    from breachlab.brain.corpus import dump_corpus, seed_corpus

    _refuse_overwrite(out, force)
    c = seed_corpus()
    dump_corpus(c, out)
    typer.echo(f"wrote {len(c)} messages to {out}")


@corpus_app.command("import-sms")
def corpus_import_sms(
    out: Path = typer.Option(..., "--out", "-o", help="file to write (.yaml or .json)"),
    source: Optional[Path] = typer.Option(None, help="SMSSpamCollection.tsv (default: <data root>/sms_spam/)"),
    n_per_class: Optional[int] = typer.Option(None, help="messages per class (spam, ham); 0 = all (default 50)"),
    seed: Optional[int] = typer.Option(None, help="sampling seed (default 0)"),
    presentation: Optional[str] = typer.Option(None, help="frame to render them in (default sms)"),
    config: Optional[Path] = CONFIG_OPT,
    set_: Optional[list[str]] = SET_OPT,
    force: bool = FORCE_OPT,
) -> None:
    """Import the UCI SMS Spam Collection as a real spam-vs-ham corpus."""
    from breachlab.brain.configs import SmsImportConfig
    from breachlab.brain.corpus import dump_corpus, import_sms_spam

    cfg = load_config(SmsImportConfig, config, set_, source=str(source) if source else None,
                      n_per_class=n_per_class, seed=seed, presentation=presentation)
    _refuse_overwrite(out, force)
    c = import_sms_spam(cfg.source, n_per_class=cfg.n_per_class or None, seed=cfg.seed, presentation=cfg.presentation)
    dump_corpus(c, out)
    typer.echo(f"wrote {len(c)} messages to {out}")


@corpus_app.command("show")
def corpus_show(path: Path = typer.Argument(..., help="corpus file or run directory")) -> None:
    """Validate a corpus and print counts per type and language."""
    from breachlab.brain.corpus import load_corpus

    c = load_corpus(path)
    typer.echo(f"{c.name}: {len(c)} messages — {c.description}")
    for typ, lang, n in c.summary():
        typer.echo(f"  {typ:<12} {lang}  {n}")


@app.command("render")
def render_cmd(corpus: Path = typer.Argument(..., help="corpus file (.yaml/.json) or a run directory with corpus.json"),
               out: Optional[Path] = OUT_OPT, config: Optional[Path] = CONFIG_OPT,
               set_: Optional[list[str]] = SET_OPT) -> None:
    """Render screenshots (PNG), still-video manifests, text inputs and a corpus grid."""
    from breachlab.brain.configs import RenderConfig
    from breachlab.brain.stages import run_render

    cfg = load_config(RenderConfig, config, set_)
    typer.echo(run_render(corpus, cfg, out=out))


@app.command("synth")
def synth_cmd(source: Path = typer.Argument(..., help="render run directory or corpus file"),
              out: Optional[Path] = OUT_OPT, config: Optional[Path] = CONFIG_OPT,
              set_: Optional[list[str]] = SET_OPT) -> None:
    """Write SYNTHETIC predictions with planted effects (a stand-in until the encoder lands)."""
    from breachlab.brain.configs import SynthConfig
    from breachlab.brain.stages import run_synth

    cfg = load_config(SynthConfig, config, set_)
    run = run_synth(source, cfg, out=out)
    _say(f"SYNTHETIC predictions (planted effects, not TRIBE v2) written to {run}")
    typer.echo(run)


@app.command("analyze")
def analyze_cmd(pred_dir: Path = typer.Argument(..., help="predictions directory (synth or encode run)"),
                out: Optional[Path] = OUT_OPT, config: Optional[Path] = CONFIG_OPT,
                set_: Optional[list[str]] = SET_OPT) -> None:
    """Condition/differential maps, ROI tables, CIs, permutation/FDR, spin tests, figures, HTML report."""
    from breachlab.brain.configs import AnalyzeConfig
    from breachlab.brain.stages import run_analyze

    cfg = load_config(AnalyzeConfig, config, set_)
    import json

    run = run_analyze(pred_dir, cfg, out=out, progress=_say)
    tag = (" (SYNTHETIC predictions)" if json.loads((run / "results.json").read_text(encoding="utf-8"))["synthetic"]
           else "")
    typer.echo(f"{run}\nreport: {run / 'report.html'}{tag}")


@app.command("config")
def config_cmd(words: list[str] = typer.Argument(..., help="a brain command: render | synth | encode | analyze | "
                                                          "corpus import-sms")) -> None:
    """List every config key of a brain command with its default and help (from the command → config table)."""
    from breachlab.config import describe
    from breachlab.config_registry import commands_of, load_target
    from breachlab.errors import UserError

    table = commands_of("brain")
    what = " ".join(words)
    if what not in table:
        raise UserError(f"no config for 'brain {what}'; choose one of {', '.join(sorted(table))}")
    for key, default, help_text in describe(load_target(table[what])):
        typer.echo(f"{key:<20} {default:<22} {help_text}")


def _mount_encoder() -> None:
    """`encode` and `doctor` live in encode_cli.py (TRIBE v2 backend, issue 6)."""
    from breachlab.brain.encode_cli import doctor, encode

    app.command("encode")(encode)
    app.command("doctor")(doctor)


_mount_encoder()
