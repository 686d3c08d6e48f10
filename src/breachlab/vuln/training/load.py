"""What a training run starts from: the base model with its adapters, the tokenizer, the data.

Two loaders of the model: transformers + peft (``backend: breachlab``; LoRA, QLoRA via
bitsandbytes NF4 with double quantisation on a GPU, or full fine-tuning) and Unsloth's
``FastLanguageModel`` (``backend: unsloth``, optional package, offline).  Either way adapters go
on the language model's projections only (:func:`~breachlab.vuln.training.anatomy.lora_targets`).
The data: a data run directory (or a train .jsonl) and its validation split, optionally
filtered by source and shortened class-balanced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from breachlab.errors import UserError
from breachlab.vuln.training.anatomy import lora_targets
from breachlab.vuln.training.config import TrainConfig


def base_location(model_spec: str) -> str:
    """A transformers-loadable location of the full-precision base (GGUF → cached HF dir)."""
    from breachlab.models import _hf_cache_for, check_gguf_tokenizer, load_hf, resolve

    src = resolve(model_spec)
    if src.kind != "gguf":
        return src.location
    cached = _hf_cache_for(src.path)
    if not (cached / "config.json").is_file():
        load_hf(src, dtype="float32")  # writes the cache (and checks its tokenizer)
    else:  # a cache written by another transformers version is checked too
        from transformers import AutoTokenizer

        check_gguf_tokenizer(src.path, AutoTokenizer.from_pretrained(str(cached)))
    return str(cached)


def load_for_training(cfg: TrainConfig, device: str) -> tuple[Any, Any]:
    """Base model (4-bit for QLoRA) + tokenizer, with adapters attached for LoRA/QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from breachlab.models import _torch_dtype

    location = base_location(cfg.model)
    dtype = _torch_dtype(cfg.dtype, device)
    if cfg.backend == "unsloth":
        return _load_unsloth(cfg, device, location, dtype)
    kwargs: dict[str, Any] = {"trust_remote_code": False, "use_safetensors": None if cfg.allow_pickle else True}
    if cfg.attn_implementation != "auto":
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.method == "qlora":
        if not device.startswith("cuda"):
            raise UserError("QLoRA needs a CUDA GPU (bitsandbytes 4-bit); use method: lora on CPU")
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise UserError("QLoRA needs bitsandbytes: pip install 'breachlab[gpu]'") from None
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute)
        dtype = compute
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    tok = AutoTokenizer.from_pretrained(location)
    try:
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **kwargs)
    except OSError as exc:
        raise UserError(f"could not load {location}: {exc}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    # RNG state is saved for the recomputation only where something random runs in it
    # (dropout); CUDA graphs cannot capture the save, and with no dropout there is nothing to save.
    ckpt_kwargs = {"use_reentrant": False, "preserve_rng_state": bool(cfg.lora_dropout) or cfg.method == "full"}
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt_kwargs)
    model.config.use_cache = False
    if cfg.method == "full":
        return model, tok
    from peft import LoraConfig, get_peft_model

    if cfg.method == "qlora" and cfg.gradient_checkpointing:
        # what peft's prepare_model_for_kbit_training does for checkpointing, without its cast of
        # every bf16 parameter to float32 (embedding tables included: +14 GB for Gemma 4 E4B)
        for p in model.parameters():
            p.requires_grad_(False)
        model.enable_input_require_grads()
    targets = lora_targets(model, cfg.target_modules)
    if not targets:
        raise UserError(f"no layers named {cfg.target_modules} in the language model of {cfg.model}")
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg)
    if not cfg.lora_float32:
        from breachlab.vuln.training.speed.patches import lora_in_activation_dtype

        lora_in_activation_dtype(model)
    return model, tok


UNSLOTH_ENV = {  # offline, no usage statistics, its compiled kernels out of the working directory
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
    "UNSLOTH_DISABLE_STATISTICS": "1",
}


def import_unsloth() -> Any:
    """``unsloth`` imported the way breachlab runs it: offline, without its statistics ping,
    its compile cache under breachlab's cache directory (not the working directory).  A
    clear error when it is not installed: it is optional."""
    import importlib.util
    import os

    if importlib.util.find_spec("unsloth") is None:
        raise UserError("backend: unsloth needs the optional unsloth package (docs/unsloth.md says how to install "
                        "it: pip install unsloth); backend: breachlab needs nothing more")
    for key, value in UNSLOTH_ENV.items():
        os.environ.setdefault(key, value)
    from breachlab.models import cache_dir

    os.environ.setdefault("UNSLOTH_COMPILE_LOCATION", str(cache_dir() / "unsloth_compiled_cache"))
    try:
        import unsloth
    except Exception as exc:  # e.g. no GPU it supports, a version it refuses
        raise UserError(f"unsloth is installed but does not import here: {type(exc).__name__}: {exc}") from None
    return unsloth


def unsloth_pad_dir(weights_dir: Path) -> Path:
    """The same weights with a pad token Unsloth accepts.

    Unsloth refuses a pad token that is the eos token and looks for another among the added
    tokens. transformers 5.17 converts Qwen's GGUF tokenizer with ``<|endoftext|>`` as both
    and only three added tokens, so Unsloth found none ("Could not find a valid pad token").
    ``<|fim_pad|>`` is Qwen's own reserved pad token, in the vocabulary
    and never in training data: a sibling directory names it the pad token and, where it is
    only in the vocabulary, registers it as a special token with its own id. The other small
    files are copied and the weights hard-linked (copied across file systems), so the
    converted directory stays as it was. Not symbolic links: Unsloth read the original
    directory through them. The directory as it is where no
    change is needed or ``<|fim_pad|>`` is not in the vocabulary."""
    import json

    cfg_file, tok_file = weights_dir / "tokenizer_config.json", weights_dir / "tokenizer.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    tok = json.loads(tok_file.read_text()) if tok_file.is_file() else {}

    def content(v: Any) -> Any:  # a token as a string or as a serialised AddedToken
        return v.get("content") if isinstance(v, dict) else v

    if content(cfg.get("pad_token")) not in (None, "<|endoftext|>", content(cfg.get("eos_token"))):
        return weights_dir
    added = tok.get("added_tokens", [])
    pad_id = next((t.get("id") for t in added if t.get("content") == PAD_SENTINEL), None)
    vocab = (tok.get("model") or {}).get("vocab")
    if pad_id is None and isinstance(vocab, dict):
        pad_id = vocab.get(PAD_SENTINEL)
    if pad_id is None:
        return weights_dir
    if not any(t.get("content") == PAD_SENTINEL for t in added):
        tok["added_tokens"] = [*added, {"id": pad_id, "content": PAD_SENTINEL, "single_word": False, "lstrip": False,
                                        "rstrip": False, "normalized": False, "special": True}]
    out = weights_dir.with_name(weights_dir.name + "-unsloth-pad")
    _sibling(weights_dir, out, skip={cfg_file.name, tok_file.name})
    if tok:
        (out / tok_file.name).write_text(json.dumps(tok, ensure_ascii=False))
    (out / cfg_file.name).write_text(json.dumps({**cfg, "pad_token": PAD_SENTINEL}, ensure_ascii=False))
    return out


PAD_SENTINEL = "<|fim_pad|>"


def _sibling(src: Path, out: Path, skip: set[str]) -> None:
    """``out`` with ``src``'s files but ``skip``: weights hard-linked (copied across file systems),
    small files copied; one made by an earlier version with symbolic links is rebuilt."""
    import os
    import shutil

    if out.is_dir() and any(f.is_symlink() for f in out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name in skip or (out / f.name).exists() or not f.is_file():
            continue
        if f.suffix == ".safetensors":
            try:
                os.link(f, out / f.name)
                continue
            except OSError:
                pass  # another file system: copy
        shutil.copy2(f, out / f.name)


def _load_unsloth(cfg: TrainConfig, device: str, location: str, dtype: Any) -> tuple[Any, Any]:
    """The same model, method and LoRA targets through Unsloth's ``FastLanguageModel``."""
    if not device.startswith("cuda"):
        raise UserError("backend: unsloth needs a CUDA GPU; use backend: breachlab")
    import_unsloth()
    from unsloth import FastLanguageModel

    ckpt = "unsloth" if cfg.gradient_checkpointing else False
    if Path(location).is_dir():
        location = str(unsloth_pad_dir(Path(location)))
    try:
        model, tok = FastLanguageModel.from_pretrained(
            model_name=str(location), max_seq_length=cfg.max_seq_len, dtype=dtype,
            load_in_4bit=cfg.method == "qlora", full_finetuning=cfg.method == "full",
            use_gradient_checkpointing=ckpt, local_files_only=True, trust_remote_code=False,
            random_state=cfg.seed)
    except OSError as exc:
        raise UserError(f"could not load {location} with unsloth: {exc}") from None
    tok = getattr(tok, "tokenizer", tok)  # a processor for multimodal models: its text tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.config.use_cache = False
    if cfg.method == "full":
        return model, tok
    targets = lora_targets(model, cfg.target_modules)
    if not targets:
        raise UserError(f"no layers named {cfg.target_modules} in the language model of {cfg.model}")
    # Unsloth takes leaf names (it scopes them to the language model itself); what it wrapped
    # is then checked against breachlab's own list of language-model targets
    model = FastLanguageModel.get_peft_model(
        model, r=cfg.lora_r, target_modules=list(cfg.target_modules), lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout, bias="none", use_gradient_checkpointing=ckpt, random_state=cfg.seed)
    wrapped = {n.removeprefix("base_model.model.") for n, m in model.named_modules() if hasattr(m, "lora_A")}
    stray = sorted(wrapped - set(targets))
    if stray:
        raise UserError(f"unsloth put adapters outside the language model's {cfg.target_modules}: {stray[:3]}")
    return model, tok


def _read(path: Path) -> list:
    try:
        from breachlab.vuln.data.build import load_split  # the data layer, when present
    except ImportError:
        load_split = None
    from breachlab.vuln.sample import read_samples

    if path.is_dir():
        if load_split is not None:
            return list(load_split(path, "train"))
        path = path / "train.jsonl"
    if not path.is_file():
        raise UserError(f"training data not found: {path}")
    return read_samples(path)


def load_data(cfg: TrainConfig) -> tuple[list, list, list[Path]]:
    from breachlab.vuln.sample import read_samples

    if not cfg.data:
        raise UserError("no training data: set data: to a data run directory or a .jsonl file")
    data = Path(cfg.data)
    train = _read(data)
    val_path = Path(cfg.val_data) if cfg.val_data else (data if data.is_dir() else data.parent) / "val.jsonl"
    val = read_samples(val_path) if val_path.is_file() else []
    if cfg.sources:
        # Validation is filtered too: early stopping must not look at a held-out domain.
        from breachlab.vuln.sample import only_sources

        train, val = (only_sources(train, cfg.sources, where=str(data)),
                      [s for s in val if s.source in cfg.sources])
    if cfg.max_train_samples:
        train = _balanced(train, cfg.max_train_samples, cfg.seed)
    if cfg.max_val_samples:
        val = _balanced(val, cfg.max_val_samples, cfg.seed)
    if not train:
        raise UserError(f"{data}: no training samples")
    return train, val, [p for p in (data, val_path) if p.exists()]


def _balanced(samples: list, n: int, seed: int) -> list:
    """Up to ``n`` samples, half per class where possible, order fixed by ``seed``."""
    import random

    rng = random.Random(seed)
    pos = [s for s in samples if s.label == 1]
    neg = [s for s in samples if s.label == 0]
    rng.shuffle(pos)
    rng.shuffle(neg)
    half = n // 2
    take_p = min(len(pos), max(half, n - len(neg)))
    out = pos[:take_p] + neg[: n - take_p]
    rng.shuffle(out)
    return out


def set_sdpa_kernels(choice: str) -> None:
    """Which fused scaled-dot-product-attention kernels PyTorch may pick on CUDA (``sdpa_kernels``).

    ``auto`` and ``no-cudnn`` leave cuDNN's kernel out (the flash and memory-efficient ones
    stay): with the packed rows' additive 4-D masks it turned Qwen2.5-Coder-0.5B's LoRA
    weights NaN at step 4 (torch 2.11), where the other kernels trained;
    ``math`` keeps only the unfused reference kernel.  Process-wide: a training run owns
    its process.
    """
    import torch

    if choice == "all" or not torch.cuda.is_available():
        return
    torch.backends.cuda.enable_cudnn_sdp(False)
    if choice == "math":
        torch.backends.cuda.enable_flash_sdp(False)
        torch.backends.cuda.enable_mem_efficient_sdp(False)
