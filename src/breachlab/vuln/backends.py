"""Two inference backends with one interface: llama.cpp (GGUF) and transformers.

Both answer the same two questions about an inference prompt:

* :meth:`Backend.score` — *logit mode*: one forward pass, log P(VULNERABLE) and log P(SAFE)
  at the verdict position, normalised over the two.  The whole verdict word is scored
  (sum of its token log-probs): Gemma splits VULNERABLE into V/UL/NER/ABLE and the first
  piece "V" alone is generic.  Logits are computed only where the verdict needs them —
  the 262k-entry vocabulary projection dominates cost otherwise.
* :meth:`Backend.generate` — *generation mode*: greedy text, parsed later.
"""

from __future__ import annotations

import logging
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breachlab.errors import UserError
from breachlab.models import ModelSource, load_hf, resolve
from breachlab.vuln.prompts import VERDICT_SAFE, VERDICT_VULNERABLE, inference_prompt

log = logging.getLogger("breachlab.backends")

STOP = ("<end_of_turn>", "<eos>")


@dataclass(frozen=True)
class Score:
    """Verdict log-probabilities for one prompt and the normalised P(vulnerable)."""

    logp_vulnerable: float
    logp_safe: float

    @property
    def p_vulnerable(self) -> float:
        a, b = self.logp_vulnerable, self.logp_safe
        m = max(a, b)
        return math.exp(a - m) / (math.exp(a - m) + math.exp(b - m))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64, copy=False)
    m = logits.max(axis=-1, keepdims=True)
    return logits - (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))


class Backend(ABC):
    """A loaded model that can score and generate verdicts."""

    name: str = "?"
    model_id: str = "?"
    n_ctx: int = 4096

    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Token ids of a full prompt (with BOS), exactly as the model will see it."""

    @abstractmethod
    def _verdict_logps(self, prompt_ids: list[int], verdicts: dict[str, list[int]]) -> dict[str, float]:
        """Sum of token log-probs of each verdict's tokens after ``prompt_ids``."""

    @abstractmethod
    def generate(self, prompt: str, max_new_tokens: int = 64) -> str:
        """Greedy continuation of ``prompt``, stopped at the end of the model turn."""

    @property
    def chat_tokenizer(self) -> Any:
        """The tokenizer whose chat template the prompts should use (None: Gemma turns)."""
        return None

    def prompt(self, code: str, lang: str | None = "c") -> str:
        return inference_prompt(code, lang, tokenizer=self.chat_tokenizer)

    def verdict_tokens(self) -> dict[str, list[int]]:
        return {v: self._tokenize_plain(v) for v in (VERDICT_VULNERABLE, VERDICT_SAFE)}

    @abstractmethod
    def _tokenize_plain(self, text: str) -> list[int]:
        """Token ids of ``text`` with no BOS, as it would continue a model turn."""

    def score(self, prompt: str) -> Score:
        ids = self.tokenize(prompt)
        lp = self._verdict_logps(ids, self.verdict_tokens())
        return Score(lp[VERDICT_VULNERABLE], lp[VERDICT_SAFE])

    def close(self) -> None:  # pragma: no cover - trivial
        pass


class LlamaCppBackend(Backend):
    """GGUF through llama.cpp (``llama-cpp-python``); CPU by default."""

    name = "llama.cpp"

    def __init__(self, source: ModelSource, *, n_ctx: int = 4096, threads: int | None = None,
                 lora: str | Path | None = None, gpu_layers: int = 0, seed: int = 0):
        try:
            import llama_cpp
        except ImportError:
            raise UserError("llama.cpp backend needs llama-cpp-python: pip install 'breachlab[vuln]'") from None
        self._llama_cpp = llama_cpp
        kwargs: dict[str, Any] = dict(
            model_path=str(source.path), n_ctx=n_ctx, n_threads=threads or os.cpu_count() or 2,
            n_gpu_layers=gpu_layers, logits_all=False, verbose=False, seed=seed,
        )
        if lora is not None:
            kwargs["lora_path"] = str(lora)
        try:
            self.llm = llama_cpp.Llama(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"llama.cpp could not load {source.path}: {exc}") from None
        self.model_id = source.model_id + (f"+{Path(lora).name}" if lora else "")
        self.n_ctx = n_ctx
        self._n_vocab = self.llm.n_vocab()

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def _tokenize_plain(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def _last_logprobs(self) -> np.ndarray:
        ptr = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return _log_softmax(np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)))

    def _verdict_logps(self, prompt_ids: list[int], verdicts: dict[str, list[int]]) -> dict[str, float]:
        if len(prompt_ids) + max(len(t) for t in verdicts.values()) > self.n_ctx:
            raise ValueError(f"prompt of {len(prompt_ids)} tokens does not fit n_ctx={self.n_ctx}")
        self.llm.reset()
        self.llm.eval(prompt_ids)
        first = self._last_logprobs()
        out: dict[str, float] = {}
        # Never rewind the KV cache part-way: a partial removal is not honoured by the
        # sliding-window cache of Gemma 3 in llama.cpp (stale entries stay visible; a test
        # caught it).  Single-token verdicts need no extra evaluation; multi-token ones
        # extend the cache, and any further one starts again from a full reset.
        for verdict, toks in sorted(verdicts.items(), key=lambda kv: len(kv[1])):
            if len(toks) > 1 and self.llm.n_tokens != len(prompt_ids):
                self.llm.reset()
                self.llm.eval(prompt_ids)
            total = float(first[toks[0]])
            for prev, nxt in zip(toks[:-1], toks[1:]):
                self.llm.eval([prev])
                total += float(self._last_logprobs()[nxt])
            out[verdict] = total
        return out

    def generate(self, prompt: str, max_new_tokens: int = 64) -> str:
        # a full reset: reusing a cached prefix would need the partial rewind that the
        # sliding-window cache does not honour (see _verdict_logps)
        self.llm.reset()
        res = self.llm.create_completion(prompt, max_tokens=max_new_tokens, temperature=0.0, top_k=1,
                                         stop=list(STOP))
        return res["choices"][0]["text"]

    def close(self) -> None:
        self.llm.close() if hasattr(self.llm, "close") else None


class TransformersBackend(Backend):
    """A transformers model (optionally with a PEFT adapter); CPU fp32 or GPU bf16."""

    name = "transformers"

    def __init__(self, source: ModelSource, *, adapter: str | Path | None = None, device: str = "cpu",
                 dtype: str = "auto", n_ctx: int = 4096, allow_pickle: bool = False, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model, self.tok = load_hf(source, dtype=dtype, device=device, adapter=adapter, allow_pickle=allow_pickle)
        self.device = device
        self.model_id = source.model_id + (f"+{Path(adapter).name}" if adapter else "")
        self.n_ctx = n_ctx

    @property
    def chat_tokenizer(self) -> Any:
        return self.tok if getattr(self.tok, "chat_template", None) else None

    def tokenize(self, text: str) -> list[int]:
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        bos = self.tok.bos_token_id
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return ids

    def _tokenize_plain(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _verdict_logps(self, prompt_ids: list[int], verdicts: dict[str, list[int]]) -> dict[str, float]:
        return self.verdict_logps_batch([prompt_ids], verdicts)[0]

    def verdict_logps_batch(self, batch_ids: list[list[int]], verdicts: dict[str, list[int]]) -> list[dict[str, float]]:
        """Score a batch of prompts: one padded forward per distinct multi-token verdict.

        For VULNERABLE/SAFE on Gemma one pass suffices: the sequence prompt+V+UL+NER gives
        log P(V|prompt) … log P(ABLE|…NER) and, at the prompt's last position, log P(SAFE).
        Only the last ``k`` positions get logits (``logits_to_keep``).
        """
        torch = self.torch
        results: list[dict[str, float]] = [{} for _ in batch_ids]
        longest = max(verdicts.values(), key=len)
        passes = [longest] + [t for t in verdicts.values() if len(t) > 1 and t is not longest and t[:-1] != longest[: len(t) - 1]]
        for cont in passes:
            extra = cont[:-1]
            k = len(cont)
            seqs = [ids + extra for ids in batch_ids]
            width = max(map(len, seqs))
            pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
            input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for i, s in enumerate(seqs):  # left padding: the verdict positions line up at the end
                input_ids[i, width - len(s):] = torch.tensor(s)
                mask[i, width - len(s):] = 1
            with torch.inference_mode():
                out = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                 logits_to_keep=k, use_cache=False)
            logp = torch.log_softmax(out.logits.float(), dim=-1).cpu().numpy()  # (B, k, V)
            for i in range(len(seqs)):
                for verdict, toks in verdicts.items():
                    if verdict in results[i]:
                        continue
                    if toks[:-1] == cont[: len(toks) - 1]:
                        results[i][verdict] = float(sum(logp[i, j, t] for j, t in enumerate(toks)))
        return results

    def score_batch(self, prompts: list[str]) -> list[Score]:
        lps = self.verdict_logps_batch([self.tokenize(p) for p in prompts], self.verdict_tokens())
        return [Score(lp[VERDICT_VULNERABLE], lp[VERDICT_SAFE]) for lp in lps]

    def generate(self, prompt: str, max_new_tokens: int = 64) -> str:
        torch = self.torch
        ids = torch.tensor([self.tokenize(prompt)], device=self.device)
        stop_ids = [i for i in (self.tok.convert_tokens_to_ids(s) for s in STOP) if isinstance(i, int) and i >= 0]
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                      do_sample=False, eos_token_id=stop_ids or None,
                                      pad_token_id=self.tok.pad_token_id)
        return self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def load_backend(model: str | None = "embedded", *, backend: str = "auto", adapter: str | Path | None = None,
                 n_ctx: int = 4096, threads: int | None = None, device: str = "cpu", dtype: str = "auto",
                 allow_pickle: bool = False) -> Backend:
    """Resolve ``model`` and open it with ``backend`` (``auto``: GGUF → llama.cpp, else transformers)."""
    source = resolve(model)
    if backend == "auto":
        backend = "llama.cpp" if source.kind == "gguf" and adapter is None else "transformers"
    if backend in ("llama.cpp", "llamacpp", "llama_cpp"):
        if source.kind != "gguf":
            raise UserError(f"the llama.cpp backend needs a .gguf model; {source.location} is a {source.kind}")
        lora = adapter if adapter and str(adapter).endswith(".gguf") else None
        if adapter and lora is None:
            raise UserError("llama.cpp takes a GGUF LoRA adapter (.gguf); use --backend transformers for a PEFT adapter")
        return LlamaCppBackend(source, n_ctx=n_ctx, threads=threads, lora=lora)
    if backend == "transformers":
        return TransformersBackend(source, adapter=adapter, device=device, dtype=dtype, n_ctx=n_ctx,
                                   allow_pickle=allow_pickle, threads=threads)
    raise UserError(f"unknown backend {backend!r}: use auto, llama.cpp or transformers")
