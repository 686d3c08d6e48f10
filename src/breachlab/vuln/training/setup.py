"""The trainer's set-up: everything a run builds once before its first step.

The model with its adapters and speed patches (in the order they must come: the per-layer
table leaves before the model moves to the GPU, sharding before the optimizer), the encoded
data, the optimizer and its schedule, all in one :class:`Parts` that the step, validation
and saving read.  The accelerator (processes, device) is made by the trainer and passed in.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from breachlab.vuln.training import sft
from breachlab.vuln.training.anatomy import count_params
from breachlab.vuln.training.config import TrainConfig
from breachlab.vuln.training.load import load_for_training
from breachlab.vuln.training.speed import budget as budget_mod, patches, ple

log = logging.getLogger("breachlab.vuln.train")


@dataclass
class Parts:
    """What :func:`build` made: the prepared model (and, under DDP, the forward it trains
    through), optimizer, schedule, tokenizer, encoded data, and what was applied."""

    model: Any  # as accelerate prepared it (DDP wrapper with several processes)
    fwd: Any  # what the training forward calls: the model, or DDP's forward with the inner model's attributes
    opt: Any
    sched: Any
    tok: Any
    pad_id: int
    train_enc: list
    val_enc: list
    verdict_ids: tuple
    steps_per_epoch: int
    total_steps: int
    trainable: int
    total: int
    load_seconds: float
    ple_offloaded: int
    slots: str | None  # packed rows carry a slot layout: the resolved slot_attention (wide / all), else None
    shared_at_answers: int
    budget: budget_mod.ActivationBudget | None
    kernels: str | None
    fsdp: bool


def lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up, then linear / cosine decay to 0 at ``total_steps`` (or constant)."""

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.schedule == "constant":
            return 1.0
        frac = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        frac = min(max(frac, 0.0), 1.0)
        return 1.0 - frac if cfg.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * frac))

    return factor


def build(cfg: TrainConfig, acc: Any, train_samples: list, val_samples: list) -> Parts:
    """Load, patch, shard and prepare the model; encode the data; make optimizer and schedule."""
    import torch
    from transformers import set_seed

    set_seed(cfg.seed)
    device = acc.device
    is_main = acc.is_main_process
    t0 = time.perf_counter()
    model, tok = load_for_training(cfg, str(device))
    load_seconds = time.perf_counter() - t0
    trainable, total = count_params(model)
    pad = tok.pad_token_id
    pad_id = pad if pad is not None else 0
    train_enc = [sft.encode(tok, s, cfg.max_seq_len) for s in train_samples]
    val_enc = [sft.encode(tok, s, cfg.max_seq_len) for s in val_samples]
    verdict_ids = sft.verdict_token_ids(train_enc + val_enc)
    if cfg.select_on in ("verdict", "auc") and len(verdict_ids) != 2:
        raise ValueError(f"select_on={cfg.select_on} needs answers that start with one of two verdict tokens; "
                         f"found {len(verdict_ids)} distinct first answer tokens")
    cuda = device.type == "cuda"
    world = acc.num_processes
    per_epoch = len(train_enc) // (cfg.batch_size * cfg.grad_accum * world)
    if per_epoch == 0:
        per_epoch = 1
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
    ple_offloaded = 0
    ours = cfg.backend == "breachlab"  # unsloth brings its own kernels and checkpointing
    if ours and (cfg.ple_on_cpu == "on" or (cfg.ple_on_cpu == "auto" and cuda and cfg.method != "full")):
        # before .to(device): a table still in CPU memory never visits the GPU
        ple_offloaded = ple.offload_per_layer_embeddings(model, include_cpu=True, store=cfg.ple_store,
                                                         pin_rows=ple.resolve_pin_rows(cfg.ple_pin_rows, cfg.ple_store))
    if model.device.type != device.type and getattr(model, "hf_device_map", None) is None:
        model.to(device)
    # full-attention layers attending one slot per example: every one (slot_attention auto on CUDA, or all),
    # or the wide-head ones (Gemma 4; auto elsewhere, or wide)
    mode = patches.slot_mode(cfg.slot_attention, cuda)
    slots = mode if (ours and cfg.packing and patches.wants_slots(model, mode)
                     and patches.use_packed_attention(model, every_layer=mode == "all")) else None
    patches.context(model).head_chunk = cfg.head_chunk if ours and cfg.packing else 0  # headloss
    # Gemma 4's KV-shared layers only where the loss reads them (needs the packed row's masks)
    shared_at_answers = patches.use_shared_layers_at_answers(model) if ours and cfg.packing else 0
    # counted on a short CPU copy of the model
    budget = budget_mod.from_config(model, cfg, announce=is_main) if ours else None
    kernels = patches.fused_kernels(model, cfg.kernels) if ours else None
    if kernels and is_main:
        log.info("fused kernels: %s", kernels)
    fsdp = cfg.fsdp and world > 1
    if fsdp:  # before the optimizer: sharding replaces the parameters
        from breachlab.vuln.training import shard

        units = shard.shard_model(model)
        if is_main:
            log.info("FSDP: parameters, gradients and optimizer state sharded over %d processes (%d units)",
                     world, units)
    params = [p for p in model.parameters() if p.requires_grad]
    # one fused kernel for the whole update on CUDA instead of a multi-tensor loop
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cuda and not fsdp)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total_steps))
    if fsdp:  # the sharded model is its own wrapper: accelerate must not add DDP's
        prepared, opt = model, acc.prepare(opt)
    else:
        prepared, opt = acc.prepare(model, opt)
    inner = acc.unwrap_model(prepared)
    # Under DDP (2+ processes) forward through the wrapper (its gradient hooks) but let
    # sft.forward_loss read config / input embeddings of the model inside it.
    fwd = prepared if inner is prepared else _Forward(prepared, inner)
    return Parts(model=prepared, fwd=fwd, opt=opt, sched=sched, tok=tok, pad_id=pad_id, train_enc=train_enc,
                 val_enc=val_enc, verdict_ids=verdict_ids, steps_per_epoch=per_epoch, total_steps=total_steps,
                 trainable=trainable, total=total, load_seconds=load_seconds, ple_offloaded=ple_offloaded,
                 slots=slots, shared_at_answers=shared_at_answers, budget=budget, kernels=kernels,
                 fsdp=fsdp)


class _Forward:
    """Calls go to the DDP-wrapped model, attribute look-ups to the model it wraps."""

    def __init__(self, wrapped: Any, inner: Any):
        self._wrapped, self._inner = wrapped, inner

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
