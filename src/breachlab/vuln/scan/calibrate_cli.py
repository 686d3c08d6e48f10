"""``breachlab vuln calibrate DATA_DIR [--target-fpr 0.10] [--no-deep] [--config FILE.yaml] [--set key=value]
[--out DIR]``.

The command's shell: parse, resolve a :class:`~.calibrate.CalibrateConfig` the way every
command does (defaults ← ``--config`` ← named flags ← ``--set``, see
:mod:`breachlab.cli_options`), call :func:`~.calibrate.run`, print where the calibration
went and how to use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from breachlab.cli_options import CONFIG_OPT, OUT_OPT, SET_OPT, load_config
from breachlab.errors import UserError


def calibrate(
    data: Optional[Path] = typer.Argument(None, help="Labelled tree with labels.json (benchmarks/scan_data.py; or "
                                                     "data: in the config)."),
    target_fpr: Optional[float] = typer.Option(None, help="False-positive rate the threshold may reach (0.10)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to calibrate for (embedded)."),
    backend: Optional[str] = typer.Option(None, help="auto, llama.cpp, transformers; none: tools only."),
    adapter: Optional[str] = typer.Option(None, help="Adapter, as in `vuln scan` (unset: its default)."),
    tools: Optional[str] = typer.Option(None, help="Static tools (cppcheck,flawfinder,clang-tidy,gcc)."),
    deep: Optional[bool] = typer.Option(None, "--deep/--no-deep", help="Also fit the combiner of `vuln scan --deep` "
                                        "(default; the model scores every function, slower)."),
    config: Optional[Path] = CONFIG_OPT,
    sets: Optional[List[str]] = SET_OPT,
    out: Optional[Path] = OUT_OPT,
) -> None:
    """Fit the scan's combiner and threshold for a target false-positive rate on labelled code."""
    from breachlab.vuln.scan import calibrate as cal

    cfg = load_config(cal.CalibrateConfig, config, sets, data=str(data) if data else None, target_fpr=target_fpr,
                      model=model, backend=backend, adapter=adapter, deep=deep,
                      tools=[t.strip() for t in tools.split(",") if t.strip()] if tools is not None else None)
    if not cfg.data:
        raise UserError("no labelled data: give DATA_DIR (or data: in the config)")
    path = cal.run(cfg, out=out)
    typer.echo(f"calibration: {path / 'calibration.json'} (use: breachlab vuln scan --calibration "
               f"{path / 'calibration.json'} …)")
