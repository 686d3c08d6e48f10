"""A pair-aware objective: the vulnerable half of a pair must outscore its fix.

Why: cross-entropy on each function's verdict alone lets a model score both halves of a
vulnerable/fixed pair alike (issue 14: 2 of 60 real pairs both right).  What a user needs
is the *difference*: the vulnerable function above the patched one.  This module holds
the pure pieces of that objective, with no trainer state, so the trainer wires it in a
few lines and the tests check it against hand-computed numbers:

* :func:`pair_batches` — batches in which both halves of a pair always sit together;
* :func:`pair_index` — which examples of one batch form a pair;
* :func:`first_answer_positions` — where the logit that predicts the verdict sits;
* :func:`verdict_token_pair` — which token starts VULNERABLE and which SAFE;
* :func:`verdict_margin` — the verdict score s = logit[VULNERABLE] − logit[SAFE];
* :func:`pair_margin_loss` / :func:`combined_loss` — softplus(margin − (s_vuln − s_fixed)),
  averaged over the batch's complete pairs, added to the token cross-entropy.

Torch is imported inside the functions that need it: only the training code imports this.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

IGNORE = -100  # the label of positions without a loss (sft.IGNORE; kept local: no upward import)


def pair_batches(pair_ids: Sequence[str | None], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Index batches where both halves of every pair land in the same batch.

    The margin loss compares the two halves of a pair, so they must meet in one forward
    pass.  A pair id seen exactly twice is a pair (two slots); every other sample — no pair
    id, a half whose partner was filtered out, or an id seen more than twice (a data error
    we do not guess around) — is a single.

    The number of batches is the fewest that fit: max(⌈samples / batch_size⌉,
    ⌈pairs / ⌊batch_size / 2⌋⌉) — with an odd ``batch_size`` a batch holds at most
    ⌊batch_size / 2⌋ pairs, and singles fill the odd slot.  Pairs are dealt evenly over
    the batches, then singles fill the room left, evenly too, so every batch mixes both
    kinds where the counts allow (a batch of singles only would carry no pair signal).
    Pairs, singles, the order inside each batch and the order of the batches are shuffled
    by one generator seeded with (seed, epoch), like ``sft.grouped_batches``, which is what
    lets ``--resume`` replay an epoch.

    Args:
        pair_ids: one entry per training sample (``Sample.pair_id``), None when unpaired.
        batch_size: most samples per batch; at least 2 when any pair exists.
        seed: run seed.
        epoch: epoch number; each epoch gets its own order.

    Returns:
        Lists of sample indices; every index appears exactly once, each list has between 1
        and ``batch_size`` entries and the two halves of a pair sit next to each other.

    Raises:
        ValueError: ``batch_size`` < 1, or < 2 while a pair exists.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    members: dict[str, list[int]] = {}
    for i, pid in enumerate(pair_ids):
        if pid is not None:
            members.setdefault(pid, []).append(i)
    pairs = [m for m in members.values() if len(m) == 2]
    singles = [i for i, pid in enumerate(pair_ids) if pid is None or len(members[pid]) != 2]
    if pairs and batch_size < 2:
        raise ValueError("batch_size must be >= 2 to hold both halves of a pair")
    if not pairs and not singles:
        return []
    rng = random.Random(f"pairs:{seed}:{epoch}")
    rng.shuffle(pairs)
    rng.shuffle(singles)
    n_batches = -(-(2 * len(pairs) + len(singles)) // batch_size)
    if pairs:
        n_batches = max(n_batches, -(-len(pairs) // (batch_size // 2)))
    # deal pairs: the first len(pairs) % n_batches batches get one more
    base, extra = divmod(len(pairs), n_batches)
    counts = [base + (b < extra) for b in range(n_batches)]
    units: list[list[list[int]]] = []
    at = 0
    for c in counts:
        units.append(pairs[at:at + c])
        at += c
    # fill the room left with singles: smallest room first, each an even share of the rest
    # (the share never exceeds what later, roomier batches can take, so all singles fit)
    rest = len(singles)
    at = 0
    for k, b in enumerate(sorted(range(n_batches), key=lambda b: counts[b])[::-1]):
        room = batch_size - 2 * counts[b]
        take = min(room, -(-rest // (n_batches - k)))
        units[b].extend([i] for i in singles[at:at + take])
        at += take
        rest -= take
    batches = []
    for group in units:
        rng.shuffle(group)
        if group:
            batches.append([i for unit in group for i in unit])
    rng.shuffle(batches)
    return batches


def pair_index(pair_ids: Sequence[str | None]) -> Any:
    """Each example's pair number within one batch, or -1 when its partner is not there.

    Args:
        pair_ids: the ``pair_id`` of each example of the batch, in batch order.

    Returns:
        A long tensor (B,): ids seen exactly twice get 0, 1, ... in order of first
        appearance; everything else gets -1 (and is left out of the margin loss).
    """
    import torch

    counts: dict[str, int] = {}
    for pid in pair_ids:
        if pid is not None:
            counts[pid] = counts.get(pid, 0) + 1
    number: dict[str, int] = {}
    out = []
    for pid in pair_ids:
        if pid is not None and counts[pid] == 2:
            out.append(number.setdefault(pid, len(number)))
        else:
            out.append(-1)
    return torch.tensor(out, dtype=torch.long)


def first_answer_positions(labels: Any, segments: Any = None, shifted: bool = True,
                           ignore_index: int = IGNORE) -> Any:
    """Per example, the position of the logit that predicts the verdict's first token.

    Answers start with the verdict (``prompts.training_target``), and every position
    outside the answer carries ``ignore_index``, so the verdict is an example's first
    supervised label.  Two layouts:

    * padded: ``labels`` (B, T), one example per row, ``segments`` None; returns the
      column in each row.  For ``sft.collate``'s ``targets`` (B, K-1) this equals the
      batch's ``first``.
    * packed: ``labels`` and ``segments`` of one shape ((1, T) or (N,)), ``segments``
      giving each position's example (-1: padding); returns, for examples 0..S-1, the
      index into the flattened row.  For ``sft.collate_packed`` pass ``targets`` with
      ``segments[0, keep]``: the result equals the batch's ``first`` (rows of the kept
      logits).

    Args:
        labels: integer tensor of target ids, ``ignore_index`` where there is no loss.
        segments: example id of every position (packed layout), or None (padded).
        shifted: True when ``labels[t]`` is the token the logit at ``t`` predicts (the
            trainer's layout); False for Hugging Face ``labels`` aligned with
            ``input_ids`` (the model shifts them), where the predicting logit is at t-1.
        ignore_index: the label of unsupervised positions.

    Returns:
        A long tensor with one position per example, in example order; -1 for an
        example with no supervised label.
    """
    import torch

    offset = 0 if shifted else 1
    supervised = labels != ignore_index
    if segments is None:
        if labels.dim() != 2:
            raise ValueError(f"padded labels must be (B, T), got shape {tuple(labels.shape)}")
        t = labels.shape[1]
        index = torch.arange(t, device=labels.device).expand_as(labels)
        first = torch.where(supervised, index, torch.full_like(index, t)).min(dim=1).values
        return torch.where(first < t, first - offset, torch.full_like(first, -1))
    if segments.shape != labels.shape:
        raise ValueError(f"segments {tuple(segments.shape)} must match labels {tuple(labels.shape)}")
    flat_sup = supervised.reshape(-1)
    flat_seg = segments.reshape(-1)
    n = flat_seg.numel()
    n_examples = int(flat_seg.max()) + 1 if n else 0
    index = torch.arange(n, device=labels.device)
    hit = (flat_seg.unsqueeze(0) == torch.arange(n_examples, device=labels.device).unsqueeze(1)) & flat_sup
    first = torch.where(hit, index.expand_as(hit), torch.full_like(hit, n, dtype=torch.long)).min(dim=1).values
    return torch.where(first < n, first - offset, torch.full_like(first, -1))


def verdict_token_pair(first_tokens: Sequence[int], labels: Sequence[int]) -> tuple[int, int]:
    """(VULNERABLE's first token, SAFE's first token), read from the encoded training answers.

    Why read them from the data: the verdict words are tokenised by whatever tokenizer the
    model brings, and ``sft.verdict_token_ids`` only returns the two ids sorted, not which
    is which.  If both verdicts began with the same token the margin would be identically
    zero and the pair term would teach nothing, so that is an error, not a silent no-op.

    Args:
        first_tokens: each training example's first answer token
            (``e.ids[e.n_prompt]`` of ``sft.Encoded``).
        labels: each example's label, 1 = vulnerable, 0 = safe.

    Returns:
        (pos_token_id, neg_token_id) for :func:`verdict_margin`.

    Raises:
        ValueError: a class is missing, a class starts with more than one token, or both
            classes start with the same token.
    """
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for tok, label in zip(first_tokens, labels):
        seen[int(label)].add(int(tok))
    if len(seen[1]) != 1 or len(seen[0]) != 1:
        raise ValueError(f"each verdict must start with one token; vulnerable: {sorted(seen[1])}, "
                         f"safe: {sorted(seen[0])}")
    (pos,), (neg,) = seen[1], seen[0]
    if pos == neg:
        raise ValueError(f"both verdicts start with token {pos}: the verdict margin would always be 0")
    return pos, neg


def verdict_margin(answer_logits_at_verdict: Any, pos_token_id: int, neg_token_id: int) -> Any:
    """Per-example verdict score s = logit[VULNERABLE's first token] − logit[SAFE's].

    Why the raw logit difference: log-softmax subtracts the same log-sum-exp from every
    entry of a row, so log p(VULN) − log p(SAFE) equals the logit difference; computing it
    from the logits skips the softmax over the whole vocabulary and is exactly the score
    evaluation ranks by.

    Args:
        answer_logits_at_verdict: (B, V) logits at the position predicting the verdict.
        pos_token_id: first token of the VULNERABLE verdict.
        neg_token_id: first token of the SAFE verdict.

    Returns:
        A float tensor (B,).
    """
    logits = answer_logits_at_verdict.float()
    return logits[:, pos_token_id] - logits[:, neg_token_id]


def pair_margin_loss(scores: Any, labels: Any, pair_index: Any, margin: float = 1.0) -> Any:
    """Mean over the batch's complete pairs of softplus(margin − (s_vulnerable − s_fixed)).

    A softplus (smooth hinge, the logistic ranking loss) rather than a hard hinge: pairs
    already ranked by more than the margin still give a small push, and the gradient never
    switches off abruptly.  A pair counts when its number appears on exactly one
    vulnerable (label 1) and one safe (label 0) example; anything else is ignored.  Without
    a complete pair the loss is a zero that still depends on ``scores``, so ``backward``
    works the same on every batch (and DDP ranks stay in step).  No host sync is needed.

    Args:
        scores: (B,) verdict scores (:func:`verdict_margin`).
        labels: (B,) 1 = vulnerable, 0 = safe.
        pair_index: (B,) pair number within the batch (< B), -1 for unpaired examples.
        margin: how far the vulnerable half should be above its fix, in logits.

    Returns:
        A scalar tensor.
    """
    import torch
    import torch.nn.functional as F

    b = scores.shape[0]
    device = scores.device
    labels = labels.to(device)
    pair_index = pair_index.to(device)
    paired = pair_index >= 0
    slot = torch.where(paired, pair_index, torch.zeros_like(pair_index))
    is_v = (paired & (labels == 1)).to(scores.dtype)
    is_f = (paired & (labels == 0)).to(scores.dtype)
    zeros = torch.zeros(b, dtype=scores.dtype, device=device)
    n_v = zeros.index_add(0, slot, is_v)
    n_f = zeros.index_add(0, slot, is_f)
    s_v = zeros.index_add(0, slot, scores * is_v)
    s_f = zeros.index_add(0, slot, scores * is_f)
    complete = ((n_v == 1) & (n_f == 1)).to(scores.dtype)
    per_pair = F.softplus(margin - (s_v - s_f))
    return (per_pair * complete).sum() / complete.sum().clamp(min=1.0)


def combined_loss(ce_loss: Any, scores: Any, labels: Any, pair_index: Any, weight: float,
                  margin: float) -> Any:
    """``ce_loss + weight · pair_margin_loss``: keep learning the answer text, add the ranking.

    Why keep the cross-entropy: it teaches the verdict words and the answer format the
    scorer and parser read; the margin alone would only order the two halves.

    Args:
        ce_loss: the (already normalised) cross-entropy term.
        scores, labels, pair_index, margin: as in :func:`pair_margin_loss`.
        weight: weight of the pair term (0 gives plain SFT).

    Returns:
        A scalar tensor.
    """
    return ce_loss + weight * pair_margin_loss(scores, labels, pair_index, margin)
