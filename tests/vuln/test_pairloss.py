"""The pair-aware objective: hand-computed losses, gradient direction, pair-keeping batches,
and verdict positions on real ``sft.collate`` / ``collate_packed`` batches."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from breachlab.vuln.training.pairloss import (
    combined_loss,
    first_answer_positions,
    pair_batches,
    pair_index,
    pair_margin_loss,
    verdict_margin,
    verdict_token_pair,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# -- losses ------------------------------------------------------------------------------
def test_one_pair_by_hand() -> None:
    scores = torch.tensor([2.0, 0.0])
    loss = pair_margin_loss(scores, torch.tensor([1, 0]), torch.tensor([0, 0]), margin=1.0)
    assert float(loss) == pytest.approx(softplus(-1.0))  # 0.3133
    # order within the batch does not matter, the labels say which half is which
    swapped = pair_margin_loss(torch.tensor([0.0, 2.0]), torch.tensor([0, 1]), torch.tensor([0, 0]), margin=1.0)
    assert float(swapped) == pytest.approx(softplus(-1.0))
    # the wrong way round costs more: softplus(1 - (0 - 2)) = softplus(3)
    wrong = pair_margin_loss(torch.tensor([0.0, 2.0]), torch.tensor([1, 0]), torch.tensor([0, 0]), margin=1.0)
    assert float(wrong) == pytest.approx(softplus(3.0))


def test_mean_over_complete_pairs_only() -> None:
    # pair 0: s_v - s_f = 1 → softplus(0.5 - 1); pair 1: -1 → softplus(1.5);
    # index 4 unpaired, pair 2 has only one half here, pair 3 has two vulnerable halves
    scores = torch.tensor([3.0, 2.0, -1.0, 0.0, 9.0, 5.0, 7.0, 7.0])
    labels = torch.tensor([1, 0, 1, 0, 1, 0, 1, 1])
    index = torch.tensor([0, 0, 1, 1, -1, 2, 3, 3])
    loss = pair_margin_loss(scores, labels, index, margin=0.5)
    assert float(loss) == pytest.approx((softplus(-0.5) + softplus(1.5)) / 2)


def test_no_complete_pair_is_zero_with_grad() -> None:
    scores = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    loss = pair_margin_loss(scores, torch.tensor([1, 0, 1]), torch.tensor([-1, 0, -1]))
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(scores.grad, torch.zeros(3))


def test_gradient_pushes_vulnerable_up_and_fixed_down() -> None:
    scores = torch.tensor([0.2, 0.5, -0.3, 0.1], requires_grad=True)
    labels = torch.tensor([0, 1, 1, 0])
    index = torch.tensor([0, 0, 1, 1])
    before = pair_margin_loss(scores, labels, index)
    before.backward()
    with torch.no_grad():
        stepped = scores - 0.5 * scores.grad
    assert stepped[1] > scores[1] and stepped[2] > scores[2], "vulnerable halves go up"
    assert stepped[0] < scores[0] and stepped[3] < scores[3], "fixed halves go down"
    assert float(pair_margin_loss(stepped, labels, index)) < float(before.detach())


def test_combined_is_ce_plus_weighted_margin() -> None:
    ce = torch.tensor(1.25)
    scores = torch.tensor([2.0, 0.0])
    got = combined_loss(ce, scores, torch.tensor([1, 0]), torch.tensor([0, 0]), weight=0.5, margin=1.0)
    assert float(got) == pytest.approx(1.25 + 0.5 * softplus(-1.0))
    assert float(combined_loss(ce, scores, torch.tensor([1, 0]), torch.tensor([0, 0]), 0.0, 1.0)) == 1.25


def test_verdict_margin_is_log_prob_difference() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 11)
    s = verdict_margin(logits, pos_token_id=4, neg_token_id=7)
    logp = torch.log_softmax(logits, -1)
    assert torch.allclose(s, logp[:, 4] - logp[:, 7], atol=1e-5)
    assert torch.equal(s, logits[:, 4] - logits[:, 7])


def test_verdict_token_pair_from_real_encodings(encoded) -> None:
    tok, examples = encoded
    firsts = [e.ids[e.n_prompt] for e in examples]
    assert verdict_token_pair(firsts, [1, 0]) == (tok.convert_tokens_to_ids("V"), tok.convert_tokens_to_ids("S"))
    with pytest.raises(ValueError, match="always be 0"):
        verdict_token_pair([5, 5], [1, 0])
    with pytest.raises(ValueError, match="one token"):
        verdict_token_pair([5, 6, 7], [1, 0, 1])
    with pytest.raises(ValueError, match="one token"):
        verdict_token_pair([5, 6], [1, 1])


def test_pair_index_numbers_complete_pairs() -> None:
    got = pair_index(["a", None, "b", "a", "c", "b", "d", "d", "d"])
    assert got.tolist() == [0, -1, 1, 0, -1, 1, -1, -1, -1]


# -- batches -----------------------------------------------------------------------------
def random_pair_ids(rng: random.Random, n_pairs: int, n_single: int, n_orphan: int) -> list[str | None]:
    ids: list[str | None] = [f"p{k}" for k in range(n_pairs) for _ in range(2)]
    ids += [None] * n_single + [f"orphan{k}" for k in range(n_orphan)]
    rng.shuffle(ids)
    return ids


@pytest.mark.parametrize("seed", range(8))
def test_pair_batches_invariants(seed: int) -> None:
    rng = random.Random(seed)
    for trial in range(10):
        ids = random_pair_ids(rng, rng.randint(0, 30), rng.randint(0, 20), rng.randint(0, 3))
        batch_size = rng.randint(2, 9)  # odd sizes included
        batches = pair_batches(ids, batch_size, seed=seed, epoch=trial)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(ids))), "every index exactly once"
        assert all(1 <= len(b) <= batch_size for b in batches)
        where = {i: k for k, b in enumerate(batches) for i in b}
        for pid in {p for p in ids if p and p.startswith("p")}:
            a, b = [i for i, p in enumerate(ids) if p == pid]
            assert where[a] == where[b], f"pair {pid} split across batches"
        # the fewest batches that can hold them: no room wasted beyond the odd slot
        n_pairs = len({p for p in ids if p and p.startswith("p")})
        fewest = max(-(-len(ids) // batch_size), -(-n_pairs // (batch_size // 2)))
        assert len(batches) == fewest
        per_batch = [sum(1 for i in b if ids[i] and ids[i].startswith("p")) // 2 for b in batches]
        assert not per_batch or max(per_batch) - min(per_batch) <= 1, "pairs dealt evenly"
        assert pair_batches(ids, batch_size, seed=seed, epoch=trial) == batches, "deterministic"


def test_pair_batches_order_changes_with_seed_and_epoch() -> None:
    ids = [f"p{k // 2}" for k in range(40)] + [None] * 10
    base = pair_batches(ids, 6, seed=1, epoch=0)
    assert pair_batches(ids, 6, seed=1, epoch=1) != base
    assert pair_batches(ids, 6, seed=2, epoch=0) != base


def test_odd_batch_size_fills_the_last_slot_with_a_single() -> None:
    ids = ["a", "a", "b", "b", "c", "c", None, None, None]
    batches = pair_batches(ids, 3, seed=0, epoch=0)
    assert sorted(len(b) for b in batches) == [3, 3, 3]


def test_pair_batches_rejects_batch_of_one_with_pairs() -> None:
    with pytest.raises(ValueError, match="both halves"):
        pair_batches(["a", "a"], 1, seed=0, epoch=0)
    assert pair_batches([None, None], 1, seed=0, epoch=0) in ([[0], [1]], [[1], [0]])


# -- verdict positions on real batches ---------------------------------------------------
@pytest.fixture(scope="module")
def encoded():
    """Two real training examples (a vulnerable function and its fix) through the tiny tokenizer."""
    from breachlab.vuln.sample import Sample
    from breachlab.vuln.training.sft import encode
    from tests.vuln.tiny import SAFE_SNIPPETS, VULN_SNIPPETS, make_tokenizer

    tok = make_tokenizer()
    vuln = Sample(id="v", code=VULN_SNIPPETS[0], label=1, cwe="CWE-787", source="generic", group="g", pair_id="p")
    fixed = Sample(id="f", code=SAFE_SNIPPETS[1], label=0, cwe=None, source="generic", group="g", pair_id="p")
    examples = [encode(tok, s, 2048) for s in (vuln, fixed)]
    return tok, examples


def test_first_answer_positions_padded_collate(encoded) -> None:
    from breachlab.vuln.training.sft import collate

    tok, examples = encoded
    batch = collate(examples, pad_id=tok.pad_token_id)
    pos = first_answer_positions(batch["targets"])
    assert torch.equal(pos, batch["first"])
    verdicts = batch["targets"][torch.arange(2), pos]
    assert verdicts.tolist() == [tok.convert_tokens_to_ids("V"), tok.convert_tokens_to_ids("S")]
    # the same with every logit kept (supervised_only=False): one column per input position
    full = collate(examples, pad_id=tok.pad_token_id, supervised_only=False)
    pos_full = first_answer_positions(full["targets"])
    width = full["input_ids"].shape[1]
    for i, e in enumerate(examples):  # logit at input position p predicts token p+1
        assert int(pos_full[i]) == width - e.n_answer - 1


def test_first_answer_positions_hf_labels(encoded) -> None:
    """Hugging Face labels aligned with input_ids: the predicting logit is one position earlier."""
    tok, examples = encoded
    width = max(len(e.ids) for e in examples)
    labels = torch.full((2, width), -100)
    for i, e in enumerate(examples):
        start = width - len(e.ids)
        labels[i, start + e.n_prompt:] = torch.tensor(e.ids[e.n_prompt:])
    pos = first_answer_positions(labels, shifted=False)
    assert pos.tolist() == [width - len(e.ids) + e.n_prompt - 1 for e in examples]


def test_first_answer_positions_packed_collate(encoded) -> None:
    from breachlab.vuln.training.sft import collate_packed

    tok, examples = encoded
    batch = collate_packed(examples, pad_id=tok.pad_token_id, multiple=16, slot_multiple=None)
    # the trainer's layout: targets only at the kept logits, segments read at those positions
    seg_at_keep = batch["segments"][0, batch["keep"]]
    assert torch.equal(first_answer_positions(batch["targets"], segments=seg_at_keep), batch["first"])
    # the full-row layout (1, T): labels placed at the positions whose logits predict them
    row = torch.full_like(batch["input_ids"], -100)
    row[0, batch["keep"]] = batch["targets"]
    pos = first_answer_positions(row, segments=batch["segments"])
    assert torch.equal(pos, batch["keep"][batch["first"]])
    assert row[0, pos].tolist() == [tok.convert_tokens_to_ids("V"), tok.convert_tokens_to_ids("S")]
    starts = [0, len(examples[0].ids)]
    assert pos.tolist() == [s + e.n_prompt - 1 for s, e in zip(starts, examples)]


def test_pair_loss_on_the_trainers_forward_separates_the_pair(encoded, tmp_path: Path) -> None:
    """End to end on the trainer's own forward (``sft._answer_logits`` on a packed batch):
    the verdict logits sit at ``first``; the combined loss has finite gradients, and one SGD step
    on the pair term alone widens the gap between the vulnerable half and its fix."""
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.training.sft import _answer_logits, collate_packed
    from tests.vuln.tiny import make_model_dir

    tok, examples = encoded
    v_id, s_id = tok.convert_tokens_to_ids("V"), tok.convert_tokens_to_ids("S")
    model = AutoModelForCausalLM.from_pretrained(make_model_dir(tmp_path / "m"), attn_implementation="eager")
    batch = collate_packed(examples, pad_id=tok.pad_token_id, multiple=16, slot_multiple=None)
    labels, index = torch.tensor([1, 0]), pair_index(["p", "p"])
    cpu = torch.device("cpu")

    def gap_and_losses() -> tuple:
        logits, targets, first = _answer_logits(model, batch, cpu)
        ce = torch.nn.functional.cross_entropy(logits, targets, reduction="sum") / batch["n_supervised"]
        scores = verdict_margin(logits[first], v_id, s_id)
        return scores[0] - scores[1], ce, scores

    gap, ce, scores = gap_and_losses()
    total = combined_loss(ce, scores, labels, index, weight=1.0, margin=1.0)
    assert float(total.detach()) == pytest.approx(float(ce.detach()) + softplus(1.0 - float(gap.detach())), rel=1e-5)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

    model.zero_grad(set_to_none=True)
    gap, _, scores = gap_and_losses()
    pair_margin_loss(scores, labels, index).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.05 * p.grad
        after, _, _ = gap_and_losses()
    assert float(after) > float(gap.detach())
