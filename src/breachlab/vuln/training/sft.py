"""Supervised fine-tuning pieces that need no model: encoding, batching, the masked loss.

Why a lean loop instead of TRL's ``SFTTrainer``: the 262k-entry vocabulary projection is
most of the cost of a Gemma step on short answers.  Batches here are *left*-padded, so
every answer ends at the last position and ``logits_to_keep=K`` (K = longest answer + 1)
asks the model's own forward for logits only where the loss needs them — through DDP and
any architecture's softcapping, without reaching into submodules.  Prompt tokens, padding
and the last position carry label ``-100``: the loss is on the model turn only.

Batches are length-grouped (sorted inside shuffled mega-batches) so padding stays small;
the order is a pure function of (seed, epoch), which is what lets ``--resume`` replay it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

from breachlab.vuln.prompts import prompt_ids, training_example
from breachlab.vuln.sample import Sample
from breachlab.vuln.training.speed import headloss, patches

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    """One training example as token ids; the answer is ``ids[n_prompt:]``."""

    ids: list[int]
    n_prompt: int
    truncated: bool = False
    label: int = -1  # the sample's label (1 vulnerable, 0 safe); pair-aware objectives read it
    pair: str | None = None  # the sample's pair id (both halves of a vulnerable/fixed pair share it)

    @property
    def n_answer(self) -> int:
        return len(self.ids) - self.n_prompt


def chat_tokenizer(tok: Any) -> Any:
    """The tokenizer whose chat template prompts use, or None for Gemma turn markup."""
    return tok if getattr(tok, "chat_template", None) else None


def _ids(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def encode(tok: Any, sample: Sample, max_seq_len: int) -> Encoded:
    """Tokenise one sample as (prompt, answer); shorten the *code* when it does not fit.

    The answer (verdict, CWE, reason) is never cut; the code keeps its head.  Samples from
    the data layer are already shortened around the changed lines where that matters.
    """
    chat = chat_tokenizer(tok)

    def build(code: str) -> tuple[list[int], int]:
        prompt, answer = training_example(code, sample.label, sample.cwe, sample.lang, tokenizer=chat)
        p_ids = prompt_ids(tok, prompt)  # BOS exactly as scoring adds it (none after a chat template)
        a_ids = _ids(tok, answer)[: max(8, max_seq_len // 4)]
        return p_ids + a_ids, len(p_ids)

    who = {"label": int(sample.label), "pair": sample.pair_id}
    ids, n_prompt = build(sample.code)
    if len(ids) <= max_seq_len:
        return Encoded(ids, n_prompt, **who)
    lo, hi = 0, len(sample.code)  # longest code prefix (in characters) that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(build(sample.code[:mid])[0]) <= max_seq_len:
            lo = mid
        else:
            hi = mid - 1
    ids, n_prompt = build(sample.code[:lo])
    if len(ids) > max_seq_len:
        raise ValueError(f"sample {sample.id}: prompt alone exceeds max_seq_len={max_seq_len}")
    return Encoded(ids, n_prompt, truncated=True, **who)


def grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, mega: int = 64) -> list[list[int]]:
    """Index batches of similar length, in an order fixed by (seed, epoch).

    Shuffle, cut into mega-batches of ``batch_size * mega``, sort each by length, chunk,
    then shuffle the batches so long and short ones alternate across the epoch.
    """
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    span = batch_size * mega
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: -lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def plain_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(n))
    rng.shuffle(order)
    return [order[j : j + batch_size] for j in range(0, n, batch_size)]


def collate(examples: Sequence[Encoded], pad_id: int, supervised_only: bool = True) -> dict[str, Any]:
    """Left-pad a batch; targets cover only the positions whose logits are kept.

    Returns ``input_ids``, ``attention_mask``, ``position_ids`` (counting real tokens only,
    so padding never shifts RoPE), ``targets`` (B, K-1) and ``keep`` = K for
    ``logits_to_keep``.  With ``supervised_only=False`` K is the full width (every logit is
    computed; used to measure what the trick saves).
    """
    import torch

    width = max(len(e.ids) for e in examples)
    keep = (max(e.n_answer for e in examples) + 1) if supervised_only else width
    b = len(examples)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    targets = torch.full((b, keep - 1), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.ids)
        input_ids[i, width - n:] = torch.tensor(e.ids, dtype=torch.long)
        mask[i, width - n:] = 1
        # logit j sits at position width-keep+j and predicts the token after it
        for j in range(keep - 1):
            pos = width - keep + j + 1
            if pos >= width - e.n_answer:
                targets[i, j] = e.ids[pos - (width - n)]
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    # column of each example's first answer target: the verdict token (answers start with it)
    first = torch.tensor([keep - 1 - e.n_answer for e in examples], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids,
            "targets": targets, "keep": keep, "first": first, "n_tokens": int(mask.sum()),
            "n_supervised": int((targets != IGNORE).sum()), **_who(examples)}


def _who(examples: Sequence[Encoded]) -> dict[str, Any]:
    """Each example's label and pair id, in batch order (what pair-aware objectives read)."""
    import torch

    return {"labels": torch.tensor([e.label for e in examples], dtype=torch.long),
            "pairs": [e.pair for e in examples]}


def collate_packed(examples: Sequence[Encoded], pad_id: int, multiple: int = 64,
                   slot_multiple: int | None = 64, width: int | None = None,
                   slot_shape: tuple[int, int] | None = None) -> dict[str, Any]:
    """Padding-free batch: the examples end to end in ONE row, each attending only to itself.

    ``segments`` (1, T) says which example each position belongs to (-1: the few pad
    positions that round T up to a multiple of ``multiple``, so lengths repeat and the CUDA
    allocator reuses blocks); ``position_ids`` restart at 0 for every example, so RoPE sees
    what it sees in a padded batch; ``keep`` is the 1-D tensor of positions whose logits the
    loss needs (each answer token's predecessor), passed to the model as ``logits_to_keep``.
    With :func:`segment_masks` the result for every example equals a batch of its own: the
    same loss as a padded batch, with no compute spent on padding.

    ``slots`` / ``inverse`` / ``slot_shape`` (unless ``slot_multiple`` is None, and only when
    it is less work): the layout :func:`breachlab.vuln.training.speed.patches.packed_attention_forward` uses
    for layers no fused kernel serves (Gemma 4's 512-wide full-attention heads): each
    example in a slot of L positions (L = longest, rounded up to ``slot_multiple``), so
    attention costs examples × L² instead of T² for the whole row.

    ``width`` / ``slot_shape`` force a larger layout than the examples need (a CUDA graph
    captured for a bigger bucket replaying this batch): the row padded to ``width``
    positions; with ``slot_shape`` (S, L) the slot layout in S slots of L positions whatever
    it costs (the slots past the examples empty), without it none when ``width`` is given.
    """
    import torch

    total = sum(len(e.ids) for e in examples)
    natural = -(-total // multiple) * multiple if multiple > 1 else total
    if width is not None and width < total:
        raise ValueError(f"width {width} is shorter than the batch's {total} tokens")
    forced = width is not None
    width = natural if width is None else width
    input_ids = torch.full((1, width), pad_id, dtype=torch.long)
    segments = torch.full((1, width), -1, dtype=torch.long)
    position_ids = torch.zeros((1, width), dtype=torch.long)
    keep: list[int] = []
    targets: list[int] = []
    first: list[int] = []
    start = 0
    for i, e in enumerate(examples):
        n = len(e.ids)
        input_ids[0, start:start + n] = torch.tensor(e.ids, dtype=torch.long)
        segments[0, start:start + n] = i
        position_ids[0, start:start + n] = torch.arange(n)
        first.append(len(keep))
        for pos in range(e.n_prompt, n):  # logit at pos-1 predicts token pos
            keep.append(start + pos - 1)
            targets.append(e.ids[pos])
        start += n
    if width > start:  # pad positions count from 0 like a short example of their own
        position_ids[0, start:] = torch.arange(width - start)
    out = {"input_ids": input_ids, "segments": segments, "position_ids": position_ids,
           "keep": torch.tensor(keep, dtype=torch.long), "targets": torch.tensor(targets, dtype=torch.long),
           "first": torch.tensor(first, dtype=torch.long), "n_tokens": total, "n_supervised": len(targets),
           "n_examples": len(examples), **_who(examples)}
    lengths = [len(e.ids) for e in examples]
    if slot_shape is not None:
        n, slot = slot_shape
        if n < len(lengths) or slot < max(lengths, default=0):
            raise ValueError(f"slot shape {tuple(slot_shape)} cannot hold {len(lengths)} examples of up to "
                             f"{max(lengths, default=0)} tokens")
        out.update(slot_layout(lengths + [0] * (n - len(lengths)), slot, width))
    elif slot_multiple and examples and not forced:
        slot = -(-max(lengths) // slot_multiple) * slot_multiple
        if len(examples) * slot * slot < width * width:
            out.update(slot_layout(lengths, slot, width))
    return out


def slot_layout(lengths: Sequence[int], slot: int, width: int) -> dict[str, Any]:
    """Where each example of a packed row sits in a (examples, slot) grid: ``slots`` (S·L,)
    the row position of every grid cell (empty cells: 0), ``inverse`` (T,) the grid cell of
    every row position (pad positions: cell 0; their output is never read).  No mask: each
    example fills its slot from the start, so a plain causal mask over the slot keeps every
    real query to its own example's earlier tokens (the empty cells come after them)."""
    import torch

    n = len(lengths)
    slots = torch.zeros((n, slot), dtype=torch.long)
    inverse = torch.zeros((width,), dtype=torch.long)
    start = 0
    for i, length in enumerate(lengths):
        slots[i, :length] = torch.arange(start, start + length)
        inverse[start:start + length] = torch.arange(i * slot, i * slot + length)
        start += length
    return {"slots": slots.reshape(-1), "inverse": inverse, "slot_shape": (n, slot)}


def segment_masks(model: Any, segments: Any, dtype: Any, longest: int | None = None) -> Any:
    """Additive 4D attention masks from segment ids (B, T); -1 marks padding.

    A query attends to earlier keys of its own segment, inside the model's causal and
    sliding-window limits, never to padding; every query may attend to itself, so no row
    is empty.  (With left padding the pad positions come first, and a pad *query* may
    otherwise attend to nothing at all: fused SDPA kernels return finite zeros for such
    rows in the forward pass but NaN gradients in the backward pass on CUDA: the LoRA
    weights turned NaN after one step.)  A left-padded batch is one segment
    per row; a packed row (:func:`collate_packed`) holds many.  Returns one mask, or a
    mapping per layer type (``full_attention`` / ``sliding_attention``) for models that mix
    the two, which is the form Gemma 3/4 accept as ``attention_mask``.  ``longest``: the
    longest segment when the caller knows it (saves a device sync).
    """
    import torch

    cfg = getattr(model, "config", None)
    base = getattr(model, "get_base_model", None)
    cfg = base().config if callable(base) else cfg
    cfg = getattr(cfg, "text_config", None) or cfg
    b, w = segments.shape
    device = segments.device
    q = torch.arange(w, device=device).view(w, 1)
    k = torch.arange(w, device=device).view(1, w)
    eye = torch.eye(w, dtype=torch.bool, device=device).unsqueeze(0)
    same = (segments.unsqueeze(2) == segments.unsqueeze(1)) & (segments >= 0).unsqueeze(1)  # (B, Tq, Tk)

    def build(window: int | None) -> Any:
        allowed = k <= q
        if window:
            allowed = allowed & (k > q - window)
        allowed = (allowed.unsqueeze(0) & same) | eye
        mask = torch.zeros((b, 1, w, w), dtype=dtype, device=device)
        return mask.masked_fill_(~allowed.unsqueeze(1), torch.finfo(dtype).min)

    layer_types = set(getattr(cfg, "layer_types", None) or [])
    window = getattr(cfg, "sliding_window", None)
    if "sliding_attention" in layer_types and window:
        full = build(None)
        # the window never binds when no segment is longer than it
        if longest is None:
            real = segments[segments >= 0]
            longest = int(torch.bincount(real).max()) if real.numel() else 0
        return {"full_attention": full, "sliding_attention": full if longest <= window else build(window)}
    return build(None)


def row_masks(model: Any, segments: Any, dtype: Any, slots: bool, longest: int | None = None) -> Any:
    """A packed row's attention masks (:func:`segment_masks`), or, when its slot layout
    (``slots``) serves every layer (:func:`patches.row_mask_unused`), a (1, 1, 1, 1)
    placeholder instead of T² numbers nobody reads."""
    import torch

    if slots and patches.row_mask_unused(model):
        return torch.zeros((1, 1, 1, 1), dtype=dtype, device=segments.device)
    return segment_masks(model, segments, dtype, longest=longest)


def left_pad_masks(model: Any, attention_mask: Any, dtype: Any) -> Any:
    """:func:`segment_masks` for a left-padded batch (one segment per row, 0 = padding)."""
    return segment_masks(model, attention_mask.long() - 1, dtype, longest=int(attention_mask.sum(-1).max()))


def _answer_logits(model: Any, batch: dict[str, Any], device: Any, raw: bool = False) -> tuple[Any, Any, Any]:
    """One forward pass: (float logits (N, V) of the supervised positions, targets (N,),
    the row of each example's first answer target — its verdict token — in those N).
    ``raw``: the model's output as it comes (no float copy)."""
    import torch

    dtype = model.get_input_embeddings().weight.dtype
    if torch.is_autocast_enabled(torch.device(device).type):
        dtype = torch.get_autocast_dtype(torch.device(device).type)
    if "segments" in batch:  # packed row
        masks = batch["masks"] if "masks" in batch else row_masks(model, batch["segments"].to(device), dtype,
                                                                   "slots" in batch)
        patches.set_slot_layout(model, batch, device)  # stays set for the recomputation in backward
        keep = batch["keep"].to(device)
        # KV-shared layers (Gemma 4), when hooked, run only at these positions: what comes out is them
        at_answers = patches.set_kept_positions(model, keep)
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=masks,
                    position_ids=batch["position_ids"].to(device), logits_to_keep=0 if at_answers else keep,
                    use_cache=False)
        logits = out.logits[0] if raw else out.logits[0].float()
        return logits, batch["targets"].to(device), batch["first"].to(device)
    patches.set_slot_layout(model, None)
    patches.set_kept_positions(model, None)
    mask2d = batch["attention_mask"].to(device)
    attention_mask = left_pad_masks(model, mask2d, dtype) if bool((mask2d == 0).any()) else mask2d
    out = model(input_ids=batch["input_ids"].to(device), attention_mask=attention_mask,
                position_ids=batch["position_ids"].to(device), logits_to_keep=batch["keep"], use_cache=False)
    logits = out.logits[:, :-1, :].float()
    b, k1, v = logits.shape
    first = torch.arange(b, device=logits.device) * k1 + batch["first"].to(logits.device)
    return logits.reshape(b * k1, v), batch["targets"].to(device).reshape(-1), first


def forward_loss(model: Any, batch: dict[str, Any], device: Any) -> tuple[Any, int]:
    """(sum of token NLL over supervised positions, count); logits only where the loss needs them
    (and, with ``head_chunk``, only that many positions' at a time: :mod:`.headloss`)."""
    import torch.nn.functional as F

    chunk = patches.context(model).head_chunk
    if chunk and "segments" in batch and headloss.supported(model):
        with headloss.hidden_states_out(model) as (head, cap):
            hidden, targets, _ = _answer_logits(model, batch, device, raw=True)
        return headloss.chunked_loss(head, cap, hidden, targets, chunk, IGNORE), batch["n_supervised"]
    logits, targets, _ = _answer_logits(model, batch, device)
    loss_sum = F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")
    return loss_sum, batch["n_supervised"]


def verdict_token_ids(encoded: Sequence[Encoded]) -> tuple[int, ...]:
    """The distinct first answer tokens (the verdict tokens: one for VULNERABLE, one for SAFE)."""
    return tuple(sorted({e.ids[e.n_prompt] for e in encoded if e.n_answer}))


def forward_eval(model: Any, batch: dict[str, Any], device: Any,
                 verdict_ids: Sequence[int] = (), gaps: list | None = None) -> tuple[float, int, float, int]:
    """Validation numbers of one batch from one forward pass.

    Returns (answer-token NLL sum, answer tokens, verdict-token NLL sum, verdicts right).
    The verdict token is the first of the answer, the one logit scoring reads; "right" means
    the true verdict token outscores the other one of ``verdict_ids`` (needs exactly two).
    ``gaps``, when given (and two verdict ids), gets one ``(logit[ids[1]] - logit[ids[0]],
    true token is ids[1])`` per example: what a threshold-free validation AUC ranks.
    """
    import torch.nn.functional as F

    logits, targets, first = _answer_logits(model, batch, device)
    loss_sum = F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")
    v_logits = logits[first]  # (B, V)
    v_true = targets[first]
    v_nll = F.cross_entropy(v_logits, v_true, reduction="sum")
    right = 0
    if len(verdict_ids) == 2:
        pair = v_logits[:, list(verdict_ids)]  # (B, 2)
        truth = (v_true == verdict_ids[1]).long()
        right = int((pair.argmax(-1) == truth).sum())
        if gaps is not None:
            gaps.extend(zip((pair[:, 1] - pair[:, 0]).tolist(), truth.tolist()))
    return float(loss_sum), batch["n_supervised"], float(v_nll), right
