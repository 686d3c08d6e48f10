"""Left padding without empty attention rows: same answers for real tokens, finite gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from breachlab.vuln.sft import Encoded, collate, forward_loss, left_pad_masks
from tests.vuln.tiny_lm import make_model_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM

    path = make_model_dir(tmp_path_factory.mktemp("tiny") / "m")
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa")


def test_no_query_row_is_empty_and_pads_are_invisible(tiny) -> None:
    mask2d = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    masks = left_pad_masks(tiny, mask2d, torch.float32)
    assert set(masks) == {"full_attention", "sliding_attention"}
    m = masks["full_attention"]
    allowed = m == 0
    assert allowed.any(-1).all(), "every query attends to at least one key"
    assert not allowed[0, 0, 2:, :2].any(), "real queries never see pad keys"
    assert allowed[0, 0, 4, 2:].all() and not allowed[0, 0, 2, 3], "causal over real tokens"


def test_padded_batch_matches_unpadded_and_grads_are_finite(tiny) -> None:
    torch.manual_seed(0)
    long = Encoded(list(range(10, 50)), 30)
    short = Encoded(list(range(60, 72)), 8)  # shorter than the kept window → pad logits exist
    batch = collate([long, short], pad_id=0)
    loss_sum, n = forward_loss(tiny, batch, torch.device("cpu"))
    alone = [forward_loss(tiny, collate([e], pad_id=0), torch.device("cpu"))[0] for e in (long, short)]
    assert float(loss_sum) == pytest.approx(float(sum(alone)), rel=1e-4)
    loss_sum.backward()
    grads = [p.grad for p in tiny.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    tiny.zero_grad(set_to_none=True)
