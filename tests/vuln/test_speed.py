"""Speed-ups that must not change a number: packing, per-layer embeddings on the CPU,
fused kernels, CUDA graphs (the last two need a GPU: marked ``gpu``, out of the default run)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from breachlab.config import ConfigError  # noqa: E402
from breachlab.vuln import speed  # noqa: E402
from breachlab.vuln.train import TrainConfig, run  # noqa: E402
from tests.vuln.tiny import gemma3_dir, gemma4_text_dir, samples_jsonl  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return samples_jsonl(tmp_path_factory.mktemp("data") / "d")


@pytest.fixture(scope="module")
def gemma4(tmp_path_factory):
    return gemma4_text_dir(tmp_path_factory.mktemp("g4") / "m")


def _cfg(model, data, **kw) -> TrainConfig:
    opts = dict(model=str(model), data=str(data), batch_size=4, max_steps=3, eval_every=3, save_every=0,
                lr=1e-3, log_every=1, max_seq_len=512, threads=1, dtype="float32")
    opts.update(kw)
    return TrainConfig(**opts)


def _adapter(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "final" / "adapter_model.safetensors"))


def test_the_per_layer_table_leaves_the_model_and_the_logits_stay(gemma4):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gemma4).eval()
    assert speed.offload_per_layer_embeddings(model, include_cpu=True) == 0, "a trainable table stays"
    model.requires_grad_(False)
    ids = torch.tensor([[2, 17, 33, 5, 90, 41, 7]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    table = model.model.embed_tokens_per_layer.weight
    expected = table.numel() * table.element_size()
    assert speed.offload_per_layer_embeddings(model) == 0, "a table in CPU memory stays unless asked"
    assert speed.offload_per_layer_embeddings(model, include_cpu=True) == expected
    names = {n for n, _ in model.named_parameters()}
    assert not any(speed.PER_LAYER_TABLE in n for n in names), "no longer a parameter: .to() and DDP skip it"
    assert len(speed.cpu_tables(model)) == 1
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)


def test_training_with_the_table_on_the_cpu_gives_the_same_adapter(gemma4, data, tmp_path):
    ref = run(_cfg(gemma4, data, ple_on_cpu="off"), out=tmp_path / "off")
    got = run(_cfg(gemma4, data, ple_on_cpu="on"), out=tmp_path / "on")
    assert json.loads((got / "manifest.json").read_text())["ple_on_cpu_bytes"] > 0
    assert json.loads((ref / "manifest.json").read_text())["ple_on_cpu_bytes"] == 0
    a, b = _adapter(ref), _adapter(got)
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_packing_and_padding_train_the_same_adapter(tmp_path, data):
    model = gemma3_dir(tmp_path / "g3")
    padded = run(_cfg(model, data, packing=False), out=tmp_path / "padded")
    packed = run(_cfg(model, data, packing=True), out=tmp_path / "packed")
    assert json.loads((packed / "manifest.json").read_text())["packing"] is True
    a, b = _adapter(padded), _adapter(packed)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k


def test_fused_kernels_are_optional():
    model = torch.nn.Linear(2, 2)
    assert speed.fused_kernels(model, "off") is None
    try:
        import liger_kernel.transformers  # noqa: F401
    except ImportError:
        assert speed.fused_kernels(model, "auto") is None  # silently nothing
        with pytest.raises(ValueError, match="pip install liger-kernel"):
            speed.fused_kernels(model, "liger")


def test_cuda_graphs_say_what_they_need():
    assert TrainConfig(data="x").graphs_blocker("cpu") == "a CUDA device"
    assert TrainConfig(data="x").graphs_blocker("cuda") is None
    assert TrainConfig(data="x").graphs_blocker("cuda", processes=2) == "one process (not DDP)"
    assert "packing" in TrainConfig(data="x", packing=False).graphs_blocker("cuda")
    assert not TrainConfig(data="x", cuda_graphs="off").wants_graphs("cuda")
    assert TrainConfig(data="x").wants_graphs("cuda") and not TrainConfig(data="x").wants_graphs("cpu")
    with pytest.raises(ConfigError, match="lora_dropout: 0"):
        TrainConfig(data="x", cuda_graphs="on", lora_dropout=0.1)
    with pytest.raises(ConfigError, match="kernels must be one of"):
        TrainConfig(data="x", kernels="triton")
    assert TrainConfig(data="x", cuda_graphs=False).cuda_graphs == "off"  # YAML's off


# --- GPU ---------------------------------------------------------------------------------
@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("arch", ["gemma3", "gemma4"])
def test_graph_replays_match_eager_steps(arch, tmp_path, monkeypatch):
    """Losses and gradients of replayed steps equal eager ones (fp32, three batches, two
    buckets); Gemma 4's full-attention layers take the slot path (width limit lowered)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.sft import Encoded, collate_packed, forward_loss
    from breachlab.vuln.train import lora_targets

    path = gemma3_dir(tmp_path / "m") if arch == "gemma3" else gemma4_text_dir(tmp_path / "m")

    def model():
        m = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").cuda()
        m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False,
                                                                       "preserve_rng_state": False})
        m.config.use_cache = False
        torch.manual_seed(0)
        p = get_peft_model(m, LoraConfig(r=4, lora_alpha=8, target_modules=lora_targets(m)))
        for name, w in p.named_parameters():
            if "lora_B" in name:
                w.data.normal_(0, 0.02)
        if arch == "gemma4":
            speed.offload_per_layer_embeddings(p)
            assert speed.use_packed_attention(p)
        return p.train()

    if arch == "gemma4":
        monkeypatch.setattr(speed, "WIDE_HEAD", 0)

    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(path).vocab_size
    g = torch.Generator().manual_seed(1)
    batches = []
    for sizes in ([(40, 9), (25, 6)], [(300, 20), (280, 12), (90, 30)], [(41, 8), (24, 7)]):
        batches.append([Encoded(torch.randint(3, vocab, (n,), generator=g).tolist(), n - a) for n, a in sizes])
    eager, graphed = model(), model()
    step = speed.CudaGraphStep(graphed, pad_id=0, dtype=torch.float32, t_multiple=128, k_multiple=32,
                               autocast=False, slot_multiple=64)
    for examples in batches:
        n = sum(e.n_answer for e in examples)
        # the same row length as the graph's bucket: same kernels, so any gap is the graph's
        packed = collate_packed(examples, 0, multiple=128, slot_multiple=64)
        assert "slots" in packed
        loss_e, _ = forward_loss(eager, packed, torch.device("cuda"))
        (loss_e / n).backward()
        loss_g = step.forward_backward(examples, 1.0 / n)
        assert float(loss_g) == pytest.approx(float(loss_e), rel=1e-4)
        ge = {k: p.grad for k, p in eager.named_parameters() if p.requires_grad}
        gg = {k: p.grad for k, p in graphed.named_parameters() if p.requires_grad}
        for k in ge:
            assert torch.allclose(ge[k], gg[k], rtol=1e-4, atol=1e-6), k
        eager.zero_grad(set_to_none=True)
        graphed.zero_grad(set_to_none=False)
    assert step.captured == 2, "the first and third batches share a bucket"


@pytest.mark.gpu
@cuda
def test_training_with_cuda_graphs_matches_eager(tmp_path, data):
    model = gemma3_dir(tmp_path / "g3")
    ref = run(_cfg(model, data, device="cuda", cuda_graphs="off", threads=None), out=tmp_path / "eager")
    got = run(_cfg(model, data, device="cuda", cuda_graphs="on", threads=None), out=tmp_path / "graphs")
    man = json.loads((got / "manifest.json").read_text())
    assert man["cuda_graphs"] >= 1 and "cuda_graphs_error" not in man
    a, b = _adapter(ref), _adapter(got)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5), k


def test_slot_attention_equals_the_block_diagonal_mask(gemma4, monkeypatch):
    """Wide-head layers attend per example (a slot each): same loss and gradients as the
    (T, T) block-diagonal mask.  The tiny model's heads are narrow: the width limit is lowered."""
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.sft import Encoded, collate_packed, forward_loss

    def run_once(slots: bool):
        model = AutoModelForCausalLM.from_pretrained(gemma4, attn_implementation="sdpa").train()
        # checkpointing recomputes the forward inside backward: it must take the same path
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        assert speed.use_packed_attention(model)
        g = torch.Generator().manual_seed(3)
        examples = [Encoded(torch.randint(3, 100, (n,), generator=g).tolist(), n - a)
                    for n, a in ((30, 7), (12, 4), (21, 9))]
        batch = collate_packed(examples, 0, multiple=16, slot_multiple=16 if slots else None)
        assert ("slots" in batch) is slots
        loss, _ = forward_loss(model, batch, torch.device("cpu"))
        loss.backward()
        return float(loss), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    monkeypatch.setattr(speed, "WIDE_HEAD", 0)
    calls = []
    real = speed.packed_attention_forward

    def spy(module, query, *a, **k):
        calls.append(speed._LAYOUT is not None and k.get("sliding_window") is None and query.shape[-1] > 0)
        return real(module, query, *a, **k)

    from transformers import AttentionInterface

    monkeypatch.setitem(AttentionInterface._global_mapping, speed.PACKED_ATTENTION, spy)
    monkeypatch.setattr(speed, "packed_attention_forward", spy)
    loss_mask, grads_mask = run_once(slots=False)
    assert not any(calls)
    calls.clear()
    loss_slot, grads_slot = run_once(slots=True)
    assert any(calls), "the full-attention layers took the slot path"
    assert loss_slot == pytest.approx(loss_mask, rel=1e-5)
    assert grads_mask.keys() == grads_slot.keys()
    for k in grads_mask:
        assert torch.allclose(grads_mask[k], grads_slot[k], rtol=1e-4, atol=1e-6), k


@pytest.mark.parametrize("arch", ["gemma3", "gemma4"])
def test_packed_attention_is_sdpa_for_everything_else(arch, gemma4, tmp_path):
    """Routing a model through the packed attention name changes nothing for ordinary
    batches: 2-D masks with and without padding give SDPA's logits (transformers must build
    SDPA's 4-D masks for the new name, not pass the 2-D mask through)."""
    from transformers import AutoModelForCausalLM

    path = gemma4 if arch == "gemma4" else gemma3_dir(tmp_path / "g3")
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").eval()
    ids = torch.tensor([[2, 17, 33, 5, 90, 41, 7, 8], [2, 9, 9, 12, 40, 41, 42, 43]])
    masks = [torch.ones_like(ids), torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8])]
    with torch.no_grad():
        ref = [model(input_ids=ids, attention_mask=m).logits for m in masks]
        speed.set_slot_layout(None)
        assert speed.use_packed_attention(model)
        got = [model(input_ids=ids, attention_mask=m).logits for m in masks]
    for r, g, m in zip(ref, got, masks):
        real = m.bool()
        assert torch.allclose(r[real], g[real], atol=1e-5)


def test_a_failing_graph_capture_falls_back_to_eager(tmp_path, data, monkeypatch, caplog):
    """A capture that fails (here: a stand-in that raises) costs nothing: the run trains on
    eagerly, says why in the log and the manifest, and ends with the eager run's adapter."""
    model = gemma3_dir(tmp_path / "g3")
    ref = run(_cfg(model, data, cuda_graphs="off"), out=tmp_path / "eager")

    class Failing:
        captured, capture_seconds = 0, 0.0

        def __init__(self, *a, **k):
            pass

        def prepare(self, examples):
            return {"examples": examples}

        def forward_backward(self, examples, inv_denom):
            raise RuntimeError("capture failed on purpose")

    monkeypatch.setattr(speed, "CudaGraphStep", Failing)
    monkeypatch.setattr(TrainConfig, "wants_graphs", lambda self, device, processes=1: True)
    with caplog.at_level("WARNING", logger="breachlab.vuln.train"):
        got = run(_cfg(model, data), out=tmp_path / "fallback")
    man = json.loads((got / "manifest.json").read_text())
    assert man["status"] == "finished" and "capture failed on purpose" in man["cuda_graphs_error"]
    assert man["cuda_graphs"] == 0
    assert any("training without graphs" in r.getMessage() for r in caplog.records)
    a, b = _adapter(ref), _adapter(got)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7), k


def test_cuda_graphs_on_without_a_gpu_is_refused_before_training(tmp_path, data):
    model = gemma3_dir(tmp_path / "g3")
    with pytest.raises(ValueError, match="cuda_graphs: on needs a CUDA device"):
        run(_cfg(model, data, cuda_graphs="on", device="cpu"), out=tmp_path / "r")


def test_only_models_with_wide_heads_get_the_slot_layout(gemma4, tmp_path):
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.plan import meta_model, load_config

    assert speed.has_wide_heads(meta_model(load_config("gemma-4-e4b")))  # 512-wide full-attention heads
    assert not speed.has_wide_heads(meta_model(load_config("gemma-3-270m")))  # 256
    assert not speed.has_wide_heads(AutoModelForCausalLM.from_pretrained(gemma4))  # tiny: 16 / 32
