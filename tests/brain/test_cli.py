"""End to end through the CLI: corpus → render → synth → analyze (small and fast)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from breachlab.brain.configs import AnalyzeConfig, RenderConfig, SmsImportConfig, SynthConfig
from breachlab.brain.encode import EncodeConfig
from breachlab.brain.synth import JA_OVERRIDES, POST4_ROI_TABLE
from breachlab.cli import app
from breachlab.config import load
from breachlab.errors import run_cli

REPO = Path(__file__).resolve().parents[2]


def _cli(monkeypatch, *args):
    monkeypatch.setattr("sys.argv", ["breachlab", *map(str, args)])
    return run_cli(app)


@pytest.mark.parametrize("name,cls", [("render.yaml", RenderConfig), ("render_high.yaml", RenderConfig),
                                      ("synth.yaml", SynthConfig), ("analyze.yaml", AnalyzeConfig),
                                      ("encode.yaml", EncodeConfig), ("import_sms.yaml", SmsImportConfig)])
def test_shipped_configs_load_and_name_their_command(name, cls):
    from breachlab.config_registry import config_class_for

    path = REPO / "configs" / "brain" / name
    assert path.read_text().startswith("# breachlab brain ")
    assert config_class_for(path) is cls  # the one command -> config table knows it
    load(cls, path)


def test_encode_help_names_a_config_file_that_exists():
    import re

    from typer.testing import CliRunner

    out = CliRunner().invoke(app, ["brain", "encode", "--help"], terminal_width=300).output
    for name in re.findall(r"configs/brain/[\w.]+\.yaml", out):
        assert (REPO / name).is_file(), name


def test_brain_config_reads_the_command_table(monkeypatch, capsys):
    from breachlab.config_registry import commands_of

    assert set(commands_of("brain")) == {"render", "synth", "analyze", "encode", "corpus import-sms"}
    assert _cli(monkeypatch, "brain", "config", "encode") == 0
    out = capsys.readouterr().out
    assert "allow_network" in out and "aligner" in out
    assert _cli(monkeypatch, "brain", "config", "nope") == 2
    assert _cli(monkeypatch, "brain", "config", "corpus", "import-sms") == 0
    assert "n_per_class" in capsys.readouterr().out


def test_import_sms_takes_config_and_set(tmp_path, monkeypatch, need_data):
    out = tmp_path / "sms.yaml"
    assert _cli(monkeypatch, "brain", "corpus", "import-sms",
                "--config", REPO / "configs" / "brain" / "import_sms.yaml",
                "--set", "n_per_class=3", "--out", out) == 0
    import yaml

    msgs = yaml.safe_load(out.read_text())["messages"]
    assert len(msgs) == 6 and {m["presentation"] for m in msgs} == {"sms"}


def test_corpus_seed_refuses_to_overwrite_without_force(tmp_path, monkeypatch, capsys):
    out = tmp_path / "c.yaml"
    out.write_text("mine\n")
    assert _cli(monkeypatch, "brain", "corpus", "seed", "--out", out) == 2
    assert "--force" in capsys.readouterr().err and out.read_text() == "mine\n"
    assert _cli(monkeypatch, "brain", "corpus", "seed", "--out", out, "--force") == 0
    assert "messages:" in out.read_text()


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
    capsys.readouterr()
    assert _cli(monkeypatch, "brain", "synth", r, "--out", tmp_path / "synth", "--set", "variant_noise=0") == 0
    assert "SYNTHETIC" in capsys.readouterr().err
    index = json.loads((tmp_path / "synth" / "predictions" / "index.json").read_text())
    assert index["synthetic"] is True and "SYNTHETIC" in index["model"]
    assert _cli(monkeypatch, "brain", "analyze", tmp_path / "synth", "--out", tmp_path / "an",
                "--set", "figures=minimal", "--set", "n_spin=20", "--set", "n_boot=200", "--set", "n_perm=200") == 0
    console = capsys.readouterr()
    progress = [line for line in console.err.splitlines() if line.startswith("analyze:")]
    assert len(progress) >= 5 and all("SYNTHETIC" in line for line in progress)  # progress, each step labelled
    assert "SYNTHETIC" in console.out.splitlines()[-1]
    an = tmp_path / "an"
    html = (an / "report.html").read_text(encoding="utf-8")
    assert "<title>SYNTHETIC" in html and "not predicted" in html and "data:image/png;base64," in html
    assert "src=\"http" not in html  # self-contained
    res = json.loads((an / "results.json").read_text())
    row = next(r for r in res["roi_table"]
               if r["path"] == "screenshot" and r["language"] == "en" and r["type"] == "pyramid")
    planted = POST4_ROI_TABLE["screenshot"]["pyramid"]["insula"]
    assert row["insula"] == pytest.approx(planted, abs=1e-4)  # the planted value, variant noise off
    assert row["amygdala"] == "not predicted"
    ja = next(r for r in res["roi_table"] if r["path"] == "text" and r["language"] == "ja" and r["type"] == "phishing")
    assert ja["dlPFC"] == pytest.approx(JA_OVERRIDES[("text", "phishing", "dlPFC")], abs=1e-4)
    for f in res["figures"]:
        assert (an / f).stat().st_size > 1000
    # SYNTHETIC travels with every derived file: each table row, the maps, the manifest
    for table in sorted((an / "tables").glob("*.csv")):
        rows = list(csv.DictReader(table.open(encoding="utf-8")))
        assert rows and all(r["predictions"] == "SYNTHETIC" for r in rows), table.name
    assert (an / "tables" / "roi_table_by_roi.csv").read_text(encoding="utf-8").startswith("predictions,ROI,")
    for npz in ("condition_maps.npz", "differential_maps.npz"):
        with np.load(an / "maps" / npz) as z:
            assert bool(z["meta_synthetic"]) and str(z["meta_predictions"]) == "SYNTHETIC"
    manifest = json.loads((an / "manifest.json").read_text())
    assert manifest["synthetic"] is True and "SYNTHETIC" in manifest["label"]


def test_real_predictions_are_not_labelled_synthetic(tmp_path, need_data):
    """The label follows the store: a non-synthetic store gives the model's name, never SYNTHETIC."""
    from breachlab.brain.corpus import filter_corpus, seed_corpus
    from breachlab.brain.predictions import StoreMeta, StoreWriter
    from breachlab.brain.stages import run_analyze

    c = filter_corpus(seed_corpus(), types=["legitimate", "phishing"], languages=["en"], max_variant=1)
    from breachlab.brain.corpus import dump_corpus

    dump_corpus(c, tmp_path / "p" / "corpus.json")
    w = StoreWriter(tmp_path / "p", StoreMeta(model="facebook/tribev2", synthetic=False))
    rng = np.random.default_rng(0)
    for m in c:
        w.add(m, "text", rng.standard_normal((3, 20484)).astype(np.float32))
    w.close()
    lines: list[str] = []
    an = run_analyze(tmp_path / "p", AnalyzeConfig(figures="none", n_spin=0, n_boot=100, n_perm=100),
                     out=tmp_path / "an", progress=lines.append)
    assert lines and not any("SYNTHETIC" in line for line in lines)
    rows = list(csv.DictReader((an / "tables" / "roi_table.csv").open(encoding="utf-8")))
    assert {r["predictions"] for r in rows} == {"facebook/tribev2"}
    assert json.loads((an / "manifest.json").read_text())["synthetic"] is False


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


@pytest.mark.parametrize("types", [["phishing"], ["legitimate"], ["phishing", "spam"]])
def test_analyze_refuses_a_store_without_a_contrast_up_front(tmp_path, monkeypatch, capsys, types):
    """One message type (or no baseline) is one line and exit 2, with nothing written (was: Singular matrix)."""
    from breachlab.brain.corpus import Corpus, Message, dump_corpus
    from breachlab.brain.predictions import StoreMeta, StoreWriter

    msgs = [Message(id=f"{t}-en-v{v}", type=t, language="en", text="x", variant=v) for t in types for v in (0, 1)]
    dump_corpus(Corpus("one-type", tuple(msgs)), tmp_path / "p" / "corpus.json")
    w = StoreWriter(tmp_path / "p", StoreMeta(model="facebook/tribev2"))
    for m in msgs:
        w.add(m, "text", np.random.default_rng(0).standard_normal((3, 20484)).astype(np.float32))
    w.close()
    capsys.readouterr()
    assert _cli(monkeypatch, "brain", "analyze", tmp_path / "p", "--out", tmp_path / "an") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "baseline" in err[0], err
    assert not (tmp_path / "an").exists()
