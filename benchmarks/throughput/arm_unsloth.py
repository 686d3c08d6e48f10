"""Unsloth, its documented way: ``FastLanguageModel`` (``FastModel`` for Gemma) + TRL's SFTTrainer.

The model is loaded by Unsloth from a local safetensors directory holding the same initial
weights as every other arm (a random-init shape is built with the benchmark's seed and
saved first; a GGUF shape uses its dequantised directory), ``load_in_4bit`` for QLoRA,
``get_peft_model`` with the same LoRA and ``use_gradient_checkpointing="unsloth"``, then
trained through TRL's ``SFTTrainer`` (which Unsloth patches on import) with the ``trl``
arm's configuration, without Liger (Unsloth brings its own kernels).  Unsloth patches
transformers globally and must be imported before it: :func:`preimport` runs first in the
arm's own process.  It needs CUDA: elsewhere the arm is reported skipped, not failed.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from .shapes import LORA, TARGETS, family, make_base

ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "UNSLOTH_DISABLE_STATISTICS": "1"}


def preimport(device: str, tmp: str) -> str | None:
    """Import unsloth before anything imports transformers; the reason to skip, or None."""
    if device != "cuda":
        return "unsloth needs CUDA"
    if importlib.util.find_spec("unsloth") is None:
        return "unsloth not installed"
    for key, value in ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("UNSLOTH_COMPILE_LOCATION", str(Path(tmp) / "unsloth_compiled_cache"))
    try:
        import unsloth  # noqa: F401
    except Exception as exc:  # e.g. a GPU or a version it refuses
        return f"unsloth does not import here: {type(exc).__name__}: {exc}"[:300]
    return None


def initial_dir(shape: str, seed: int, tmp: str, weights_dir: Path | None) -> Path:
    """A safetensors directory with the arms' initial weights (and a tokenizer) for Unsloth to load."""
    if weights_dir is not None:
        from breachlab.vuln.training.load import unsloth_pad_dir

        return unsloth_pad_dir(weights_dir)  # the trainer's own fix (Qwen's pad token)
    from .arm_trl import stub_tokenizer

    out = Path(tmp) / f"unsloth-init-{shape}-seed{seed}"
    if not (out / "config.json").is_file():
        model = make_base(shape, "cuda", seed)
        part = out.with_name(out.name + ".part")
        model.save_pretrained(part, safe_serialization=True)
        stub_tokenizer().save_pretrained(part)
        del model
        part.rename(out)
    return out


def build(shape: str, method: str, seed: int, tmp: str, weights_dir: Path | None, max_len: int) -> tuple[Any, Any]:
    """(Unsloth's PEFT model, its tokenizer)."""
    import torch
    from unsloth import FastLanguageModel, FastModel

    where = initial_dir(shape, seed, tmp, weights_dir)
    torch.cuda.empty_cache()
    fast = FastModel if family(shape) == "gemma" else FastLanguageModel
    model, tok = fast.from_pretrained(
        model_name=str(where), max_seq_length=max_len, dtype=torch.bfloat16, load_in_4bit=method == "qlora",
        full_finetuning=False, use_gradient_checkpointing="unsloth", local_files_only=True, trust_remote_code=False,
        random_state=seed)
    tok = getattr(tok, "tokenizer", tok)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.config.use_cache = False
    model = fast.get_peft_model(model, target_modules=TARGETS, bias="none", use_gradient_checkpointing="unsloth",
                                random_state=seed, **LORA)
    return model, tok
