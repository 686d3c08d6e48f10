"""The token batches every arm trains on, the same ones in the same order.

Gemma shapes: the real (prompt, answer) token counts of the Juliet + SVEN training set
through the real training template, with random ids (the model is random too).  Qwen
shapes: the real token ids of PairVul + Juliet training samples rendered for
Qwen2.5-Coder by the trainer's own encoder (``benchmarks/make_train_tokens.py`` wrote them),
so on real weights the loss curves mean something.  ``tiny-qwen2`` folds those ids into its
small vocabulary.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data"
LENGTHS = DATA / "train_lengths_juliet_sven_512.json"
TOKENS = DATA / "train_tokens_pairvul_juliet_qwen.npz"


def load_tokens(path: Path = TOKENS) -> list[tuple[list[int], int]]:
    """The (ids, n_prompt) samples of a token file: ``ids`` int32 flattened, ``offsets`` (n+1,), ``n_prompt`` (n,)."""
    import numpy as np

    with np.load(path) as z:
        ids, offsets, n_prompt = z["ids"], z["offsets"], z["n_prompt"]
    if offsets[0] != 0 or offsets[-1] != len(ids) or len(offsets) != len(n_prompt) + 1:
        raise ValueError(f"{path}: offsets do not cover ids")
    out = []
    for i in range(len(n_prompt)):
        row = ids[offsets[i]:offsets[i + 1]].tolist()
        if not 0 < n_prompt[i] < len(row):
            raise ValueError(f"{path}: sample {i} has n_prompt {n_prompt[i]} of {len(row)} tokens")
        out.append((row, int(n_prompt[i])))
    return out


def make_examples(shape: str, n: int, vocab: int, seed: int) -> tuple[list[Any], str]:
    """``n`` examples (:class:`~breachlab.vuln.training.sft.Encoded`) and where they came from."""
    from breachlab.vuln.training.sft import Encoded

    rng = random.Random(seed)
    if shape in ("e4b", "270m"):
        lengths = json.loads(LENGTHS.read_text())["prompt_answer_tokens"]
        rng.shuffle(lengths)
        out = []
        for i in range(n):
            p, a = lengths[i % len(lengths)]
            ids = [2] + [rng.randrange(10, vocab) for _ in range(p + a - 1)]
            out.append(Encoded(ids, p))
        return out, f"{LENGTHS.name} (real lengths, random ids)"
    samples = load_tokens()
    rng.shuffle(samples)
    out = []
    for i in range(n):
        ids, p = samples[i % len(samples)]
        out.append(Encoded([t % vocab for t in ids] if max(ids) >= vocab else ids, p))
    folded = " folded into the vocabulary" if shape == "tiny-qwen2" else ""
    return out, f"{TOKENS.name} (real ids{folded})"
