"""``cuda_graphs``: forward + backward of a packed micro-batch replayed from CUDA graphs.

The speed-up that mattered most, on its own and with the patches of
:mod:`breachlab.vuln.training.speed.patches` (docs/benchmarks.md, "Training speed").
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

from breachlab.vuln.training import sft
from breachlab.vuln.training.anatomy import text_config
from breachlab.vuln.training.speed.buckets import Bucket, GraphPlan, Need, choose, smallest_cover
from breachlab.vuln.training.speed.budget import ActivationBudget
from breachlab.vuln.training.speed.patches import context, has_wide_heads
from breachlab.vuln.training.speed.ple import cpu_tables

log = logging.getLogger(__name__)


class CudaGraphStep:
    """Forward + backward of a packed batch replayed from CUDA graphs.

    Why: a LoRA step of a 4-billion-parameter model on 8 short examples launches ~16,000
    kernels; eager PyTorch spends longer *launching* them than the GPU spends running them
    (in a profile the GPU was busy well under half of the step).  A captured graph launches
    them all at once.

    How: a graph needs fixed shapes and fixed addresses, so the packed row is padded to a
    multiple of ``t_multiple`` tokens and the supervised positions to a multiple of
    ``k_multiple``; each (length, positions) bucket gets its own graph, captured the first
    time it is seen (one eager warm-up pass on a side stream, then the capture; the
    gradients of the step in progress are saved and restored around it) and replayed after
    that.  Past ``limit`` graphs, a batch of a new bucket replays the smallest captured
    graph that can hold it, padded (:mod:`breachlab.vuln.training.speed.buckets`): each graph keeps
    host memory for the rest of the run.  All graphs share one memory pool, and the warm-ups
    run in it too, on the captures' one stream (:func:`_pooled`): a new bucket's warm-up
    reuses the memory that the earlier graphs hold between replays instead of reserving
    another step's worth beside it.  Inputs are copied into the bucket's static
    tensors; the attention masks are built inside the graph from the static segment ids, so
    the (T, T) mask lives in the shared pool (one bucket's at a time) instead of one static
    mask per bucket; per-layer embedding rows (kept off the GPU) are gathered and copied in
    before the replay.  Gradients accumulate into ``.grad`` tensors that must stay
    allocated: zero them with ``optimizer.zero_grad(set_to_none=False)``.

    Requirements, checked by the caller: one CUDA process, no dropout (a replay repeats
    the captured random numbers), gradient checkpointing without RNG-state preservation
    (``preserve_rng_state=False``).  ``autocast`` runs the step under bf16/fp16 autocast
    (without its weight cache, which a graph cannot keep); off, the model runs in its dtype.
    """

    def __init__(self, model: Any, pad_id: int, dtype: Any = None, t_multiple: int = 512, k_multiple: int = 256,
                 warmup: int = 1, autocast: bool = True, slot_multiple: int | None = 256,
                 budget: ActivationBudget | None = None, loss_fn: Callable[..., tuple[Any, Any]] | None = None,
                 limit: int = 0, pin_rows: bool | None = None):
        import torch

        self.model = model
        self.pad_id = pad_id
        self.dtype = dtype or torch.bfloat16  # of the attention masks, and of autocast when it is on
        self.autocast = autocast
        self.t_multiple, self.k_multiple, self.warmup = t_multiple, k_multiple, warmup
        # no slot layout (and no slot shape in the bucket key) when no layer would use it
        wanted = has_wide_heads(model) or context(model).every_layer  # as use_packed_attention set it
        self.slot_multiple = slot_multiple if wanted else None
        self.device = next(p.device for p in model.parameters() if p.requires_grad)
        self.params = [p for p in model.parameters() if p.requires_grad]
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.stream: Any = None  # the warm-ups' and captures' stream, and their pool: made at the first capture
        self.pool: Any = None
        self.mempool: Any = None
        self.warmups_pooled = 0  # how many warm-ups ran in the graphs' pool (0 where torch cannot route them)
        self.tables = cpu_tables(model)
        self.pin_rows = rows_pinned(self.tables, pin_rows, self.device.type)
        self.plan = GraphPlan(limit)
        self.budget = budget  # which layers keep their activations, per bucket
        self.graphs: dict[tuple, dict] = {}
        self.capture_seconds = 0.0
        # (model, batch, device) -> (loss sum, tokens): the run's objective, captured as it is
        self.loss_fn = loss_fn or sft.forward_loss

    # -- public ------------------------------------------------------------------------
    def plan_ahead(self, batches: Iterable[Any]) -> list[Bucket]:
        """``cuda_graph_plan``: choose this run's graphs (at most ``limit``) before its first step,
        from every micro-batch it will train on (lists of Encoded); returns them.  Batches
        replay the smallest planned graph that holds them from then on."""
        counts: Counter = Counter()
        for examples in batches:
            batch = sft.collate_packed(examples, self.pad_id, multiple=self.t_multiple,
                                       slot_multiple=self.slot_multiple)
            counts[self._need(batch, [len(e.ids) for e in examples])] += 1
        if not counts:
            return []
        planned = choose(counts, self.plan.limit or 1)
        self.plan = GraphPlan(self.plan.limit, planned)
        own = sum(n.bucket.tokens * k for n, k in counts.items())
        replayed = sum(k * smallest_cover(planned, n).tokens for n, k in counts.items())  # type: ignore[union-attr]
        log.info("CUDA graphs planned for %d batches: %d graphs, %+.1f%% row tokens over the batches' own",
                 sum(counts.values()), len(planned), 100 * (replayed / max(own, 1) - 1))
        return planned

    def prepare(self, examples: Any) -> dict:
        """The host-side work of a step (packing, bucket, per-layer rows gathered into
        page-locked or pageable memory, :attr:`pin_rows`), done ahead: call it for the next
        micro-batch while the GPU still runs the current one, and pass the result to
        :meth:`forward_backward`."""
        batch = sft.collate_packed(examples, self.pad_id, multiple=self.t_multiple, slot_multiple=self.slot_multiple)
        lengths = [len(e.ids) for e in examples]
        need = self._need(batch, lengths)
        key = self.plan.route(need)
        if key != need.bucket:  # a larger graph replays it: its layout
            batch = sft.collate_packed(examples, self.pad_id, width=key.tokens, slot_shape=key.slots)
        rows = [table.gather(batch["input_ids"], pinned=self.pin_rows) for table in self.tables]
        return {"batch": batch, "key": key, "rows": rows,
                "longest": max(lengths, default=0), "examples": examples}

    def forward_backward(self, examples: Any, inv_denom: float) -> Any:
        """Accumulate d(loss_sum * inv_denom)/dθ into ``.grad``; returns loss_sum (0-d tensor).
        ``examples``: the micro-batch's :class:`~breachlab.vuln.training.sft.Encoded` list, or what
        :meth:`prepare` made of it."""
        prep = examples if isinstance(examples, dict) else self.prepare(examples)
        entry = self.graphs.get(prep["key"])
        if entry is None:
            entry = self._capture(prep, inv_denom)
        self._load(entry, prep, inv_denom)
        # the rows are in the bucket's buffers now: their host copy goes at once, not when the caller
        # drops ``prep`` (the trainer's loop still holds a step's last one while the next is prepared:
        # two steps' rows in host memory, E4B's 6,144-token bucket 126 MiB each)
        prep["rows"] = []
        entry["graph"].replay()
        self._unstage()
        # a copy: the next replay of this bucket (the next micro-batch of a step) overwrites it
        return entry["loss_sum"].clone()

    @property
    def captured(self) -> int:
        return len(self.graphs)

    # -- internals ---------------------------------------------------------------------
    def _key(self, batch: dict, longest: int) -> Bucket:
        k = len(batch["keep"])
        kb = -(-max(k, 1) // self.k_multiple) * self.k_multiple
        cfg = text_config(self.model)
        window = getattr(cfg, "sliding_window", None)
        sliding = bool(window) and "sliding_attention" in set(getattr(cfg, "layer_types", None) or [])
        return Bucket(batch["input_ids"].shape[1], kb, sliding, sliding and longest > window,
                      tuple(batch["slot_shape"]) if "slot_shape" in batch else None)

    def _need(self, batch: dict, lengths: list[int]) -> Need:
        slot = -(-max(lengths, default=1) // self.slot_multiple) * self.slot_multiple if self.slot_multiple else 0
        return Need(self._key(batch, max(lengths, default=0)), len(lengths), slot)

    def _static(self, key: tuple) -> dict:
        import torch

        t, kb, sliding, binds, slot_shape = key
        dev = self.device
        batch = {"input_ids": torch.zeros((1, t), dtype=torch.long, device=dev),
                 "position_ids": torch.zeros((1, t), dtype=torch.long, device=dev),
                 "segments": torch.zeros((1, t), dtype=torch.long, device=dev),
                 "keep": torch.zeros((kb,), dtype=torch.long, device=dev),
                 "targets": torch.full((kb,), -100, dtype=torch.long, device=dev),
                 "first": torch.zeros((1,), dtype=torch.long, device=dev), "n_supervised": 0}
        if slot_shape is not None:
            n, slot = slot_shape
            batch.update(slots=torch.zeros((n * slot,), dtype=torch.long, device=dev),
                         inverse=torch.zeros((t,), dtype=torch.long, device=dev), slot_shape=slot_shape)
        ple = [torch.zeros((1, t, tb.embedding_dim), dtype=tb.dtype, device=dev) for tb in self.tables]
        return {"key": key, "batch": batch, "inv_denom": torch.zeros((), dtype=torch.float32, device=dev), "ple": ple}

    def _load(self, entry: dict, prep: dict, inv_denom: float) -> None:
        """Copy a prepared batch into the bucket's static tensors (asynchronously: no sync)."""
        batch = prep["batch"]
        st = entry["batch"]
        for name in ("input_ids", "position_ids", "segments", "slots", "inverse"):
            if name in st:
                st[name].copy_(batch[name], non_blocking=True)
        k = len(batch["keep"])
        st["keep"].zero_()
        st["keep"][:k].copy_(batch["keep"], non_blocking=True)
        st["targets"].fill_(-100)
        st["targets"][:k].copy_(batch["targets"], non_blocking=True)
        entry["inv_denom"].fill_(inv_denom)
        for table, buf, rows in zip(self.tables, entry["ple"], prep["rows"]):
            buf.copy_(rows.view_as(buf), non_blocking=True)
            if table.scale is not None and table.scale_dev is None:
                table.scale_dev = table.scale.to(buf.device, buf.dtype)
            table.staged = buf

    def _unstage(self) -> None:
        for table in self.tables:
            table.staged = None

    def _stream_and_pool(self) -> tuple[Any, Any]:
        """One stream and one pool for every warm-up and capture (a pool's free blocks serve only
        the stream that freed them), made at the first capture."""
        import torch

        if self.stream is None:
            self.stream = torch.cuda.Stream()
            maker = getattr(torch.cuda, "MemPool", None)  # a pool object keeps the pool alive between captures
            self.mempool = maker() if maker is not None else None
            self.pool = self.mempool.id if self.mempool is not None else torch.cuda.graph_pool_handle()
        return self.stream, self.pool

    def _masks(self, entry: dict) -> Any:
        """The bucket's attention masks from its static segment ids, with no host sync (so they
        can be captured): whether the sliding window binds is part of the bucket's key."""
        _, _, sliding, binds, slots = entry["key"]
        longest = None
        if sliding:  # segment_masks only asks whether the longest segment exceeds the window
            longest = int(getattr(text_config(self.model), "sliding_window", 0) or 0) + 1 if binds else 0
        return sft.row_masks(self.model, entry["batch"]["segments"], self.dtype, slots is not None, longest=longest)

    def _fwd_bwd(self, entry: dict) -> Any:
        import torch

        batch = {**entry["batch"], "masks": self._masks(entry)}
        with torch.autocast("cuda", dtype=self.dtype, enabled=self.autocast, cache_enabled=False):
            loss_sum, _ = self.loss_fn(self.model, batch, self.device)
        (loss_sum * entry["inv_denom"]).backward()
        return loss_sum.detach()

    def _capture(self, prep: dict, inv_denom: float) -> dict:
        import torch

        t0 = time.perf_counter()
        key = prep["key"]
        kept = self.budget.apply(key[0], key[1]) if self.budget is not None else 0
        entry = self._static(key)
        saved = _grads_to_keep(self.params)
        graph = torch.cuda.CUDAGraph()
        stream, pool = self._stream_and_pool()
        try:  # whatever fails, the step's gradients so far are put back
            self._load(entry, prep, inv_denom)
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), _pooled(pool) as pooled:
                for _ in range(self.warmup):
                    self._fwd_bwd(entry)
            self.warmups_pooled += int(pooled)
            torch.cuda.current_stream().wait_stream(stream)
            with torch.cuda.graph(graph, pool=pool, stream=stream):
                entry["loss_sum"] = self._fwd_bwd(entry)
        finally:
            self._unstage()
            _put_back(self.params, saved)
        entry["graph"] = graph
        self.graphs[key] = entry
        torch.cuda.synchronize()
        self.capture_seconds += time.perf_counter() - t0
        log.info("CUDA graph %d captured for %d tokens / %d supervised positions%s (%.1f s)",
                 len(self.graphs), key[0], key[1],
                 f", {kept} layers not recomputed" if self.budget is not None else "", time.perf_counter() - t0)
        return entry


def rows_pinned(tables: list, asked: bool | None, device_type: str) -> bool:
    """Whether a step's per-layer rows are gathered into page-locked memory (an asynchronous copy
    to the GPU) or pageable: as ``asked``, or, with None, as the tables were offloaded
    (``ple_pin_rows``); never off CUDA."""
    pin = all(t.pin_rows for t in tables) if asked is None else asked
    return pin and device_type == "cuda"


def _grads_to_keep(params: list) -> list | None:
    """The step's gradients so far, which a capture's warm-up and capture add to: copies to
    put back after it, or None when every one is zero (a step's first micro-batch), so that no
    copy of every LoRA gradient sits in GPU memory through the capture, where a graph run's
    allocated peak is."""
    import torch

    if not params or not torch.stack([p.grad.any() for p in params]).any().item():
        return None
    return [p.grad.clone() for p in params]


def _put_back(params: list, saved: list | None) -> None:
    for i, p in enumerate(params):
        if saved is None:
            p.grad.zero_()
        else:
            p.grad.copy_(saved[i])


@contextlib.contextmanager
def _pooled(pool: Any) -> Iterator[bool]:
    """Eager allocations on the current stream go to the graphs' ``pool`` (True), from every
    thread: autograd runs the backward on a thread of its own, which ``torch.cuda.use_mem_pool``
    (the calling thread's allocations only) would miss.  Where this torch has no stream routing,
    allocations stay where they were (False): the warm-up then needs its own memory."""
    import torch

    begin = getattr(torch._C, "_cuda_beginAllocateCurrentStreamToPool", None)
    end = getattr(torch._C, "_cuda_endAllocateToPool", None)
    release = getattr(torch._C, "_cuda_releasePool", None)
    if pool is None or begin is None or end is None or release is None:
        yield False
        return
    device = torch.cuda.current_device()
    begin(device, pool)
    try:
        yield True
    finally:
        end(device, pool)
        release(device, pool)
