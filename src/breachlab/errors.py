"""User-facing errors: one clear line and exit code 2 instead of a traceback."""

from __future__ import annotations

import os
from typing import Any


class UserError(Exception):
    """Bad input the user can fix (missing file, malformed data, impossible request)."""


def run_cli(app: Any) -> int:
    """Run a Typer app, turning known input errors into ``error: ...`` and exit code 2.

    Set ``BREACHLAB_DEBUG=1`` to see the full traceback instead.
    """
    from rich.console import Console

    from breachlab.config import ConfigError

    try:
        # with standalone_mode=False click returns typer.Exit's code instead of raising it
        code = app(standalone_mode=False)
    except SystemExit as exc:  # typer/click exits
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except KeyboardInterrupt:
        Console(stderr=True).print("[red]interrupted[/red]")
        return 130
    except Exception as exc:  # noqa: BLE001 - the whole point is a clean message
        click_errors, aborts = _click_exceptions()
        if isinstance(exc, click_errors):
            exc.show()
            return exc.exit_code
        if isinstance(exc, aborts):
            return 1
        if os.environ.get("BREACHLAB_DEBUG") or not isinstance(
            exc, (UserError, ConfigError, FileNotFoundError, FileExistsError, ValueError, PermissionError)
        ):
            raise
        Console(stderr=True).print(f"error: {exc}", style="bold red", highlight=False, markup=False)
        return 2
    return code if isinstance(code, int) else 0


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Click's usage-error and abort classes: those of click itself and of the copy newer
    typer releases vendor as ``typer._click`` (not subclasses of each other)."""
    import importlib

    errors: list[type] = []
    aborts: list[type] = []
    for name in ("click.exceptions", "typer._click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        errors.append(mod.ClickException)
        if hasattr(mod, "Abort"):
            aborts.append(mod.Abort)
    return tuple(errors), tuple(aborts)
