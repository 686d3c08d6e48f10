"""Calibration: the fit, the FPR threshold, the round trip fit → file → scan → same decisions,
and the refusal of a calibration made under other settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from breachlab.errors import UserError, run_cli
from breachlab.vuln.scan import calibrate, calibration, cli, loading, loso
from breachlab.vuln.scan.scanner import ScanConfig, scan

# the fixture project's functions and whether each is vulnerable (by reading them)
LABELS = {"src/copy.c": {5: 1, 12: 0, 17: 0, 25: 1, 31: 0, 39: 1}, "include/util.h": {5: 1},
          "cpp/parser.cpp": {8: 0, 9: 1, 17: 0, 25: 0}}


def write_labels(project: Path) -> Path:
    files = [{"path": p, "file_label": int(any(fns.values())), "source": "fixture",
              "functions": [{"start_line": s, "label": lab} for s, lab in fns.items()]} for p, fns in LABELS.items()]
    (project / "labels.json").write_text(json.dumps({"files": files}))
    return project


def test_threshold_for_fpr_by_hand() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, None, 0.3, None]
    labels = [1, 0, 1, 0, 0, 1, 0]
    thr, counts = calibration.threshold_for_fpr(scores, labels, target=0.25)  # 4 negatives: at most 1 FP
    assert thr == 0.7 and (counts["tp"], counts["fp"], counts["fpr"]) == (2, 1, 0.25)
    thr0, counts0 = calibration.threshold_for_fpr(scores, labels, target=0.0)
    assert thr0 == 0.9 and counts0["fp"] == 0


def test_logistic_fit_learns_the_useful_feature() -> None:
    X = [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]] * 10
    y = [1, 1, 0, 0] * 10
    bias, (w_useful, w_noise) = calibration.fit_logistic(X, y, l2=0.1)
    assert w_useful > 2.0 and abs(w_noise) < 1e-3 and bias < 0


@pytest.fixture
def fitted(project: Path, fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(loading, "make_scorer", lambda *a, **k: fake)
    cfg = calibrate.CalibrateConfig(data=str(write_labels(project)), tools=["flawfinder"], target_fpr=0.2)
    return calibrate.run(cfg, out=tmp_path / "cal")


def test_round_trip_fit_file_scan_same_decisions(fitted: Path, project: Path, fake) -> None:
    cal = calibration.load(fitted / "calibration.json")
    assert set(cal.variants) == {"no_model", "model", "deep"} and cal.settings["model_id"] == "fake-model"
    assert cal.data["n_files"] == 3 and len(cal.data["files_sha256"]) == 64
    rows = json.loads((fitted / "rows.json").read_text())
    assert cal.selection["arm"] == "precise@0.6 + combiner" and cal.selection["loso"] is None  # one source
    for name in ("model", "no_model"):
        v = cal.variant(name)
        noisy = {(r["path"], r["function"]): r for r in loso.noisy_rows(rows, cal.trust, model=name == "model")}
        # precise checks pass straight through; the combiner decides the rest
        expected = {(r["path"], r["function"]) for r in rows if (r["path"], r["function"]) not in noisy
                    or (noisy[r["path"], r["function"]]["candidate"]
                        and v.confidence(noisy[r["path"], r["function"]]["features"]) >= v.threshold)}
        assert v.fit.get("at_threshold", {}).get("fpr", 0.0) <= 0.2
        report = scan(ScanConfig(paths=[str(project)], tools=["flawfinder"], explain=False), fake if name == "model"
                      else None, calibration=cal)
        labelled = {(r["path"], r["function"]) for r in rows}
        got = {(f.path, f.function) for f in report.findings if (f.path, f.function) in labelled}
        assert got == expected, name


def test_mismatched_calibration_is_refused(fitted: Path, project: Path, fake, monkeypatch, capsys) -> None:
    cal = calibration.load(fitted / "calibration.json")
    with pytest.raises(UserError, match="was made with strip_comments=True, this scan uses strip_comments=False"):
        scan(ScanConfig(paths=[str(project)], tools=["flawfinder"], strip_comments=False), fake, calibration=cal)
    with pytest.raises(UserError, match="was made with tools="):
        scan(ScanConfig(paths=[str(project)], tools=["cppcheck"]), None, calibration=cal)
    fake.model_id = "another-model"
    with pytest.raises(UserError, match="model_id"):
        scan(ScanConfig(paths=[str(project)], tools=["flawfinder"]), fake, calibration=cal)
    # through the CLI: one line on stderr, exit 2
    monkeypatch.setattr(cli, "make_scorer", lambda *a, **k: fake)
    app = typer.Typer()
    app.command("scan")(cli.scan)
    app.command("noop")(lambda: None)
    monkeypatch.setattr("sys.argv", ["breachlab", "scan", str(project), "--tools", "flawfinder", "--calibration",
                                     str(fitted / "calibration.json"), "--no-cache"])
    assert run_cli(app) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: calibration") and "model_id" in err


def test_malformed_calibration_file(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text("[1, 2]")
    with pytest.raises(UserError, match="unreadable"):
        calibration.load(bad)
    with pytest.raises(UserError, match="does not exist"):
        calibration.load(tmp_path / "missing.json")


def test_calibrate_command_is_mounted() -> None:
    from breachlab.vuln.cli import app

    names = {c.name for c in app.registered_commands}
    assert {"scan", "calibrate"} <= names


def test_shipped_calibration_covers_the_default_scan() -> None:
    """The calibration this version ships was made by `vuln calibrate` for the default scan."""
    from breachlab.vuln.backends.adapters import adapter_tag, shipped_dir
    from breachlab.vuln.scan.scorers import PROMPT_VERSION

    cal = calibration.load(cli.shipped_calibration())
    assert set(cal.variants) == {"model", "no_model"}  # no model scores were fitted: --deep asks for a refit
    assert cal.variants["model"].weights["llm_logit"] == 0.0  # so the default scan never asks the model to decide
    assert cal.trust is not None and cal.selection["arm"].startswith("precise@")
    assert cal.trust.min_precision == cal.selection["tau"] and cal.trust.precise_checks()
    defaults = ScanConfig(paths=["."])
    assert cal.settings["prompt"] == PROMPT_VERSION and cal.settings["strip_comments"] is defaults.strip_comments
    assert cal.settings["tools"] == sorted(defaults.tools) and cal.settings["max_line_chars"] == defaults.max_line_chars
    # the default model: the embedded GGUF through llama.cpp with the shipped adapter's GGUF
    assert cal.settings["model_id"].endswith("+" + adapter_tag(shipped_dir() / "adapter.gguf"))
    assert len(cal.data["files_sha256"]) == 64 and cal.target_fpr == 0.10
    for v in cal.variants.values():
        assert 0.0 < v.threshold <= 1.0 and v.fit["at_threshold"]["fpr"] <= cal.target_fpr
