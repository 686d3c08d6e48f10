"""``head_chunk``: the LM head's loss a few supervised positions at a time gives the whole
head's loss and gradients, on every architecture it serves, and leaves the model as it was."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from breachlab.vuln.training.sft import Encoded, collate_packed, forward_loss  # noqa: E402
from breachlab.vuln.training.speed import headloss, patches  # noqa: E402
from tests.vuln.tiny import gemma3_dir, gemma4_text_dir, qwen2_dir  # noqa: E402


def _model(arch, tmp_path, cap=None):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.training.anatomy import lora_targets

    path = {"qwen2": qwen2_dir, "gemma3": gemma3_dir, "gemma4": gemma4_text_dir}[arch](tmp_path / arch)
    kw = {"final_logit_softcapping": cap} if cap is not None else {}
    m = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa", **kw)
    torch.manual_seed(0)
    p = get_peft_model(m, LoraConfig(r=4, lora_alpha=8, target_modules=lora_targets(m)))
    for name, w in p.named_parameters():
        if "lora_B" in name:
            w.data.normal_(0, 0.02)
    return p.train()


@pytest.mark.parametrize("arch,cap", [("qwen2", None), ("gemma3", None), ("gemma4", None), ("gemma4", 5.0)])
def test_chunks_give_the_whole_heads_loss_and_gradients(arch, cap, tmp_path):
    model = _model(arch, tmp_path, cap)
    assert headloss.supported(model)
    vocab = model.get_base_model().config.get_text_config().vocab_size
    g = torch.Generator().manual_seed(3)
    examples = [Encoded(torch.randint(3, vocab, (n,), generator=g).tolist(), n - a) for n, a in [(30, 7), (22, 9)]]
    batch = collate_packed(examples, 0)

    def run(chunk):
        patches.context(model).head_chunk = chunk
        model.zero_grad(set_to_none=True)
        loss, n = forward_loss(model, batch, torch.device("cpu"))
        loss.backward()
        return float(loss), n, {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}

    whole, n, g_whole = run(0)
    chunked, n2, g_chunked = run(4)  # 16 supervised positions: 4 chunks, the last one short
    assert n == n2 == 16 and chunked == pytest.approx(whole, rel=1e-6)
    for k in g_whole:
        assert torch.allclose(g_whole[k], g_chunked[k], rtol=1e-5, atol=1e-7), k
    inner = model.get_base_model()
    assert isinstance(inner.get_output_embeddings(), torch.nn.Linear), "the real head is back"
    assert getattr(inner.config.get_text_config(), "final_logit_softcapping", None) == cap, "the soft-cap is back"


def test_the_head_comes_back_when_the_forward_fails(tmp_path):
    model = _model("qwen2", tmp_path)
    head = model.get_base_model().get_output_embeddings()
    with pytest.raises(RuntimeError, match="boom"):
        with headloss.hidden_states_out(model):
            raise RuntimeError("boom")
    assert model.get_base_model().get_output_embeddings() is head


def test_an_unknown_head_falls_back_to_whole_logits():
    class Odd(torch.nn.Module):
        config = type("C", (), {"final_logit_softcapping": None})()

    assert not headloss.supported(Odd())


def test_training_with_head_chunks_gives_the_same_adapter(tmp_path):
    from safetensors.torch import load_file

    from breachlab.vuln.training.config import TrainConfig
    from breachlab.vuln.training.run import run
    from tests.vuln.tiny import samples_jsonl

    data = samples_jsonl(tmp_path / "d")
    model = qwen2_dir(tmp_path / "q")

    def train(chunk, out):
        cfg = TrainConfig(model=str(model), data=str(data), batch_size=4, max_steps=3, eval_every=3, save_every=0,
                          lr=1e-3, log_every=1, max_seq_len=512, threads=1, dtype="float32", head_chunk=chunk)
        return run(cfg, out=tmp_path / out)

    whole, chunked = train(0, "whole"), train(5, "chunked")
    assert json.loads((chunked / "manifest.json").read_text())["head_chunk"] == 5
    a = load_file(str(whole / "final" / "adapter_model.safetensors"))
    b = load_file(str(chunked / "final" / "adapter_model.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k


def test_head_chunks_are_refused_with_fsdp():
    from breachlab.config import ConfigError
    from breachlab.vuln.training.config import TrainConfig

    with pytest.raises(ConfigError, match="head_chunk"):
        TrainConfig(data="x", fsdp=True, head_chunk=64)
    with pytest.raises(ConfigError, match="head_chunk"):
        TrainConfig(data="x", head_chunk=-1)
