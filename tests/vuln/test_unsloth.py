"""The optional Unsloth backend (``backend: unsloth``): refused clearly where it cannot run;
trained end to end on a GPU where unsloth is installed (``gpu`` marker, out of the default run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from breachlab.config import ConfigError
from breachlab.errors import UserError
from breachlab.vuln.training.config import TrainConfig

torch = pytest.importorskip("torch")


def test_unsloth_settings_that_clash_are_refused_with_their_names():
    with pytest.raises(ConfigError, match="kernels, cuda_graphs"):
        TrainConfig(model="m", data="d", backend="unsloth", kernels="liger", cuda_graphs="on")
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(model="m", data="d", backend="unsloth", device="cpu")
    assert TrainConfig(model="m", data="d", backend="unsloth").graphs_blocker("cuda") == "backend: breachlab"


def test_without_unsloth_installed_the_error_says_how_to_get_it(monkeypatch):
    import importlib.util

    from breachlab.vuln.training import load as train

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "unsloth" else real(name, *a))
    with pytest.raises(UserError, match="pip install unsloth"):
        train.import_unsloth()
    with pytest.raises(UserError, match="CUDA"):
        train._load_unsloth(TrainConfig(model="m", data="d", backend="unsloth"), "cpu", "m", None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method,packing", [("lora", True), ("qlora", False)])
def test_unsloth_trains_a_tiny_gemma3(tmp_path, method, packing):
    pytest.importorskip("unsloth")
    from safetensors.torch import load_file

    from breachlab.vuln.training.run import run
    from tests.vuln.tiny import gemma3_dir, samples_jsonl

    model = gemma3_dir(tmp_path / "m")
    data = samples_jsonl(tmp_path / "d")
    cfg = TrainConfig(model=str(model), data=str(data), backend="unsloth", method=method, packing=packing,
                      batch_size=4, max_steps=4, eval_every=2, save_every=0, lr=1e-3, max_seq_len=512, device="cuda")
    out = run(cfg, out=tmp_path / "run")
    man = json.loads((out / "manifest.json").read_text())
    assert man["backend"] == "unsloth" and man["unsloth_version"] and man["steps"] == 4
    assert man["cuda_graphs"] == 0 and man["best_val_loss"] not in (None, "")
    weights = load_file(str(out / "final" / "adapter_model.safetensors"))
    assert weights and all(torch.isfinite(w).all() for w in weights.values())
    assert any("lora_B" in k and w.abs().sum() > 0 for k, w in weights.items())  # it learned something


def test_unsloth_gets_a_pad_token_it_accepts_without_touching_the_converted_dir(tmp_path: Path) -> None:
    """Unsloth refuses Qwen's ``<|endoftext|>`` pad: ``backend: unsloth`` (and the benchmark's arm) load a sibling
    directory whose tokenizer config names ``<|fim_pad|>``; the converted directory stays as it was."""
    from breachlab.vuln.training.load import unsloth_pad_dir

    d = tmp_path / "hf-q"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights")
    (d / "tokenizer.json").write_text(json.dumps({"added_tokens": [{"content": "<|fim_pad|>", "id": 7}]}))
    cfg = {"pad_token": "<|endoftext|>", "eos_token": "<|im_end|>"}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    out = unsloth_pad_dir(d)
    assert out != d and json.loads((out / "tokenizer_config.json").read_text())["pad_token"] == "<|fim_pad|>"
    assert (out / "model.safetensors").read_bytes() == b"weights"
    assert not any(f.is_symlink() for f in out.iterdir()), "Unsloth followed symbolic links back to the original"
    assert (out / "model.safetensors").stat().st_ino == (d / "model.safetensors").stat().st_ino  # a hard link
    assert (out / "tokenizer.json").read_text() == (d / "tokenizer.json").read_text()
    assert json.loads((d / "tokenizer_config.json").read_text()) == cfg
    shutil.rmtree(out)  # one made by the earlier, symbolic-link version is rebuilt, not reused
    out.mkdir()
    (out / "model.safetensors").symlink_to(d / "model.safetensors")
    (out / "tokenizer_config.json").write_text(json.dumps({**cfg, "pad_token": "<|fim_pad|>"}))
    assert unsloth_pad_dir(d) == out and not any(f.is_symlink() for f in out.iterdir())
    (d / "tokenizer_config.json").write_text(json.dumps({**cfg, "pad_token": "<pad>"}))
    assert unsloth_pad_dir(d) == d  # a usable pad token is left alone


def test_the_pad_token_is_made_special_where_the_converted_tokenizer_only_has_it_in_its_vocab(tmp_path: Path) -> None:
    """transformers 5.17 converts Qwen's GGUF tokenizer with three added tokens, ``<|endoftext|>``
    as both pad and eos, and ``<|fim_pad|>`` only in the BPE vocabulary (so it encodes to seven
    pieces, and Unsloth found no pad: H200, 2026-12-02). The sibling directory registers it as a
    special token with its own id; the converted directory stays as it was."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from breachlab.vuln.training.load import unsloth_pad_dir

    d = tmp_path / "hf-q"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights")
    vocab = {c: i for i, c in enumerate("<|>_abdefimnoptx")}
    vocab.update({"<|endoftext|>": 16, "<|fim_pad|>": 17})
    tk = Tokenizer(models.WordLevel(vocab, unk_token="x"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(d)
    before = {f.name: f.read_bytes() for f in d.iterdir()}
    assert len(fast("<|fim_pad|>", add_special_tokens=False).input_ids) > 1
    out = unsloth_pad_dir(d)
    assert out != d and {f.name: f.read_bytes() for f in d.iterdir()} == before
    tok = PreTrainedTokenizerFast.from_pretrained(out)
    assert tok.pad_token == "<|fim_pad|>" and tok.pad_token_id == 17 and tok.eos_token_id == 16
    assert tok("<|fim_pad|>", add_special_tokens=False).input_ids == [17]
    assert 17 in tok.added_tokens_decoder
    assert unsloth_pad_dir(d) == out  # made once, then reused
    (d / "tokenizer.json").write_text((d / "tokenizer.json").read_text().replace("<|fim_pad|>", "<|other|>"))
    shutil.rmtree(out)
    assert unsloth_pad_dir(d) == d, "no pad sentinel in the vocabulary: left to Unsloth"
