"""Validation during training: loss, verdict-token NLL and verdict accuracy, over all processes.

Each process takes a shard of the validation set (sorted by length, so batches pad little)
and the sums are reduced, so the numbers equal one process on the whole set; under FSDP
every process runs as many forwards as the busiest one (each gathers parameters from all).
"""

from __future__ import annotations

from typing import Any

from breachlab.vuln.training import sft
from breachlab.vuln.training.setup import Parts


def max_over_ranks(value: int, device: Any) -> int:
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def evaluate(acc: Any, parts: Parts, batch_size: int) -> dict[str, float | None]:
    """Validation numbers (each process a shard): ``loss`` (mean answer-token NLL),
    ``verdict_nll`` (mean NLL of the verdict token, what logit scoring reads) and
    ``verdict_acc`` (true verdict token outscores the other; None without two of them)."""
    import torch

    # The model inside DDP: no collective per forward (DDP's first forward after a step
    # broadcasts buffers), so shards with unequal batch counts, or none, cannot hang.
    model = acc.unwrap_model(parts.model)
    device = acc.device
    val_enc, pad_id, verdict_ids = parts.val_enc, parts.pad_id, parts.verdict_ids
    parts.model.eval()
    order = sorted(range(len(val_enc)), key=lambda i: len(val_enc[i].ids))
    mine = order[acc.process_index :: acc.num_processes]
    tot = torch.zeros(5, dtype=torch.float64, device=device)
    batches = [mine[s : s + batch_size] for s in range(0, len(mine), batch_size)]
    extra = 0
    if parts.fsdp:  # each forward gathers parameters from every process: all run as many
        extra = max_over_ranks(len(batches), device) - len(batches)
    with torch.no_grad():
        for idx in batches:
            chunk = [val_enc[i] for i in idx]
            loss_sum, n, v_nll, right = sft.forward_eval(model, sft.collate(chunk, pad_id), device, verdict_ids)
            tot += torch.tensor([loss_sum, n, v_nll, right, len(chunk)], dtype=torch.float64, device=device)
        for _ in range(extra):  # a forward whose numbers are not counted
            sft.forward_eval(model, sft.collate(val_enc[:1], pad_id), device, verdict_ids)
    tot = acc.reduce(tot, reduction="sum") if acc.num_processes > 1 else tot
    parts.model.train()
    loss, n, v_nll, right, count = (float(x) for x in tot)
    return {"loss": loss / max(1.0, n), "verdict_nll": v_nll / max(1.0, count),
            "verdict_acc": right / max(1.0, count) if len(verdict_ids) == 2 else None}
