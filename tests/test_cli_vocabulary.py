"""One CLI vocabulary: every vuln and brain command that does work answers ``--config``,
``--set`` and ``--out`` in its ``--help``, and every entry of the command → config table
names a real command, has a shipped YAML, and that YAML loads into the entry's class.

The commands are read from the CLI itself (not a list kept here), so a new command that
forgets the vocabulary fails this test unless it is exempted below with a reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from breachlab.cli import app

REPO = Path(__file__).resolve().parents[1]

# Commands that only read or report (nothing to configure, nothing written to a run folder).
EXEMPT = {
    "vuln config": "prints a config's keys",
    "vuln data stats": "prints the counts of an existing data run",
    "brain config": "prints a config's keys",
    "brain doctor": "checks the machine and prints the result",
    "brain corpus show": "prints the counts of an existing corpus",
    "brain corpus seed": "writes the shipped seed corpus as it is: no settings",
}


def _commands(group, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Leaf commands under a (typer or click) group: a group is whatever holds ``commands``."""
    out = []
    for name, cmd in sorted(group.commands.items()):
        if getattr(cmd, "commands", None) is not None:
            out += _commands(cmd, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def cli_commands() -> list[tuple[str, ...]]:
    """Every leaf command under ``vuln`` and ``brain``, plus ``quickstart`` (a vuln command at the top)."""
    root = typer.main.get_command(app)
    return [c for c in _commands(root, ()) if c[0] in ("vuln", "brain") or c == ("quickstart",)]


def test_the_walk_finds_the_commands() -> None:
    found = {" ".join(c) for c in cli_commands()}
    assert {"vuln eval", "vuln data build", "vuln export", "vuln plan", "brain render", "quickstart"} <= found


@pytest.mark.parametrize("words", [c for c in cli_commands() if " ".join(c) not in EXEMPT], ids=" ".join)
def test_every_command_answers_config_set_and_out(words: tuple[str, ...]) -> None:
    res = CliRunner().invoke(app, [*words, "--help"], terminal_width=300)
    assert res.exit_code == 0, res.output
    for flag in ("--config", "--set", "--out"):
        assert flag in res.output, f"`breachlab {' '.join(words)}` has no {flag}"


def test_exemptions_name_real_commands_or_pending_work() -> None:
    found = {" ".join(c) for c in cli_commands()}
    stale = [name for name, why in EXEMPT.items() if name not in found and not why.startswith("TODO")]
    assert stale == []


def _shipped_yamls() -> dict[type, list[Path]]:
    """Config class → the YAMLs whose first line names a command of that class."""
    from breachlab.config_registry import config_class_for

    by_class: dict[type, list[Path]] = {}
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        by_class.setdefault(config_class_for(path), []).append(path)
    return by_class


def _table() -> list[tuple[tuple[str, ...], str]]:
    from breachlab.config_registry import COMMANDS

    return sorted(COMMANDS.items())


@pytest.mark.parametrize("words,target", [pytest.param(w, t, id=" ".join(w)) for w, t in _table()])
def test_every_table_entry_is_a_command_with_a_shipped_yaml_that_loads(words, target) -> None:
    from breachlab.config import load
    from breachlab.config_registry import load_target

    assert words in cli_commands(), f"{' '.join(words)} is in the table but not a command"
    yamls = _shipped_yamls().get(load_target(target), [])
    assert yamls, f"no YAML under configs/ starts with '# breachlab {' '.join(words)} …'"
    for path in yamls:
        cfg = load(load_target(target), path)
        assert type(cfg) is load_target(target)


def test_vuln_config_reads_the_table() -> None:
    """`vuln config` offers exactly the table's vuln commands (and quickstart), nothing kept by hand."""
    from breachlab.config_registry import commands_of

    res = CliRunner().invoke(app, ["vuln", "config", "nope"], terminal_width=300)
    assert res.exit_code == 2
    offered = res.output.split("choose one of", 1)[1]
    for name in [*commands_of("vuln"), "quickstart"]:
        assert name in offered
    res = CliRunner().invoke(app, ["vuln", "config", "plan"], terminal_width=300)
    assert res.exit_code == 0 and "ple_on_cpu" in res.output


# -- the commands that got the vocabulary in issue 16 read it for real ----------------------------
def _cli(monkeypatch, *args) -> int:
    from breachlab.errors import run_cli

    monkeypatch.setattr("sys.argv", ["breachlab", *map(str, args)])
    return run_cli(app)


def test_plan_reads_config_set_and_writes_out(tmp_path: Path, monkeypatch, capsys) -> None:
    import json

    out = tmp_path / "plan"
    assert _cli(monkeypatch, "vuln", "plan", "--config", REPO / "configs" / "vuln" / "plan.yaml",
                "--set", "model=gemma-3-270m", "--set", "measure=false", "--rank", "8", "--out", out) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert (plan["method"], plan["rank"]) == ("qlora", 8)  # method from the YAML, rank from the flag
    assert (out / "plan.txt").read_text().strip() in capsys.readouterr().out
    assert _cli(monkeypatch, "vuln", "plan", "gemma-3-270m", "--set", "method=nope") == 2
    assert "method must be one of" in capsys.readouterr().err


def test_export_and_quantbench_take_their_run_from_the_config(tmp_path: Path, monkeypatch, capsys) -> None:
    y = tmp_path / "export.yaml"
    y.write_text(f"# breachlab vuln export\nrun: {tmp_path / 'no-such-run'}\nformats: [adapter]\n")
    assert _cli(monkeypatch, "vuln", "export", "--config", y) == 2
    assert "no-such-run" in capsys.readouterr().err  # the run named in the YAML was the one opened
    assert _cli(monkeypatch, "vuln", "export", "--config", y, "--set", "formats=[zip]") == 2
    assert "formats must be" in capsys.readouterr().err
    assert _cli(monkeypatch, "vuln", "quantbench", tmp_path, "--config",
                REPO / "configs" / "vuln" / "quantbench.yaml") == 2
    assert "--data" in capsys.readouterr().err
