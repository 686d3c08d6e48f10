"""``breachlab vuln train --config configs/vuln/gemma3-270m-lora.yaml`` — fine-tune a classifier.

LoRA, QLoRA (bitsandbytes NF4 + double quantisation, GPU only) or full fine-tuning of a
causal LM on (prompt, answer) pairs from :mod:`breachlab.vuln.prompts`, loss on the model
turn only, logits only where the loss needs them (:mod:`breachlab.vuln.sft`).  The run
directory gets ``best/`` (lowest validation loss, or verdict-token NLL with ``select_on: verdict``) and ``final/`` weights, ``metrics.csv`` +
``curves.png``, ``checkpoints/`` every ``save_every`` steps and a manifest with trainable
parameters, peak memory and tokens/s.  ``--resume RUN_DIR`` continues after a crash or
``kill -9`` from the newest checkpoint, losing at most one interval.

Multi-GPU: the same command under ``accelerate launch`` (DDP).  LoRA adapters go on the
language model only: :func:`lora_targets` keeps vision/audio towers adapter-free.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from breachlab.config import ConfigError, field
from breachlab.errors import UserError

log = logging.getLogger("breachlab.vuln.train")

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Submodules that belong to other modalities; a safety net on top of the language-model prefix.
NON_TEXT_PARTS = ("vision", "audio", "multi_modal", "mm_", "embed_vision", "embed_audio", "image", "siglip")


@dataclass
class TrainConfig:
    """One fine-tuning run (the original: Gemma 4 E4B, QLoRA r16, lr 2e-4, batch 8, seq 512, 1 epoch)."""

    model: str = field("embedded", help="'embedded', a .gguf file, a transformers directory or a hub id")
    data: str = field("", help="data run directory (train.jsonl/val.jsonl) or a train .jsonl file")
    val_data: str | None = field(None, help="validation .jsonl (default: val.jsonl beside the training data)")
    sources: list[str] = field(default_factory=list,
                               help="train and validate only on these data sources (e.g. [juliet]); empty = all")
    method: Literal["lora", "qlora", "full"] = field("lora", help="lora | qlora (4-bit NF4 base, GPU) | full")
    lora_r: int = field(16, help="LoRA rank")
    lora_alpha: int = field(16, help="LoRA alpha (scale = alpha / r)")
    lora_dropout: float = field(0.0, help="dropout on the LoRA input")
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS),
                                      help="projection names that get adapters, language model only")
    lr: float = field(2e-4, help="peak learning rate (AdamW)")
    weight_decay: float = field(0.0, help="AdamW weight decay")
    warmup_steps: int = field(5, help="linear warm-up steps")
    schedule: Literal["linear", "cosine", "constant"] = field("linear", help="decay after warm-up")
    max_grad_norm: float = field(1.0, help="gradient clipping norm (0 = off)")
    batch_size: int = field(8, help="sequences per micro-batch per device")
    grad_accum: int = field(1, help="micro-batches per optimizer step")
    epochs: float = field(1.0, help="passes over the training data (fractions allowed)")
    max_steps: int = field(0, help="stop after this many optimizer steps (0 = from epochs)")
    max_seq_len: int = field(512, help="tokens per sequence; longer code is shortened, the answer never")
    max_train_samples: int = field(0, help="use at most this many training samples, class-balanced (0 = all)")
    max_val_samples: int = field(200, help="validation samples for the loss every eval_every steps (0 = all)")
    length_grouping: bool = field(True, help="batch sequences of similar length (less padding without packing)")
    packing: bool = field(True, help="padding-free micro-batches: the sequences end to end in one row, each "
                                     "attending only to itself (same loss as padding, no compute spent on pads)")
    kernels: Literal["auto", "liger", "off"] = field(
        "auto", help="fused Triton kernels for RMSNorm / gated MLP: auto = Liger when liger-kernel is "
                     "installed and the model is on CUDA; liger = required; off")
    ple_on_cpu: Literal["auto", "on", "off"] = field(
        "auto", help="keep Gemma 3n/4's per-layer embedding table (5.25 GiB for E4B) in CPU memory, rows "
                     "copied per step: auto = on for LoRA/QLoRA on CUDA when the model has one")
    cuda_graphs: Literal["auto", "on", "off"] = field(
        "auto", help="replay forward+backward from CUDA graphs (one per length bucket): auto = on for one "
                     "CUDA process with packing, LoRA/QLoRA, no dropout, compile off; on = required")
    supervised_logits_only: bool = field(True, help="compute logits only on answer positions (false: all, slower)")
    gradient_checkpointing: bool = field(True, help="recompute activations in backward (less memory, ~30% slower)")
    activation_budget_gib: float = field(
        0.0, help="with gradient checkpointing: GPU memory (GiB) to spend keeping the activations of the "
                  "decoder layers that fit (the cheapest first, per row length, counted as vuln plan "
                  "counts them) instead of recomputing them; 0 = recompute every layer (least memory)")
    lora_float32: bool = field(False, help="run the LoRA matmuls in float32 as peft does (a float32 copy of "
                                           "every adapter's input, kept for backward); false = in the model's "
                                           "dtype, adapter weights still float32 (as bf16 autocast does)")
    compile: Literal["auto", "on", "off"] = field(
        "off", help="regional torch.compile: each decoder layer compiled (dynamic shapes), not the whole stack; "
                    "auto = on for CUDA, off on CPU; on works on CPU too (needs a C++ compiler). Off by default: on "
                    "an H200 its compile time did not pay back within 24 steps (docs/benchmarks.md, run 7)")
    dtype: str = field("auto", help="weights dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    device: str = field("auto", help="auto | cpu | cuda (under accelerate launch each process takes its GPU)")
    threads: int | None = field(None, help="CPU threads for torch (default: torch's choice)")
    eval_every: int = field(50, help="validation loss every N optimizer steps (0 = only at the end)")
    patience: int = field(0, help="early stopping: stop after this many evaluations without improvement (0 = off)")
    min_delta: float = field(0.0, help="early stopping: an improvement must beat the best by more than this")
    select_on: Literal["loss", "verdict"] = field(
        "loss", help="validation number for the best checkpoint and early stopping: loss (mean answer-token NLL) "
                     "or verdict (NLL of the verdict token alone, what logit scoring reads)")
    save_every: int = field(50, help="checkpoint every N optimizer steps (0 = off); --resume loses at most this")
    keep_checkpoints: int = field(2, help="how many recent checkpoints to keep")
    log_every: int = field(10, help="log the training loss every N steps")
    report_to: Literal["none", "tensorboard", "mlflow"] = field("none", help="also log to TensorBoard or MLflow")
    seed: int = field(42, help="seed for initialisation, data order and dropout")
    allow_pickle: bool = field(False, help="allow pickled (.bin) base weights — only for checkpoints you trust")
    fsdp: bool = field(False, help="with several processes (torchrun / accelerate launch): shard parameters, "
                                   "gradients and optimizer state over them (PyTorch FSDP2, one unit per decoder "
                                   "layer) instead of DDP's full copy in each; LoRA or full, not QLoRA")
    backend: Literal["breachlab", "unsloth"] = field(
        "breachlab", help="who loads the model and attaches LoRA: breachlab (transformers + peft, with the speed "
                          "keys above) or unsloth (Unsloth's FastLanguageModel and its kernels and checkpointing, "
                          "when the optional unsloth package is installed; CUDA, one process; packing, graphs, "
                          "Liger and the per-layer table on the CPU are then off)")

    def __post_init__(self) -> None:
        positive = ("lora_r", "lora_alpha", "batch_size", "grad_accum", "max_seq_len")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "warmup_steps", "eval_every", "save_every", "patience", "max_train_samples",
                     "max_val_samples", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.backend == "unsloth":
            theirs = {"kernels": self.kernels == "liger", "ple_on_cpu": self.ple_on_cpu == "on",
                      "cuda_graphs": self.cuda_graphs == "on", "compile": self.compile == "on",
                      "activation_budget_gib": self.activation_budget_gib > 0, "device": self.device == "cpu",
                      "fsdp": self.fsdp}
            clash = [k for k, v in theirs.items() if v]
            if clash:
                raise ConfigError(f"backend: unsloth brings its own kernels and checkpointing and needs CUDA; "
                                  f"leave {', '.join(clash)} at their defaults (or use backend: breachlab)")
        if self.fsdp and self.method == "qlora":
            raise ConfigError("fsdp: true shards LoRA or full fine-tuning; QLoRA's 4-bit weights are not sharded here "
                              "(use DDP: fsdp: false)")
        if self.activation_budget_gib < 0:
            raise ConfigError(f"activation_budget_gib must be >= 0, got {self.activation_budget_gib}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.epochs <= 0 and self.max_steps == 0:
            raise ConfigError("set epochs > 0 or max_steps > 0")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.min_delta < 0:
            raise ConfigError("min_delta must be >= 0")
        if self.max_seq_len < 64:
            raise ConfigError("max_seq_len must be >= 64 (the prompt alone needs that)")
        if not self.target_modules:
            raise ConfigError("target_modules must name at least one projection")
        if self.dtype not in ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"):
            raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16; got {self.dtype!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda; got {self.device!r}")
        if isinstance(self.compile, bool):
            self.compile = "on" if self.compile else "off"
        if self.compile not in ("auto", "on", "off"):
            raise ConfigError(f"compile must be auto, on or off; got {self.compile!r}")
        for name, allowed in (("kernels", ("auto", "liger", "off")), ("ple_on_cpu", ("auto", "on", "off")),
                              ("cuda_graphs", ("auto", "on", "off"))):
            value = getattr(self, name)
            if isinstance(value, bool):  # YAML's on/off arrive as booleans
                value = ("liger" if name == "kernels" else "on") if value else "off"
                setattr(self, name, value)
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.cuda_graphs == "on":
            why = self.graphs_blocker()
            if why:
                raise ConfigError(f"cuda_graphs: on needs {why}")

    def graphs_blocker(self, device: str = "cuda", processes: int = 1) -> str | None:
        """Why CUDA graphs cannot replay this run's steps, or None when they can."""
        if not device.startswith("cuda"):
            return "a CUDA device"
        if self.backend != "breachlab":
            return "backend: breachlab"
        if processes > 1:
            return "one process (not DDP)"
        if not self.packing:
            return "packing: true"
        if self.method == "full":
            return "method lora or qlora"
        if self.lora_dropout:
            return "lora_dropout: 0 (a replay repeats the captured random numbers)"
        if self.compile != "off":
            return "compile: off"
        return None

    def wants_graphs(self, device: str, processes: int = 1) -> bool:
        return self.cuda_graphs != "off" and self.graphs_blocker(device, processes) is None


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------
def language_model_prefix(model: Any) -> str:
    """Qualified name of the text decoder inside ``model`` ('' when it is the whole model)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    if decoder is None:
        return ""
    for name, module in base.named_modules():
        if module is decoder:
            return name
    return ""


def lora_targets(model: Any, names: list[str] = DEFAULT_TARGETS) -> list[str]:
    """Full names of the linear layers that get adapters: the named projections of the
    language model, never of a vision or audio tower."""
    import torch.nn as nn

    prefix = language_model_prefix(model)
    out = []
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf not in names or not isinstance(module, nn.Linear) and "Linear" not in type(module).__name__:
            continue
        if prefix and not (name == prefix or name.startswith(prefix + ".")):
            continue
        if any(part in name.lower() for part in NON_TEXT_PARTS):
            continue
        out.append(name)
    return out


def count_params(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


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
    if cfg.method == "qlora":
        if not device.startswith("cuda"):
            raise UserError("QLoRA needs a CUDA GPU (bitsandbytes 4-bit); use method: lora on CPU")
        try:
            from transformers import BitsAndBytesConfig
            import bitsandbytes  # noqa: F401
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
        from breachlab.vuln.speed import lora_in_activation_dtype

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


def _load_unsloth(cfg: TrainConfig, device: str, location: str, dtype: Any) -> tuple[Any, Any]:
    """The same model, method and LoRA targets through Unsloth's ``FastLanguageModel``."""
    if not device.startswith("cuda"):
        raise UserError("backend: unsloth needs a CUDA GPU; use backend: breachlab")
    import_unsloth()
    from unsloth import FastLanguageModel

    ckpt = "unsloth" if cfg.gradient_checkpointing else False
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


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------
def _read(path: Path) -> list:
    try:
        from breachlab.vuln.data import load_split  # the data layer, when present
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


# ---------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------
def run(cfg: TrainConfig, *, out: str | Path | None = None, root: str | Path = "runs",
        resume: str | Path | None = None) -> Path:
    """Train and return the run directory (``resume``: continue that run from its newest checkpoint)."""
    from breachlab.config import from_dict
    from breachlab.rundir import RunDir

    from breachlab.vuln.trainloop import Trainer

    if resume is not None:
        run_dir = RunDir.open(resume)
        cfg = from_dict(TrainConfig, run_dir.config_dict(), where=str(run_dir / "config.yaml"))
    else:
        run_dir = None
    trainer = Trainer(cfg)
    if run_dir is None:
        if trainer.is_main:
            run_dir = RunDir.create("vuln train", cfg, root=root, out=out, seed=cfg.seed, inputs=trainer.inputs)
        run_dir = trainer.share_run_dir(run_dir)
    with run_dir.running() if trainer.is_main else _null():
        trainer.fit(run_dir, resume=resume is not None)
    if trainer.acc.num_processes > 1:  # NCCL/gloo: tear the process group down (torch warns otherwise)
        trainer.acc.end_training()
    return run_dir.path


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def resume(run_dir: str | Path) -> Path:
    """Continue a killed or crashed run from its newest checkpoint."""
    return run(TrainConfig(), resume=run_dir)
