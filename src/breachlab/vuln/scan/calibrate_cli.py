"""``breachlab vuln calibrate DATA_DIR [--target-fpr 0.10] [--out DIR]`` — the command's shell.

Parse, build a :class:`~.calibrate.CalibrateConfig`, call :func:`~.calibrate.run`, print where
the calibration went and how to use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def calibrate(
    data: Path = typer.Argument(..., help="Labelled tree with labels.json (benchmarks/scan_data.py)."),
    target_fpr: Optional[float] = typer.Option(None, help="False-positive rate the threshold may reach (0.10)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to calibrate for (embedded)."),
    backend: Optional[str] = typer.Option(None, help="auto, llama.cpp, transformers; none: tools only."),
    adapter: Optional[str] = typer.Option(None, help="Adapter, as in `vuln scan` (unset: its default)."),
    tools: Optional[str] = typer.Option(None, help="Static tools (cppcheck,flawfinder,clang-tidy)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config with defaults."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory to create."),
) -> None:
    """Fit the scan's combiner and threshold for a target false-positive rate on labelled code."""
    from breachlab import config as cfgmod
    from breachlab.config import deep_merge, parse_overrides
    from breachlab.vuln.scan import calibrate as cal

    named = {"data": str(data), "target_fpr": target_fpr, "model": model, "backend": backend, "adapter": adapter,
             "tools": [t.strip() for t in tools.split(",") if t.strip()] if tools else None}
    cfg = cfgmod.load(cal.CalibrateConfig, config, deep_merge({k: v for k, v in named.items() if v is not None},
                                                              parse_overrides(sets)))
    path = cal.run(cfg, out=out)
    typer.echo(f"calibration: {path / 'calibration.json'} (use: breachlab vuln scan --calibration "
               f"{path / 'calibration.json'} …)")
