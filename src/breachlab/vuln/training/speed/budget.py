"""``activation_budget_gib``: with memory to spare, some decoder layers keep their activations.

Gradient checkpointing recomputes every layer's forward in the backward pass (least memory,
slower).  With a budget, the layers that fit — the cheapest per row length first, at the
bytes per token ``vuln plan`` counts for each — keep their activations instead (what that
measured: docs/benchmarks.md, "Training speed").
"""

from __future__ import annotations

import logging
from typing import Any

from breachlab.vuln.training.anatomy import base as _base, decoder_layers, text_config
from breachlab.vuln.training.config import TrainConfig
from breachlab.vuln.training.speed.patches import SHARED_SLICE

log = logging.getLogger("breachlab.vuln.train")


def kept_layers(per_layer: list[float], tokens: list[int], budget_bytes: float) -> set[int]:
    """Which decoder layers keep their activations within ``budget_bytes``: layer i costs
    ``per_layer[i]`` bytes per token (``plan.saved_bytes_per_token``) times the ``tokens[i]``
    it runs at; the cheapest first, as many as fit.  Every layer costs about the same to
    recompute per token, so the cheapest buy the most recomputation per byte."""
    kept: set[int] = set()
    left = float(budget_bytes)
    for cost, i in sorted((c * n, i) for i, (c, n) in enumerate(zip(per_layer, tokens))):
        if cost > left:
            break
        kept.add(i)
        left -= cost
    return kept


class ActivationBudget:
    """Gradient checkpointing for only some decoder layers: with ``budget_bytes`` of memory
    to spare, the layers that fit (:func:`kept_layers`, per row length) keep their
    activations and are not recomputed in the backward pass; the rest are checkpointed.
    :meth:`apply` sets the layers' flags for a row before its forward pass (a CUDA graph
    takes them as they are when it is captured)."""

    def __init__(self, model: Any, per_layer: list[float], budget_bytes: float):
        self.layers = list(decoder_layers(model) or [])
        if len(self.layers) != len(per_layer):
            raise ValueError(f"{len(per_layer)} layer costs for {len(self.layers)} decoder layers")
        self.per_layer = list(per_layer)
        # layers that run at the answer positions only (use_shared_layers_at_answers)
        self.shared = int(getattr(_base(model), SHARED_SLICE, 0) or 0)
        self.budget = float(budget_bytes)
        self.kept: set[int] = set()

    def tokens(self, row: int, answers: int | None) -> list[int]:
        n = len(self.per_layer)
        shared = self.shared if answers is not None else 0
        return [row] * (n - shared) + [answers] * shared

    def apply(self, row: int, answers: int | None = None) -> int:
        """Set the flags for a row of ``row`` tokens with ``answers`` supervised positions."""
        self.kept = kept_layers(self.per_layer, self.tokens(row, answers), self.budget)
        for i, layer in enumerate(self.layers):
            layer.gradient_checkpointing = i not in self.kept
        return len(self.kept)


def from_config(model: Any, cfg: TrainConfig, announce: bool = True) -> ActivationBudget | None:
    """The budget ``cfg`` asks for: which layers skip their recomputation, from what the
    planner counts each layer keeps per token (a short CPU copy, a few seconds); None when
    there is none (no budget, or no gradient checkpointing to skip)."""
    if cfg.activation_budget_gib <= 0:
        return None
    if not cfg.gradient_checkpointing:
        log.warning("activation_budget_gib has no effect without gradient checkpointing (nothing is recomputed)")
        return None
    from breachlab.vuln.training.plan import saved_bytes_per_token

    dtype = str(model.get_input_embeddings().weight.dtype).removeprefix("torch.")
    counted = saved_bytes_per_token(text_config(model), "full" if cfg.method == "full" else "lora",
                                    cfg.lora_r, dtype, lora_float32=cfg.lora_float32)
    budget = ActivationBudget(model, counted["per_layer"], cfg.activation_budget_gib * 2**30)
    if announce:
        full_row = cfg.batch_size * cfg.max_seq_len
        log.info("activation budget %.1f GiB: at %d tokens (a full micro-batch) %d of %d layers keep their "
                 "activations; shorter rows keep more", cfg.activation_budget_gib, full_row,
                 budget.apply(full_row, full_row), len(budget.per_layer))
    return budget
