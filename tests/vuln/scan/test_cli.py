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
    assert call(app, monkeypatch, str(project), "--format", "sarif", "--output", str(out)) == 1
    assert json.loads(out.read_text())["version"] == "2.1.0"


def test_clean_exit_0(app, monkeypatch, tmp_path: Path, capsys) -> None:
    (tmp_path / "a.c").write_text("int f(void) { return 0; }\n")
    assert call(app, monkeypatch, str(tmp_path)) == 0
    assert "no findings" in capsys.readouterr().out


def test_baseline_makes_it_clean(app, monkeypatch, project: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    assert call(app, monkeypatch, str(project), "-f", "json", "-o", str(base)) == 1
    assert call(app, monkeypatch, str(project), "--baseline", str(base)) == 0
    assert call(app, monkeypatch, str(project), "--min-confidence", "0.95") == 0


@pytest.mark.parametrize("args", [["missing-dir"], [".", "--format", "xml"], [".", "--min-confidence", "2"],
                                  [".", "--hybrid", "semgrep"], [".", "--baseline", "nope.json"]])
def test_usage_errors_exit_2(app, monkeypatch, tmp_path: Path, args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert call(app, monkeypatch, *args) == 2


def test_hybrid_weights_file(app, monkeypatch, project: Path, tmp_path: Path) -> None:
    w = tmp_path / "w.json"
    w.write_text(json.dumps({"weights": {"bias": -20.0}}))  # nothing can reach the threshold
    assert call(app, monkeypatch, str(project), "--hybrid", "flawfinder", "--hybrid-weights", str(w)) == 0
    w.write_text("[1, 2]")
    assert call(app, monkeypatch, str(project), "--hybrid", "flawfinder", "--hybrid-weights", str(w)) == 2


def test_adapter_default_follows_model_and_hybrid(monkeypatch, tmp_path: Path) -> None:
    from breachlab.vuln import adapters

    monkeypatch.setattr(adapters, "has_shipped", lambda name=None: False)
    assert cli.choose_adapter(None, model="embedded", hybrid=False, custom_weights=False) == "none"
    monkeypatch.setattr(adapters, "has_shipped", lambda name=None: True)
    assert cli.choose_adapter(None, model="embedded", hybrid=False, custom_weights=False) == "default"
    assert cli.choose_adapter(None, model="other.gguf", hybrid=False, custom_weights=False) == "none"
    # the shipped hybrid weights were fitted on zero-shot scores: no adapter unless refitted
    assert cli.choose_adapter(None, model="embedded", hybrid=True, custom_weights=False) == "none"
    assert cli.choose_adapter(None, model="embedded", hybrid=True, custom_weights=True) == "default"
    assert cli.choose_adapter("x.gguf", model="embedded", hybrid=True, custom_weights=False) == "x.gguf"


def test_scan_passes_the_chosen_adapter(monkeypatch, fake, tmp_path: Path, capsys) -> None:
    seen = {}

    def make(model, backend, adapter, n_ctx, threads):
        seen["adapter"] = adapter
        return fake

    monkeypatch.setattr(cli, "make_scorer", make)
    from breachlab.vuln import adapters

    monkeypatch.setattr(adapters, "has_shipped", lambda name=None: True)
    a = typer.Typer()
    a.command("scan")(cli.scan)
    a.command("noop")(lambda: None)
    (tmp_path / "a.c").write_text("int f(void) { return 0; }\n")
    call(a, monkeypatch, str(tmp_path), "--no-cache")
    assert seen["adapter"] == "default"
    if adapters.shipped_dir().is_dir():  # the user is told what the shipped adapter is (not) good for
        note = capsys.readouterr().err
        assert "adapter gemma3-270m-juliet-r16" in note and "real (SVEN) code 0.52" in note
    call(a, monkeypatch, str(tmp_path), "--no-cache", "--adapter", "none")
    assert seen["adapter"] == "none"
