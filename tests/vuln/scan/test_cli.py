"""The ``scan`` command through the real CLI error handling: exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from breachlab.errors import run_cli
from breachlab.vuln.scan import cli


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, fake) -> typer.Typer:
    monkeypatch.setattr(cli, "make_scorer", lambda *a, **k: fake)
    a = typer.Typer()
    a.command("scan")(cli.scan)
    a.command("noop")(lambda: None)  # two commands: "scan" stays a sub-command, as when mounted
    return a


def call(app: typer.Typer, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr("sys.argv", ["breachlab", "scan", *args])
    return run_cli(app)


def test_findings_exit_1_and_sarif_written(app, monkeypatch, project: Path, tmp_path: Path) -> None:
    out = tmp_path / "scan.sarif"
    assert call(app, monkeypatch, str(project), "--format", "sarif", "--output", str(out), "--deep") == 1
    assert json.loads(out.read_text())["version"] == "2.1.0"


def test_clean_exit_0(app, monkeypatch, tmp_path: Path, capsys) -> None:
    (tmp_path / "a.c").write_text("int f(void) { return 0; }\n")
    assert call(app, monkeypatch, str(tmp_path)) == 0
    assert "no findings" in capsys.readouterr().out


def test_baseline_makes_it_clean(app, monkeypatch, project: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    assert call(app, monkeypatch, str(project), "--deep", "-f", "json", "-o", str(base)) == 1
    assert call(app, monkeypatch, str(project), "--deep", "--baseline", str(base)) == 0
    assert call(app, monkeypatch, str(project), "--deep", "--min-confidence", "0.95") == 0


@pytest.mark.parametrize("args", [["missing-dir"], [".", "--format", "xml"], [".", "--min-confidence", "2"],
                                  [".", "--tools", "semgrep"], [".", "--baseline", "nope.json"],
                                  [".", "--backend", "gpu"], [".", "--backend", "openai"]])
def test_usage_errors_exit_2(app, monkeypatch, tmp_path: Path, args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert call(app, monkeypatch, *args) == 2


def test_zero_files_read_is_an_input_error(app, monkeypatch, tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("not C\n")
    assert call(app, monkeypatch, str(tmp_path), "--no-cache") == 2
    assert "nothing scanned" in capsys.readouterr().err
    (tmp_path / "bin.c").write_bytes(b"\0\0")  # the only C file is skipped: say why
    assert call(app, monkeypatch, str(tmp_path), "--no-cache") == 2
    assert "binary file" in capsys.readouterr().err


def test_explicit_path_under_an_ignored_folder_is_scanned(app, monkeypatch, project: Path) -> None:
    (project / ".git").mkdir()
    (project / ".gitignore").write_text("generated/\n")
    # a CI job naming an ignored folder must not pass with nothing scanned
    assert call(app, monkeypatch, str(project / "generated"), "--tools", "", "--deep", "--no-cache") == 1
    assert call(app, monkeypatch, str(project / "generated" / "out.c"), "--tools", "", "--deep", "--no-cache") == 1


def test_internal_error_is_not_findings(app, monkeypatch, tmp_path: Path, capsys) -> None:
    from breachlab.vuln.scan import scanner

    (tmp_path / "a.c").write_text("int f(void) { return 0; }\n")

    def boom(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr(scanner, "scan", boom)
    assert call(app, monkeypatch, str(tmp_path)) == cli.EXIT_INTERNAL == 3
    assert "internal error: RuntimeError: bug" in capsys.readouterr().err


def test_adapter_default_follows_model(monkeypatch) -> None:
    from breachlab.vuln.backends import adapters

    monkeypatch.setattr(adapters, "has_shipped", lambda name=None: False)
    assert cli.choose_adapter(None, model="embedded") == "none"
    monkeypatch.setattr(adapters, "has_shipped", lambda name=None: True)
    assert cli.choose_adapter(None, model="embedded") == "default"
    assert cli.choose_adapter(None, model="other.gguf") == "none"
    assert cli.choose_adapter("x.gguf", model="embedded") == "x.gguf"


def test_no_model_never_loads_one(monkeypatch, project: Path) -> None:
    def refuse(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(cli, "make_scorer", refuse)
    a = typer.Typer()
    a.command("scan")(cli.scan)
    a.command("noop")(lambda: None)
    assert call(a, monkeypatch, str(project), "--no-model", "--tools", "flawfinder", "--no-cache") == 1
    assert call(a, monkeypatch, str(project), "--backend", "none", "--tools", "flawfinder", "--deep") == 2
