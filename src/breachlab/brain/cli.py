"""``breachlab brain …`` — the scam-message brain-encoding experiment."""

from __future__ import annotations

import typer

app = typer.Typer(help="The scam-message brain-encoding experiment (TRIBE v2).", no_args_is_help=True)
