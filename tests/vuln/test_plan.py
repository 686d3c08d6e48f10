"""The memory planner: exact parameter counts, and totals close to a measured CPU peak."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

from breachlab.vuln.training.plan import PRESETS, format_table, plan  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3

# Big enough that weights/optimizer/logits dwarf allocator noise, small enough for seconds.
MEASURE_CFG = {"model_type": "gemma3_text", "vocab_size": 32000, "hidden_size": 512, "intermediate_size": 2048,
               "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64,
               "sliding_window": 128, "layer_types": ["sliding_attention"] * 3 + ["full_attention"]}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_plan(preset):
    full, lora, qlora = (plan(preset, m, 16, measure=False) for m in ("full", "lora", "qlora"))
    assert full.trainable_params == full.total_params
    assert 0 < lora.trainable_params == qlora.trainable_params < lora.total_params / 50
    assert qlora.weights < lora.weights < full.weights + full.gradients
    assert full.optimizer == 2 * full.gradients
    assert "trainable" in format_table(lora)


def test_lora_count_is_exact_for_the_embedded_shape():
    # 18 layers x r16 x (q 640->1024, k/v 640->256, o 1024->640, gate/up 640->2048, down 2048->640)
    per_layer = 16 * ((640 + 1024) * 2 + (640 + 256) * 2 + (640 + 2048) * 3)
    assert plan("gemma-3-270m", "lora", 16).trainable_params == 18 * per_layer


def test_config_json_path(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(MEASURE_CFG))
    p = plan(str(path), "full", dtype="float32")
    assert p.total_params > 30_000_000 and p.weights == p.total_params * 4


def _measure(tmp_path: Path, method: str) -> int:
    """Peak RSS growth of one process over a 2-step training run on CPU (fp32, full logits)."""
    script = textwrap.dedent(f"""
        import json, resource, torch
        from transformers import CONFIG_MAPPING, AutoModelForCausalLM
        cfg = json.loads({json.dumps(MEASURE_CFG)!r}); mt = cfg.pop("model_type")
        torch.manual_seed(0); torch.set_num_threads(2)
        ids = torch.randint(0, 32000, (4, 128))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        model = AutoModelForCausalLM.from_config(CONFIG_MAPPING[mt](**cfg, attn_implementation="sdpa"))
        if {method!r} == "lora":
            from peft import LoraConfig, get_peft_model
            from breachlab.vuln.training.anatomy import lora_targets
            model = get_peft_model(model, LoraConfig(r=16, target_modules=lora_targets(model)))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        for _ in range(2):
            model(input_ids=ids, labels=ids).loss.backward(); opt.step(); opt.zero_grad()
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method,tolerance", [
    # ~25 s: imports in a fresh process dominate.  Full fine-tuning measures 0.64-0.70 GiB against
    # 0.78 planned: the plan adds gradients and activations, but backward frees activations
    # while it fills the gradients; the RSS growth of a fresh process also varies by ~5 %
    pytest.param("full", 0.2, marks=pytest.mark.slow),
    # LoRA measured ~20% above the estimate (PEFT's extra per-projection tensors are not modelled)
    pytest.param("lora", 0.3, marks=pytest.mark.slow),
])
def test_plan_matches_measured_cpu_peak(tmp_path, method, tolerance):
    from transformers import CONFIG_MAPPING

    cfg = dict(MEASURE_CFG)
    config = CONFIG_MAPPING[cfg.pop("model_type")](**cfg)
    predicted = plan(config, method, 16, batch_size=4, seq_len=128, dtype="float32",
                     gradient_checkpointing=False, logits="all").total
    measured = _measure(tmp_path, method)
    assert measured == pytest.approx(predicted, rel=tolerance), (measured / GIB, predicted / GIB)


def test_plan_command_prints_the_table():
    import typer
    from typer.testing import CliRunner

    from breachlab.vuln import cli

    app = typer.Typer()
    app.command("plan")(cli.plan)
    app.command("noop")(lambda: None)
    res = CliRunner().invoke(app, ["plan", "gemma-3-270m", "--method", "qlora", "--rank", "16"])
    assert res.exit_code == 0, res.output
    assert "trainable 3,796,992" in res.output and "optimizer states" in res.output


def test_counted_activations_add_up_to_the_whole_model(tmp_path):
    """The short copy (one pattern period, KV-shared layers in a second one) counts what a
    forward of the whole model saves: per layer and outside, the totals agree."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from breachlab.vuln.training.anatomy import lora_targets
    from breachlab.vuln.training.plan import saved_bytes_per_token
    from tests.vuln.tiny import gemma4_text_dir

    path = gemma4_text_dir(tmp_path / "g4")
    tc = AutoConfig.from_pretrained(path)
    counted = saved_bytes_per_token(tc, "lora", 4, "float32", tokens=32)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.requires_grad_(False)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=4, target_modules=lora_targets(model))).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen.setdefault(st.data_ptr(), st.nbytes())
        return t

    ids = (torch.arange(32) % 90 + 3).unsqueeze(0)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, logits_to_keep=0)
    whole = sum(seen.values()) / 32
    assert counted["layers"] > 0 and counted["largest_layer"] * tc.num_hidden_layers >= counted["layers"]
    # the copy's embeddings are 256 wide, the tiny model's vocabulary is smaller: compare the layers
    assert counted["layers"] + counted["outside"] == pytest.approx(whole, rel=0.05)


def test_counting_beats_the_formula_on_the_gpu_step():
    """The one isolated GPU step we measured (270M, 16 x 2,048, no checkpointing, bf16, peft's
    float32 LoRA path: 36.0 GiB, docs/benchmarks.md): counting lands within 10 %, the old
    formula was 41 % low."""
    counted = plan("gemma-3-270m", "lora", 16, batch_size=16, seq_len=2048, dtype="bfloat16",
                   gradient_checkpointing=False, lora_float32=True).total / GIB
    formula = plan("gemma-3-270m", "lora", 16, batch_size=16, seq_len=2048, dtype="bfloat16",
                   gradient_checkpointing=False, measure=False).total / GIB
    assert counted == pytest.approx(36.0, rel=0.1)
    assert formula < 0.65 * 36.0


def test_the_per_layer_table_is_counted_in_cpu_memory_for_adapters():
    on = plan("gemma-4-e4b", "qlora", 16, measure=False)
    off = plan("gemma-4-e4b", "qlora", 16, measure=False, ple_on_cpu=False)
    table = 262144 * 42 * 256 * 2  # vocab x layers x 256, bf16
    assert on.cpu_weights == table and off.cpu_weights == 0
    assert off.weights - on.weights == table
    assert plan("gemma-4-e4b", "full", 16, measure=False).cpu_weights == 0  # trained: stays on the device
    assert plan("gemma-3-270m", "lora", 16, measure=False).cpu_weights == 0  # no such table
    assert "in CPU memory" in format_table(on)
    disk = plan("gemma-4-e4b", "qlora", 16, measure=False, ple_store="disk")  # vuln train's ple_store: disk
    assert disk.cpu_weights == table and disk.weights == on.weights
    assert "in a file" in format_table(disk) and "in CPU memory" not in format_table(disk)


def test_head_chunks_count_one_chunk_of_logits():
    whole = plan("gemma-4-e4b", "qlora", 16, measure=False, batch_size=8, answer_tokens=40)
    chunked = plan("gemma-4-e4b", "qlora", 16, measure=False, batch_size=8, answer_tokens=40, head_chunk=64)
    assert whole.logits == 8 * 41 * 262144 * (2 + 4 + 4)  # every answer position's logits at once
    assert chunked.logits == 64 * 262144 * (2 + 4 + 4) and chunked.activations == whole.activations
    assert plan("gemma-4-e4b", "qlora", 16, measure=False, head_chunk=10_000).logits == whole.logits


def test_a_missing_model_is_an_error_at_once_not_a_hub_lookup(no_network):
    from breachlab.errors import UserError
    from breachlab.vuln.training.plan import load_config

    with pytest.raises(UserError, match="no such model file or directory"):
        load_config("runs/my-finetuned")
    assert no_network == []


def test_the_planner_reads_a_training_yaml_with_its_key_names(tmp_path):
    """vuln plan --config TRAIN.yaml: lora_r, max_seq_len, method, batch_size as training reads them."""
    from breachlab.config import ConfigError
    from breachlab.vuln.training.plan_run import load_plan_config

    shipped = load_plan_config(Path(__file__).resolve().parents[2] / "configs/vuln/gemma4-e4b-qlora.yaml")
    assert (shipped.model, shipped.method, shipped.lora_r, shipped.max_seq_len) == (
        "hf:google/gemma-4-E4B-it", "qlora", 16, 512)
    assert shipped.dtype == "bfloat16" and shipped.ple_on_cpu is True  # training's auto, as on CUDA
    train = tmp_path / "train.yaml"
    train.write_text("model: gemma-3-270m\nmethod: lora\nlora_r: 8\nmax_seq_len: 256\nlr: 1.0e-4\n"
                     "supervised_logits_only: false\nple_on_cpu: 'off'\n")
    cfg = load_plan_config(train, {"batch_size": 2})
    assert (cfg.lora_r, cfg.max_seq_len, cfg.batch_size, cfg.logits, cfg.ple_on_cpu) == (8, 256, 2, "all", False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: gemma-3-270m\nlora_r: 8\nno_such_key: 1\n")
    with pytest.raises(ConfigError, match="no_such_key"):
        load_plan_config(bad)


def test_a_hub_id_of_a_preset_plans_offline():
    from breachlab.vuln.training.plan import load_config

    assert load_config("hf:google/gemma-4-E4B-it").to_dict() == load_config("gemma-4-e4b").to_dict()
