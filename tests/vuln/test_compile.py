"""Regional compilation (``compile``): each decoder layer through torch.compile, same losses.

The two inductor tests compile a tiny Gemma 3 on the CPU (a C++ compiler is needed); the
layer graphs are shared by the layers, so the cost is a few graphs, not six layers.  Each
takes about a minute with a cold inductor cache (2 cores; ~10 s warm): the training run is
in the fast suite, the layer-level loss/gradient check is marked slow.
"""

from __future__ import annotations

import csv
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from breachlab.vuln.training import sft  # noqa: E402
from breachlab.vuln.training.anatomy import decoder_layers, lora_targets  # noqa: E402
from breachlab.vuln.training.config import TrainConfig  # noqa: E402
from breachlab.vuln.training.run import run  # noqa: E402
from breachlab.vuln.training.speed import regional  # noqa: E402
from tests.vuln.tiny import gemma3_dir, gemma4_multimodal, samples_jsonl  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    return gemma3_dir(base / "model"), samples_jsonl(base / "data")


def _peft(model_dir, grad_ckpt: bool):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    if grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    torch.manual_seed(0)
    peft_model = get_peft_model(model, sft_lora(model))
    for name, p in peft_model.named_parameters():  # LoRA B starts at zero: move it so the adapters count
        if "lora_B" in name:
            p.data.normal_(0, 0.02)
    return peft_model


def sft_lora(model):
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, target_modules=lora_targets(model))


def _compiled(model) -> list[str]:
    return [n for n, m in model.named_modules() if getattr(m, "_compiled_call_impl", None) is not None]


def test_decoder_layers_of_a_multimodal_gemma4_are_the_language_model_layers():
    from peft import LoraConfig, get_peft_model

    model = gemma4_multimodal()
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=lora_targets(model)))
    layers = decoder_layers(peft_model)
    assert layers is model.model.language_model.layers
    assert all("Text" in type(layer).__name__ for layer in layers)


@pytest.mark.slow  # ~65 s with a cold inductor cache on 2 CPU cores (~11 s warm): forward + backward graphs
def test_compile_layers_compiles_exactly_the_decoder_layers_and_keeps_the_loss(tiny):
    model = _peft(tiny[0], grad_ckpt=False)
    model.train()
    long = sft.Encoded(list(range(10, 50)), 30)
    short = sft.Encoded(list(range(60, 72)), 8)
    mid = sft.Encoded(list(range(5, 30)), 15)
    b1 = sft.collate([long, short], pad_id=0)  # left-padded, 40 wide
    b2 = sft.collate([short, mid, short], pad_id=0)  # another batch size and width (25)
    assert b1["input_ids"].shape != b2["input_ids"].shape and (b1["attention_mask"] == 0).any()

    def losses_and_grads():
        out = []
        for b in (b1, b2):
            loss, _ = sft.forward_loss(model, b, "cpu")
            loss.backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            model.zero_grad(set_to_none=True)
            out.append((float(loss), grads))
        return out

    eager = losses_and_grads()
    names = [n for n, _ in model.named_parameters()]
    n = regional.compile_layers(model)
    layers = decoder_layers(model)
    assert n == len(layers) == 6
    want = sorted(name for name, m in model.named_modules() if any(m is layer for layer in layers))
    assert sorted(_compiled(model)) == want, "the decoder layers and nothing else"
    assert [n for n, _ in model.named_parameters()] == names, "compiling in place keeps parameter names"
    compiled = losses_and_grads()
    for (loss_e, grads_e), (loss_c, grads_c) in zip(eager, compiled):
        assert loss_c == pytest.approx(loss_e, rel=1e-4)
        assert grads_e.keys() == grads_c.keys() and grads_e
        for name in grads_e:
            torch.testing.assert_close(grads_c[name], grads_e[name], rtol=1e-3, atol=1e-5)
    assert regional.uncompile_layers(model) == 6 and not _compiled(model)


def _cfg(tiny, **kw) -> TrainConfig:
    model, data = tiny
    opts = dict(model=str(model), data=str(data), batch_size=4, max_steps=4, eval_every=2, save_every=0,
                lr=1e-3, log_every=1, max_seq_len=512, threads=1, dtype="float32")
    opts.update(kw)
    return TrainConfig(**opts)


def _curve(out) -> list[dict]:
    return list(csv.DictReader((out / "metrics.csv").open()))


def test_training_with_compile_on_matches_compile_off(tiny, tmp_path):
    """A real CPU run (gradient checkpointing on): same per-step and validation losses."""
    ref = run(_cfg(tiny, compile="auto"), out=tmp_path / "off")  # auto = off on the CPU
    got = run(_cfg(tiny, compile="on"), out=tmp_path / "on")
    man_ref = json.loads((ref / "manifest.json").read_text())
    man = json.loads((got / "manifest.json").read_text())
    assert man_ref["compile"] is False and man_ref["compiled_layers"] == 0
    assert man["compile"] is True and man["compiled_layers"] == 6 and "compile_error" not in man
    a, b = _curve(ref), _curve(got)
    assert len(a) == len(b) == 4
    for ra, rb in zip(a, b):
        assert float(rb["train_loss"]) == pytest.approx(float(ra["train_loss"]), rel=1e-3)
        if ra["val_loss"]:
            assert float(rb["val_loss"]) == pytest.approx(float(ra["val_loss"]), rel=1e-3)


def test_a_failing_compile_falls_back_to_eager_with_a_warning(tiny, tmp_path, monkeypatch, caplog):
    """The first step's compile error is caught: the run trains uncompiled and says why."""
    import functools

    def broken(gm, example_inputs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(regional, "compile_layers", functools.partial(regional.compile_layers, backend=broken))
    with caplog.at_level("WARNING", logger="breachlab.vuln.train"):
        out = run(_cfg(tiny, compile="on", max_steps=2, eval_every=0), out=tmp_path / "run")
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "finished" and man["steps"] == 2
    assert man["compile"] is False and "no C++ compiler here" in man["compile_error"]
    assert any("regional torch.compile failed" in r.getMessage() for r in caplog.records)
    ref = run(_cfg(tiny, compile="off", max_steps=2, eval_every=0), out=tmp_path / "ref")
    assert [r["train_loss"] for r in _curve(out)] == [r["train_loss"] for r in _curve(ref)]


def test_a_compile_that_fails_first_in_validation_falls_back_there(tiny, tmp_path, monkeypatch, caplog):
    """Training compiles; validation's first compiled call fails: the run finishes uncompiled."""
    import functools

    def train_only(gm, example_inputs):
        if not torch.is_grad_enabled():  # validation traces under no_grad
            raise RuntimeError("no graph for validation here")
        return gm.forward

    monkeypatch.setattr(regional, "compile_layers", functools.partial(regional.compile_layers, backend=train_only))
    with caplog.at_level("WARNING", logger="breachlab.vuln.train"):
        out = run(_cfg(tiny, compile="on", max_steps=2, eval_every=1, gradient_checkpointing=False),
                  out=tmp_path / "run")
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "finished" and man["steps"] == 2
    assert man["compile"] is False and "no graph for validation here" in man["compile_error"]
    ref = run(_cfg(tiny, compile="off", max_steps=2, eval_every=1, gradient_checkpointing=False),
              out=tmp_path / "ref")
    for a, b in zip(_curve(out), _curve(ref)):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-4)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-4)


def test_compile_setting_reads_yaml_on_off():
    from breachlab.config import ConfigError, load, parse_overrides

    assert load(TrainConfig, None, parse_overrides(["compile=on"])).compile == "on"
    assert load(TrainConfig, None, parse_overrides(["compile=off"])).compile == "off"
    assert TrainConfig().compile == "off", "off until compiling is shown to pay on the GPU (docs/benchmarks.md run 7)"
    with pytest.raises(ConfigError):
        load(TrainConfig, None, parse_overrides(["compile=sometimes"]))
