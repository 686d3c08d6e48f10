"""Bad input to ``vuln scan`` is one line and exit 2, found before the scan (or the model) starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from breachlab.errors import run_cli
from breachlab.vuln.scan import cli, scanner


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, fake) -> typer.Typer:
    loads: list[str] = []
    monkeypatch.setattr(cli, "make_scorer", lambda *a, **k: loads.append("model") or fake)
    a = typer.Typer()
    a.command("scan")(cli.scan)
    a.command("noop")(lambda: None)
    a.loads = loads  # type: ignore[attr-defined]
    return a


def call(app: typer.Typer, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr("sys.argv", ["breachlab", "scan", *args])
    return run_cli(app)


@pytest.fixture
def never_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("the scan started")

    monkeypatch.setattr(scanner, "scan", refuse)


@pytest.mark.parametrize("kind", ["output-dir", "out-file", "output-below-file", "out-below-file"])
def test_output_kinds_are_checked_before_the_scan(app, monkeypatch, never_scans, tmp_path: Path, capsys,
                                                  kind: str) -> None:
    (tmp_path / "a.c").write_text("int f(void) { return 0; }\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    args = {"output-dir": ["-o", str(tmp_path / "folder")], "out-file": ["--out", str(tmp_path / "file.txt")],
            "output-below-file": ["--output", str(tmp_path / "file.txt" / "r.sarif")],
            "out-below-file": ["--out", str(tmp_path / "file.txt" / "run")]}[kind]
    assert call(app, monkeypatch, str(tmp_path / "a.c"), *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert app.loads == []


def test_an_empty_tree_says_nothing_scanned_without_loading_the_model(app, monkeypatch, tmp_path: Path,
                                                                      capsys) -> None:
    (tmp_path / "README.md").write_text("no code here\n")
    assert call(app, monkeypatch, str(tmp_path)) == 2
    assert "nothing scanned" in capsys.readouterr().err and app.loads == []


def test_an_unexpected_crash_is_exit_3_not_findings(monkeypatch, capsys) -> None:
    a = typer.Typer()

    @a.command("boom")
    def boom() -> None:
        raise RuntimeError("bug")

    a.command("noop")(lambda: None)
    monkeypatch.setattr("sys.argv", ["breachlab", "boom"])
    assert run_cli(a) == 3
    assert capsys.readouterr().err.splitlines()[-1] == "error: internal error: RuntimeError: bug"


def test_a_model_the_calibration_gives_no_say_is_not_loaded(app, monkeypatch, tmp_path: Path, capsys) -> None:
    """Shipped calibration with the model's weight at 0: the default scan loads no model and says so;
    a calibration that weighs the model, or --deep, still loads it."""
    import json

    from breachlab.vuln.scan import loading

    src = tmp_path / "a.c"
    src.write_text("int f(char *s) { char b[4]; return b[0] + s[0]; }\n")
    cal = json.loads(cli.shipped_calibration().read_text())
    cal["variants"]["model"]["weights"]["llm_logit"] = 0.0
    weightless = tmp_path / "weightless.json"
    weightless.write_text(json.dumps(cal))
    monkeypatch.setattr(cli, "shipped_calibration", lambda: weightless)
    monkeypatch.setattr(loading, "shipped_calibration", lambda: weightless)
    assert call(app, monkeypatch, str(src), "--tools", "flawfinder", "--no-cache") in (0, 1)
    assert app.loads == [] and "the model is not loaded" in capsys.readouterr().err

    cal["variants"]["model"]["weights"]["llm_logit"] = 0.5
    weighted = tmp_path / "weighted.json"
    weighted.write_text(json.dumps(cal))
    monkeypatch.setattr(cli, "shipped_calibration", lambda: weighted)
    monkeypatch.setattr(loading, "shipped_calibration", lambda: weighted)
    call(app, monkeypatch, str(src), "--tools", "flawfinder", "--no-cache")
    assert app.loads == ["model"]
