"""Two inference backends with one interface: llama.cpp (GGUF) and transformers; :func:`load_backend`.

Both answer the same two questions about an inference prompt:

* :meth:`Backend.score` — *logit mode*: one forward pass, log P(VULNERABLE) and log P(SAFE)
  at the verdict position, normalised over the two.  The whole verdict word is scored
  (sum of its token log-probs), tokenized as it continues the prompt
  (:func:`~breachlab.vuln.prompts.verdict_ids`): Gemma and Qwen both split VULNERABLE into
  V/UL/NER/ABLE and the first piece "V" alone is generic.  Logits are computed only where
  the verdict needs them — the vocabulary projection dominates cost otherwise.
* :meth:`Backend.generate` — *generation mode*: greedy text, parsed later.

Prompts are in the model's own format: the GGUF's ``tokenizer.chat_template`` (llama.cpp)
or the tokenizer's (transformers), Gemma turns for a base model without one.  The interface
is :mod:`~breachlab.vuln.backends.base`; each backend has its own module.

A backend holds one base model and any number of LoRA adapters on it
(:meth:`Backend.load_adapters`), one of them active at a time (:meth:`Backend.set_adapter`;
``None`` is the bare base model).  :attr:`Backend.model_id` names the base and the active
adapter's content hash, so caches keyed on it never mix two adapters.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from breachlab.errors import UserError
from breachlab.models import resolve
from breachlab.vuln.backends.adapters import BASE_LABEL, AdapterSpec, adapter_label, adapter_specs, gguf_lora, peft_dir  # noqa: F401 - re-exported: the adapter-spec API lives there
from breachlab.vuln.backends.base import Backend, Score  # noqa: F401 - re-exported
from breachlab.vuln.backends.hf import TransformersBackend
from breachlab.vuln.backends.llamacpp import LlamaCppBackend


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
