"""Speed-ups that must not change a number: packing, per-layer embeddings on the CPU,
fused kernels, CUDA graphs (the last two need a GPU: marked ``gpu``, out of the default run)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from breachlab.config import ConfigError  # noqa: E402
from breachlab.vuln.training.config import TrainConfig  # noqa: E402
from breachlab.vuln.training.run import run  # noqa: E402
from breachlab.vuln.training.speed import (  # noqa: E402
    budget as budget_mod,  # noqa: E402
    graphs,
    patches,
    ple,
)
from tests.vuln.tiny import gemma3_dir, gemma4_text_dir, qwen2_dir, samples_jsonl  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return samples_jsonl(tmp_path_factory.mktemp("data") / "d")


@pytest.fixture(scope="module")
def gemma4(tmp_path_factory):
    return gemma4_text_dir(tmp_path_factory.mktemp("g4") / "m")


def _cfg(model, data, **kw) -> TrainConfig:
    opts = dict(model=str(model), data=str(data), batch_size=4, max_steps=3, eval_every=3, save_every=0,
                lr=1e-3, log_every=1, max_seq_len=512, threads=1, dtype="float32")
    opts.update(kw)
    return TrainConfig(**opts)


def _adapter(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "final" / "adapter_model.safetensors"))


def test_the_per_layer_table_leaves_the_model_and_the_logits_stay(gemma4):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gemma4).eval()
    assert ple.offload_per_layer_embeddings(model, include_cpu=True) == 0, "a trainable table stays"
    model.requires_grad_(False)
    ids = torch.tensor([[2, 17, 33, 5, 90, 41, 7]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    table = model.model.embed_tokens_per_layer.weight
    expected = table.numel() * table.element_size()
    assert ple.offload_per_layer_embeddings(model) == 0, "a table in CPU memory stays unless asked"
    assert ple.offload_per_layer_embeddings(model, include_cpu=True) == expected
    names = {n for n, _ in model.named_parameters()}
    assert not any(ple.PER_LAYER_TABLE in n for n in names), "no longer a parameter: .to() and DDP skip it"
    assert len(ple.cpu_tables(model)) == 1
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)


@pytest.mark.parametrize("store", ["ram", "disk"])
def test_training_with_the_table_off_the_gpu_gives_the_same_adapter(gemma4, data, tmp_path, store):
    ref = run(_cfg(gemma4, data, ple_on_cpu="off"), out=tmp_path / "off")
    got = run(_cfg(gemma4, data, ple_on_cpu="on", ple_store=store), out=tmp_path / "on")
    manifest = json.loads((got / "manifest.json").read_text())
    assert manifest["ple_on_cpu_bytes"] > 0 and manifest["ple_store"] == store
    assert manifest["ple_pin_rows"] is (store == "ram"), "ple_pin_rows auto: pageable rows with the table on disk"
    assert json.loads((ref / "manifest.json").read_text())["ple_on_cpu_bytes"] == 0
    a, b = _adapter(ref), _adapter(got)
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_the_table_on_disk_reads_the_rows_of_the_table_in_memory(tmp_path):
    emb = torch.nn.Embedding(300, 24).to(torch.bfloat16)
    emb.embed_scale = torch.tensor(2.0)
    disk = ple.DiskTableEmbedding(emb, str(tmp_path), chunk_bytes=1000)  # written in many chunks
    assert list(tmp_path.iterdir()) == [], "the file is unlinked at once: nothing is left behind"
    ids = torch.tensor([[0, 1, 2, 299, 7, 1, 150, 151, 0]])  # runs, repeats, both ends
    ram = ple.CpuTableEmbedding(emb)
    assert torch.equal(disk.gather(ids), ram.gather(ids))
    assert torch.equal(disk(ids), ram(ids)) and disk.dtype == torch.bfloat16
    with pytest.raises(IndexError, match="range"):
        disk.gather(torch.tensor([300]))
    assert disk.gather(torch.zeros((1, 0), dtype=torch.long)).shape == (1, 0, 24)
    with pytest.raises(ValueError, match="store"):
        ple.offload_per_layer_embeddings(torch.nn.Linear(2, 2), store="tape")


def test_the_table_on_disk_reads_long_runs_and_many_repeats_in_bounded_pieces(tmp_path, monkeypatch):
    """The rows go straight into the step's buffer: a run of consecutive rows longer than one
    preadv may scatter is read in several calls, repeats are copied a bounded number at a time;
    every row still the table's."""
    import os

    monkeypatch.setattr(ple, "IOV_MAX", 4)
    monkeypatch.setattr(ple, "REPEAT_CHUNK", 3)
    emb = torch.nn.Embedding(64, 8).to(torch.bfloat16)
    disk, ram = ple.DiskTableEmbedding(emb, str(tmp_path)), ple.CpuTableEmbedding(emb)
    reads = []
    real = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, bufs, off: reads.append(len(bufs)) or real(fd, bufs, off))
    ids = torch.tensor([[9, 10, 11, 12, 13, 14, 15, 9, 9, 40, 9, 9, 40, 41, 63, 0]])
    assert torch.equal(disk.gather(ids), ram.gather(ids))
    assert reads == [1, 4, 3, 2, 1], "row 0; rows 9-15 in two calls; 40-41; 63"
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (2, 300), generator=g)  # mostly repeats
    assert torch.equal(disk.gather(ids, pinned=False), ram.gather(ids))


def test_page_locked_rows_follow_ple_pin_rows(monkeypatch):
    """ple_pin_rows auto: pageable rows where the table is on disk, page-locked in RAM; the table's
    eager lookup on CUDA asks for what its offload said."""
    assert [ple.resolve_pin_rows(s, "disk") for s in ("auto", "on", "off")] == [False, True, False]
    assert [ple.resolve_pin_rows(s, "ram") for s in ("auto", "on", "off")] == [True, True, False]
    emb = torch.nn.Embedding(10, 4)
    table = ple.CpuTableEmbedding(emb)
    asked = []
    monkeypatch.setattr(ple.CpuTableEmbedding, "gather",
                        lambda self, ids, pinned=False: asked.append(pinned) or torch.zeros(1, 4))

    class OnCuda:  # what the lookup reads of CUDA ids
        is_cuda = True
        device = torch.device("cpu")

    table(OnCuda())
    table.pin_rows = False
    table(OnCuda())
    assert asked == [True, False]


def test_the_table_on_disk_says_where_space_is_missing(tmp_path, monkeypatch):
    import errno
    import os

    def full(*a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OSError, match="needs .* GiB free in"):
        ple.DiskTableEmbedding(torch.nn.Embedding(10, 4), str(tmp_path))
    with pytest.raises(OSError, match="cannot make its file in .*missing.*TMPDIR"):
        ple.DiskTableEmbedding(torch.nn.Embedding(10, 4), str(tmp_path / "missing"))


def test_packing_and_padding_train_the_same_adapter(tmp_path, data):
    model = gemma3_dir(tmp_path / "g3")
    padded = run(_cfg(model, data, packing=False), out=tmp_path / "padded")
    packed = run(_cfg(model, data, packing=True), out=tmp_path / "packed")
    assert json.loads((packed / "manifest.json").read_text())["packing"] is True
    a, b = _adapter(padded), _adapter(packed)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k


def test_fused_kernels_are_optional():
    model = torch.nn.Linear(2, 2)
    assert patches.fused_kernels(model, "off") is None
    try:
        import liger_kernel.transformers  # noqa: F401
    except ImportError:
        assert patches.fused_kernels(model, "auto") is None  # silently nothing
        with pytest.raises(ValueError, match="pip install liger-kernel"):
            patches.fused_kernels(model, "liger")


def test_cuda_graphs_say_what_they_need():
    assert TrainConfig(data="x").graphs_blocker("cpu") == "a CUDA device"
    assert TrainConfig(data="x").graphs_blocker("cuda") is None
    assert TrainConfig(data="x").graphs_blocker("cuda", processes=2) == "one process (not DDP)"
    assert "packing" in TrainConfig(data="x", packing=False).graphs_blocker("cuda")
    assert not TrainConfig(data="x", cuda_graphs="off").wants_graphs("cuda")
    assert TrainConfig(data="x").wants_graphs("cuda") and not TrainConfig(data="x").wants_graphs("cpu")
    with pytest.raises(ConfigError, match="lora_dropout: 0"):
        TrainConfig(data="x", cuda_graphs="on", lora_dropout=0.1)
    with pytest.raises(ConfigError, match="kernels must be one of"):
        TrainConfig(data="x", kernels="triton")
    assert TrainConfig(data="x", cuda_graphs=False).cuda_graphs == "off"  # YAML's off


def _lora(model):
    """``model`` with r4 LoRA on its projections, B not zero (so the adapters change the numbers)."""
    from peft import LoraConfig, get_peft_model

    from breachlab.vuln.training.anatomy import lora_targets

    torch.manual_seed(0)
    p = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=lora_targets(model)))
    for name, w in p.named_parameters():
        if "lora_B" in name:
            w.data.normal_(0, 0.02)
    return p


def _same_grads_then_zero(eager, graphed):
    """The eager model's gradients equal the graphed one's; both zeroed as their steps zero them
    (the graphed model's gradients must stay allocated)."""
    ge = {k: p.grad for k, p in eager.named_parameters() if p.requires_grad}
    gg = {k: p.grad for k, p in graphed.named_parameters() if p.requires_grad}
    for k in ge:
        assert torch.allclose(ge[k], gg[k], rtol=1e-4, atol=1e-6), k
    eager.zero_grad(set_to_none=True)
    graphed.zero_grad(set_to_none=False)


# --- GPU ---------------------------------------------------------------------------------
@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("arch,limit", [("gemma3", 0), ("gemma4", 0), ("gemma4", 1)])
def test_graph_replays_match_eager_steps(arch, limit, tmp_path, monkeypatch):
    """Losses and gradients of replayed steps equal eager ones (fp32, four batches, three
    buckets); Gemma 4's full-attention layers take the slot path (width limit lowered) and
    its KV-shared layers run at the answer positions only.  With ``limit`` 1 the fourth batch's bucket has no graph of
    its own: it replays the second batch's, padded, and gives its own eager loss."""
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.training.sft import Encoded, collate_packed, forward_loss

    path = gemma3_dir(tmp_path / "m") if arch == "gemma3" else gemma4_text_dir(tmp_path / "m")

    def model():
        m = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").cuda()
        m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False,
                                                                       "preserve_rng_state": False})
        m.config.use_cache = False
        p = _lora(m)
        if arch == "gemma4":
            ple.offload_per_layer_embeddings(p)
            assert patches.use_packed_attention(p)
            assert patches.use_shared_layers_at_answers(p) == 2
        return p.train()

    if arch == "gemma4":
        monkeypatch.setattr(patches, "WIDE_HEAD", 0)

    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(path).vocab_size
    g = torch.Generator().manual_seed(1)
    batches = []
    for sizes in ([(40, 9), (25, 6)], [(300, 20), (280, 12), (90, 30)], [(41, 8), (24, 7)], [(100, 9), (90, 40)]):
        batches.append([Encoded(torch.randint(3, vocab, (n,), generator=g).tolist(), n - a) for n, a in sizes])
    eager, graphed = model(), model()
    step = graphs.CudaGraphStep(graphed, pad_id=0, dtype=torch.float32, t_multiple=128, k_multiple=32,
                               autocast=False, slot_multiple=64, limit=limit)
    for examples in batches:
        n = sum(e.n_answer for e in examples)
        prep = step.prepare(examples)
        # the same layout as the graph's bucket: same kernels, so any gap is the graph's (a batch
        # replayed in a larger bucket's graph is compared in that layout: that it equals its own
        # layout's loss and gradients is tested on the CPU, test_graph_plan.py)
        key = prep["key"]
        packed = collate_packed(examples, 0, multiple=128, slot_multiple=64)
        if packed["input_ids"].shape[1] != key.tokens:
            packed = collate_packed(examples, 0, width=key.tokens, slot_shape=key.slots)
        assert "slots" in packed
        loss_e, _ = forward_loss(eager, packed, torch.device("cuda"))
        (loss_e / n).backward()
        loss_g = step.forward_backward(prep, 1.0 / n)
        assert float(loss_g) == pytest.approx(float(loss_e.detach()), rel=1e-4)
        _same_grads_then_zero(eager, graphed)
    assert step.captured == (3 if limit == 0 else 2), "the first and third batches share a bucket"
    assert step.plan.padded == (1 if limit else 0)
    # the later buckets' warm-ups ran in the pool that the first graph replays in
    assert step.warmups_pooled == step.captured


@pytest.mark.gpu
@cuda
def test_a_new_buckets_warm_up_reuses_the_graphs_memory(tmp_path):
    """A second bucket's eager warm-up runs in the graphs' pool: the peak reserved memory while
    capturing it stays well under another step's worth of activations (with the warm-up beside
    the pool, reserved memory rose by about that much; 7.92 GiB reserved against 5.35 allocated
    on the Qwen 1.5B benchmark)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from breachlab.vuln.training.sft import Encoded

    cfg = Qwen2Config(vocab_size=4096, hidden_size=512, intermediate_size=2048, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=8192)
    torch.manual_seed(0)
    m = Qwen2ForCausalLM(cfg).cuda()
    m.config.use_cache = False
    model = _lora(m).train()
    step = graphs.CudaGraphStep(model, pad_id=0, dtype=torch.float32, t_multiple=4096, k_multiple=256,
                               autocast=False)
    g = torch.Generator().manual_seed(1)

    def batch(answers):  # one 4096-token bucket, ``answers`` supervised positions
        return [Encoded(torch.randint(3, 4096, (4000,), generator=g).tolist(), 4000 - answers)]

    torch.cuda.synchronize()
    before = torch.cuda.memory_reserved()
    step.forward_backward(batch(100), 0.01)
    torch.cuda.synchronize()
    after_first = torch.cuda.memory_reserved()
    torch.cuda.reset_peak_memory_stats()
    step.forward_backward(batch(600), 0.01)  # another bucket (600 positions round to 768), same row
    torch.cuda.synchronize()
    assert step.captured == 2 and step.warmups_pooled == 2
    grew = torch.cuda.max_memory_reserved() - after_first
    first = after_first - before
    assert first > 64 * 2**20, "the first bucket took a step's worth of activations"
    assert grew < 0.5 * first, (grew, first)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("plan", [False, True])
def test_training_with_cuda_graphs_matches_eager(tmp_path, data, plan):
    """Same adapter and the same logged losses; two micro-batches per step (grad_accum 2) replay
    one bucket twice in a step, and each keeps its own loss.  With ``cuda_graph_plan`` and a
    limit of 1, one graph planned before the first step serves every batch of the run."""
    import csv

    model = gemma3_dir(tmp_path / "g3")
    ref = run(_cfg(model, data, device="cuda", cuda_graphs="off", threads=None, batch_size=2, grad_accum=2),
              out=tmp_path / "eager")
    extra = {"cuda_graph_plan": True, "cuda_graph_limit": 1} if plan else {}
    got = run(_cfg(model, data, device="cuda", cuda_graphs="on", threads=None, batch_size=2, grad_accum=2, **extra),
              out=tmp_path / "graphs")
    man = json.loads((got / "manifest.json").read_text())
    assert man["cuda_graphs"] >= 1 and "cuda_graphs_error" not in man
    if plan:
        assert man["cuda_graphs"] == 1 and man["cuda_graph_plan"] is True
    losses = [[float(r["train_loss"]) for r in csv.DictReader((d / "metrics.csv").open())] for d in (ref, got)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    a, b = _adapter(ref), _adapter(got)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5), k


@pytest.mark.parametrize("arch", ["gemma4-wide", "qwen2-grouped"])
def test_slot_attention_equals_the_block_diagonal_mask(arch, gemma4, monkeypatch, tmp_path):
    """Full-attention layers attend per example (a slot each, causal within it, no mask tensor):
    same loss and gradients as the (T, T) block-diagonal mask.  gemma4-wide: the wide-head path
    (the tiny model's heads are narrow: the width limit is lowered), its grouped heads expanded;
    qwen2-grouped: every layer per example (``slot_attention: all``), 2 query heads on 1 KV head
    passed to SDPA as grouped."""
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.training.sft import Encoded, collate_packed, forward_loss

    path = gemma4 if arch == "gemma4-wide" else qwen2_dir(tmp_path / "q")

    def run_once(slots: bool):
        model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").train()
        # checkpointing recomputes the forward inside backward: it must take the same path
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        assert patches.use_packed_attention(model, every_layer=arch == "qwen2-grouped")
        g = torch.Generator().manual_seed(3)
        examples = [Encoded(torch.randint(3, 100, (n,), generator=g).tolist(), n - a)
                    for n, a in ((30, 7), (12, 4), (21, 9))]
        batch = collate_packed(examples, 0, multiple=16, slot_multiple=16 if slots else None)
        assert ("slots" in batch) is slots
        loss, _ = forward_loss(model, batch, torch.device("cpu"))
        loss.backward()
        return float(loss), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    if arch == "gemma4-wide":
        monkeypatch.setattr(patches, "WIDE_HEAD", 0)
    calls, grouped = [], []
    real = patches.packed_attention_forward
    sdpa = torch.nn.functional.scaled_dot_product_attention

    masks = []

    def spy(module, query, *a, **k):
        calls.append(getattr(getattr(module, patches.CONTEXT, None), "layout", None) is not None
                     and k.get("sliding_window") is None and query.shape[-1] > 0)
        masks.append(tuple(a[2].shape) if len(a) > 2 and a[2] is not None else None)
        return real(module, query, *a, **k)

    def sdpa_spy(q, k, v, *a, **kw):
        grouped.append((kw.get("is_causal"), kw.get("attn_mask"), kw.get("enable_gqa", False), k.shape[1] < q.shape[1]))
        return sdpa(q, k, v, *a, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa_spy)

    from transformers import AttentionInterface

    monkeypatch.setitem(AttentionInterface._global_mapping, patches.PACKED_ATTENTION, spy)
    monkeypatch.setattr(patches, "packed_attention_forward", spy)
    loss_mask, grads_mask = run_once(slots=False)
    assert not any(calls)
    calls.clear()
    grouped.clear()
    masks.clear()
    loss_slot, grads_slot = run_once(slots=True)
    # every Qwen2 layer attends per slot: no (T, T) row mask is built, a placeholder stands in
    assert (set(masks) == {(1, 1, 1, 1)}) is (arch == "qwen2-grouped"), masks
    assert any(calls), "the full-attention layers took the slot path"
    slot_calls = [g for g in grouped if g[0] is True and g[1] is None]
    assert slot_calls, "the slots attend with SDPA's causal mask, no mask tensor"
    if arch == "qwen2-grouped":  # grouped heads go to SDPA unexpanded
        assert all(g[2] and g[3] for g in slot_calls)
    else:  # the wide path expands them (the memory-efficient kernel takes no grouped heads)
        assert not any(g[2] or g[3] for g in slot_calls)
    assert loss_slot == pytest.approx(loss_mask, rel=1e-5)
    assert grads_mask.keys() == grads_slot.keys()
    for k in grads_mask:
        assert torch.allclose(grads_mask[k], grads_slot[k], rtol=1e-4, atol=1e-6), k


def test_the_row_mask_is_skipped_only_where_no_layer_reads_it(gemma4, tmp_path):
    """row_mask_unused: Qwen2 with every layer per slot (no sliding window) needs no (T, T)
    mask; without slot_attention all, or with sliding-window layers (Gemma 3), or with Gemma 4's
    KV-shared layers at the answers, it does.  A layer that would attend with the placeholder
    stops with an error instead of attending over the whole row."""
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.training.sft import row_masks

    qwen = AutoModelForCausalLM.from_pretrained(qwen2_dir(tmp_path / "q"), attn_implementation="sdpa")
    segments = torch.tensor([[0, 0, 0, 1, 1, -1]])
    assert patches.use_packed_attention(qwen) and not patches.row_mask_unused(qwen)
    assert row_masks(qwen, segments, torch.float32, slots=True).shape == (1, 1, 6, 6)
    assert patches.use_packed_attention(qwen, every_layer=True) and patches.row_mask_unused(qwen)
    assert row_masks(qwen, segments, torch.float32, slots=True).shape == (1, 1, 1, 1)
    assert row_masks(qwen, segments, torch.float32, slots=False).shape == (1, 1, 6, 6)
    g3 = AutoModelForCausalLM.from_pretrained(gemma3_dir(tmp_path / "g3"), attn_implementation="sdpa")
    assert patches.use_packed_attention(g3, every_layer=True) and not patches.row_mask_unused(g3)
    g4 = AutoModelForCausalLM.from_pretrained(gemma4, attn_implementation="sdpa")
    assert patches.use_packed_attention(g4, every_layer=True) and patches.use_shared_layers_at_answers(g4)
    assert not patches.row_mask_unused(g4)

    attn = next(m for m in qwen.modules() if "Attention" in type(m).__name__)
    patches.set_slot_layout(qwen, None)
    q = torch.zeros((1, 2, 6, 32))
    with pytest.raises(RuntimeError, match="needs the packed row"):
        patches.packed_attention_forward(attn, q, q, q, torch.zeros((1, 1, 1, 1)))


def test_the_packed_row_is_kept_per_model_not_per_process(tmp_path):
    """The slot layout and kept positions live in each model's own context (no module
    globals): setting them for one model leaves another untouched, and clearing is per model."""
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.training.sft import Encoded, collate_packed

    path = gemma3_dir(tmp_path / "g3")
    a, b = (AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa") for _ in range(2))
    assert patches.use_packed_attention(a) and patches.use_packed_attention(b)
    examples = [Encoded(list(range(3, 3 + n)), n - 4) for n in (30, 12, 21)]
    batch = collate_packed(examples, 0, multiple=16, slot_multiple=16)
    assert "slots" in batch
    patches.set_slot_layout(a, batch, "cpu")
    assert patches.context(a).layout is not None and patches.context(b).layout is None
    attn = [m for m in a.modules() if "Attention" in type(m).__name__]
    assert attn and all(getattr(m, patches.CONTEXT) is patches.context(a) for m in attn)
    patches.context(a).clear()
    assert patches.context(a).layout is None


@pytest.mark.parametrize("arch", ["gemma3", "gemma4"])
def test_packed_attention_is_sdpa_for_everything_else(arch, gemma4, tmp_path):
    """Routing a model through the packed attention name changes nothing for ordinary
    batches: 2-D masks with and without padding give SDPA's logits (transformers must build
    SDPA's 4-D masks for the new name, not pass the 2-D mask through)."""
    from transformers import AutoModelForCausalLM

    path = gemma4 if arch == "gemma4" else gemma3_dir(tmp_path / "g3")
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").eval()
    ids = torch.tensor([[2, 17, 33, 5, 90, 41, 7, 8], [2, 9, 9, 12, 40, 41, 42, 43]])
    masks = [torch.ones_like(ids), torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8])]
    with torch.no_grad():
        ref = [model(input_ids=ids, attention_mask=m).logits for m in masks]
        patches.set_slot_layout(model, None)
        assert patches.use_packed_attention(model)
        got = [model(input_ids=ids, attention_mask=m).logits for m in masks]
    for r, g, m in zip(ref, got, masks):
        real = m.bool()
        assert torch.allclose(r[real], g[real], atol=1e-5)


def test_a_failing_graph_capture_falls_back_to_eager(tmp_path, data, monkeypatch, caplog):
    """A capture that fails (here: a stand-in that raises) costs nothing: the run trains on
    eagerly, says why in the log and the manifest, and ends with the eager run's adapter."""
    model = gemma3_dir(tmp_path / "g3")
    ref = run(_cfg(model, data, cuda_graphs="off"), out=tmp_path / "eager")

    class Failing:
        captured, capture_seconds = 0, 0.0

        def __init__(self, *a, **k):
            pass

        def prepare(self, examples):
            return {"examples": examples}

        def forward_backward(self, examples, inv_denom):
            raise RuntimeError("capture failed on purpose")

    monkeypatch.setattr(graphs, "CudaGraphStep", Failing)
    monkeypatch.setattr(TrainConfig, "wants_graphs", lambda self, device, processes=1: True)
    with caplog.at_level("WARNING", logger="breachlab.vuln.train"):
        got = run(_cfg(model, data), out=tmp_path / "fallback")
    man = json.loads((got / "manifest.json").read_text())
    assert man["status"] == "finished" and "capture failed on purpose" in man["cuda_graphs_error"]
    assert man["cuda_graphs"] == 0
    assert any("training without graphs" in r.getMessage() for r in caplog.records)
    a, b = _adapter(ref), _adapter(got)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7), k


def test_cuda_graphs_on_without_a_gpu_is_refused_before_training(tmp_path, data):
    model = gemma3_dir(tmp_path / "g3")
    with pytest.raises(ValueError, match="cuda_graphs: on needs a CUDA device"):
        run(_cfg(model, data, cuda_graphs="on", device="cpu"), out=tmp_path / "r")


def test_only_models_with_wide_heads_get_the_slot_layout(gemma4, tmp_path):
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.training.plan import load_config, meta_model

    assert patches.has_wide_heads(meta_model(load_config("gemma-4-e4b")))  # 512-wide full-attention heads
    assert not patches.has_wide_heads(meta_model(load_config("gemma-3-270m")))  # 256
    assert not patches.has_wide_heads(AutoModelForCausalLM.from_pretrained(gemma4))  # tiny: 16 / 32


def _lora(model, r=4):
    from peft import LoraConfig, get_peft_model

    from breachlab.vuln.training.anatomy import lora_targets

    torch.manual_seed(0)
    p = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=lora_targets(model)))
    for name, w in p.named_parameters():
        if "lora_B" in name:
            w.data.normal_(0, 0.02)
    return p


@pytest.mark.parametrize("slots", [False, True])
def test_shared_kv_layers_at_the_answers_change_no_number(gemma4, monkeypatch, slots):
    """Gemma 4's KV-shared layers run at the supervised positions only: same loss and
    gradients as on the whole row (checkpointing on, so the recomputation takes the same
    path), and they really see only those positions."""
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.training.sft import Encoded, collate_packed, forward_loss

    g = torch.Generator().manual_seed(5)
    examples = [Encoded(torch.randint(3, 100, (n,), generator=g).tolist(), n - a)
                for n, a in ((30, 7), (12, 4), (21, 9))]
    batch = collate_packed(examples, 0, multiple=16, slot_multiple=16 if slots else None)
    if slots:  # the tiny heads are narrow: let the full-attention layers take the slot path
        monkeypatch.setattr(patches, "WIDE_HEAD", 0)

    def run_once(at_answers: bool):
        model = AutoModelForCausalLM.from_pretrained(gemma4, attn_implementation="sdpa")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model = _lora(model).train()
        patches.use_packed_attention(model)
        seen = []
        last = speed_layers(model)[-1]
        last.register_forward_hook(lambda m, a, o: seen.append((o[0] if isinstance(o, tuple) else o).shape[1]))
        if at_answers:
            assert patches.use_shared_layers_at_answers(model) == 2  # the tiny model shares KV in its last 2 layers
        loss, _ = forward_loss(model, batch, torch.device("cpu"))
        loss.backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        patches.set_kept_positions(model, None)
        return float(loss), grads, seen

    loss_row, grads_row, seen_row = run_once(False)
    loss_ans, grads_ans, seen_ans = run_once(True)
    assert seen_row[0] == batch["input_ids"].shape[1]
    assert seen_ans[0] == len(batch["keep"]) < seen_row[0]
    assert loss_ans == pytest.approx(loss_row, rel=1e-5)
    assert grads_row.keys() == grads_ans.keys()
    for k in grads_row:
        assert torch.allclose(grads_row[k], grads_ans[k], rtol=1e-4, atol=1e-6), k


def speed_layers(model):
    from breachlab.vuln.training.anatomy import decoder_layers

    return list(decoder_layers(model))


def test_only_gemma4_kv_shared_layers_are_hooked(tmp_path, gemma4):
    from transformers import AutoModelForCausalLM

    assert patches.use_shared_layers_at_answers(AutoModelForCausalLM.from_pretrained(gemma3_dir(tmp_path / "g3"))) == 0
    model = AutoModelForCausalLM.from_pretrained(gemma4)
    assert patches.use_shared_layers_at_answers(model) == 2
    assert patches.use_shared_layers_at_answers(model) == 2  # hooked once
    assert sum(len(layer._forward_pre_hooks) for layer in speed_layers(model)) == 2
    # without kept positions the hooks do nothing: generation and 2-D masks are untouched
    patches.set_kept_positions(model, None)
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        assert model(input_ids=ids).logits.shape[1] == 4


def test_lora_runs_in_the_activation_dtype(gemma4):
    """bf16 model, float32 adapters: the LoRA matmuls run in bf16 (no float32 copy of each
    adapter's input kept for backward), the adapter weights stay float32 and get float32
    gradients, the state dict keeps its names, and the output is what peft's float32 path
    gives up to bf16 rounding."""
    from transformers import AutoModelForCausalLM

    def build(cast: bool):
        m = _lora(AutoModelForCausalLM.from_pretrained(gemma4, dtype=torch.bfloat16)).train()
        if cast:
            assert patches.lora_in_activation_dtype(m) > 0
        return m

    ref, got = build(False), build(True)
    assert ref.state_dict().keys() == got.state_dict().keys()
    ids = torch.randint(3, 100, (1, 24), generator=torch.Generator().manual_seed(0))
    saved = {}
    for name, m in (("ref", ref), ("got", got)):
        sizes = []

        def pack(t, sizes=sizes):
            sizes.append((t.dtype, t.numel()))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = m(input_ids=ids).logits.float()
        out.sum().backward()
        saved[name] = (out, sum(n for d, n in sizes if d == torch.float32))
    assert torch.allclose(saved["ref"][0], saved["got"][0], rtol=0.05, atol=0.05)
    assert saved["got"][1] < saved["ref"][1]  # fewer float32 values kept for backward
    lora = [p for n, p in got.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
                        for p in lora)


def test_kept_layers_take_the_cheapest_that_fit():
    assert budget_mod.kept_layers([3.0, 1.0, 2.0, 1.0], [10] * 4, 25) == {1, 3}  # 10 + 10, then 20 does not fit
    assert budget_mod.kept_layers([3.0, 1.0, 2.0, 1.0], [10] * 4, 40) == {1, 2, 3}
    assert budget_mod.kept_layers([3.0, 1.0], [1, 100], 10) == {0}  # a layer at few tokens is cheap
    assert budget_mod.kept_layers([1.0, 1.0], [10, 10], 0) == set()


def test_an_activation_budget_keeps_some_layers_and_trains_the_same_adapter(tmp_path, data, gemma4):
    """Layers within the budget are not checkpointed (their flags say so) and the adapter is
    the one full checkpointing trains (fp32, CPU)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gemma4)
    model.gradient_checkpointing_enable()
    budget = budget_mod.ActivationBudget(model, [4.0, 3.0, 2.0, 1.0], budget_bytes=70)
    assert budget.apply(10) == 3 and [layer.gradient_checkpointing for layer in speed_layers(model)] == [
        True, False, False, False]
    assert budget.apply(100) == 0
    ref = run(_cfg(gemma4, data), out=tmp_path / "all")
    got = run(_cfg(gemma4, data, activation_budget_gib=1.0), out=tmp_path / "budget")
    man = json.loads((got / "manifest.json").read_text())
    assert man["activation_budget_gib"] == 1.0 and man["shared_layers_at_answers"] == 2
    a, b = _adapter(ref), _adapter(got)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k


@pytest.mark.gpu
@cuda
def test_liger_patches_the_instance_only(tmp_path):
    """After Liger is patched into a model, a model built later in the same process (the
    planner's CPU copy, a model Unsloth loads) gets transformers' own layers and runs on the CPU."""
    pytest.importorskip("liger_kernel")
    import transformers.models.gemma3.modeling_gemma3 as mod
    from transformers import AutoModelForCausalLM

    path = gemma3_dir(tmp_path / "g3")
    names = {k: v for k, v in vars(mod).items() if not k.startswith("__")}
    patched = AutoModelForCausalLM.from_pretrained(path).cuda()
    assert "RMSNorm" in patches.fused_kernels(patched, "liger")
    assert "Liger" in repr(patched.model.layers[0].input_layernorm)  # patched in place, class name kept
    assert {k: v for k, v in vars(mod).items() if not k.startswith("__")} == names
    later = AutoModelForCausalLM.from_pretrained(path)
    assert "Liger" not in repr(later.model.layers[0].input_layernorm)
    with torch.no_grad():
        assert torch.isfinite(later(input_ids=torch.tensor([[3, 4, 5]])).logits).all()


def test_graph_step_control_flow_captures_once_and_replays_every_step(monkeypatch):
    """CPU check of CudaGraphStep's bookkeeping with torch.cuda's graph API faked: the first
    step of a bucket captures and replays, the next only replays (a lost ``return entry`` in
    ``_capture`` once made every CUDA run die on its first step; the GPU test above is the real one).
    The warm-up runs in the graphs' pool and on the capture's stream, every capture alike."""
    import contextlib

    from breachlab.vuln.training.speed import graphs

    replays, events = [], []

    class FakeGraph:
        def replay(self):
            replays.append(1)

    class FakeStream:
        def wait_stream(self, other):
            pass

    streams = []

    def new_stream(*a, **k):
        streams.append(FakeStream())
        return streams[-1]

    @contextlib.contextmanager
    def pooled(pool):
        events.append(("pool in", pool))
        yield True
        events.append(("pool out", pool))

    @contextlib.contextmanager
    def capture(graph, pool=None, stream=None):
        events.append(("capture", pool, stream))
        yield

    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", capture)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: events.append(("stream", s)) or contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "Stream", new_stream)
    monkeypatch.setattr(torch.cuda, "MemPool", lambda: type("Pool", (), {"id": (7, 1)})(), raising=False)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a, **k: FakeStream())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(graphs, "_pooled", pooled)

    step = object.__new__(graphs.CudaGraphStep)
    grad = torch.zeros(3)
    step.params = [type("P", (), {"grad": grad})()]
    step.graphs, step.budget, step.warmup, step.capture_seconds, step.tables = {}, None, 1, 0.0, []
    step.stream = step.pool = step.mempool = None
    step.warmups_pooled = 0
    loads = []
    monkeypatch.setattr(step, "_static", lambda key: {"key": key}, raising=False)
    monkeypatch.setattr(step, "_load", lambda entry, prep, inv: loads.append(entry["key"]), raising=False)
    monkeypatch.setattr(step, "_fwd_bwd", lambda entry: events.append(("fwd_bwd",)) or torch.tensor(2.5),
                        raising=False)
    prep = {"key": (128, 32, False, False, None)}
    first = step.forward_backward(prep, 0.5)
    second = step.forward_backward(prep, 0.5)
    assert float(first) == float(second) == 2.5
    assert step.captured == 1 and len(replays) == 2
    assert loads == [prep["key"]] * 3  # staged for the capture, then once per replay
    step.forward_backward({"key": (256, 32, False, False, None)}, 0.5)  # a second bucket
    assert len(streams) == 1, "one stream for every warm-up and capture"
    one = [("stream", streams[0]), ("pool in", (7, 1)), ("fwd_bwd",), ("pool out", (7, 1)),
           ("capture", (7, 1), streams[0]), ("fwd_bwd",)]
    assert events == one + one, "each warm-up in the pool, on the stream, that its capture then uses"
    assert step.warmups_pooled == 2


def test_warm_ups_stay_outside_the_pool_where_torch_cannot_route_them(monkeypatch):
    """Without torch's stream routing (or a pool) the warm-up allocates as before and says so."""
    from breachlab.vuln.training.speed import graphs

    with graphs._pooled(None) as pooled:
        assert pooled is False
    monkeypatch.delattr(torch._C, "_cuda_beginAllocateCurrentStreamToPool", raising=False)
    with graphs._pooled((1, 0)) as pooled:
        assert pooled is False


@pytest.mark.parametrize("arch", ["qwen2", "qwen2-slots", "qwen2-head-chunks", "gemma3", "gemma3-slots", "gemma4"])
def test_a_graph_bucket_gives_the_eager_loss_and_gradients(arch, tmp_path, monkeypatch):
    """CPU check of what a CUDA graph captures: the bucket's static tensors, loaded, and the
    forward + backward with the masks built from them (no host sync: whether the sliding
    window binds comes from the key) give the eager step's loss and gradients. Rows with a
    sequence longer than the window and rows without one; Gemma 4's table off the GPU."""
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.training.sft import Encoded, collate_packed, forward_loss
    from tests.vuln.tiny import qwen2_dir

    path = {"qwen2": qwen2_dir, "qwen2-slots": qwen2_dir, "qwen2-head-chunks": qwen2_dir, "gemma3": gemma3_dir,
            "gemma3-slots": gemma3_dir, "gemma4": gemma4_text_dir}[arch](tmp_path / "m")

    def model():
        m = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa")
        p = _lora(m)
        if arch == "gemma4":
            ple.offload_per_layer_embeddings(p, include_cpu=True, store="disk", directory=str(tmp_path))
        return p.train()

    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: None)
    eager, graphed = model(), model()  # the eager reference attends over the whole row
    slots = arch.endswith("-slots")  # slot_attention: all (auto on CUDA) — every full-attention layer per example
    spying = [False]
    if slots:
        assert patches.use_packed_attention(graphed, every_layer=True)
        calls = []
        sdpa = torch.nn.functional.scaled_dot_product_attention
        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                            lambda q, *a, **k: (spying[0] and calls.append(q.shape[0])) or sdpa(q, *a, **k))
    if arch == "qwen2-head-chunks":  # the LM head's loss 5 positions at a time, inside the bucket's step
        patches.context(graphed).head_chunk = 5
    step = graphs.CudaGraphStep(graphed, pad_id=0, dtype=torch.float32, t_multiple=64, k_multiple=16,
                               autocast=False, slot_multiple=16 if slots else None)
    assert (step.slot_multiple is not None) == slots
    vocab = graphed.get_base_model().config.get_text_config().vocab_size
    g = torch.Generator().manual_seed(1)
    keys = set()
    for sizes in ([(12, 3), (9, 2)], [(70, 9), (20, 4)]):  # all inside the window; one beyond it
        examples = [Encoded(torch.randint(3, vocab, (n,), generator=g).tolist(), n - a) for n, a in sizes]
        n = sum(e.n_answer for e in examples)
        prep = step.prepare(examples)
        keys.add(prep["key"])
        entry = step._static(prep["key"])
        step._load(entry, prep, 1.0 / n)
        spying[0] = slots
        loss_g = step._fwd_bwd(entry)
        spying[0] = False
        step._unstage()
        loss_e, _ = forward_loss(eager, collate_packed(examples, 0, multiple=64), torch.device("cpu"))
        (loss_e / n).backward()
        assert float(loss_g) == pytest.approx(float(loss_e), rel=1e-5)
        _same_grads_then_zero(eager, graphed)
    binds = {k[3] for k in keys}
    assert binds == ({False} if arch.startswith("qwen2") else {False, True})
    assert all(k[4] is not None for k in keys) == slots, "a slot layout in every bucket, and only with slots"
    if arch == "qwen2-slots":
        assert calls and set(calls) == {2}, "every layer attended per example (2 per row), none over the row"
    if arch == "gemma3-slots":  # full-attention layers per example; sliding-window ones over the row
        assert set(calls) == {1, 2}, calls


def test_slot_attention_auto_is_every_layer_on_cuda_and_the_wide_ones_elsewhere():
    """``auto`` resolves by device: every full-attention layer per example on CUDA (measured
    faster on an H200), the wide-head layers only elsewhere (not measured on the CPU)."""
    assert patches.slot_mode("auto", cuda=True) == "all"
    assert patches.slot_mode("auto", cuda=False) == "wide"
    assert patches.slot_mode("wide", cuda=True) == "wide" and patches.slot_mode("all", cuda=False) == "all"
    with pytest.raises(ValueError, match="slot_attention"):
        patches.slot_mode("some", cuda=True)


def test_slot_attention_all_trains_the_same_adapter_as_the_whole_row(tmp_path, data):
    """``slot_attention: all`` on a model without wide heads (Qwen2): each example attends in
    its own slot in every full-attention layer; the adapter is the row-wide mask's."""
    from tests.vuln.tiny import qwen2_dir

    model = qwen2_dir(tmp_path / "q")
    row = run(_cfg(model, data), out=tmp_path / "row")
    per_example = run(_cfg(model, data, slot_attention="all"), out=tmp_path / "slots")
    assert json.loads((per_example / "manifest.json").read_text())["slot_attention"] == "all"
    assert json.loads((row / "manifest.json").read_text())["slot_attention"] is None
    a, b = _adapter(row), _adapter(per_example)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k
    with pytest.raises(ConfigError, match="slot_attention"):
        TrainConfig(data="x", slot_attention="some")
