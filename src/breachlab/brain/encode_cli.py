"""``breachlab brain encode`` and ``breachlab brain doctor`` (typer command functions).

    breachlab brain encode runs/render-seed --backend tribev2 --paths text,screenshot --out runs/encode-seed
    breachlab brain encode runs/render-seed --backend fake --paths text,screenshot,audio
    breachlab brain encode runs/render-seed --config configs/brain/encode.yaml --set text_mode=reading
    breachlab brain encode runs/render-seed --tts gtts --aligner whisperx --allow-network   # upstream's online helpers
    breachlab brain doctor --checkpoint facebook/tribev2

Mounted by ``brain/cli.py`` as ``app.command("encode")(encode)`` and
``app.command("doctor")(doctor)``.  Thin: options → :class:`EncodeConfig` (defaults ← YAML ←
named options ← ``--set``, the shared rule of :mod:`breachlab.cli_options`) →
:func:`breachlab.brain.encode.run_encode`.  Offline unless ``--allow-network``: the default
speech engine is espeak-ng and the default aligner spreads the known words evenly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from breachlab.cli_options import CONFIG_OPT, OUT_OPT, SET_OPT


def encode(
    corpus_run: Path = typer.Argument(..., help="render run directory (screenshots) "
                                                "or a corpus file / run with corpus.json"),
    backend: Optional[str] = typer.Option(None, help="tribev2 (real model, CUDA) | fake (deterministic, SYNTHETIC)"),
    paths: Optional[str] = typer.Option(None, help="comma list of text, screenshot, audio (default text,screenshot)"),
    device: Optional[str] = typer.Option(None, help="torch device (default cuda)"),
    cache: Optional[Path] = typer.Option(None, help="feature/model cache folder (default <run>/cache)"),
    checkpoint: Optional[str] = typer.Option(None,
                                             help="facebook/tribev2 or a local folder with config.yaml + best.ckpt"),
    tts: Optional[str] = typer.Option(None, help="espeak-ng (offline, default) | gtts (online) | auto"),
    aligner: Optional[str] = typer.Option(None, help="auto | even (offline) | whisperx (online)"),
    allow_network: bool = typer.Option(False, "--allow-network",
                                       help="let gTTS and uvx whisperx run (they send text/audio out or fetch code)"),
    text_mode: Optional[str] = typer.Option(None, "--text-mode", help="speech | words | reading"),
    n_frames: Optional[int] = typer.Option(None, "--frames", help="still-video frames for screenshots (default 16)"),
    fps: Optional[float] = typer.Option(None, help="still-video frame rate (default: the render run's)"),
    subcortical_head: Optional[Path] = typer.Option(None, "--subcortical-head",
                                                    help="user-supplied subcortical head (.pt/.npz)"),
    allow_cpu: bool = typer.Option(False, "--allow-cpu", help="let a non-CUDA device through (untested upstream)"),
    out: Optional[Path] = OUT_OPT,
    config: Optional[Path] = CONFIG_OPT,
    set_: Optional[list[str]] = SET_OPT,
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
) -> None:
    """Predict brain responses for every message and path into a predictions store (an existing --out resumes)."""
    from breachlab.brain.encode import EncodeConfig, run_encode
    from breachlab.cli_options import load_config

    cfg = load_config(EncodeConfig, config, set_, backend=backend, paths=paths, device=device,
                      cache=str(cache) if cache else None, checkpoint=checkpoint, tts=tts, aligner=aligner,
                      allow_network=True if allow_network else None, text_mode=text_mode, n_frames=n_frames,
                      fps=fps, subcortical_head=str(subcortical_head) if subcortical_head else None,
                      allow_cpu=True if allow_cpu else None)
    run = run_encode(corpus_run, cfg, out=out, progress=not no_progress)
    tag = "SYNTHETIC predictions (fake backend, not TRIBE v2): " if cfg.backend == "fake" else ""
    typer.echo(f"{tag}{run}\npredictions: {run / 'predictions' / 'index.json'}")


def doctor(
    checkpoint: str = typer.Option("facebook/tribev2", help="hub id or local checkpoint folder to look for"),
    cache: Path = typer.Option(Path("."), help="where features and weights will go (disk check)"),
    json_: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Check GPU, package versions and pins, weights, speech tools and disk for --backend tribev2."""
    import json

    from breachlab.brain.doctor import as_dicts, report, run_checks

    checks = run_checks(checkpoint, str(cache))
    text, code = report(checks)
    typer.echo(json.dumps(as_dicts(checks), indent=2) if json_ else text)
    raise typer.Exit(code)
