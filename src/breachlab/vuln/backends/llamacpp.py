"""The llama.cpp backend: a GGUF through ``llama-cpp-python``, CPU by default.

Prompts use the GGUF's own ``tokenizer.chat_template`` (rendered in the jinja2 sandbox by
:class:`~breachlab.vuln.prompts.ChatTemplate`), Gemma turns for a base model without one.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from breachlab.errors import UserError
from breachlab.llama_open import open_llama
from breachlab.models import ModelSource
from breachlab.vuln.backends.adapters import adapter_label, gguf_lora
from breachlab.vuln.backends.base import Backend, log_softmax
from breachlab.vuln.prompts import ChatTemplate, adds_bos, stop_strings

log = logging.getLogger("breachlab.backends")


class LlamaCppBackend(Backend):
    """GGUF through llama.cpp (``llama-cpp-python``); CPU by default.

    LoRA adapters go through llama.cpp's own adapter API on the open context
    (``llama_adapter_lora_init`` once per adapter, ``llama_set_adapters_lora`` to switch); a
    switch clears the whole KV cache, since cached keys/values were computed with the
    previous adapter and the Gemma 3 sliding-window cache cannot be rewound part-way.
    """

    name = "llama.cpp"
    #: shortest shared prefix worth keeping (tokens); below it a prompt is evaluated whole
    MIN_PREFIX = 24

    def __init__(self, source: ModelSource, *, n_ctx: int = 4096, threads: int | None = None,
                 lora: str | Path | None = None, gpu_layers: int = 0, seed: int = 0):
        try:
            import llama_cpp
        except ImportError:
            raise UserError("llama.cpp backend needs llama-cpp-python: pip install 'breachlab[vuln]'") from None
        self._llama_cpp = llama_cpp
        self._loras: dict[str, Any] = {}
        kwargs: dict[str, Any] = dict(
            model_path=str(source.path), n_ctx=n_ctx, n_threads=threads or os.cpu_count() or 2,
            n_gpu_layers=gpu_layers, logits_all=False, verbose=False, seed=seed,
        )
        try:
            self.llm = open_llama(**kwargs)
        except (ValueError, RuntimeError) as exc:
            from breachlab.models import repair_hint

            raise UserError(f"llama.cpp could not load {source.path}: {exc}{repair_hint(source.path)}") from None
        self.base_id = source.model_id
        self.n_ctx = n_ctx
        # Off by default, measured: the scan prompt's fixed prefix is 38 tokens of ~770, the
        # reuse saved nothing (1.00x over 87 functions, benchmarks/scan_prefix.py) and the
        # different batch boundaries move P(vulnerable) by up to 0.03 against the calibration
        # (0.15-0.31 in log P on one prompt where llama.cpp repacks the weights: a non-AMX x86 CPU).
        self.reuse_prefix = False
        self._prefix: tuple[list[int], Any, int] | None = None  # (ids, seq-0 KV bytes, size)
        self._last_ids: list[int] = []
        self.prefix_tokens_reused = 0
        self._n_vocab = self.llm.n_vocab()
        if lora is not None:
            label = adapter_label(Path(lora))
            try:
                self.load_adapters({label: lora})
                self.set_adapter(label)
            except BaseException:
                self.close()
                raise

    # -- adapters -------------------------------------------------------------------------
    @staticmethod
    def _adapter_file(path: Path) -> Path:
        lora = gguf_lora(path)
        if lora is None:
            raise UserError(f"{path}: llama.cpp takes a GGUF LoRA adapter (.gguf); convert it with "
                            "`breachlab vuln export RUN --format gguf-lora` or use --backend transformers")
        return lora

    def _load_adapter(self, name: str, file: Path) -> None:
        from llama_cpp._utils import suppress_stdout_stderr

        with suppress_stdout_stderr(disable=False):  # llama.cpp prints a line per tensor otherwise
            ptr = self._llama_cpp.llama_adapter_lora_init(self.llm.model, str(file).encode("utf-8"))
        if not ptr:
            raise UserError(f"llama.cpp could not load the LoRA {file}: is it a GGUF LoRA made for "
                            f"{self.base_id}? (a full model .gguf is not an adapter)")
        self._loras[name] = ptr

    def _activate(self, name: str | None) -> None:
        lc = self._llama_cpp
        if name is None:
            rc = lc.llama_set_adapters_lora(self.llm.ctx, None, 0, None)
        else:
            adapters = (lc.llama_adapter_lora_p_ctypes * 1)(self._loras[name])
            scales = (ctypes.c_float * 1)(1.0)
            rc = lc.llama_set_adapters_lora(self.llm.ctx, adapters, 1, scales)
        if rc != 0:
            raise UserError(f"llama.cpp could not switch to adapter {name or 'none'} (code {rc})")
        self._clear_cache()

    def _clear_cache(self) -> None:
        """Forget every cached token: the whole KV memory, llama-cpp-python's prefix record and
        the saved prompt prefix (its keys/values belong to the adapter that was active)."""
        self._clear_memory()
        self._prefix = None
        self._last_ids = []

    def _clear_memory(self) -> None:
        mem = self._llama_cpp.llama_get_memory(self.llm.ctx)
        if mem is not None:
            self._llama_cpp.llama_memory_clear(mem, True)
        self.llm.reset()

    # -- the fixed prompt prefix ----------------------------------------------------------
    def _eval_prompt(self, ids: list[int]) -> None:
        """Evaluate ``ids`` from an empty cache, reusing the saved KV state of the prompt prefix.

        Every scan prompt opens with the same system text and question; their keys and values
        are computed once. The prefix is learned, not configured: the longest common prefix of
        two prompts (at least :attr:`MIN_PREFIX` tokens) is evaluated alone, its sequence state
        saved (``llama_state_seq_get_data``) and restored into an emptied cache for every later
        prompt that starts with it. A restore is a whole-state copy, never the part-way rewind
        that the sliding-window cache does not honour (see :meth:`_verdict_logps`).
        """
        prefix = self._prefix
        if self.reuse_prefix and prefix is not None and len(ids) > len(prefix[0]) and \
                ids[: len(prefix[0])] == prefix[0]:
            self._restore(prefix)
            self.llm.eval(ids[len(prefix[0]):])
            self.prefix_tokens_reused += len(prefix[0])
            return
        shared = _common_prefix(prefix[0] if prefix else self._last_ids, ids) if self.reuse_prefix else 0
        self._last_ids = list(ids)
        self._clear_memory()
        if self.MIN_PREFIX <= shared < len(ids):
            self.llm.eval(ids[:shared])
            self._prefix = self._save(ids[:shared])
            self.llm.eval(ids[shared:])
        else:
            self.llm.eval(ids)

    def _save(self, ids: list[int]) -> tuple[list[int], Any, int]:
        lc = self._llama_cpp
        size = lc.llama_state_seq_get_size(self.llm.ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        written = lc.llama_state_seq_get_data(self.llm.ctx, buf, size, 0)
        return list(ids), buf, written

    def _restore(self, prefix: tuple[list[int], Any, int]) -> None:
        ids, buf, size = prefix
        self._clear_memory()
        if self._llama_cpp.llama_state_seq_set_data(self.llm.ctx, buf, size, 0) != size:
            self._prefix = None  # llama.cpp refused it: evaluate the whole prompt instead
            self.llm.eval(ids)
            return
        self.llm.input_ids[: len(ids)] = ids
        self.llm.n_tokens = len(ids)

    # -- inference ------------------------------------------------------------------------
    @property
    def chat_tokenizer(self) -> Any:
        """The GGUF's own ``tokenizer.chat_template`` (None for a base model without one)."""
        if "_chat" not in self.__dict__:
            meta = getattr(self.llm, "metadata", None) or {}
            template = meta.get("tokenizer.chat_template")

            def text(key: str) -> str:
                tid = meta.get(key)
                return self.llm.detokenize([int(tid)], special=True).decode("utf-8", "replace") if tid else ""

            self._chat = ChatTemplate(template, text("tokenizer.ggml.bos_token_id"),
                                      text("tokenizer.ggml.eos_token_id")) if template else None
        return self._chat

    def tokenize(self, text: str) -> list[int]:
        # a template writes its own BOS where it wants one; llama.cpp adds one only if the vocab asks
        return self.llm.tokenize(text.encode("utf-8"), add_bos=adds_bos(self.chat_tokenizer), special=True)

    def _tokenize_plain(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _last_logprobs(self) -> np.ndarray:
        ptr = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return log_softmax(np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)))

    def _verdict_logps(self, prompt_ids: list[int], verdicts: dict[str, list[int]]) -> dict[str, float]:
        if len(prompt_ids) + max(len(t) for t in verdicts.values()) > self.n_ctx:
            raise ValueError(f"prompt of {len(prompt_ids)} tokens does not fit n_ctx={self.n_ctx}")
        self._eval_prompt(prompt_ids)
        first = self._last_logprobs()
        out: dict[str, float] = {}
        # Never rewind the KV cache part-way: a partial removal is not honoured by the
        # sliding-window cache of Gemma 3 in llama.cpp (stale entries stay visible; a test
        # caught it).  Single-token verdicts need no extra evaluation; multi-token ones
        # extend the cache, and any further one starts again from a full reset.
        for verdict, toks in sorted(verdicts.items(), key=lambda kv: len(kv[1])):
            if len(toks) > 1 and self.llm.n_tokens != len(prompt_ids):
                self._eval_prompt(prompt_ids)
            total = float(first[toks[0]])
            for prev, nxt in zip(toks[:-1], toks[1:]):
                self.llm.eval([prev])
                total += float(self._last_logprobs()[nxt])
            out[verdict] = total
        return out

    def generate(self, prompt: str, max_new_tokens: int = 64) -> str:
        # a full reset: reusing a cached prefix would need the partial rewind that the
        # sliding-window cache does not honour (see _verdict_logps).  Token ids, not text, so
        # the BOS rule is the one scoring uses (a template that writes its own BOS gets no second)
        self._clear_memory()
        res = self.llm.create_completion(self.tokenize(prompt), max_tokens=max_new_tokens, temperature=0.0, top_k=1,
                                         stop=list(stop_strings(self.chat_tokenizer)))
        return res["choices"][0]["text"]

    def close(self) -> None:
        # detach and free our adapters before the model goes (llama.cpp would free them with
        # the model too, but never after the context that still points at them)
        if self._loras:
            try:
                self._llama_cpp.llama_set_adapters_lora(self.llm.ctx, None, 0, None)
            except Exception:  # noqa: BLE001 - the context may already be gone
                pass
            for ptr in self._loras.values():
                self._llama_cpp.llama_adapter_lora_free(ptr)
            self._loras.clear()
            self._adapter_tags().clear()
            self._active = None
        self.llm.close() if hasattr(self.llm, "close") else None


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
