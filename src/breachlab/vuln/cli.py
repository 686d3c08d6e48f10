"""``breachlab vuln …`` — data, evaluation and reports for the vulnerability classifier."""

from __future__ import annotations

import typer

app = typer.Typer(help="Fine-tune, evaluate and scan with a local vulnerability classifier.", no_args_is_help=True)


def quickstart() -> None:
    """Assemble the embedded model, build a balanced test set, evaluate zero-shot, report."""
    raise NotImplementedError
