"""``breachlab brain …`` — the scam-message brain-encoding experiment.

    breachlab brain corpus seed --out corpus.yaml
    breachlab brain corpus import-sms --n-per-class 50 --out sms.yaml
    breachlab brain corpus show corpus.yaml
    breachlab brain render corpus.yaml --out runs/render-seed [--config configs/brain/render.yaml] [--set fidelity=high]
    breachlab brain synth runs/render-seed --out runs/synth-seed          # SYNTHETIC predictions
    breachlab brain analyze runs/synth-seed --out runs/analyze-seed       # tables, figures, report.html

Thin: parse, build a config (defaults ← YAML ← ``--set``), call one stage in ``stages.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from breachlab.config import load, parse_overrides

app = typer.Typer(help="The scam-message brain-encoding experiment (TRIBE v2).", no_args_is_help=True)
corpus_app = typer.Typer(help="Make, import and inspect stimulus corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (see configs/brain/)")
SetOpt = typer.Option(None, "--set", help="override a config key, e.g. --set fidelity=high (repeatable)")
OutOpt = typer.Option(None, "--out", "-o", help="run directory to create (default: runs/<kind>-<time>)")


@corpus_app.command("seed")
def corpus_seed(out: Path = typer.Option(..., "--out", "-o", help="file to write (.yaml or .json)")) -> None:
    """Write the shipped seed corpus (post 3's messages, EN + JA, 4 variants each)."""
    from breachlab.brain.corpus import dump_corpus, seed_corpus

    c = seed_corpus()
    dump_corpus(c, out)
    typer.echo(f"wrote {len(c)} messages to {out}")


@corpus_app.command("import-sms")
def corpus_import_sms(
    out: Path = typer.Option(..., "--out", "-o", help="file to write (.yaml or .json)"),
    source: Optional[Path] = typer.Option(None, help="SMSSpamCollection.tsv (default: $BREACHLAB_DATA/sms_spam/)"),
    n_per_class: int = typer.Option(50, help="messages per class (spam, ham); 0 = all"),
    seed: int = typer.Option(0, help="sampling seed"),
    presentation: str = typer.Option("sms", help="frame to render them in"),
) -> None:
    """Import the UCI SMS Spam Collection as a real spam-vs-ham corpus."""
    from breachlab.brain.corpus import dump_corpus, import_sms_spam

    c = import_sms_spam(source, n_per_class=n_per_class or None, seed=seed, presentation=presentation)
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
               out: Optional[Path] = OutOpt, config: Optional[Path] = ConfigOpt,
               set_: Optional[list[str]] = SetOpt) -> None:
    """Render screenshots (PNG), still-video manifests, text inputs and a corpus grid."""
    from breachlab.brain.configs import RenderConfig
    from breachlab.brain.stages import run_render

    cfg = load(RenderConfig, config, parse_overrides(set_))
    typer.echo(run_render(corpus, cfg, out=out))


@app.command("synth")
def synth_cmd(source: Path = typer.Argument(..., help="render run directory or corpus file"),
              out: Optional[Path] = OutOpt, config: Optional[Path] = ConfigOpt,
              set_: Optional[list[str]] = SetOpt) -> None:
    """Write SYNTHETIC predictions with planted effects (a stand-in until the encoder lands)."""
    from breachlab.brain.configs import SynthConfig
    from breachlab.brain.stages import run_synth

    cfg = load(SynthConfig, config, parse_overrides(set_))
    typer.echo(run_synth(source, cfg, out=out))


@app.command("analyze")
def analyze_cmd(pred_dir: Path = typer.Argument(..., help="predictions directory (synth or encode run)"),
                out: Optional[Path] = OutOpt, config: Optional[Path] = ConfigOpt,
                set_: Optional[list[str]] = SetOpt) -> None:
    """Condition/differential maps, ROI tables, CIs, permutation/FDR, spin tests, figures, HTML report."""
    from breachlab.brain.configs import AnalyzeConfig
    from breachlab.brain.stages import run_analyze

    cfg = load(AnalyzeConfig, config, parse_overrides(set_))
    run = run_analyze(pred_dir, cfg, out=out)
    typer.echo(f"{run}\nreport: {run / 'report.html'}")


def _mount_encoder() -> None:
    """`encode` and `doctor` live in encode_cli.py (TRIBE v2 backend, issue 6)."""
    from breachlab.brain.encode_cli import doctor, encode

    app.command("encode")(encode)
    app.command("doctor")(doctor)


_mount_encoder()
