"""The ``deep`` combiner: fitted over every function by ``vuln calibrate``, used by ``vuln scan
--deep``, refused when a calibration has none, and without effect on the other two combiners."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from breachlab.errors import UserError, run_cli
from breachlab.vuln.scan import calibrate, calibration, cli, loading
from breachlab.vuln.scan.candidates import FEATURES
from breachlab.vuln.scan.scanner import ScanConfig, scan

from .test_calibrate import write_labels


def _calibrate(project: Path, out: Path, **kw) -> Path:
    # min_precision 1.0: no check is precise (smoothed precision stays below 1), so every
    # flagged function reaches the combiners, as these tests of the combiners need
    cfg = calibrate.CalibrateConfig(data=str(write_labels(project)), tools=["flawfinder"], target_fpr=0.2,
                                    min_precision=1.0, **kw)
    return calibrate.run(cfg, out=out)


@pytest.fixture
def fake_model(fake, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(loading, "make_scorer", lambda *a, **k: fake)
    monkeypatch.setattr(cli, "make_scorer", lambda *a, **k: fake)
    return fake


def _row(label: int, candidate: bool, p: float | None, cppcheck: float = 0.0) -> dict:
    feats = {k: 0.0 for k in FEATURES}
    feats["cppcheck"] = cppcheck
    feats["llm_logit"] = calibration.math.log(p / (1 - p)) if p is not None else 0.0
    return {"label": label, "candidate": candidate, "p_llm": p, "features": feats}


def test_deep_fit_golden() -> None:
    """By hand: two vulnerable functions no tool flags, which the model scores high.  ``model``
    (candidates only) cannot reach them; ``deep`` sees every scored function and flags them
    without a false positive; a function the model could not score stays unflagged."""
    rows = ([_row(1, True, 0.9, 1.0), _row(0, True, 0.2, 1.0), _row(0, True, 0.1, 0.5)]
            + [_row(1, False, 0.9), _row(1, False, 0.8)]
            + [_row(0, False, 0.1) for _ in range(4)] + [_row(0, False, None)])
    cal = calibrate.fit(rows, {"prompt": "p"}, 0.0, 1.0, True, {}, deep=True)
    model, deep = cal.variant("model"), cal.variant("deep")
    assert model.fit["n_candidates"] == 3 and deep.fit["n_candidates"] == 9
    assert deep.fit["n_functions"] == model.fit["n_functions"] == 10
    assert model.fit["at_threshold"]["tp"] == 1 and model.fit["at_threshold"]["fn"] == 2
    assert (deep.fit["at_threshold"]["tp"], deep.fit["at_threshold"]["fp"]) == (3, 0)
    assert deep.features == FEATURES and deep.weights["llm_logit"] > 0


def test_round_trip_deep_fit_file_scan_same_decisions(project: Path, fake_model, tmp_path: Path) -> None:
    run_dir = _calibrate(project, tmp_path / "cal")
    cal = calibration.load(run_dir / "calibration.json")
    assert set(cal.variants) == {"no_model", "model", "deep"}
    rows = json.loads((run_dir / "rows.json").read_text())
    deep = cal.variant("deep")
    # every labelled function is a candidate for deep (the fake scores all of them); the fit counts say so
    assert deep.fit["n_candidates"] == deep.fit["n_functions"] == len(rows) == 11
    assert cal.variant("model").fit["n_candidates"] == sum(r["candidate"] for r in rows) < len(rows)
    assert deep.fit["at_threshold"]["fpr"] <= 0.2
    report = json.loads((run_dir / "report.json").read_text())
    assert report["variants"]["deep"]["n_candidates"] == 11
    expected = {(r["path"], r["function"]) for r in rows if deep.confidence(r["features"]) >= deep.threshold}
    assert expected, "the fit flags something"
    fake_model.scored.clear()
    got = scan(ScanConfig(paths=[str(project)], tools=["flawfinder"], explain=False, deep=True),
               fake_model, calibration=cal)
    labelled = {(r["path"], r["function"]) for r in rows}
    assert {(f.path, f.function) for f in got.findings if (f.path, f.function) in labelled} == expected
    # the deep scan used deep's threshold, not model's
    assert got.settings["min_confidence"] == deep.threshold != cal.variant("model").threshold


def test_deep_leaves_the_other_combiners_bit_identical(project: Path, fake_model, tmp_path: Path) -> None:
    with_deep = calibration.load(_calibrate(project, tmp_path / "a") / "calibration.json").to_dict()
    without = calibration.load(_calibrate(project, tmp_path / "b", deep=False) / "calibration.json").to_dict()
    assert set(without["variants"]) == {"no_model", "model"} and "deep" in with_deep["variants"]
    for name in ("no_model", "model"):
        assert with_deep["variants"][name] == without["variants"][name], name
    assert with_deep["data"] == without["data"] and with_deep["settings"] == without["settings"]
    rows_a = json.loads((tmp_path / "a" / "rows.json").read_text())
    rows_b = json.loads((tmp_path / "b" / "rows.json").read_text())
    assert [r for r in rows_a if r["candidate"]] == [r for r in rows_b if r["candidate"]]
    # the deep scan added the model's scores on the unflagged functions, and nothing else
    assert all(r["p_llm"] is None for r in rows_b if not r["candidate"])
    assert all(r["p_llm"] is not None for r in rows_a if not r["candidate"])
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("p_llm", "features")} for r in rs]  # noqa: E731
    assert strip(rows_a) == strip(rows_b)


def test_deep_scan_refuses_a_calibration_without_deep(project: Path, fake_model, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    run_dir = _calibrate(project, tmp_path / "cal", deep=False)
    cal = calibration.load(run_dir / "calibration.json")
    with pytest.raises(UserError, match=r"no 'deep' combiner .*re-run `breachlab vuln calibrate`"):
        scan(ScanConfig(paths=[str(project)], tools=["flawfinder"], deep=True), fake_model, calibration=cal)
    # the same calibration still serves the default scan
    scan(ScanConfig(paths=[str(project)], tools=["flawfinder"], explain=False), fake_model, calibration=cal)
    # an explicit threshold is an override: the deep scan runs, at that threshold
    rep = scan(ScanConfig(paths=[str(project)], tools=["flawfinder"], deep=True, explain=False, min_confidence=0.5),
               fake_model, calibration=cal)
    assert rep.settings["min_confidence"] == 0.5
    # through the CLI: one line on stderr, exit 2
    app = typer.Typer()
    app.command("scan")(cli.scan)
    app.command("noop")(lambda: None)
    args = ["breachlab", "scan", str(project), "--tools", "flawfinder", "--deep", "--no-explain", "--no-cache",
            "--calibration", str(run_dir / "calibration.json")]
    monkeypatch.setattr("sys.argv", args)
    assert run_cli(app) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: calibration") and "'deep'" in err and err.count("\n") == 1
    monkeypatch.setattr("sys.argv", args + ["--set", "min_confidence=0.5"])
    assert run_cli(app) == 1  # findings, no refusal


def test_calibrate_deep_off_from_the_command_line(project: Path, fake_model, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    app = typer.Typer()
    from breachlab.vuln.scan.calibrate_cli import calibrate as calibrate_cmd

    app.command("calibrate")(calibrate_cmd)
    app.command("noop")(lambda: None)
    monkeypatch.setattr("sys.argv", ["breachlab", "calibrate", str(write_labels(project)), "--tools", "flawfinder",
                                     "--target-fpr", "0.2", "--set", "deep=false", "--out", str(tmp_path / "c")])
    assert run_cli(app) == 0
    cal = calibration.load(tmp_path / "c" / "calibration.json")
    assert set(cal.variants) == {"no_model", "model"}


def test_benchmark_adds_the_deep_row_only_for_deep_records() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "scan_bench.py"
    spec = importlib.util.spec_from_file_location("scan_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [_row(1, True, 0.9, 1.0), _row(0, True, 0.2, 1.0), _row(1, False, 0.9), _row(0, False, 0.1)]
    cal = calibrate.fit(rows, {"prompt": "p"}, 0.0, 1.0, True, {}, deep=True)
    records = [{**r, "path": f"f{i}.c", "function": f"fn{i}", "start_line": 1, "lines": [], "tool_lines": {}}
               for i, r in enumerate(rows)]
    labels = {"files": [{"path": f"f{i}.c", "source": "juliet", "file_label": r["label"],
                         "functions": [{"start_line": 1, "label": r["label"]}]} for i, r in enumerate(rows)]}
    deep = bench.evaluate(labels, records, cal)
    assert deep[bench.DEEP]["all"]["function"]["tp"] == 2 and deep[bench.DEEP]["all"]["file"]["fp"] == 0
    assert deep["triage (default)"]["all"]["function"]["tp"] == 1 and bench.DEEP_BEFORE in deep
    shallow = [{**r, "p_llm": None} if not r["candidate"] else r for r in records]
    assert bench.DEEP not in bench.evaluate(labels, shallow, cal)
    assert f"| {bench.DEEP} | 1.000 | 1.000 | 1.000 | 0.000 | 0.000 |" in bench.table(deep, "function", "all",
                                                                                    {"deep": 0.0})
