"""Real paired data through the whole vuln pipeline on a tiny random Qwen2 (ChatML):
PairVul build → train (sft and pair_margin) → eval with PrimeVul's pair metrics → export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from breachlab.vuln.data.build import run as build  # noqa: E402
from breachlab.vuln.data.config import DataConfig  # noqa: E402
from breachlab.vuln.eval.evaluate import EvalConfig, run as evaluate  # noqa: E402
from breachlab.vuln.export import ExportConfig, run as export  # noqa: E402
from breachlab.vuln.training.config import TrainConfig  # noqa: E402
from breachlab.vuln.training.run import run as train  # noqa: E402
from tests.vuln.tiny import qwen2_dir  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module")
def pairvul_data(tmp_path_factory) -> Path:
    if not (DATA / "pairvul").is_dir():
        pytest.skip("PairVul not found beside the checkout (../shared/data/pairvul)")
    out = tmp_path_factory.mktemp("pv") / "data"
    cfg = DataConfig(sources=["pairvul"], data_root=str(DATA), n_train_per_class=6, n_val_per_class=2,
                     n_test_per_class=3, max_per_group=0, max_chars=1200, seed=3)
    return build(cfg, out=out)


@pytest.mark.parametrize("objective", ["sft", "pair_margin"])
def test_pairvul_train_eval_export_on_tiny_qwen2(pairvul_data, tmp_path, objective):
    model = qwen2_dir(tmp_path / "qwen")
    run_dir = train(TrainConfig(model=str(model), data=str(pairvul_data), objective=objective, batch_size=4,
                                max_steps=2, eval_every=2, save_every=0, lr=1e-3, max_seq_len=512, threads=1,
                                log_every=1), out=tmp_path / "train")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["objective"] == objective

    ev = evaluate(EvalConfig(data=str(pairvul_data), model=str(model), backend="transformers",
                             adapter=str(run_dir / "best"), modes=["logit"], n_boot=50, threads=1),
                  out=tmp_path / "eval", progress=False)
    summary = json.loads((ev / "metrics.json").read_text())["logit"]
    rows = [json.loads(line) for line in (ev / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(0.0 <= r["p_vulnerable"] <= 1.0 for r in rows)
    pairs = {r["pair_id"] for r in rows}
    assert summary["pairwise"]["n_pairs"] == len(pairs) == 3
    shares = [summary["pairwise"][k]["value"] for k in ("P-C", "P-V", "P-B", "P-R", "unparsable")]
    assert sum(shares) == pytest.approx(1.0)

    out = export(ExportConfig(run=str(run_dir), formats=["adapter", "merged"], dtype="float32"))
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "merged" / "model.safetensors").is_file()
