"""``breachlab quickstart``: the held-out test split of the shipped adapter, and the zero-shot →
fine-tuned story end to end on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from breachlab.vuln.quickstart import QuickstartConfig, data_config, drop_seen, run, take_balanced, unseen_sources
from breachlab.vuln.sample import Sample
from tests.vuln.conftest import shared_data


def _s(i: str, label: int, source: str, pair: str | None = None) -> Sample:
    return Sample(i, f"int f{i}(void) {{ return {label}; }}", label, "CWE-121", source, pair or i, pair_id=pair)


def test_take_balanced_splits_classes_over_sources_and_keeps_pairs() -> None:
    juliet = [_s(f"j{i}", i % 2, "juliet") for i in range(10)]
    sven = [_s(f"p{i}{h}", int(h == "v"), "sven", pair=f"p{i}") for i in range(5) for h in "vf"]
    picked = take_balanced(juliet + sven, ["juliet", "sven"], 4)
    by = {(s.source, s.label) for s in picked}
    assert by == {("juliet", 0), ("juliet", 1), ("sven", 0), ("sven", 1)}
    assert sum(s.label for s in picked) == 4 and len(picked) == 8
    pairs = [s.pair_id for s in picked if s.source == "sven"]
    assert all(pairs.count(p) == 2 for p in pairs)  # whole pairs only


def test_with_an_adapter_card_the_data_is_the_adapters_own() -> None:
    """The held-out claim: quickstart rebuilds the adapter's dataset (same config, same seed),
    whose splits are filled test-first by group hash, and samples its test split."""
    card = {"data": {"config": {"sources": ["juliet", "sven"], "n_train_per_class": 3000, "n_val_per_class": 60,
                                "n_test_per_class": 160, "max_chars": 6400, "max_per_group": 4, "seed": 42}}}
    dcfg = data_config(QuickstartConfig(data_root="/data"), card)
    assert (dcfg.n_train_per_class, dcfg.n_test_per_class, dcfg.max_chars, dcfg.data_root) == (3000, 160, 6400, "/data")
    plain = data_config(QuickstartConfig(n_per_class=7), None)
    assert (plain.n_train_per_class, plain.n_val_per_class, plain.n_test_per_class) == (0, 0, 7)
    # PairVul is not in that adapter's data: it comes from a test-only build, held out by construction
    assert unseen_sources(QuickstartConfig(), card) == ["pairvul"]
    assert unseen_sources(QuickstartConfig(sources=["juliet", "sven"]), card) == []
    assert unseen_sources(QuickstartConfig(), None) == []


def test_drop_seen_removes_functions_of_the_adapters_splits_and_their_pair(tmp_path: Path) -> None:
    from breachlab.rundir import write_jsonl
    from breachlab.vuln.sample import Sample

    seen = Sample(id="s:vul", code="int f(){  return 1; }", label=1, cwe=None, source="sven", group="g", pair_id="s")
    write_jsonl(tmp_path / "train.jsonl", [seen.to_dict()])
    extra = [
        Sample(id="p:vul", code="int f(){ return 1; }", label=1, cwe=None, source="pairvul", group="c", pair_id="p"),
        Sample(id="p:fix", code="int f(){ return 0; }", label=0, cwe=None, source="pairvul", group="c", pair_id="p"),
        Sample(id="q:vul", code="int g(){ return 2; }", label=1, cwe=None, source="pairvul", group="d", pair_id="q"),
        Sample(id="q:fix", code="int g(){ return 3; }", label=0, cwe=None, source="pairvul", group="d", pair_id="q")]
    kept, dropped = drop_seen(extra, [tmp_path])
    assert [s.id for s in kept] == ["q:vul", "q:fix"] and dropped == 2  # whitespace-normalised match, whole pair


def test_default_adapter_absent_means_zero_shot_only(monkeypatch, tmp_path: Path) -> None:
    if not (shared_data() / "sven" / "train").is_dir():
        pytest.skip("no ../shared/data")
    from breachlab.vuln.backends import adapters
    from tests.vuln.tiny import make_model_dir

    monkeypatch.setattr(adapters, "has_shipped", lambda name=None: False)
    cfg = QuickstartConfig(n_per_class=2, model=str(make_model_dir(tmp_path / "model")), backend="transformers",
                           data_root=str(shared_data()), modes=["logit"], threads=1)
    out = run(cfg, out=tmp_path / "qs", progress=False)
    assert (out / "zero-shot" / "metrics.json").is_file()
    assert not (out / "fine-tuned").exists() and not (out / "compare.md").exists()


def test_quickstart_zero_shot_then_fine_tuned_on_a_tiny_model(tmp_path: Path) -> None:
    if not (shared_data() / "sven" / "train").is_dir():
        pytest.skip("no ../shared/data")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tests.vuln.tiny import make_model_dir

    model_dir = make_model_dir(tmp_path / "model")
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft.save_pretrained(tmp_path / "adapter")

    cfg = QuickstartConfig(n_per_class=4, model=str(model_dir), backend="transformers",
                           adapter=str(tmp_path / "adapter"),
                           data_root=str(shared_data()), generate_limit=2, max_new_tokens=4, threads=1)
    out = run(cfg, out=tmp_path / "qs", progress=False)
    for arm in ("zero-shot", "fine-tuned"):
        rows = [json.loads(x) for x in (out / arm / "predictions.jsonl").read_text().splitlines()]
        assert sum(r["mode"] == "logit" for r in rows) == 8 and sum(r["mode"] == "generate" for r in rows) == 2
    zero = {r["id"]: r["p_vulnerable"] for r in map(json.loads, (out / "zero-shot" / "predictions.jsonl").open())
            if r["mode"] == "logit"}
    tuned = {r["id"]: r["p_vulnerable"] for r in map(json.loads, (out / "fine-tuned" / "predictions.jsonl").open())
             if r["mode"] == "logit"}
    assert zero.keys() == tuned.keys() and zero != tuned  # same samples, the adapter changed the scores
    assert (out / "compare.md").is_file() and (out / "compare-juliet" / "compare.md").is_file()
    assert (out / "compare-sven" / "compare.html").is_file() and (out / "compare-pairvul" / "compare.md").is_file()
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "finished" and {"zero-shot_s", "fine-tuned_s", "compare_s"} <= set(man["timings"])


def test_the_shipped_adapters_data_rebuilds_to_its_card(tmp_path: Path) -> None:
    """The held-out claim rests on this: today's data code, given the card's config, rebuilds
    the test split the card recorded (keys added since take the old behaviour: pair_window
    off).  A data change that moves the split fails here, not silently in the quickstart."""
    import hashlib

    from breachlab.vuln.backends.adapters import has_shipped, shipped_card
    from breachlab.vuln.data.build import build

    if not has_shipped() or not (shared_data() / "juliet").is_dir():
        pytest.skip("no shipped adapter card or no ../shared/data")
    card = shipped_card()
    dcfg = data_config(QuickstartConfig(data_root=str(shared_data())), card)
    build(dcfg, tmp_path / "data", progress=False)
    digest = hashlib.sha256((tmp_path / "data" / "test.jsonl").read_bytes()).hexdigest()
    assert digest == card["data"]["test_sha256"]


def test_summary_table_fits_an_80_column_terminal() -> None:
    """The quickstart's closing table, on the committed quickstart runs: no line over 80 columns,
    no cell wrapped onto a second line (every row of the table is one line)."""
    from pathlib import Path

    from rich.console import Console

    from breachlab.vuln.eval import compare
    from breachlab.vuln.quickstart import summary_table

    root = Path(__file__).resolve().parents[2] / "docs" / "results" / "quickstart"
    runs = [root / "zero-shot", root / "fine-tuned"]
    results = {"all": compare.compare(runs, n_boot=50), "sven": compare.compare(runs, n_boot=50, source="sven")}
    console = Console(record=True, width=80)
    console.print(summary_table(results))
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= 80
    rows = [ln for ln in lines if ln.strip().startswith(("all", "sven"))]
    assert len(rows) == 8 and not [ln for ln in lines[4:] if ln.strip() and not ln.strip().startswith(("all", "sven"))]
