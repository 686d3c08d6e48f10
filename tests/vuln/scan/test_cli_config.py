"""``vuln scan`` and ``vuln calibrate`` read ``--config``/``--set``/``--out`` like every command.

Real scans of the fixture project (static tools, no model: ``--no-model``), through the real
CLI error handling, so the exit codes are the ones a user sees.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml

from breachlab.errors import run_cli
from breachlab.vuln.scan import cli
from breachlab.vuln.scan.command_config import ScanCommandConfig

REPO = Path(__file__).resolve().parents[3]


def _refuse(*a, **k):
    raise AssertionError("a model was loaded")


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    from breachlab.vuln.scan.calibrate_cli import calibrate

    monkeypatch.setattr(cli, "make_scorer", _refuse)
    a = typer.Typer()
    a.command("scan")(cli.scan)
    a.command("calibrate")(calibrate)
    return a


def call(app: typer.Typer, monkeypatch: pytest.MonkeyPatch, *args: object) -> int:
    monkeypatch.setattr("sys.argv", ["breachlab", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "1000")  # rich wraps the one error line at the terminal width
    return run_cli(app)


def test_yaml_then_set_reach_the_scan(app, monkeypatch, project: Path, tmp_path: Path) -> None:
    y = tmp_path / "scan.yaml"
    report = tmp_path / "report.json"
    y.write_text(f"# breachlab vuln scan\npaths: [{project / 'src'}]\ntools: [flawfinder]\nformat: json\n"
                 f"output: {report}\ncache: false\n")
    code = call(app, monkeypatch, "scan", "--config", y, "--set", "tools=[cppcheck]", "--no-model")
    assert code in (0, 1)
    settings = json.loads(report.read_text())["settings"]
    assert settings["tools"] == ["cppcheck"]  # --set won over the YAML's tools
    assert settings["paths"] == [str(project / "src")]  # the paths came from the YAML
    # a PATH argument replaces the YAML's paths; a named flag wins over the YAML's format
    out = tmp_path / "r.sarif"
    call(app, monkeypatch, "scan", project / "cpp", "--config", y, "--no-model", "-f", "sarif", "-o", out)
    assert json.loads(out.read_text())["version"] == "2.1.0"


def test_out_writes_a_run_dir_with_the_report(app, monkeypatch, project: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code = call(app, monkeypatch, "scan", project, "--no-model", "--tools", "flawfinder", "--no-cache",
                "--format", "sarif", "--out", run)
    assert code == 1  # the fixture project has findings
    assert capsys.readouterr().out == ""  # the report went into the run dir, not stdout
    assert json.loads((run / "report.sarif").read_text())["runs"][0]["results"]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["format"], saved["tools"], saved["no_model"]) == ("sarif", ["flawfinder"], True)
    manifest = json.loads((run / "manifest.json").read_text())
    assert (manifest["kind"], manifest["status"], manifest["exit_code"]) == ("vuln-scan", "finished", 1)
    assert manifest["findings"] > 0
    # --output still works beside --out: the same report in both places
    again = tmp_path / "run2"
    also = tmp_path / "also.sarif"
    assert call(app, monkeypatch, "scan", project, "--no-model", "--tools", "flawfinder", "--format", "sarif",
                "--out", again, "--output", also) == 1
    assert also.read_text() == (again / "report.sarif").read_text()
    # an existing, non-empty --out is refused (exit 2), never overwritten
    assert call(app, monkeypatch, "scan", project, "--no-model", "--out", again) == 2
    # bad input is refused before a run dir is made
    assert call(app, monkeypatch, "scan", tmp_path / "missing", "--no-model", "--out", tmp_path / "run3") == 2
    assert not (tmp_path / "run3").exists()


@pytest.mark.parametrize("args,words", [
    (["--set", "nope=1"], "unknown key(s) nope"),
    (["--set", "format=xml"], "unknown --format 'xml'"),
    (["--set", "deep=true", "--no-model"], "--deep needs a model"),
])
def test_bad_key_or_value_is_one_line_and_exit_2(app, monkeypatch, project: Path, capsys, args, words) -> None:
    assert call(app, monkeypatch, "scan", project, *args) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "Traceback" not in err


def test_unknown_key_in_a_yaml_names_the_file(app, monkeypatch, project: Path, tmp_path: Path, capsys) -> None:
    y = tmp_path / "bad.yaml"
    y.write_text("# breachlab vuln scan\ntool: [cppcheck]\n")
    assert call(app, monkeypatch, "scan", project, "--config", y) == 2
    err = capsys.readouterr().err
    assert str(y) in err and "unknown key(s) tool" in err


def test_no_paths_anywhere_is_exit_2(app, monkeypatch, capsys) -> None:
    assert call(app, monkeypatch, "scan", "--no-model") == 2
    assert "nothing to scan" in capsys.readouterr().err


def test_shipped_scan_yaml_loads_and_named_flags_default_to_not_given() -> None:
    from breachlab.cli_options import load_config

    cfg = load_config(ScanCommandConfig, REPO / "configs" / "vuln" / "scan.yaml", ["deep=false"], format=None,
                      tools=[])
    assert cfg.format == "sarif" and cfg.tools == [] and cfg.report_file == "report.sarif"
    assert load_config(ScanCommandConfig, None).format == "text"  # no YAML: the class defaults


def test_calibrate_reads_config_and_set(app, monkeypatch, tmp_path: Path, capsys) -> None:
    y = tmp_path / "cal.yaml"
    y.write_text(f"# breachlab vuln calibrate\ndata: {tmp_path / 'no-labels'}\nbackend: none\n")
    assert call(app, monkeypatch, "calibrate", "--config", y) == 2
    assert "no-labels has no labels.json" in capsys.readouterr().err  # the YAML's data was the one opened
    assert call(app, monkeypatch, "calibrate", "--config", y, "--set", "target_fpr=2") == 2
    assert "--target-fpr must be in (0, 1)" in capsys.readouterr().err
    assert call(app, monkeypatch, "calibrate", "--set", "backend=none") == 2
    assert "give DATA_DIR" in capsys.readouterr().err
