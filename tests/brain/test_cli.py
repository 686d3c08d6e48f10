"""End to end through the CLI: corpus → render → synth → analyze (small and fast)."""

import json
from pathlib import Path

import pytest
import yaml

from breachlab.brain.configs import AnalyzeConfig, RenderConfig, SynthConfig
from breachlab.cli import app
from breachlab.config import load
from breachlab.errors import run_cli

REPO = Path(__file__).resolve().parents[2]


def _cli(monkeypatch, *args):
    monkeypatch.setattr("sys.argv", ["breachlab", *map(str, args)])
    return run_cli(app)


@pytest.mark.parametrize("name,cls", [("render.yaml", RenderConfig), ("render_high.yaml", RenderConfig),
                                      ("synth.yaml", SynthConfig), ("analyze.yaml", AnalyzeConfig)])
def test_shipped_configs_load_and_name_their_command(name, cls):
    path = REPO / "configs" / "brain" / name
    assert path.read_text().startswith("# breachlab brain ")
    load(cls, path)


def test_end_to_end(tmp_path, monkeypatch, need_data, capsys):
    from breachlab.brain.corpus import dump_corpus, filter_corpus, seed_corpus

    corpus = tmp_path / "corpus.yaml"
    assert _cli(monkeypatch, "brain", "corpus", "seed", "--out", corpus) == 0
    small = tmp_path / "small.yaml"
    dump_corpus(filter_corpus(seed_corpus(), types=["legitimate", "phishing", "pyramid"], max_variant=2), small)
    assert _cli(monkeypatch, "brain", "render", small, "--out", tmp_path / "render", "--set", "fidelity=high",
                "--set", "scale=0.5", "--set", "n_frames=4") == 0
    r = tmp_path / "render"
    stim = json.loads((r / "stimuli.json").read_text())["stimuli"]
    assert len(stim) == 18 and (r / "grid.png").is_file()
    assert json.loads((r / stim[0]["video"]).read_text())["n_frames"] == 4
    assert _cli(monkeypatch, "brain", "synth", r, "--out", tmp_path / "synth", "--set", "variant_noise=0") == 0
    index = json.loads((tmp_path / "synth" / "predictions" / "index.json").read_text())
    assert index["synthetic"] is True and "SYNTHETIC" in index["model"]
    assert _cli(monkeypatch, "brain", "analyze", tmp_path / "synth", "--out", tmp_path / "an",
                "--set", "figures=minimal", "--set", "n_spin=20", "--set", "n_boot=200", "--set", "n_perm=200") == 0
    an = tmp_path / "an"
    html = (an / "report.html").read_text(encoding="utf-8")
    assert "<title>SYNTHETIC" in html and "not predicted" in html and "data:image/png;base64," in html
    assert "src=\"http" not in html  # self-contained
    res = json.loads((an / "results.json").read_text())
    row = next(r for r in res["roi_table"] if r["path"] == "screenshot" and r["language"] == "en" and r["type"] == "pyramid")
    assert row["insula"] == pytest.approx(0.045, abs=1e-4)  # post 4's planted value, variant noise off
    assert row["amygdala"] == "not predicted"
    ja = next(r for r in res["roi_table"] if r["path"] == "text" and r["language"] == "ja" and r["type"] == "phishing")
    assert ja["dlPFC"] == pytest.approx(0.124, abs=1e-4)
    for f in res["figures"]:
        assert (an / f).stat().st_size > 1000
    assert (an / "tables" / "roi_table_by_roi.csv").read_text(encoding="utf-8").startswith("ROI,")


def test_user_errors_exit_2(tmp_path, monkeypatch, capsys):
    assert _cli(monkeypatch, "brain", "analyze", tmp_path) == 2
    assert "not a predictions directory" in " ".join(capsys.readouterr().err.split())
    assert _cli(monkeypatch, "brain", "render", tmp_path / "nope.yaml", "--out", tmp_path / "r") == 2
    assert _cli(monkeypatch, "brain", "render", tmp_path / "nope.yaml", "--set", "fidelity=ultra") == 2
    assert "fidelity must be basic or high" in " ".join(capsys.readouterr().err.split())


@pytest.mark.slow
def test_full_seed_analysis_all_figures(tmp_path, monkeypatch, need_data):
    assert _cli(monkeypatch, "brain", "corpus", "seed", "--out", tmp_path / "c.yaml") == 0
    assert _cli(monkeypatch, "brain", "render", tmp_path / "c.yaml", "--out", tmp_path / "r") == 0
    assert _cli(monkeypatch, "brain", "synth", tmp_path / "r", "--out", tmp_path / "s") == 0
    assert _cli(monkeypatch, "brain", "analyze", tmp_path / "s", "--out", tmp_path / "a") == 0
    assert len(json.loads((tmp_path / "a" / "results.json").read_text())["figures"]) == 14
