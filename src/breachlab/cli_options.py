"""The one CLI vocabulary of every command: ``--config FILE.yaml --set key=value --out DIR``.

Why a module of its own: ``vuln`` and ``brain`` each had their own copies of these options
(with different help texts and precedence rules).  Both CLIs import them from here, so a
command reads the same way in either part, and the merge rule lives in one place:

    defaults  ←  --config YAML  ←  named flags (shortcuts such as --backend)  ←  --set key=value

``--set`` wins over a named flag for the same key (it is the most explicit thing typed), as
``vuln`` has always done.  Nothing here imports a part, so both parts may import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import typer

T = TypeVar("T")

CONFIG_OPT = typer.Option(None, "--config", "-c",
                          help="YAML config with defaults for this command "
                               "(see configs/; its first line names the command).")
SET_OPT = typer.Option(None, "--set",
                       help="Override a config key, e.g. --set seed=1 (repeatable; wins over named flags).")
OUT_OPT = typer.Option(None, "--out", "-o", help="Run directory to create (default: runs/<command>-<time>).")


def out_opt(default: str) -> Any:
    """``--out`` for a command that writes somewhere other than a new ``runs/<command>-<time>``.

    Same flag (``--out``/``-o``), only the help names the command's own default (an
    export goes into the training run, a plan is only printed unless asked).
    """
    return typer.Option(None, "--out", "-o", help=f"Folder to write into (default: {default}).")


def overrides(sets: list[str] | None, **flags: Any) -> dict[str, Any]:
    """Named flags (``None`` = not given) merged under ``--set key=value`` pairs."""
    from breachlab.config import deep_merge, parse_overrides

    named = {k: v for k, v in flags.items() if v is not None}
    return deep_merge(named, parse_overrides(sets))


def load_config(cls: type[T], config: str | Path | None, sets: list[str] | None = None, **flags: Any) -> T:
    """The resolved config of a command: defaults ← ``--config`` ← named flags ← ``--set``."""
    from breachlab.config import load

    return load(cls, config, overrides(sets, **flags))
