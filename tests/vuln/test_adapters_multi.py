"""Several LoRA adapters on one loaded base: switching, the base via ``set_adapter(None)``,
``--adapter a,b`` parsing, and ``breachlab vuln eval --adapter a,b`` (one run per adapter).

Every switched score must equal the score of a backend that loaded that adapter alone;
on llama.cpp that also proves the KV cache was cleared on the switch (a prefix cached with
another adapter would be silently reused otherwise).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from breachlab.errors import UserError
from breachlab.vuln.backends import BASE_LABEL, adapter_label, adapter_specs, load_backend
from tests.vuln.tiny import make_model_dir

CODES = ["void f(char *s) { char b[8]; strcpy(b, s); }", "int add(int a, int b) { return a + b; }"]


def make_peft_adapter(base_dir: Path, out: Path, seed: int, scale: float = 1.0) -> Path:
    """A PEFT LoRA on ``base_dir`` with random non-zero B (a fresh LoRA would be a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft_model = get_peft_model(model, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    peft_model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The tiny models run on one thread (``threads=1``): far faster on a busy machine; restored after."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _scores(be, prompts: list[str]) -> np.ndarray:
    return np.array([[s.logp_vulnerable, s.logp_safe] for s in map(be.score, prompts)])


# -- spec parsing ------------------------------------------------------------------------
@pytest.fixture
def two_dirs(tmp_path: Path) -> tuple[Path, Path]:
    out = []
    for name in ("alpha", "beta"):
        d = tmp_path / name
        d.mkdir()
        (d / "adapter_config.json").write_text("{}")
        out.append(d)
    return out[0], out[1]


def test_adapter_specs_parse_lists_labels_and_the_base(two_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_dirs
    assert adapter_specs(None) == [] and adapter_specs("") == []
    specs = adapter_specs(f"none,{a}, {b}")
    assert [s.label for s in specs] == [BASE_LABEL, "alpha", "beta"]
    assert specs[0].path is None and specs[1].path == a and specs[2].spec == str(b)
    assert [s.label for s in adapter_specs([str(b), "base"])] == ["beta", BASE_LABEL]
    assert [s.label for s in adapter_specs(f"zs=none,x={a}")] == ["zs", "x"]
    # a directory whose name contains a comma is one adapter, not two
    odd = tmp_path / "r16,a32"
    odd.mkdir()
    (odd / "adapter_config.json").write_text("{}")
    assert [s.label for s in adapter_specs(str(odd))] == ["r16_a32"]


def test_adapter_labels_skip_generic_names(tmp_path: Path) -> None:
    assert adapter_label(tmp_path / "train-a" / "best") == "train-a-best"
    assert adapter_label(tmp_path / "run-x" / "export" / "adapter") == "run-x-adapter"
    assert adapter_label(tmp_path / "run-x" / "export" / "gguf" / "adapter-f16.gguf") == "run-x-adapter-f16"
    assert adapter_label(tmp_path / "my-lora.gguf") == "my-lora"


def test_adapter_spec_errors_are_clear(two_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_dirs
    with pytest.raises(UserError, match="not found"):
        adapter_specs(f"{a},{tmp_path / 'missing'}")
    with pytest.raises(UserError, match="labelled 'alpha'"):
        adapter_specs(f"{a},{a}")
    with pytest.raises(UserError, match="labelled 'base'"):
        adapter_specs("none,base")
    other = tmp_path / "elsewhere" / "alpha"
    other.mkdir(parents=True)
    (other / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="label them yourself"):
        adapter_specs([str(a), str(other)])
    assert [s.label for s in adapter_specs([f"one={a}", f"two={other}"])] == ["one", "two"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not an adapter"):
        adapter_specs(f"{a},{tmp_path / 'empty'}")


# -- transformers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("multi")
    base = make_model_dir(root / "model")
    return {"base": base, "alpha": make_peft_adapter(base, root / "alpha", seed=1),
            "beta": make_peft_adapter(base, root / "beta", seed=2)}


def test_transformers_switching_equals_each_adapter_loaded_alone(tiny: dict[str, Path]) -> None:
    be = load_backend(str(tiny["base"]), backend="transformers", threads=1, adapter=f"{tiny['alpha']},{tiny['beta']}")
    assert be.adapters == ["alpha", "beta"] and be.active_adapter == "alpha"
    prompts = [be.prompt(c) for c in CODES]
    got = {"alpha": _scores(be, prompts)}
    be.set_adapter("beta")
    got["beta"] = _scores(be, prompts)
    ids = {"beta": be.model_id}
    be.set_adapter(None)
    got[None] = _scores(be, prompts)
    ids[None] = be.model_id
    gen_base = be.generate(prompts[0], 6)
    batch_base = be.score_batch(prompts)
    be.set_adapter("alpha")
    again = _scores(be, prompts)
    ids["alpha"] = be.model_id

    alone = {"alpha": load_backend(str(tiny["base"]), backend="transformers", threads=1, adapter=str(tiny["alpha"])),
             "beta": load_backend(str(tiny["base"]), backend="transformers", threads=1, adapter=str(tiny["beta"])),
             None: load_backend(str(tiny["base"]), backend="transformers", threads=1)}
    for name, ref in alone.items():
        np.testing.assert_allclose(got[name], _scores(ref, prompts), atol=1e-5)
        assert ids[name] == ref.model_id
    np.testing.assert_allclose(again, got["alpha"], atol=1e-6)
    np.testing.assert_allclose([[s.logp_vulnerable, s.logp_safe] for s in batch_base], got[None], atol=1e-3)
    assert gen_base == alone[None].generate(prompts[0], 6)
    be.set_adapter("beta")
    assert be.generate(prompts[0], 6) == alone["beta"].generate(prompts[0], 6)
    # the adapters really change the model, and differently
    assert np.abs(got["alpha"] - got["beta"]).max() > 1e-2
    assert np.abs(got["alpha"] - got[None]).max() > 1e-2 and np.abs(got["beta"] - got[None]).max() > 1e-2
    assert len(set(ids.values())) == 3 and ids[None] == alone[None].model_id and "+" not in ids[None]
    assert ids["alpha"].startswith(ids[None] + "+alpha@") and ids["beta"].startswith(ids[None] + "+beta@")


def test_transformers_load_adapters_later_and_errors(tiny: dict[str, Path], tmp_path: Path) -> None:
    be = load_backend(str(tiny["base"]), backend="transformers", threads=1)
    assert be.adapters == [] and be.active_adapter is None
    p = be.prompt(CODES[0])
    base = _scores(be, [p])
    be.load_adapters({"b": tiny["beta"], "a": tiny["alpha"]})
    assert be.adapters == ["b", "a"] and be.active_adapter is None
    np.testing.assert_allclose(_scores(be, [p]), base, atol=1e-6)  # loading does not switch
    be.set_adapter("a")
    a = _scores(be, [p])
    assert np.abs(a - base).max() > 1e-2
    with pytest.raises(UserError, match="no adapter named 'c'"):
        be.set_adapter("c")
    with pytest.raises(UserError, match="already loaded"):
        be.load_adapters({"a": tiny["alpha"]})
    with pytest.raises(UserError, match="not found"):
        be.load_adapters({"c": tmp_path / "nope"})
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(UserError, match="PEFT adapter directory"):
        be.load_adapters({"c": gguf})
    assert be.active_adapter == "a"
    np.testing.assert_allclose(_scores(be, [p]), a, atol=1e-6)


def test_transformers_rejects_an_adapter_for_another_model(tiny: dict[str, Path], tmp_path: Path) -> None:
    from tests.vuln.tiny import gemma3_dir

    other = gemma3_dir(tmp_path / "wide", hidden=96)
    foreign = make_peft_adapter(other, tmp_path / "foreign", seed=3)
    with pytest.raises(UserError, match="could not load adapter"):
        load_backend(str(tiny["base"]), backend="transformers", threads=1, adapter=f"{tiny['alpha']},{foreign}")


def test_llama_cpp_refuses_peft_directories_before_loading(tiny: dict[str, Path], tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"not really a model")  # never opened: the adapter check comes first
    with pytest.raises(UserError, match="llama.cpp takes a GGUF LoRA"):
        load_backend(str(gguf), backend="llama.cpp", adapter=str(tiny["alpha"]))
    lora = tmp_path / "lora.gguf"
    lora.write_bytes(b"GGUF")
    with pytest.raises(UserError, match="mixes GGUF LoRAs"):
        load_backend(str(gguf), adapter=[str(lora), str(tiny["alpha"])])


# -- eval --adapter a,b ------------------------------------------------------------------
def _data(tmp_path: Path) -> Path:
    from breachlab.rundir import write_jsonl
    from breachlab.vuln.sample import Sample

    rows = []
    for i in range(3):
        rows.append(Sample(f"p{i}-v", CODES[0] + f"/*{i}*/", 1, "CWE-121", "sven", f"p{i}", pair_id=f"p{i}"))
        rows.append(Sample(f"p{i}-f", CODES[1] + f"/*{i}*/", 0, "CWE-121", "sven", f"p{i}", pair_id=f"p{i}"))
    path = tmp_path / "test.jsonl"
    write_jsonl(path, (s.to_dict() for s in rows))
    return path


def test_eval_cli_with_two_adapters_and_the_base_writes_one_run_each(tiny: dict[str, Path], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import breachlab.vuln.backends as backends
    from breachlab.cli import app
    from breachlab.vuln.eval import evaluate

    loads = []
    orig = backends.load_backend
    monkeypatch.setattr(backends, "load_backend", lambda *a, **k: loads.append(k.get("adapter")) or orig(*a, **k))
    data = _data(tmp_path)
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["vuln", "eval", "--data", str(data), "--model", str(tiny["base"]),
                                   "--backend", "transformers", "--mode", "logit",
                                   "--adapter", f"none,{tiny['alpha']},{tiny['beta']}", "--out", str(out),
                                   "--set", "n_boot=20", "--set", "threads=1"])
    assert res.exit_code == 0, res.output
    assert len(loads) == 1  # the base is loaded once
    assert sorted(p.name for p in out.iterdir()) == ["alpha", "base", "beta"]
    model_ids = set()
    for label in ("base", "alpha", "beta"):
        run = out / label
        assert {"predictions.jsonl", "metrics.json", "report.md", "report.html", "manifest.json",
                "config.yaml"} <= {p.name for p in run.iterdir()}
        rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 6 and {r["mode"] for r in rows} == {"logit"}
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["status"] == "finished" and manifest["model_id"] == rows[0]["model"]
        model_ids.add(manifest["model_id"])
        assert set(json.loads((run / "metrics.json").read_text())) == {"logit"}
    assert len(model_ids) == 3
    # each run holds what a single-adapter eval would have written
    single = evaluate.run(evaluate.EvalConfig(data=str(data), model=str(tiny["base"]), backend="transformers",
                                              adapter=str(tiny["beta"]), modes=["logit"], n_boot=20, threads=1),
                          out=tmp_path / "single", progress=False)
    one = [json.loads(x) for x in (single / "predictions.jsonl").read_text().splitlines()]
    multi = [json.loads(x) for x in (out / "beta" / "predictions.jsonl").read_text().splitlines()]
    assert [r["p_vulnerable"] for r in multi] == pytest.approx([r["p_vulnerable"] for r in one], abs=1e-5)
    assert multi[0]["model"] == one[0]["model"]
    assert "vuln compare" in res.output and str(out / "base") in res.output.replace("\n", "")
    # and compare takes them as they are
    res = CliRunner().invoke(app, ["vuln", "compare", str(out / "base"), str(out / "alpha"), str(out / "beta"),
                                   "--out", str(tmp_path / "compare")])
    assert res.exit_code == 0, res.output


def test_eval_refuses_clashing_labels_and_a_used_out_folder(tiny: dict[str, Path], tmp_path: Path) -> None:
    from breachlab.vuln.eval import evaluate

    data = _data(tmp_path)
    cfg = evaluate.EvalConfig(data=str(data), model=str(tiny["base"]), backend="transformers",
                              adapter=[str(tiny["alpha"]), str(tiny["alpha"])], modes=["logit"])
    with pytest.raises(UserError, match="labelled 'alpha'"):
        evaluate.run(cfg, out=tmp_path / "o1", progress=False)
    assert not (tmp_path / "o1").exists()
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "x").write_text("")
    cfg = evaluate.EvalConfig(data=str(data), model=str(tiny["base"]), backend="transformers",
                              adapter=f"base,{tiny['alpha']}", modes=["logit"])
    with pytest.raises(FileExistsError, match="not empty"):
        evaluate.run(cfg, out=tmp_path / "o2", progress=False)


# -- llama.cpp ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gguf_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Gemma 3 (real tokenizer: the converter needs one it knows) as GGUF + two GGUF LoRAs."""
    pytest.importorskip("llama_cpp")
    from breachlab.vuln.export import convert_hf, convert_lora
    from tests.vuln.tiny import gemma3_dir

    root = tmp_path_factory.mktemp("gguf")
    hf = gemma3_dir(root / "hf", real_tokenizer=True, sliding_window=16, init_std=0.1)
    out = {"hf": hf, "base": convert_hf(hf, root / "base-f32.gguf", "f32", allow_network=True)}
    for name, seed in (("alpha", 1), ("beta", 2)):
        peft = make_peft_adapter(hf, root / f"{name}-peft", seed=seed, scale=0.5)
        out[name] = convert_lora(peft, hf, root / f"{name}.gguf", "f32", allow_network=True)
        out[f"{name}-peft"] = peft
    return out


@pytest.mark.slow
def test_llama_cpp_switching_equals_each_adapter_loaded_alone(gguf_set: dict[str, Path]) -> None:
    import llama_cpp

    kw = dict(backend="llama.cpp", n_ctx=512, threads=1)
    be = load_backend(str(gguf_set["base"]), adapter=[str(gguf_set["alpha"]), str(gguf_set["beta"])], **kw)
    assert be.adapters == ["alpha", "beta"] and be.active_adapter == "alpha"
    prompts = [be.prompt(c) for c in CODES]
    got, ids, gen = {}, {}, {}
    for name in ("alpha", "beta", None, "beta", "alpha"):
        be.set_adapter(name)
        got[name] = _scores(be, prompts)
        ids[name] = be.model_id
        gen[name] = be.generate(prompts[0], 6)

    alone = {"alpha": load_backend(str(gguf_set["base"]), adapter=str(gguf_set["alpha"]), **kw),
             "beta": load_backend(str(gguf_set["base"]), adapter=str(gguf_set["beta"]), **kw),
             None: load_backend(str(gguf_set["base"]), **kw)}
    for name, ref in alone.items():
        np.testing.assert_allclose(got[name], _scores(ref, prompts), atol=1e-4)
        assert gen[name] == ref.generate(prompts[0], 6)
        assert ids[name] == ref.model_id
    assert np.abs(got["alpha"] - got["beta"]).max() > 1e-2
    assert np.abs(got["alpha"] - got[None]).max() > 1e-2 and np.abs(got["beta"] - got[None]).max() > 1e-2
    assert len(set(ids.values())) == 3

    # The KV cache after a switch: fill it with A's prompt, switch to B, then evaluate
    # straight through llama-cpp-python (no reset of ours in between).  A stale prefix
    # (computed with A) would be reused or appended to, and the logits would differ.
    ids_ = be.tokenize(prompts[0])
    n_vocab = be.llm.n_vocab()

    def last_logits(llm) -> np.ndarray:
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,)).copy()

    be.set_adapter("alpha")
    be.llm.reset()
    be.llm.eval(ids_)
    with_a = last_logits(be.llm)
    be.set_adapter("beta")
    be.llm.eval(ids_)
    alone["beta"].llm.reset()
    alone["beta"].llm.eval(ids_)
    np.testing.assert_allclose(last_logits(be.llm), last_logits(alone["beta"].llm), atol=1e-4)
    assert np.abs(with_a - last_logits(be.llm)).max() > 1e-2
    # create_completion reuses any cached prefix it believes valid: after a switch there is none
    be.set_adapter("alpha")
    be.llm.reset()
    be.llm.eval(ids_)
    be.set_adapter("beta")
    text = be.llm.create_completion(prompts[0], max_tokens=6, temperature=0.0, top_k=1)["choices"][0]["text"]
    alone["beta"].llm.reset()
    ref = alone["beta"].llm.create_completion(prompts[0], max_tokens=6, temperature=0.0, top_k=1)["choices"][0]["text"]
    assert text == ref
    for b in (be, *alone.values()):
        b.close()


@pytest.mark.slow
def test_llama_cpp_lora_matches_transformers_with_the_same_adapter(gguf_set: dict[str, Path]) -> None:
    """The switched llama.cpp adapter is the PEFT adapter it was converted from (f32, loose)."""
    kw = dict(n_ctx=512, threads=1)
    lc = load_backend(str(gguf_set["base"]), backend="llama.cpp",
                      adapter=f"{gguf_set['alpha']},{gguf_set['beta']}", **kw)
    hf = load_backend(str(gguf_set["hf"]), backend="transformers",
                      adapter=f"alpha={gguf_set['alpha-peft']},beta={gguf_set['beta-peft']}", **kw)
    prompts = [lc.prompt(c) for c in CODES]
    for name in ("beta", None, "alpha"):
        lc.set_adapter(name)
        hf.set_adapter(name)
        np.testing.assert_allclose(_scores(lc, prompts), _scores(hf, prompts), atol=2e-2)
    lc.close()
