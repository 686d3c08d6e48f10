"""Which CUDA graph serves a batch (``cuda_graph_limit``): the plan's bookkeeping, the larger
bucket's layout and its loss, and the graph step's host side, on the CPU."""

from __future__ import annotations

import json

import pytest

from breachlab.config import ConfigError
from breachlab.vuln.training.speed.buckets import Bucket, GraphPlan, Need, covers

torch = pytest.importorskip("torch")


def need(tokens, supervised=256, examples=8, slot=512, slots=(8, 512), sliding=False, binds=False):
    return Need(Bucket(tokens, supervised, sliding, binds, slots), examples, slot)


def test_a_graph_covers_a_batch_only_where_every_shape_fits():
    g = Bucket(3072, 512, False, False, (8, 512))
    assert covers(g, need(2048, 256, slots=(8, 256), slot=256))
    assert covers(g, need(3072, 512, slots=None, slot=512)), "a row-mask batch fits a slot layout"
    assert not covers(g, need(3584)), "longer row"
    assert not covers(g, need(2048, 768)), "more supervised positions"
    assert not covers(g, need(2048, slot=768, slots=(8, 768))), "a longer example than the slots"
    assert not covers(g, need(2048, examples=9, slots=(9, 512))), "more examples than slots"
    assert covers(Bucket(4096, 256, False, False, None), need(2048, slot=1024, slots=(8, 1024))), \
        "a row-mask graph holds any layout that fits its row"
    window = Bucket(2048, 256, True, True, None)
    assert covers(window, need(1024, sliding=True, binds=False)), "a binding window is harmless when it need not bind"
    assert not covers(Bucket(2048, 256, True, False, None), need(1024, sliding=True, binds=True))
    assert not covers(window, need(1024, sliding=False))


def test_past_the_limit_a_new_bucket_replays_the_smallest_graph_that_holds_it():
    plan = GraphPlan(limit=2)
    big, small = need(4096), need(2560)
    assert plan.route(big) == big.bucket and plan.route(small) == small.bucket
    assert plan.graphs == 2 and plan.padded == 0
    assert plan.route(need(2048)) == small.bucket, "the shortest covering row"
    assert plan.route(need(3072)) == big.bucket
    assert plan.route(small) == small.bucket, "a bucket with a graph keeps it"
    huge = need(6144)
    assert plan.route(huge) == huge.bucket, "nothing holds it: captured past the limit"
    assert plan.graphs == 3 and plan.padded == 2
    assert plan.served == {big.bucket: 2, small.bucket: 3, huge.bucket: 1}


def test_no_limit_is_a_graph_per_bucket_and_a_bad_limit_is_refused():
    plan = GraphPlan(limit=0)
    for t in (4096, 2048, 2560, 2048):
        assert plan.route(need(t)) == need(t).bucket
    assert plan.graphs == 3 and plan.padded == 0
    with pytest.raises(ValueError, match="cuda_graph_limit"):
        GraphPlan(limit=-1)
    from breachlab.vuln.training.config import TrainConfig

    assert TrainConfig(data="x").cuda_graph_limit == 4
    for bad in (-1, 2.5, True, "four"):
        with pytest.raises(ConfigError, match="cuda_graph_limit"):
            TrainConfig(data="x", cuda_graph_limit=bad)


def test_a_larger_buckets_layout_holds_the_same_batch():
    """collate_packed with a forced width / slot shape: the batch's tokens, positions and
    supervised positions where they were, the rest padding and empty slots."""
    from breachlab.vuln.training.sft import Encoded, collate_packed

    examples = [Encoded(list(range(3, 3 + n)), n - 4) for n in (30, 12, 21)]
    own = collate_packed(examples, 0, multiple=16, slot_multiple=16)
    big = collate_packed(examples, 0, width=96, slot_shape=(4, 48))
    assert own["input_ids"].shape[1] == 64 and big["input_ids"].shape[1] == 96
    assert torch.equal(big["input_ids"][:, :63], own["input_ids"][:, :63])
    assert torch.equal(big["keep"], own["keep"]) and torch.equal(big["targets"], own["targets"])
    assert (big["segments"][0, 63:] == -1).all()
    assert big["slot_shape"] == (4, 48) and big["slots"].shape == (4 * 48,)
    assert not big["slots"][3 * 48:].any(), "an empty slot's cells are padding (row position 0)"
    assert (big["inverse"][:63] < 3 * 48).all(), "no real position is read back from the empty slot"
    row = collate_packed(examples, 0, width=128, slot_multiple=16)
    assert "slots" not in row, "a forced width without a slot shape is a row-mask layout"
    with pytest.raises(ValueError, match="shorter"):
        collate_packed(examples, 0, width=32)
    with pytest.raises(ValueError, match="cannot hold"):
        collate_packed(examples, 0, width=96, slot_shape=(2, 48))


def test_a_padded_layout_gives_the_same_loss_and_gradients(tmp_path, monkeypatch):
    """The batch in a larger bucket's layout (what a replay of a larger graph sees): the loss
    and the gradients of the natural layout, on Gemma 4 with its full-attention layers per slot."""
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.training.sft import Encoded, collate_packed, forward_loss
    from breachlab.vuln.training.speed import patches
    from tests.vuln.tiny import gemma4_text_dir

    path = gemma4_text_dir(tmp_path / "m")
    monkeypatch.setattr(patches, "WIDE_HEAD", 0)
    g = torch.Generator().manual_seed(5)
    examples = [Encoded(torch.randint(3, 100, (n,), generator=g).tolist(), n - a)
                for n, a in ((30, 7), (12, 4), (21, 9))]

    def run_once(**layout):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").train()
        assert patches.use_packed_attention(model)
        loss, _ = forward_loss(model, collate_packed(examples, 0, **layout), torch.device("cpu"))
        loss.backward()
        return float(loss.detach()), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    loss, grads = run_once(multiple=16, slot_multiple=16)
    for layout in ({"width": 112, "slot_shape": (5, 48)}, {"width": 112}):
        got, got_grads = run_once(**layout)
        assert got == pytest.approx(loss, rel=1e-5), layout
        for k in grads:
            assert torch.allclose(got_grads[k], grads[k], rtol=1e-4, atol=1e-6), (layout, k)


def test_the_graph_step_prepares_a_batch_in_the_layout_of_the_graph_that_replays_it(tmp_path, monkeypatch):
    """CudaGraphStep.prepare (its host side, runnable on the CPU): past the limit, a new
    bucket's batch is packed in the covering graph's shapes, per-layer rows included."""
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.training.sft import Encoded
    from breachlab.vuln.training.speed import graphs, patches, ple
    from tests.vuln.tiny import gemma4_text_dir

    monkeypatch.setattr(patches, "WIDE_HEAD", 0)
    model = AutoModelForCausalLM.from_pretrained(gemma4_text_dir(tmp_path / "m"), attn_implementation="sdpa")
    model.requires_grad_(False)
    assert ple.offload_per_layer_embeddings(model, include_cpu=True) > 0
    assert patches.use_packed_attention(model)
    for p in model.lm_head.parameters():
        p.requires_grad_(True)
    step = graphs.CudaGraphStep(model, pad_id=0, dtype=torch.float32, t_multiple=128, k_multiple=32,
                               slot_multiple=64, limit=1)
    g = torch.Generator().manual_seed(2)

    def batch(*sizes):
        return [Encoded(torch.randint(3, 100, (n,), generator=g).tolist(), n - a) for n, a in sizes]

    big = step.prepare(batch((300, 20), (280, 12), (90, 30)))
    small = step.prepare(batch((100, 9), (90, 40)))
    assert small["key"] == big["key"] and step.plan.padded == 1
    assert small["batch"]["input_ids"].shape == big["batch"]["input_ids"].shape
    assert small["batch"]["slot_shape"] == big["key"].slots
    assert [r.shape for r in small["rows"]] == [r.shape for r in big["rows"]]
    table = step.tables[0]
    assert torch.equal(small["rows"][0][0, :190], table.gather(small["batch"]["input_ids"][:, :190])[0])
    again = step.prepare(batch((40, 9), (25, 6)))
    assert again["key"] == big["key"], "still past the limit: the one graph holds it"
    # a replay lets go of the prepared host rows once they are in the bucket's buffers (the trainer
    # holds a step's last prepared batch while it prepares the next)
    class Replay:
        replays = 0

        def replay(self):
            Replay.replays += 1

    entry = step._static(small["key"])
    entry.update(graph=Replay(), loss_sum=torch.tensor(3.0))
    step.graphs[small["key"]] = entry
    rows = small["rows"][0]
    assert step.forward_backward(small, 0.5) == 3.0 and Replay.replays == 1
    assert small["rows"] == [], "the host rows are let go"
    assert torch.equal(entry["ple"][0], rows) and float(entry["inv_denom"]) == 0.5
    assert table.staged is None, "unstaged after the replay"
    # the rows go to page-locked memory only on CUDA, and only unless pin_rows=False
    asked = []
    monkeypatch.setattr(type(table), "gather", lambda self, ids, pinned=False: asked.append(pinned) or ids)
    assert step.pin_rows is False
    step.pin_rows = True
    step.prepare(batch((40, 9)))
    unpinned = graphs.CudaGraphStep(model, pad_id=0, dtype=torch.float32, limit=1, pin_rows=False)
    assert asked == [True] and unpinned.pin_rows is False
    # not asked: as the tables were offloaded (ple_pin_rows); never off CUDA
    table.pin_rows = False
    assert graphs.rows_pinned([table], None, "cuda") is False and graphs.rows_pinned([table], True, "cuda")
    table.pin_rows = True
    assert graphs.rows_pinned([table], None, "cuda") and not graphs.rows_pinned([table], None, "cpu")
    assert graphs.rows_pinned([], None, "cuda"), "no table: nothing to decide, the default"


def test_a_plan_holds_every_batch_in_at_most_limit_graphs():
    """cuda_graph_plan: the largest bucket, then the bucket that saves the most row tokens; a
    plan stops early where another graph saves nothing."""
    from breachlab.vuln.training.speed.buckets import choose, largest

    counts = {need(2048, slot=256, slots=(8, 256)): 50, need(2560): 30, need(3072, 512, slot=768, slots=(8, 768)): 1}
    top = largest(counts)
    assert top == Bucket(3072, 512, False, False, (8, 768))
    assert choose(counts, 1) == [top]
    two = choose(counts, 2)
    assert two == [need(2048, slot=256, slots=(8, 256)).bucket, top], "the most frequent bucket saves the most"
    assert len(choose(counts, 3)) == 3 and len(choose(counts, 9)) == 3, "every bucket has its graph"
    counts[need(3072, 256)] = 5  # as long a row as the largest: its own graph would save no row tokens
    assert len(choose(counts, 9)) == 3 and need(3072, 256).bucket not in choose(counts, 9)
    plan = GraphPlan(limit=2, planned=two)
    assert plan.route(need(2560)) == top and plan.route(need(1536, slot=256, slots=(8, 256))) == two[0]
    assert plan.padded == 2 and plan.graphs == 2
    with pytest.raises(ValueError):
        choose({}, 2)


def test_the_plan_is_made_from_every_batch_of_the_run_before_its_first_step(tmp_path, monkeypatch):
    """The trainer with cuda_graph_plan (CUDA graphs forced on, their capture failing here on the
    CPU): the graph step is planned from every micro-batch of the run before the first step, the
    first batch is prepared in a planned graph's shapes, and the run trains on eagerly."""
    from breachlab.vuln.training.config import TrainConfig
    from breachlab.vuln.training.run import run
    from breachlab.vuln.training.speed import graphs
    from tests.vuln.tiny import gemma3_dir, samples_jsonl

    seen: dict = {}

    class Planned(graphs.CudaGraphStep):
        def plan_ahead(self, batches):
            batches = list(batches)
            seen["batches"] = len(batches)
            seen["planned"] = super().plan_ahead(batches)
            return seen["planned"]

        def forward_backward(self, examples, inv_denom):
            prep = examples if isinstance(examples, dict) else self.prepare(examples)
            seen.setdefault("first_key", prep["key"])
            raise RuntimeError("no capture on the CPU")

    monkeypatch.setattr(graphs, "CudaGraphStep", Planned)
    monkeypatch.setattr(TrainConfig, "wants_graphs", lambda self, device, processes=1: True)
    cfg = TrainConfig(model=str(gemma3_dir(tmp_path / "g3")), data=str(samples_jsonl(tmp_path / "d")), batch_size=2,
                      grad_accum=2, max_steps=3, eval_every=3, save_every=0, lr=1e-3, log_every=1, max_seq_len=512,
                      threads=1, dtype="float32", cuda_graph_limit=1, cuda_graph_plan=True)
    got = run(cfg, out=tmp_path / "r")
    man = json.loads((got / "manifest.json").read_text())
    assert man["status"] == "finished" and "no capture on the CPU" in man["cuda_graphs_error"]
    assert seen["batches"] == 3 * 2, "every micro-batch of the run's 3 steps"
    assert len(seen["planned"]) == 1 and seen["first_key"] == seen["planned"][0]
    with pytest.raises(ConfigError, match="cuda_graph_plan needs"):
        TrainConfig(data="x", cuda_graph_plan=True, cuda_graph_limit=0)


def test_a_capture_copies_the_steps_gradients_only_when_there_are_some():
    """A capture's warm-up and capture add to ``.grad``; what was there is put back after.  At
    a step's first micro-batch every gradient is zero: nothing is copied (no second set of
    gradients in GPU memory at the run's allocated peak), they are zeroed again instead."""
    from breachlab.vuln.training.speed import graphs

    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    for p in params:
        p.grad = torch.zeros_like(p)
    assert graphs._grads_to_keep(params) is None
    for p in params:
        p.grad.add_(1.5)  # what a warm-up and a capture add
    graphs._put_back(params, None)
    assert not any(p.grad.any() for p in params)
    params[1].grad[0, 1] = -2.0  # a step's earlier micro-batch
    saved = graphs._grads_to_keep(params)
    assert saved is not None
    for p in params:
        p.grad.add_(1.5)
    graphs._put_back(params, saved)
    assert float(params[1].grad[0, 1]) == -2.0 and float(params[1].grad.abs().sum()) == 2.0
    assert not params[0].grad.any()
    params[0].grad[0] = float("nan")
    assert graphs._grads_to_keep(params) is not None, "a NaN gradient is not zero: it is kept"
