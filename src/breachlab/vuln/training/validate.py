"""Validation during training: loss, verdict-token NLL, verdict accuracy and verdict AUC, over all processes.

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


def rank_auc(scores: list[float], truths: list[int]) -> float | None:
    """ROC-AUC of ``scores`` for ``truths`` (Mann-Whitney, ties count half); None without both classes."""
    pos = sorted(s for s, t in zip(scores, truths) if t)
    neg = sorted(s for s, t in zip(scores, truths) if not t)
    if not pos or not neg:
        return None
    import bisect

    wins = sum(bisect.bisect_left(neg, p) + 0.5 * (bisect.bisect_right(neg, p) - bisect.bisect_left(neg, p))
               for p in pos)
    return wins / (len(pos) * len(neg))


def _gather_gaps(acc: Any, gaps: list[tuple[float, int]], device: Any) -> list[tuple[float, int]]:
    """Every process's (gap, truth) pairs on every process (padded to the longest shard)."""
    import torch

    if acc.num_processes == 1:
        return gaps
    longest = max_over_ranks(len(gaps), device)
    t = torch.full((longest, 2), float("nan"), dtype=torch.float64, device=device)
    if gaps:
        t[: len(gaps)] = torch.tensor(gaps, dtype=torch.float64, device=device)
    every = acc.gather(t)
    return [(float(g), int(y)) for g, y in every.tolist() if g == g]


def evaluate(acc: Any, parts: Parts, batch_size: int) -> dict[str, float | None]:
    """Validation numbers (each process a shard): ``loss`` (mean answer-token NLL),
    ``verdict_nll`` (mean NLL of the verdict token, what logit scoring reads),
    ``verdict_acc`` (true verdict token outscores the other; None without two of them) and
    ``verdict_auc`` (ROC-AUC of the verdict-logit gap over the validation set: threshold-free,
    what ``select_on: auc`` keeps the best checkpoint by)."""
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
    gaps: list[tuple[float, int]] = []
    if parts.fsdp:  # each forward gathers parameters from every process: all run as many
        extra = max_over_ranks(len(batches), device) - len(batches)
    with torch.no_grad():
        for idx in batches:
            chunk = [val_enc[i] for i in idx]
            loss_sum, n, v_nll, right = sft.forward_eval(model, sft.collate(chunk, pad_id), device, verdict_ids,
                                                         gaps=gaps)
            tot += torch.tensor([loss_sum, n, v_nll, right, len(chunk)], dtype=torch.float64, device=device)
        for _ in range(extra):  # a forward whose numbers are not counted
            sft.forward_eval(model, sft.collate(val_enc[:1], pad_id), device, verdict_ids)
    tot = acc.reduce(tot, reduction="sum") if acc.num_processes > 1 else tot
    parts.model.train()
    gaps = _gather_gaps(acc, gaps, device) if len(verdict_ids) == 2 else []
    loss, n, v_nll, right, count = (float(x) for x in tot)
    return {"loss": loss / max(1.0, n), "verdict_nll": v_nll / max(1.0, count),
            "verdict_acc": right / max(1.0, count) if len(verdict_ids) == 2 else None,
            "verdict_auc": rank_auc([g for g, _ in gaps], [y for _, y in gaps]) if gaps else None}
