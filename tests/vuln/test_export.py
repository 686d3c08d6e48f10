"""Export: adapter, merged = base + BA, and a GGUF round trip through llama.cpp's converter.

The slow test trains a tiny Gemma 3 (6 layers, 5 sliding + 1 full, hidden 64, the embedded
model's real tokenizer — llama.cpp's converter only accepts tokenizers it knows), exports
every format, loads each GGUF in llama.cpp and checks that greedy answers match the HF
model on fixed prompts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from breachlab.config import ConfigError  # noqa: E402
from breachlab.llama_open import open_llama  # noqa: E402
from breachlab.vuln.export import ExportConfig, run as export  # noqa: E402
from breachlab.vuln.prompts import inference_prompt  # noqa: E402
from breachlab.vuln.training.config import TrainConfig  # noqa: E402
from breachlab.vuln.training.run import run as train  # noqa: E402
from tests.vuln.tiny import gemma3_dir, samples_jsonl  # noqa: E402

PROMPTS = [inference_prompt("int f(char *s) { char b[4]; strcpy(b, s); return b[0]; }"),
           inference_prompt("int g(const int *a, int n) { return n > 0 ? a[0] : 0; }")]


def _train(tmp: Path, real_tokenizer: bool) -> Path:
    model = gemma3_dir(tmp / "model", real_tokenizer=real_tokenizer, sliding_window=16, init_std=0.1)
    data = samples_jsonl(tmp / "data")
    return train(TrainConfig(model=str(model), data=str(data), batch_size=4, max_steps=3, eval_every=3,
                             lr=2e-2, max_seq_len=512, threads=1), out=tmp / "run")


def test_export_config_validation():
    with pytest.raises(ConfigError):
        ExportConfig(run="x", formats=["onnx"])
    with pytest.raises(ConfigError):
        ExportConfig(run="x", quants=["q3_xyz"])


def test_adapter_and_merged_is_base_plus_ba(tmp_path):
    from safetensors.torch import load_file

    run_dir = _train(tmp_path, real_tokenizer=False)
    out = export(ExportConfig(run=str(run_dir), formats=["adapter", "merged"], dtype="float32"))
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    record = json.loads((out / "export.json").read_text())
    assert "merged/model.safetensors" in record["files"]
    base = load_file(str(tmp_path / "model" / "model.safetensors"))
    merged = load_file(str(out / "merged" / "model.safetensors"))
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    acfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    scale = acfg["lora_alpha"] / acfg["r"]
    name = "model.layers.5.self_attn.q_proj.weight"
    a = next(v for k, v in adapter.items() if "layers.5.self_attn.q_proj.lora_A" in k)
    b = next(v for k, v in adapter.items() if "layers.5.self_attn.q_proj.lora_B" in k)
    assert not torch.equal(merged[name], base[name])
    torch.testing.assert_close(merged[name], base[name] + scale * (b @ a), rtol=1e-5, atol=1e-6)
    untouched = "model.layers.0.input_layernorm.weight"
    assert torch.equal(merged[untouched], base[untouched])


def _hf_greedy(model, ids: list[int], n: int) -> list[int]:
    ids, out = list(ids), []
    for _ in range(n):
        with torch.no_grad():
            t = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        out.append(t)
        ids.append(t)
    return out


def _llama_greedy(path: Path, ids: list[int], n: int, lora: Path | None = None) -> tuple[list[int], "np.ndarray"]:
    """Greedy tokens and the logits at the answer position."""
    import llama_cpp
    import numpy as np

    llm = open_llama(model_path=str(path), n_ctx=512, n_threads=2, verbose=False,
                          **({"lora_path": str(lora)} if lora else {}))
    llm.eval(list(ids))
    out, first = [], None
    for _ in range(n):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        first = logits.copy() if first is None else first
        out.append(int(logits.argmax()))
        llm.eval([out[-1]])
    llm.close()
    return out, first


@pytest.mark.slow
def test_gguf_round_trip_every_format(tmp_path):
    pytest.importorskip("llama_cpp")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = _train(tmp_path, real_tokenizer=True)
    out = export(ExportConfig(run=str(run_dir), formats=["adapter", "merged", "gguf", "gguf-lora"], dtype="float32",
                              quants=["f32", "f16", "bf16", "q8_0", "q5_k_m", "q4_k_m"], allow_network=True))
    tok = AutoTokenizer.from_pretrained(out / "merged")
    hf = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32).eval()
    ggufs = {q: out / "gguf" / f"model-{q}.gguf" for q in ("f32", "f16", "bf16", "q8_0", "q5_k_m", "q4_k_m")}
    assert all(p.is_file() for p in ggufs.values())
    sizes = {q: p.stat().st_size for q, p in ggufs.items()}
    assert sizes["f32"] > sizes["f16"] > sizes["q8_0"] >= sizes["q4_k_m"]
    agree: dict[str, int] = {}
    corr: dict[str, float] = {}
    for prompt in PROMPTS:
        ids = [tok.bos_token_id, *tok(prompt, add_special_tokens=False)["input_ids"]]
        ref = _hf_greedy(hf, ids, 6)
        with torch.no_grad():
            ref_logits = hf(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        for q, path in ggufs.items():
            got, logits = _llama_greedy(path, ids, 6)
            agree[q] = agree.get(q, 0) + (got == ref)
            corr[q] = min(corr.get(q, 1.0), float(np.corrcoef(ref_logits, logits)[0, 1]))
        lora, _ = _llama_greedy(out / "gguf" / "base-f16.gguf", ids, 6, lora=out / "gguf" / "adapter-f16.gguf")
        agree["lora"] = agree.get("lora", 0) + (lora == ref)
    print("greedy agreement (of %d prompts):" % len(PROMPTS), agree, "min logit correlation:", corr)
    assert all(agree[k] == len(PROMPTS) for k in ("f32", "f16", "bf16", "lora")), agree
    # A random tiny model has near-uniform logits (top-1 margin ~0.04 against a spread of
    # ~0.8), so 8/5/4-bit rounding can flip greedy tokens; check the logits instead.
    assert corr["q8_0"] > 0.999 and corr["q5_k_m"] > 0.95 and corr["q4_k_m"] > 0.95, corr


# -- no foreign code: converters only from the hash-pinned sdist ----------------------------
CANARY_SCRIPT = "import pathlib, sys; pathlib.Path({canary!r}).write_text('ran'); sys.exit(0)\n"


def _plant(folder, canary):
    """A converter and a fake sdist in ``folder`` that write ``canary`` if anything runs them."""
    import io
    import tarfile
    from importlib import metadata

    script = CANARY_SCRIPT.format(canary=str(canary))
    (folder / "convert_hf_to_gguf.py").write_text(script)
    (folder / "convert_lora_to_gguf.py").write_text(script)
    version = metadata.version("llama_cpp_python")
    sdist = folder / f"llama_cpp_python-{version}.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        data = script.encode()
        info = tarfile.TarInfo(f"llama_cpp_python-{version}/vendor/llama.cpp/convert_hf_to_gguf.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return sdist


def test_export_never_runs_a_converter_found_lying_around(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    from breachlab.errors import UserError
    from breachlab.vuln import export as ex

    canary = tmp_path / "CANARY"
    work = tmp_path / "work"
    work.mkdir()
    _plant(work, canary)
    (tmp_path / "dl").mkdir()
    fake_home = tmp_path / "home"
    (fake_home / "Downloads").mkdir(parents=True)
    _plant(fake_home / "Downloads", canary)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(fake_home))
    monkeypatch.setenv("BREACHLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BREACHLAB_LLAMA_CPP_SRC", raising=False)
    monkeypatch.delenv("BREACHLAB_LLAMA_CPP_SDIST", raising=False)

    def offline(version, expected):
        raise UserError("offline in this test")

    monkeypatch.setattr(ex, "_download_sdist", offline)
    with pytest.raises(UserError, match="allow_network=true"):  # by default nothing is fetched at all
        ex.convert_hf(work, work / "out.gguf")
    with pytest.raises(UserError, match="offline"):
        ex.convert_hf(work, work / "out.gguf", allow_network=True)
    assert not canary.exists()
    assert not (tmp_path / "cache" / "llama.cpp-src").exists() \
        or not any((tmp_path / "cache" / "llama.cpp-src").rglob("*.py"))


def test_an_sdist_with_another_hash_is_refused_before_extraction(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    from breachlab.errors import UserError
    from breachlab.vuln import export as ex

    canary = tmp_path / "CANARY"
    sdist = _plant(tmp_path, canary)
    monkeypatch.setenv("BREACHLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BREACHLAB_LLAMA_CPP_SRC", raising=False)
    # as if given on purpose (air-gapped copy) or served by a tampered mirror: the hash decides
    monkeypatch.setenv("BREACHLAB_LLAMA_CPP_SDIST", str(sdist))
    with pytest.raises(UserError, match="not the pinned"):
        ex.convert_hf(tmp_path, tmp_path / "out.gguf")
    monkeypatch.delenv("BREACHLAB_LLAMA_CPP_SDIST")
    monkeypatch.setattr(ex, "_download_sdist", lambda version, expected: sdist)
    with pytest.raises(UserError, match="not the pinned"):
        ex.convert_hf(tmp_path, tmp_path / "out.gguf", allow_network=True)
    assert not canary.exists() and not any((tmp_path / "cache").rglob("convert_hf_to_gguf.py"))


def test_the_installed_llama_cpp_version_has_a_pinned_sdist():
    from importlib import metadata

    from breachlab.vuln.export import PINNED_SDISTS

    pytest.importorskip("llama_cpp")
    assert metadata.version("llama_cpp_python") in PINNED_SDISTS
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in PINNED_SDISTS.values())
