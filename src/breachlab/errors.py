"""User-facing errors: one clear line and exit code 2 instead of a traceback.

The line is written as it is, never hard-wrapped: a terminal wraps it softly, and a log file
or CI capture keeps it whole (rich's console wraps at 80 columns when it is not a terminal,
which split one message over several lines).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, TextIO

from breachlab.safetext import printable


class UserError(Exception):
    """Bad input the user can fix (missing file, malformed data, impossible request)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised by the handlers :func:`run_cli` (and a run directory, for
    SIGTERM) install, so that the run directory records ``interrupted`` and the command says
    so on stderr.  Not a ``KeyboardInterrupt``: typer turns those into a silent exit 130."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


def one_line(text: str) -> str:
    """``text`` with its line breaks folded into spaces (messages quoting stderr have several)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def say_error(message: str, stream: TextIO | None = None) -> None:
    """Print ``error: MESSAGE`` as one line on stderr (red on a terminal)."""
    stream = stream or sys.stderr
    line = f"error: {printable(one_line(message))}"  # a file name in it must not act on the terminal
    if stream.isatty() and not os.environ.get("NO_COLOR"):
        line = f"\x1b[1;31m{line}\x1b[0m"
    stream.write(line + "\n")
    stream.flush()


EXIT_INTERNAL = 3
# input the user can fix; anything else raised out of a command is a bug (exit 3)
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, FileExistsError, IsADirectoryError,
                                                NotADirectoryError, ValueError, PermissionError)


def run_cli(app: Any) -> int:
    """Run a Typer app, turning known input errors into ``error: ...`` and exit code 2.

    Any other exception is a bug: its traceback, then ``error: internal error: …`` as the last
    line, and exit code 3 (never 1, which means findings or a failed check).

    Ctrl-C and SIGTERM print one ``interrupted`` line (with where the run directory is, when
    a run was going) and exit 130.  Set ``BREACHLAB_DEBUG=1`` to see the full traceback instead.
    """
    import threading

    main = threading.current_thread() is threading.main_thread()  # signals can only be caught there
    previous = {sig: signal.signal(sig, raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        # with standalone_mode=False click returns typer.Exit's code instead of raising it
        code = app(standalone_mode=False)
    except SystemExit as exc:  # typer/click exits
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except (Interrupted, KeyboardInterrupt) as exc:
        notes = "; ".join(getattr(exc, "__notes__", []) or [])
        why = f" by {exc.signal_name}" if isinstance(exc, Interrupted) else ""
        sys.stderr.write(f"interrupted{why}{': ' + notes if notes else ''}\n")
        sys.stderr.flush()
        return 130
    except Exception as exc:  # noqa: BLE001 - the whole point is a clean message
        click_errors, aborts = _click_exceptions()
        if isinstance(exc, click_errors):
            say_error(_click_message(exc))
            return exc.exit_code
        if isinstance(exc, aborts):
            return 1
        if os.environ.get("BREACHLAB_DEBUG"):
            raise
        from breachlab.config import ConfigError

        if not isinstance(exc, (*USER_ERRORS, ConfigError)):
            import traceback

            traceback.print_exc()  # a bug: the traceback helps, but it must not read as "findings" (1)
            say_error(f"internal error: {type(exc).__name__}: {exc}")
            return EXIT_INTERNAL
        say_error(str(exc))
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code if isinstance(code, int) else 0


def raise_interrupted(signum: int, frame: Any) -> None:
    """Signal handler: SIGINT/SIGTERM become :class:`Interrupted` where the program is."""
    raise Interrupted(signum)


def _click_message(exc: Any) -> str:
    """A click usage error as one line: the message and where the help is."""
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


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
