"""``vuln train``'s settings: :class:`TrainConfig`, one dataclass with help on every key.

The signature of a training run (``breachlab vuln config train`` lists it): YAML sets the
defaults, ``--set key=value`` overrides, unknown keys raise.  What the keys do is in
:mod:`breachlab.vuln.training.run`'s docstring and docs/benchmarks.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from breachlab.config import ConfigError, field
from breachlab.vuln.training.anatomy import DEFAULT_TARGETS


@dataclass
class TrainConfig:
    """One fine-tuning run (the original: Gemma 4 E4B, QLoRA r16, lr 2e-4, batch 8, seq 512, 1 epoch)."""

    model: str = field("embedded", help="a ladder name (embedded, qwen2.5-coder-0.5b, …: breachlab models list), "
                                        "a .gguf file, a transformers directory or hf:org/name")
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
    ple_store: Literal["ram", "disk"] = field(
        "ram", help="where that table is kept when ple_on_cpu is on: ram = process memory; disk = an unlinked "
                    "temporary file in $TMPDIR, each step's rows read from it (no process memory; the OS page "
                    "cache holds what was read and gives it back under pressure). Same rows, same losses")
    ple_pin_rows: Literal["auto", "on", "off"] = field(
        "auto", help="copy each step's per-layer rows through page-locked host memory (asynchronous; torch keeps "
                     "those blocks for the run) or pageable memory (the copy waits): auto = off with ple_store "
                     "disk, on with ram; on | off")
    slot_attention: Literal["auto", "wide", "all"] = field(
        "auto", help="with packing, which full-attention layers attend per example (a slot per example, "
                     "examples x L^2) instead of over the whole row's block-diagonal mask (T^2): wide = layers "
                     "whose heads fused kernels cannot take (Gemma 4); all = every one; auto = all on CUDA, "
                     "wide elsewhere")
    head_chunk: int = field(
        0, help="compute the LM head's logits and loss this many supervised positions at a time, each chunk "
                "recomputed in backward, so at most head_chunk x vocabulary logits exist at once; 0 = all at "
                "once. Same loss up to float32 summation order")
    cuda_graphs: Literal["auto", "on", "off"] = field(
        "auto", help="replay forward+backward from CUDA graphs (one per length bucket): auto = on for one "
                     "CUDA process with packing, LoRA/QLoRA, no dropout, compile off; on = required")
    cuda_graph_limit: int = field(
        4, help="with cuda_graphs: graphs captured one per length bucket up to this many; past it a batch of a "
                "new bucket replays the smallest captured graph that holds it (padded, same loss); a graph is "
                "captured only when none can. 0 = one graph per bucket")
    cuda_graph_plan: bool = field(
        False, help="with cuda_graphs and cuda_graph_limit N: choose the N graphs before the first step from every "
                    "batch of the run (the largest bucket first), so the whole run holds at most N graphs and their "
                    "host memory, at more padding than the limit alone (benchmarks/graph_buckets.py --plan counts it)")
    supervised_logits_only: bool = field(True, help="compute logits only on answer positions (false: all, slower)")
    gradient_checkpointing: bool = field(True, help="recompute activations in backward (less memory, slower)")
    activation_budget_gib: float = field(
        0.0, help="with gradient checkpointing: GPU memory (GiB) to spend keeping the activations of the "
                  "decoder layers that fit (the cheapest first, per row length, counted as vuln plan "
                  "counts them) instead of recomputing them; 0 = recompute every layer (least memory)")
    lora_float32: bool = field(False, help="run the LoRA matmuls in float32 as peft does (a float32 copy of "
                                           "every adapter's input, kept for backward); false = in the model's "
                                           "dtype, adapter weights still float32 (as bf16 autocast does)")
    compile: Literal["auto", "on", "off"] = field(
        "off", help="regional torch.compile: each decoder layer compiled (dynamic shapes), not the whole stack; "
                    "auto = on for CUDA, off on CPU; on works on CPU too (needs a C++ compiler); off")
    dtype: str = field("auto", help="weights dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    device: str = field("auto", help="auto | cpu | cuda (under accelerate launch each process takes its GPU)")
    threads: int | None = field(None, help="CPU threads for torch (default: torch's choice)")
    eval_every: int = field(50, help="validation loss every N optimizer steps (0 = only at the end)")
    patience: int = field(0, help="early stopping: stop after this many evaluations without improvement (0 = off)")
    min_delta: float = field(0.0, help="early stopping: an improvement must beat the best by more than this")
    select_on: Literal["loss", "verdict", "auc"] = field(
        "loss", help="validation number for the best checkpoint and early stopping: loss (mean answer-token NLL), "
                     "verdict (NLL of the verdict token alone, what logit scoring reads) or auc (ROC-AUC of the "
                     "verdict-logit gap, threshold-free)")
    save_every: int = field(50, help="checkpoint every N optimizer steps (0 = off); --resume loses at most this")
    keep_checkpoints: int = field(2, help="how many recent checkpoints to keep")
    log_every: int = field(10, help="log the training loss every N steps")
    report_to: Literal["none", "tensorboard", "mlflow"] = field("none", help="also log to TensorBoard or MLflow")
    seed: int = field(42, help="seed for initialisation, data order and dropout")
    objective: str = field("sft", help="loss of a micro-batch (breachlab.vuln.training.objectives): sft = mean "
                                       "token NLL of the answer (verdict, CWE, reason); pair_margin = sft plus a "
                                       "margin between the verdict scores of a vulnerable function and its fix, "
                                       "both halves of a pair in the same micro-batch (needs pair_id in the data)")
    pair_weight: float = field(1.0, help="pair_margin: weight of the pair term beside the token NLL")
    pair_margin: float = field(1.0, help="pair_margin: verdict-logit gap wanted between a vulnerable function "
                                         "and its fix (softplus(margin - gap))")
    attn_implementation: Literal["auto", "sdpa", "eager"] = field(
        "auto", help="attention kernels of the model: auto = transformers' default (sdpa), eager = plain matmuls")
    sdpa_kernels: Literal["auto", "all", "no-cudnn", "math"] = field(
        "auto", help="which fused SDPA kernels PyTorch may pick on CUDA: auto = no-cudnn; all = PyTorch's choice "
                     "(cuDNN's kernel included, which trained Qwen2.5-Coder LoRA to NaN with the packed masks); "
                     "no-cudnn = flash / memory-efficient / math; math = the unfused reference kernel only")
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
                     "max_val_samples", "log_every", "keep_checkpoints", "head_chunk"):
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
        if self.fsdp and self.head_chunk:
            raise ConfigError("head_chunk runs the output projection outside the model's forward, where FSDP has "
                              "put its weight back in shards: use head_chunk: 0 with fsdp: true")
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
                              ("cuda_graphs", ("auto", "on", "off")), ("ple_pin_rows", ("auto", "on", "off"))):
            value = getattr(self, name)
            if isinstance(value, bool):  # YAML's on/off arrive as booleans
                value = ("liger" if name == "kernels" else "on") if value else "off"
                setattr(self, name, value)
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.slot_attention not in ("auto", "wide", "all"):
            raise ConfigError(f"slot_attention must be auto, wide or all; got {self.slot_attention!r}")
        if self.ple_store not in ("ram", "disk"):
            raise ConfigError(f"ple_store must be ram or disk; got {self.ple_store!r}")
        for name, allowed in (("attn_implementation", ("auto", "sdpa", "eager")),
                              ("sdpa_kernels", ("auto", "all", "no-cudnn", "math"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if isinstance(self.cuda_graph_limit, bool) or not isinstance(self.cuda_graph_limit, int) \
                or self.cuda_graph_limit < 0:
            raise ConfigError(f"cuda_graph_limit must be a whole number >= 0; got {self.cuda_graph_limit!r}")
        if self.cuda_graph_plan and not self.cuda_graph_limit:
            raise ConfigError("cuda_graph_plan needs cuda_graph_limit > 0: the number of graphs to plan")
        if self.pair_weight < 0 or self.pair_margin < 0:
            raise ConfigError("pair_weight and pair_margin must be >= 0")
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
        if self.objective != "sft":
            return "objective: sft (other objectives read the batch's pairs in Python)"
        return None

    def wants_graphs(self, device: str, processes: int = 1) -> bool:
        return self.cuda_graphs != "off" and self.graphs_blocker(device, processes) is None

