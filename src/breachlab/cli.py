"""``breachlab`` — the command line.  Thin: parse, build a config, call one ``run()``.

Heavy libraries (torch, transformers, llama.cpp, nilearn) are imported inside the commands,
so ``breachlab --help`` answers at once.  Exit codes: 0 success, 1 findings or a failed
check, 2 usage or input error (a clear message, never a traceback for bad input), 3 an
internal error (a bug: its traceback, then one ``error: internal error`` line).
"""

from __future__ import annotations

import os
import sys

import typer

from breachlab import __version__
from breachlab.brain.cli import app as brain_app
from breachlab.models_cli import app as models_app
from breachlab.vuln.cli import app as vuln_app, quickstart

app = typer.Typer(
    name="breachlab",
    help="Local-first toolkit: LLM vulnerability classification (vuln) and the scam-message "
    "brain-encoding experiment (brain). Nothing leaves the machine; only `models pull` "
    "reaches PyPI, to install a named model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _everywhere(
    verbose: bool = typer.Option(False, "--verbose", help="Also show the native libraries' own logs (llama.cpp's "
                                 "model loading); default off. Same as BREACHLAB_VERBOSE=1."),
) -> None:
    """Options that apply to every command (written before it: ``breachlab --verbose vuln scan …``)."""
    if verbose:
        os.environ["BREACHLAB_VERBOSE"] = "1"


app.add_typer(vuln_app, name="vuln")
app.add_typer(brain_app, name="brain")
app.add_typer(models_app, name="models")
app.command("quickstart")(quickstart)


@app.command("version")
def version() -> None:
    """Print the breachlab version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point: user errors become one red line and exit code 2."""
    from breachlab.errors import run_cli

    sys.exit(run_cli(app))


if __name__ == "__main__":
    main()
