"""The transformers backend: a local model directory, a GGUF (dequantised once) or a hub id
the user wrote as ``hf:org/name``, with PEFT adapters; CPU fp32 or GPU bf16.

Prompts use the tokenizer's own chat template, Gemma turns for a model without one.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from breachlab.errors import UserError
from breachlab.models import ModelSource, load_hf
from breachlab.vuln.backends.adapters import adapter_label, peft_dir
from breachlab.vuln.backends.base import Backend, Score
from breachlab.vuln.prompts import VERDICT_SAFE, VERDICT_VULNERABLE, chat_of, prompt_ids, stop_strings

log = logging.getLogger("breachlab.backends")


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
        passes = [longest] + [t for t in verdicts.values()
                              if len(t) > 1 and t is not longest and t[:-1] != longest[: len(t) - 1]]
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
