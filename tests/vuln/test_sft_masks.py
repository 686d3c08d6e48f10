"""Left padding without empty attention rows: same answers for real tokens, finite gradients."""

from __future__ import annotations

import pytest
import torch

from breachlab.vuln.training.sft import Encoded, collate, forward_loss, left_pad_masks
from tests.vuln.tiny import make_model_dir


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


def test_packed_row_gives_each_example_its_own_loss_and_gradients(tiny) -> None:
    """Padding-free packing: one row, segment masks, restarted positions, logits only on answers."""
    from breachlab.vuln.training.sft import collate_packed, forward_eval, segment_masks

    cpu = torch.device("cpu")
    examples = [Encoded(list(range(10, 50)), 30), Encoded(list(range(60, 72)), 8), Encoded(list(range(80, 99)), 15)]
    packed = collate_packed(examples, pad_id=0, multiple=16)
    assert packed["input_ids"].shape == (1, 80) and packed["n_tokens"] == 71
    assert packed["n_supervised"] == sum(e.n_answer for e in examples)
    assert packed["position_ids"][0, 40].item() == 0 and packed["segments"][0, 75].item() == -1
    masks = segment_masks(tiny, packed["segments"], torch.float32)
    allowed = masks["full_attention"][0, 0] == 0
    assert not allowed[45, :40].any(), "the second example never sees the first"
    assert allowed[45, 40:46].all() and not allowed[45, 46:].any()

    padded = collate(examples, pad_id=0)
    tiny.zero_grad(set_to_none=True)
    loss_p, n_p = forward_loss(tiny, packed, cpu)
    loss_p.backward()
    grads_p = [p.grad.clone() for p in tiny.parameters() if p.grad is not None]
    tiny.zero_grad(set_to_none=True)
    loss_l, n_l = forward_loss(tiny, padded, cpu)
    loss_l.backward()
    grads_l = [p.grad.clone() for p in tiny.parameters() if p.grad is not None]
    tiny.zero_grad(set_to_none=True)
    assert n_p == n_l
    assert float(loss_p) == pytest.approx(float(loss_l), rel=1e-4)
    assert len(grads_p) == len(grads_l)
    for a, b in zip(grads_p, grads_l):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)
    verdicts = tuple(sorted({e.ids[e.n_prompt] for e in examples}))[:2]
    with torch.no_grad():
        ev_p = forward_eval(tiny, packed, cpu, verdicts)
        ev_l = forward_eval(tiny, padded, cpu, verdicts)
    assert ev_p[1] == ev_l[1] and ev_p[3] == ev_l[3]
    assert ev_p[0] == pytest.approx(ev_l[0], rel=1e-4) and ev_p[2] == pytest.approx(ev_l[2], rel=1e-4)


def test_packed_masks_respect_the_sliding_window(tiny) -> None:
    from breachlab.vuln.training.sft import segment_masks

    window = tiny.config.sliding_window
    segments = torch.zeros((1, window + 6), dtype=torch.long)
    masks = segment_masks(tiny, segments, torch.float32)
    assert masks["sliding_attention"] is not masks["full_attention"]
    slide = masks["sliding_attention"][0, 0] == 0
    assert not slide[window + 5, 0] and slide[window + 5, 6]
    assert (masks["full_attention"][0, 0] == 0)[window + 5, 0]
