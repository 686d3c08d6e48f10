"""Training: config, adapter placement, the supervised-logits loss, a real tiny run, kill -9 + resume."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from breachlab.config import ConfigError, load  # noqa: E402
from breachlab.vuln.sample import Sample  # noqa: E402
from breachlab.vuln.training import sft  # noqa: E402
from breachlab.vuln.training.anatomy import lora_targets  # noqa: E402
from breachlab.vuln.training.config import TrainConfig  # noqa: E402
from breachlab.vuln.training.run import run  # noqa: E402
from tests.vuln.tiny import gemma3_dir, gemma4_multimodal, samples_jsonl  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    return gemma3_dir(base / "model"), samples_jsonl(base / "data")


def _cfg(tiny, **kw) -> TrainConfig:
    model, data = tiny
    opts = dict(model=str(model), data=str(data), batch_size=4, max_steps=6, eval_every=3, save_every=0,
                lr=1e-3, log_every=1, max_seq_len=512, threads=1)
    opts.update(kw)
    return TrainConfig(**opts)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError):
        TrainConfig(lora_r=0)
    with pytest.raises(ConfigError):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError):
        load(TrainConfig, overrides={"method": "dora"})
    with pytest.raises(ConfigError):
        load(TrainConfig, overrides={"bogus": 1})


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "vuln").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    from breachlab.config_registry import config_class_for

    first = path.read_text().splitlines()[0]
    assert first.startswith("# breachlab "), "each YAML opens with the command that uses it"
    load(config_class_for(path), path)  # the class of that command, from the one command -> config table


def test_adapters_only_on_the_language_model():
    model = gemma4_multimodal()
    targets = lora_targets(model)
    assert targets and all(t.startswith("model.language_model.") for t in targets)
    towers = [n for n, _ in model.named_modules() if n.endswith("q_proj") and "tower" in n]
    assert towers, "the tiny Gemma 4 must have vision/audio projections for this test to mean anything"
    assert not set(towers) & set(targets)
    assert {t.rsplit(".", 1)[1] for t in targets} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                       "up_proj", "down_proj"}
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=targets))
    lora_names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert lora_names and not any("tower" in n for n in lora_names)


def test_collate_marks_only_answer_tokens():
    a = sft.Encoded([2, 10, 11, 12, 20, 21], n_prompt=4)  # answer 20 21
    b = sft.Encoded([2, 13, 30, 31, 32], n_prompt=2)  # answer 30 31 32
    batch = sft.collate([a, b], pad_id=0)
    assert batch["keep"] == 4
    assert batch["input_ids"].tolist() == [[2, 10, 11, 12, 20, 21], [0, 2, 13, 30, 31, 32]]
    assert batch["targets"].tolist() == [[-100, 20, 21], [30, 31, 32]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5], [0, 0, 1, 2, 3, 4]]
    assert batch["n_supervised"] == 5


def test_supervised_logits_loss_equals_full_logits_loss(tiny):
    """logits_to_keep + left padding gives the same loss as all logits + shifted labels."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, _ = tiny
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    samples = [Sample(f"s{i}", code, i % 2, "CWE-787" if i % 2 else None, "generic", f"g{i}")
               for i, code in enumerate(["int a;", "void f(char *s) { strcpy(b, s); }", "x++;"])]
    enc = [sft.encode(tok, s, 512) for s in samples]
    fast_sum, n = sft.forward_loss(model, sft.collate(enc, tok.pad_token_id), "cpu")
    total = 0.0
    for e in enc:  # one unpadded sequence at a time, full logits
        ids = torch.tensor([e.ids])
        labels = ids.clone()
        labels[0, : e.n_prompt] = -100
        total += float(model(input_ids=ids, labels=labels).loss) * e.n_answer
    assert n == sum(e.n_answer for e in enc)
    assert float(fast_sum) == pytest.approx(total, rel=1e-4)


def test_verdict_numbers_read_the_first_answer_token(tiny):
    """forward_eval's verdict NLL / accuracy equal a full-logit computation at the verdict position."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, _ = tiny
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    samples = [Sample(f"s{i}", code, i % 2, "CWE-787" if i % 2 else None, "generic", f"g{i}")
               for i, code in enumerate(["int a;", "void f(char *s) { strcpy(b, s); }", "x++;", "free(p); free(p);"])]
    enc = [sft.encode(tok, s, 512) for s in samples]
    ids = sft.verdict_token_ids(enc)
    assert len(ids) == 2, "VULNERABLE and SAFE answers must start with different tokens"
    with torch.no_grad():
        loss_sum, n, v_nll, right = sft.forward_eval(model, sft.collate(enc, tok.pad_token_id), "cpu", ids)
        fast_sum, _ = sft.forward_loss(model, sft.collate(enc, tok.pad_token_id), "cpu")
        want_nll, want_right = 0.0, 0
        for e in enc:
            logits = model(input_ids=torch.tensor([e.ids])).logits[0, e.n_prompt - 1].float()
            true = e.ids[e.n_prompt]
            want_nll += float(-torch.log_softmax(logits, -1)[true])
            other = ids[0] if true == ids[1] else ids[1]
            want_right += int(logits[true] > logits[other])
    assert loss_sum == pytest.approx(float(fast_sum), rel=1e-6)
    assert v_nll == pytest.approx(want_nll, rel=1e-4)
    assert right == want_right


def test_select_on_verdict_keeps_the_lowest_verdict_nll(tiny, tmp_path):
    import csv

    out = run(_cfg(tiny, max_steps=6, eval_every=2, select_on="verdict"), out=tmp_path / "run")
    rows = [r for r in csv.DictReader((out / "metrics.csv").open()) if r["val_loss"]]
    assert len(rows) == 3 and all(r["val_verdict_nll"] and r["val_verdict_acc"] for r in rows)
    man = json.loads((out / "manifest.json").read_text())
    best = min(rows, key=lambda r: float(r["val_verdict_nll"]))
    assert man["selected_on"] == "verdict" and man["best_step"] == int(best["step"])
    assert man["best_val_verdict_nll"] == pytest.approx(float(best["val_verdict_nll"]))
    assert 0.0 <= man["best_val_verdict_acc"] <= 1.0


def test_encode_shortens_code_never_the_answer(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny[0])
    s = Sample("long", "int x = 1;\n" * 200, 1, "CWE-787", "generic", "g")
    e = sft.encode(tok, s, 512)
    assert len(e.ids) <= 512 and e.truncated
    assert tok.decode(e.ids[e.n_prompt:]).replace(" ", "").startswith("VULNERABLE")  # char tokenizer joins with spaces


def test_lora_run_changes_adapter_not_base(tiny, tmp_path):
    from safetensors.torch import load_file

    out = run(_cfg(tiny), out=tmp_path / "run")
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "finished" and man["steps"] == 6
    assert 0 < man["trainable_params"] < man["total_params"]
    assert man["tokens_per_second"] > 0 and man["peak_memory_bytes"] > 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,train_loss,val_loss") and len(rows) == 7
    assert (out / "curves.png").stat().st_size > 1000
    adapter = load_file(str(out / "final" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b), "LoRA B starts at zero and must have moved"
    base = load_file(str(tiny[0] / "model.safetensors"))
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny[0]), out / "final")
    for name, p in merged.get_base_model().named_parameters():
        if "lora_" not in name and name.replace("base_layer.", "") in base:
            assert torch.equal(p.detach(), base[name.replace("base_layer.", "")]), name


def test_full_finetune_and_early_stopping(tiny, tmp_path):
    out = run(_cfg(tiny, method="full", max_steps=12, eval_every=2, patience=1, min_delta=10.0, lr=1e-4),
              out=tmp_path / "run")
    man = json.loads((out / "manifest.json").read_text())
    assert man["stopped_early"] and man["steps"] == 4 and man["best_step"] == 2
    assert man["trainable_params"] == man["total_params"]
    assert (out / "best" / "model.safetensors").is_file()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill9_and_resume_matches_uninterrupted(tiny, tmp_path):
    """SIGKILL a real run after a checkpoint, resume it; the final adapter is bit-identical."""
    kw = dict(max_steps=12, save_every=3, eval_every=4, lora_dropout=0.1)
    ref = run(_cfg(tiny, **kw), out=tmp_path / "ref")
    cfg_json = json.dumps({"model": str(tiny[0]), "data": str(tiny[1]), "batch_size": 4,
                           "lr": 1e-3, "log_every": 1, "max_seq_len": 512, "threads": 1, **kw})
    script = textwrap.dedent(f"""
        import json
        from breachlab.vuln.training.config import TrainConfig
        from breachlab.vuln.training.run import run
        run(TrainConfig(**json.loads({cfg_json!r})), out={str(tmp_path / 'killed')!r})
    """)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = tmp_path / "killed" / "checkpoints" / "step-0000006"
    deadline = time.time() + 120
    while not ck.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ck.exists(), "the run should have written its step-6 checkpoint before the kill"
    killed = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert killed["status"] == "running" and not (tmp_path / "killed" / "final").exists()
    out = run(TrainConfig(), resume=tmp_path / "killed")
    assert _sha(out / "final" / "adapter_model.safetensors") == _sha(ref / "final" / "adapter_model.safetensors")
    assert (out / "metrics.csv").read_text().count("\n") == 13


def test_sources_filter_train_and_validation(tmp_path):
    from breachlab.errors import UserError
    from breachlab.vuln.training.load import load_data

    data = samples_jsonl(tmp_path / "d", n_train=8, n_val=4)
    for split in ("train", "val"):  # relabel half of each split as another source
        rows = [json.loads(line) for line in (data / f"{split}.jsonl").read_text().splitlines()]
        for i, r in enumerate(rows):
            r["source"] = "juliet" if i < len(rows) // 2 else "sven"
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    train, val, _ = load_data(TrainConfig(data=str(data), sources=["sven"], max_val_samples=0))
    assert len(train) == 4 and len(val) == 2
    assert {s.source for s in train} == {s.source for s in val} == {"sven"}
    with pytest.raises(UserError, match="no samples from generic"):
        load_data(TrainConfig(data=str(data), sources=["generic"]))


def test_the_objective_key_selects_the_micro_batch_loss(tiny, tmp_path, monkeypatch):
    """``objective`` picks the loss from the registry: an unknown name fails before anything
    loads; a registered one is what the step trains on (here sft's loss doubled: the first
    step, on the initial weights, logs exactly twice sft's first loss)."""
    from breachlab.vuln.training import objectives

    with pytest.raises(ConfigError, match="objective must be one of .*sft"):
        run(_cfg(tiny, objective="pair_margin_not_yet"), out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()

    def doubled(model, batch, device, cfg):
        loss, n = objectives.sft_loss(model, batch, device, cfg)
        return 2 * loss, n

    monkeypatch.setitem(objectives.OBJECTIVES, "doubled", doubled)
    kw = dict(max_steps=1, eval_every=0)
    ref = run(_cfg(tiny, **kw), out=tmp_path / "sft")
    got = run(_cfg(tiny, objective="doubled", **kw), out=tmp_path / "doubled")
    first = [float(next(csv.DictReader((p / "metrics.csv").open()))["train_loss"]) for p in (ref, got)]
    assert first[1] == pytest.approx(2 * first[0], abs=2e-5)
    assert json.loads((got / "manifest.json").read_text())["objective"] == "doubled"


def _paired_data(folder: Path, tiny_data: Path) -> Path:
    """The tiny data with consecutive (vulnerable, safe) rows as pairs of one pair_id."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        rows = [json.loads(line) for line in (tiny_data / f"{split}.jsonl").read_text().splitlines()]
        for i, r in enumerate(rows):
            r["pair_id"] = f"{split}-pair-{i // 2}"
            r["group"] = r["pair_id"]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_pair_margin_adds_the_pair_term_and_keeps_pairs_together(tiny, tmp_path):
    """objective pair_margin: with a weight the first logged loss is larger than with
    pair_weight 0 (same batches) by a positive pair term; every micro-batch holds
    both halves of each of its pairs; CUDA graphs are refused for it."""
    from breachlab.vuln.training.loop import Trainer

    data = _paired_data(tmp_path / "pairs", tiny[1])
    kw = dict(data=str(data), max_steps=1, eval_every=0)
    zero = run(_cfg(tiny, objective="pair_margin", pair_weight=0.0, **kw), out=tmp_path / "zero")
    pair = run(_cfg(tiny, objective="pair_margin", pair_weight=1.0, pair_margin=4.0, **kw), out=tmp_path / "pair")
    first = [float(next(csv.DictReader((p / "metrics.csv").open()))["train_loss"]) for p in (zero, pair)]
    # same batches (pair-keeping order), same initial weights: the difference is the pair term;
    # the untrained model has no verdict gap yet, so it is about softplus(4) ~ 4
    assert first[1] > first[0] + 1.0

    trainer = Trainer(_cfg(tiny, objective="pair_margin", data=str(data)))
    trainer.train_enc = [sft.Encoded([1, 2, 3], 2, label=s.label, pair=s.pair_id) for s in trainer.train_samples]
    trainer.steps_per_epoch = 4
    for step in range(4):
        for batch in trainer._step_batches(step):
            pairs = [trainer.train_enc[i].pair for i in batch]
            assert all(pairs.count(p) == 2 for p in pairs), pairs
    assert "objective: sft" in (_cfg(tiny, objective="pair_margin").graphs_blocker() or "")
    with pytest.raises(ConfigError, match="pair_weight"):
        _cfg(tiny, pair_weight=-1.0)


def test_rank_auc_by_hand():
    from breachlab.vuln.training.validate import rank_auc

    assert rank_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert rank_auc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0
    assert rank_auc([0.5, 0.5], [1, 0]) == 0.5  # a tie counts half
    assert rank_auc([0.3, 0.7, 0.5], [1, 0, 1]) == pytest.approx(0.0)  # both positives below the negative
    assert rank_auc([0.3, 0.7], [1, 1]) is None


def test_select_on_auc_keeps_the_highest_validation_auc(tiny, tmp_path):
    out = run(_cfg(tiny, select_on="auc", max_steps=6, eval_every=2), out=tmp_path / "auc")
    rows = [r for r in csv.DictReader((out / "metrics.csv").open()) if r["val_verdict_auc"]]
    aucs = [float(r["val_verdict_auc"]) for r in rows]
    assert len(aucs) == 3 and all(0.0 <= a <= 1.0 for a in aucs)
    man = json.loads((out / "manifest.json").read_text())
    best = max(range(3), key=lambda i: (aucs[i], -i))  # ties keep the earliest
    assert man["selected_on"] == "auc" and man["best_step"] == int(rows[best]["step"])
    assert man["best_val_verdict_auc"] == pytest.approx(aucs[best])
