"""Prompts in each model's own format, and verdict scoring that works for any tokenizer.

A tiny random Qwen2 with a byte-level BPE and a ChatML template stands in for Qwen2.5-Coder;
the GGUF side renders the same template from metadata in the jinja2 sandbox.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from breachlab.vuln import prompts
from breachlab.vuln.backends import LlamaCppBackend, load_backend
from breachlab.vuln.prompts import ChatTemplate
from tests.vuln.tiny import CHATML, chatml_gguf, make_chatml_tokenizer, qwen2_dir

CODE = "int f(char *s) {\n  char b[8];\n  strcpy(b, s);\n  return 0;\n}"


@pytest.fixture(scope="module")
def chatml_tok():
    return make_chatml_tokenizer()


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return qwen2_dir(tmp_path_factory.mktemp("qwen") / "model")


def _encode(tok):
    return lambda text: tok(text, add_special_tokens=False)["input_ids"]


def test_gguf_template_renders_like_the_hf_tokenizer(chatml_tok) -> None:
    gguf = ChatTemplate(CHATML, "<|endoftext|>", "<|im_end|>")
    hf_prompt = prompts.inference_prompt(CODE, "cpp", chatml_tok)
    assert prompts.inference_prompt(CODE, "cpp", gguf) == hf_prompt
    assert hf_prompt.startswith(f"<|im_start|>system\n{prompts.SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert hf_prompt.endswith("```<|im_end|>\n<|im_start|>assistant\n") and "```cpp\n" in hf_prompt
    train = prompts.training_example(CODE, 1, "CWE-121", "c", tokenizer=chatml_tok)
    assert prompts.training_example(CODE, 1, "CWE-121", "c", tokenizer=gguf) == train
    assert train[1].startswith("VULNERABLE — CWE-121") and train[1].endswith("<|im_end|>\n")
    assert prompts.stop_strings(gguf) == ("<|im_end|>",) == prompts.stop_strings(chatml_tok)
    assert prompts.stop_strings(None) == ("<end_of_turn>", "<eos>")


def test_templates_are_sandboxed() -> None:
    from jinja2.exceptions import SecurityError

    evil = ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        prompts.render_conversation([{"role": "user", "content": "x"}], evil)
    mutate = ChatTemplate("{% set _ = messages.append({'role': 'user', 'content': 'y'}) %}ok")
    with pytest.raises(SecurityError):
        prompts.render_conversation([{"role": "user", "content": "x"}], mutate)


def test_a_template_without_a_system_role_gets_it_in_the_user_turn() -> None:
    strict = ChatTemplate("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
                          "{% endif %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}"
                          "[assistant]{% endif %}")
    text = prompts.inference_prompt(CODE, "c", strict)
    assert text.startswith(f"[user]{prompts.SYSTEM}\n\nIs this C function") and text.endswith("[assistant]")
    broken = ChatTemplate("{{ raise_exception('always') }}")
    with pytest.raises(Exception, match="always"):
        prompts.render_conversation([{"role": "user", "content": "x"}], broken)


def test_verdict_ids_follow_how_the_prompt_ends(chatml_tok) -> None:
    enc = _encode(chatml_tok)
    after_turn = prompts.verdict_ids(enc, "<|im_start|>assistant\n")
    assert after_turn == {"VULNERABLE": enc("VULNERABLE"), "SAFE": enc("SAFE")}
    assert len(after_turn["VULNERABLE"]) > 1 and len(after_turn["SAFE"]) > 1  # whole words, several tokens
    assert prompts.first_verdict_ids(after_turn) == {"VULNERABLE": enc("VULNERABLE")[0], "SAFE": enc("SAFE")[0]}
    after_text = prompts.verdict_ids(enc, "Verdict:")
    assert after_text == {"VULNERABLE": enc(" VULNERABLE"), "SAFE": enc(" SAFE")}
    with pytest.raises(ValueError, match="share their first token"):  # here " " is a token of its own
        prompts.first_verdict_ids(after_text)
    # the training completion starts the same way the scored verdict does
    gen = ChatTemplate("{% for m in messages %}{{ m['content'] }}{% endfor %}Verdict:")
    assert prompts.training_example(CODE, 0, tokenizer=gen)[1].startswith(" SAFE: ")


def test_no_bos_is_added_to_a_templated_prompt(chatml_tok) -> None:
    text = prompts.inference_prompt(CODE, "c", chatml_tok)
    ids = prompts.prompt_ids(chatml_tok, text)
    assert chatml_tok.bos_token_id is not None and chatml_tok.bos_token_id not in ids
    assert ids == _encode(chatml_tok)(text)


def _manual_logp(model, ids: list[int], cont: list[int]) -> float:
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + cont])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[len(ids) - 1 + j, t] for j, t in enumerate(cont)))


def test_tiny_qwen2_scores_whole_multi_token_verdicts(qwen_dir: Path, chatml_tok) -> None:
    be = load_backend(str(qwen_dir), backend="transformers")
    prompt = be.prompt(CODE)
    assert prompt == prompts.inference_prompt(CODE, "c", chatml_tok)  # its own ChatML, not Gemma turns
    verdicts = be.verdict_tokens()
    assert verdicts == {"VULNERABLE": _encode(chatml_tok)("VULNERABLE"), "SAFE": _encode(chatml_tok)("SAFE")}
    assert len(verdicts["VULNERABLE"]) == 4 and len(verdicts["SAFE"]) == 2
    assert set(be.first_verdict_ids().values()) == {verdicts["VULNERABLE"][0], verdicts["SAFE"][0]}
    assert prompts.tokenizer_verdict_ids(be.tok) == verdicts  # what training reads
    ids = be.tokenize(prompt)
    assert ids[:1] == _encode(chatml_tok)("<|im_start|>")  # no BOS before the template's text
    s = be.score(prompt)
    assert s.logp_vulnerable == pytest.approx(_manual_logp(be.model, ids, verdicts["VULNERABLE"]), abs=1e-4)
    assert s.logp_safe == pytest.approx(_manual_logp(be.model, ids, verdicts["SAFE"]), abs=1e-4)
    assert 0.0 < s.p_vulnerable < 1.0 and math.isfinite(s.logp_safe)
    batch = be.score_batch([prompt, be.prompt("int add(int a, int b) { return a + b; }")])
    assert batch[0].logp_vulnerable == pytest.approx(s.logp_vulnerable, abs=1e-3)
    assert be.generate(prompt, 6) == be.generate(prompt, 6)


class _FakeLlama:
    """What LlamaCppBackend reads of a llama_cpp.Llama for its chat format: metadata and the vocab."""

    def __init__(self, tok, metadata: dict[str, str]):
        self.tok, self.metadata = tok, metadata

    def detokenize(self, ids: list[int], special: bool = False) -> bytes:
        return self.tok.decode(ids).encode()

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        ids = self.tok(text.decode(), add_special_tokens=False)["input_ids"]
        return ([self.tok.bos_token_id] if add_bos else []) + ids


def _llama_backend(llm) -> LlamaCppBackend:
    be = object.__new__(LlamaCppBackend)
    be.llm = llm
    return be


def test_llama_cpp_backend_uses_the_gguf_chat_template(chatml_tok) -> None:
    meta = {"tokenizer.chat_template": CHATML, "tokenizer.ggml.bos_token_id": str(chatml_tok.bos_token_id),
            "tokenizer.ggml.eos_token_id": str(chatml_tok.eos_token_id)}
    be = _llama_backend(_FakeLlama(chatml_tok, meta))
    assert be.chat_tokenizer == ChatTemplate(CHATML, "<|endoftext|>", "<|im_end|>")
    assert be.prompt(CODE) == prompts.inference_prompt(CODE, "c", chatml_tok)
    assert be.tokenize(be.prompt(CODE)) == prompts.prompt_ids(chatml_tok, be.prompt(CODE))  # no BOS either
    assert be.verdict_tokens()["VULNERABLE"] == _encode(chatml_tok)("VULNERABLE")
    base = _llama_backend(_FakeLlama(chatml_tok, {"tokenizer.ggml.bos_token_id": "0"}))
    assert base.chat_tokenizer is None and base.prompt(CODE).endswith("<start_of_turn>model\n")
    assert base.tokenize("x")[0] == chatml_tok.bos_token_id  # a base model keeps its BOS


def test_llama_cpp_reads_the_template_and_tokenizes_like_transformers(chatml_tok, tmp_path: Path) -> None:
    """Real llama.cpp on a GGUF carrying the tiny tokenizer and its ChatML template (vocab only)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(chatml_gguf(tmp_path / "chatml.gguf")), vocab_only=True, verbose=False)
    try:
        be = _llama_backend(llm)
        assert be.chat_tokenizer == ChatTemplate(CHATML, "<|endoftext|>", "<|im_end|>")
        prompt = be.prompt(CODE)
        assert prompt == prompts.inference_prompt(CODE, "c", chatml_tok)
        assert be.tokenize(prompt) == prompts.prompt_ids(chatml_tok, prompt)
        assert be.verdict_tokens() == prompts.tokenizer_verdict_ids(chatml_tok)
    finally:
        llm.close()


@pytest.mark.slow
def test_real_qwen_gguf_prompts_agree_between_llama_cpp_and_transformers() -> None:
    """With qwen2.5-coder-0.5b pulled: llama.cpp's rendering and ids equal the HF tokenizer's."""
    pytest.importorskip("llama_cpp")
    from transformers import AutoTokenizer

    from breachlab import ladder, models, parts

    model = ladder.lookup("qwen2.5-coder-0.5b")
    if not parts.is_assembled(model, models.ladder_path(model)):
        pytest.skip("run `breachlab models pull qwen2.5-coder-0.5b` first")
    gguf = models.ladder_path(model)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    be = load_backend("qwen2.5-coder-0.5b", backend="llama.cpp", n_ctx=512)
    try:
        assert be.prompt(CODE) == prompts.inference_prompt(CODE, "c", tok)
        assert be.tokenize(be.prompt(CODE)) == prompts.prompt_ids(tok, be.prompt(CODE))
        assert be.verdict_tokens() == {"VULNERABLE": [53, 1094, 13896, 3494], "SAFE": [83788]}
    finally:
        be.close()
