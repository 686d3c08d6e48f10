"""The interface every inference backend implements: verdict scores, generation, adapters.

:class:`Backend` answers two questions about an inference prompt — :meth:`Backend.score`
(log P(VULNERABLE) and log P(SAFE) at the verdict position, each the sum over the word's
tokens) and :meth:`Backend.generate` (greedy text) — and holds a base model with any number
of LoRA adapters, one active at a time.  The llama.cpp and transformers implementations
live in their own modules; :func:`breachlab.vuln.backends.load_backend` picks one.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breachlab.errors import UserError
from breachlab.vuln.backends.adapters import adapter_tag
from breachlab.vuln.prompts import VERDICT_SAFE, VERDICT_VULNERABLE, first_verdict_ids, inference_prompt, verdict_ids

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


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64, copy=False)
    m = logits.max(axis=-1, keepdims=True)
    return logits - (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))


class Backend(ABC):
    """A loaded model that can score and generate verdicts.

    Adapters: :meth:`load_adapters` puts named LoRA adapters on the loaded base (no reload),
    :meth:`set_adapter` picks the active one (``None``: the bare base), :attr:`adapters` lists
    them and :attr:`model_id` names the base plus the active adapter's content tag
    (:func:`~breachlab.vuln.backends.adapters.adapter_tag`).
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
