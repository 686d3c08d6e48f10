"""Two inference backends with one interface: llama.cpp (GGUF) and transformers.

Both answer the same two questions about an inference prompt:

* :meth:`Backend.score` — *logit mode*: one forward pass, log P(VULNERABLE) and log P(SAFE)
  at the verdict position, normalised over the two.  The whole verdict word is scored
  (sum of its token log-probs), tokenized as it continues the prompt
  (:func:`~breachlab.vuln.prompts.verdict_ids`): Gemma and Qwen both split VULNERABLE into
  V/UL/NER/ABLE and the first piece "V" alone is generic.  Logits are computed only where
  the verdict needs them — the vocabulary projection dominates cost otherwise.

Prompts are in the model's own format: the GGUF's ``tokenizer.chat_template`` (llama.cpp)
or the tokenizer's (transformers), Gemma turns for a base model without one.
* :meth:`Backend.generate` — *generation mode*: greedy text, parsed later.

A backend holds one base model and any number of LoRA adapters on it
(:meth:`Backend.load_adapters`), one of them active at a time (:meth:`Backend.set_adapter`;
``None`` is the bare base model).  :attr:`Backend.model_id` names the base and the active
adapter's content hash, so caches keyed on it never mix two adapters.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breachlab.errors import UserError
from breachlab.models import ModelSource, load_hf, resolve
from breachlab.vuln.adapters import (  # noqa: F401 - AdapterSpec, BASE_LABEL: the adapter-spec API lives there
    BASE_LABEL, AdapterSpec, adapter_label, adapter_specs, adapter_tag, gguf_lora, peft_dir)
from breachlab.vuln.prompts import (
    VERDICT_SAFE, VERDICT_VULNERABLE, ChatTemplate, adds_bos, chat_of, first_verdict_ids, inference_prompt,
    prompt_ids, stop_strings, verdict_ids)

log = logging.getLogger("breachlab.backends")


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
    """A loaded model that can score and generate verdicts.

    Adapters: :meth:`load_adapters` puts named LoRA adapters on the loaded base (no reload),
    :meth:`set_adapter` picks the active one (``None``: the bare base), :attr:`adapters` lists
    them and :attr:`model_id` names the base plus the active adapter's content tag
    (:func:`~breachlab.vuln.adapters.adapter_tag`).
    """

    name: str = "?"
    base_id: str = "?"
    n_ctx: int = 4096

    # -- adapters -------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """The base model id, plus ``+name@sha12`` of the active adapter (scan caches key on it)."""
        active = self.active_adapter
        return self.base_id + (f"+{self._adapter_tags()[active]}" if active else "")

    def _adapter_tags(self) -> dict[str, str]:
        if "_tags" not in self.__dict__:
            self._tags: dict[str, str] = {}
        return self._tags

    @property
    def adapters(self) -> list[str]:
        """Names of the loaded adapters, in load order."""
        return list(self._adapter_tags())

    @property
    def active_adapter(self) -> str | None:
        """The adapter in use, or None for the bare base model."""
        return self.__dict__.get("_active")

    def load_adapters(self, adapters: Mapping[str, str | Path]) -> None:
        """Load LoRA adapters ``{name: path}`` onto the loaded base; the active one does not change.

        A path is what the backend reads (a GGUF LoRA for llama.cpp, a PEFT directory for
        transformers) or a folder holding it.  Names must be new.
        """
        tags = self._adapter_tags()
        for name, spec in adapters.items():
            if not isinstance(name, str) or not name.strip():
                raise UserError(f"an adapter needs a non-empty name, got {name!r}")
            if name in tags:
                raise UserError(f"an adapter named {name!r} is already loaded ({', '.join(tags)}): choose another name")
            path = Path(spec).expanduser()
            if not path.exists():
                raise UserError(f"adapter not found: {path}")
            file = self._adapter_file(path)
            self._load_adapter(name, file)
            tags[name] = adapter_tag(file)
            log.info("adapter %s loaded from %s (%s)", name, file, tags[name])

    def set_adapter(self, name: str | None) -> None:
        """Make adapter ``name`` active; ``None`` is the base model (zero-shot).  The base stays loaded."""
        if name is not None and name not in self._adapter_tags():
            loaded = ", ".join(self.adapters) or "none"
            raise UserError(f"no adapter named {name!r} is loaded (loaded: {loaded}); None is the base model")
        if name == self.active_adapter:
            return
        self._activate(name)
        self._active = name

    def _adapter_file(self, path: Path) -> Path:
        """The file or folder this backend reads for adapter ``path`` (UserError if none)."""
        raise UserError(f"the {self.name} backend cannot load adapters")

    def _load_adapter(self, name: str, file: Path) -> None:
        raise UserError(f"the {self.name} backend cannot load adapters")

    def _activate(self, name: str | None) -> None:
        raise UserError(f"the {self.name} backend cannot switch adapters")

    # -- inference ------------------------------------------------------------------------
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
        """The model's chat format (a tokenizer or ChatTemplate with a template; None: Gemma turns)."""
        return None

    def prompt(self, code: str, lang: str | None = "c") -> str:
        return inference_prompt(code, lang, tokenizer=self.chat_tokenizer)

    def verdict_tokens(self) -> dict[str, list[int]]:
        """Token ids of each verdict word as it continues this model's inference prompt."""
        if "_verdicts" not in self.__dict__:
            self._verdicts = verdict_ids(self._tokenize_plain, self.prompt("int x;"))
        return self._verdicts

    def first_verdict_ids(self) -> dict[str, int]:
        """The first token id of each verdict word (what a pair-aware objective compares)."""
        return first_verdict_ids(self.verdict_tokens())

    @abstractmethod
    def _tokenize_plain(self, text: str) -> list[int]:
        """Token ids of ``text`` with no BOS added (special-token text is parsed)."""

    def score(self, prompt: str) -> Score:
        ids = self.tokenize(prompt)
        lp = self._verdict_logps(ids, self.verdict_tokens())
        return Score(lp[VERDICT_VULNERABLE], lp[VERDICT_SAFE])

    def close(self) -> None:  # pragma: no cover - trivial
        pass


class LlamaCppBackend(Backend):
    """GGUF through llama.cpp (``llama-cpp-python``); CPU by default.

    LoRA adapters go through llama.cpp's own adapter API on the open context
    (``llama_adapter_lora_init`` once per adapter, ``llama_set_adapters_lora`` to switch); a
    switch clears the whole KV cache, since cached keys/values were computed with the
    previous adapter and the Gemma 3 sliding-window cache cannot be rewound part-way.
    """

    name = "llama.cpp"

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
            self.llm = llama_cpp.Llama(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"llama.cpp could not load {source.path}: {exc}") from None
        self.base_id = source.model_id
        self.n_ctx = n_ctx
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
        """Forget every cached token: the whole KV memory, and llama-cpp-python's prefix record."""
        mem = self._llama_cpp.llama_get_memory(self.llm.ctx)
        if mem is not None:
            self._llama_cpp.llama_memory_clear(mem, True)
        self.llm.reset()

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


class TransformersBackend(Backend):
    """A transformers model (optionally with PEFT adapters); CPU fp32 or GPU bf16.

    Adapters are PEFT LoRAs on one :class:`peft.PeftModel` (``load_adapter`` +
    ``set_adapter``); the base model runs inside ``disable_adapter()``.
    """

    name = "transformers"

    def __init__(self, source: ModelSource, *, adapter: str | Path | None = None, device: str = "cpu",
                 dtype: str = "auto", n_ctx: int = 4096, allow_pickle: bool = False, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model, self.tok = load_hf(source, dtype=dtype, device=device, adapter=None, allow_pickle=allow_pickle)
        self.device = device
        self.base_id = source.model_id
        self.n_ctx = n_ctx
        self._peft_names: dict[str, str] = {}
        if adapter is not None:
            label = adapter_label(Path(adapter))
            self.load_adapters({label: adapter})
            self.set_adapter(label)

    # -- adapters -------------------------------------------------------------------------
    @staticmethod
    def _adapter_file(path: Path) -> Path:
        folder = peft_dir(path)
        if folder is None:
            raise UserError(f"{path}: transformers takes a PEFT adapter directory (adapter_config.json); "
                            "use --backend llama.cpp for a GGUF LoRA")
        return folder

    def _load_adapter(self, name: str, file: Path) -> None:
        from peft import PeftModel

        # PEFT names become module keys (no dots): keep our own names apart from them
        peft_name = f"adapter{len(self._peft_names)}"
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(file), adapter_name=peft_name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(file), adapter_name=peft_name)
        except (ValueError, RuntimeError, KeyError, OSError) as exc:
            raise UserError(f"could not load adapter {file} on {self.base_id}: {str(exc).strip()[:500]}") from None
        self.model.to(self.device)
        self.model.eval()
        self._peft_names[name] = peft_name
        if self.active_adapter is not None:  # loading may have moved PEFT's active adapter
            self.model.set_adapter(self._peft_names[self.active_adapter], inference_mode=True)

    def _activate(self, name: str | None) -> None:
        if name is not None:
            self.model.set_adapter(self._peft_names[name], inference_mode=True)

    def _adapter_context(self) -> Any:
        """``disable_adapter()`` while the base model is active and adapters are loaded."""
        if self.active_adapter is None and self._peft_names:
            return self.model.disable_adapter()
        return nullcontext()

    # -- inference ------------------------------------------------------------------------
    @property
    def chat_tokenizer(self) -> Any:
        return chat_of(self.tok)

    def tokenize(self, text: str) -> list[int]:
        return prompt_ids(self.tok, text)

    def _tokenize_plain(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _verdict_logps(self, prompt_ids: list[int], verdicts: dict[str, list[int]]) -> dict[str, float]:
        return self.verdict_logps_batch([prompt_ids], verdicts)[0]

    def verdict_logps_batch(self, batch_ids: list[list[int]], verdicts: dict[str, list[int]]) -> list[dict[str, float]]:
        """Score a batch of prompts: one padded forward per distinct multi-token verdict.

        For VULNERABLE/SAFE on Gemma or Qwen one pass suffices: the sequence prompt+V+UL+NER gives
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
            with torch.inference_mode(), self._adapter_context():
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
        stops = (self.tok.convert_tokens_to_ids(s) for s in stop_strings(self.chat_tokenizer))
        stop_ids = [i for i in stops if isinstance(i, int) and i >= 0 and i != self.tok.unk_token_id]
        with torch.inference_mode(), self._adapter_context():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                      do_sample=False, eos_token_id=stop_ids or None,
                                      pad_token_id=self.tok.pad_token_id)
        return self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def load_backend(model: str | None = "embedded", *, backend: str = "auto",
                 adapter: str | Path | Sequence[str | Path] | None = None,
                 n_ctx: int = 4096, threads: int | None = None, device: str = "cpu", dtype: str = "auto",
                 allow_pickle: bool = False) -> Backend:
    """Resolve ``model`` and open it with ``backend`` (``auto``: GGUF → llama.cpp, else transformers).

    ``adapter`` is one adapter spec or several (a comma list or a list, see
    :func:`adapter_specs`): the base is loaded once, every adapter is loaded onto it under its
    label, and the first entry is made active (``none``/``base`` entries are the base itself).
    """
    source = resolve(model)
    specs = adapter_specs(adapter, model=model)
    with_path = [s for s in specs if s.path is not None]
    loras = {s.label: gguf_lora(s.path) for s in with_path}
    if backend == "auto":
        backend = "llama.cpp" if source.kind == "gguf" and all(loras.values()) else "transformers"
        gguf_only = [s for s in with_path if loras[s.label] is not None and peft_dir(s.path) is None]
        peft_only = [s for s in with_path if loras[s.label] is None]
        if gguf_only and peft_only:
            raise UserError(f"--adapter mixes GGUF LoRAs ({', '.join(s.label for s in gguf_only)}) and PEFT "
                            f"directories ({', '.join(s.label for s in peft_only)}): one backend reads them all, "
                            "so give every adapter in the form it needs (llama.cpp: .gguf, transformers: PEFT)")
    if backend in ("llama.cpp", "llamacpp", "llama_cpp"):
        if source.kind != "gguf":
            raise UserError(f"the llama.cpp backend needs a .gguf model; {source.location} is a {source.kind}")
        files = {s.label: LlamaCppBackend._adapter_file(s.path) for s in with_path}
        be: Backend = LlamaCppBackend(source, n_ctx=n_ctx, threads=threads)
    elif backend == "transformers":
        files = {s.label: TransformersBackend._adapter_file(s.path) for s in with_path}
        be = TransformersBackend(source, device=device, dtype=dtype, n_ctx=n_ctx, allow_pickle=allow_pickle,
                                 threads=threads)
    else:
        raise UserError(f"unknown backend {backend!r}: use auto, llama.cpp or transformers")
    try:
        be.load_adapters(files)
        be.set_adapter(specs[0].label if specs and specs[0].path is not None else None)
    except BaseException:
        be.close()
        raise
    return be
