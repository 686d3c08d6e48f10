"""Training speed-ups (docs/benchmarks.md, fourth and fifth sessions); all but the bf16 LoRA
matmuls change no number.

Profiled on an H200 (E4B QLoRA shape, batch 8): ~16,900 kernel launches per step and the GPU
busy 21-44 % of it — the step was bound by launching kernels from Python, not by arithmetic.

* :class:`CudaGraphStep` — forward + backward captured as CUDA graphs (one per length
  bucket) and replayed: what turned that around (2.2-3.0x the HF Trainer baseline; 3.5-3.8x
  with the pieces below).
* :func:`packed_attention_forward` — for a packed row (``sft.collate_packed``), layers whose
  heads are too wide for flash/cuDNN kernels (Gemma 4's 512) attend per example instead of
  over the whole row's block-diagonal mask.
* :func:`offload_per_layer_embeddings` — Gemma 3n / Gemma 4 "E" models carry a second,
  per-layer embedding table (262,144 × layers·256: 2.8 B parameters, 5.25 GiB in bf16 for
  E4B, more than the rest of the quantised model).  It is a frozen lookup table: a step
  needs only the rows of its own tokens.  Kept in CPU memory, rows gathered there and
  copied to the GPU, it stops costing GPU memory at all.
* :func:`use_shared_layers_at_answers` — Gemma 4's KV-shared layers (18 of E4B's 42) run
  only at the positions the loss reads: nothing else reads their output (fifth session).
* :func:`lora_in_activation_dtype` — the LoRA matmuls in bf16 with float32 adapter weights,
  instead of peft's float32 copy of every adapter's input.
* :class:`ActivationBudget` — with a memory budget, the layers that fit keep their
  activations instead of being recomputed by gradient checkpointing.
* :func:`fused_kernels` — Liger's Triton kernels (``liger-kernel``, optional) for the
  model's RMSNorm and gated MLP, patched into the model *instance* (nothing process-wide): less GPU time, though not fewer launches from Python.  The
  loss is not fused (breachlab computes logits only where the loss needs them).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

PER_LAYER_TABLE = "embed_tokens_per_layer"


PACKED_ATTENTION = "breachlab_packed"
WIDE_HEAD = 256  # head dims above this get no fused SDPA kernel (flash / cuDNN take up to 256)
# The slot layout of the packed row being trained on (set by sft._answer_logits per forward).
_LAYOUT: dict | None = None


def set_slot_layout(batch: dict | None, device: Any = None, dtype: Any = None) -> None:
    """Make ``batch``'s slot layout (``sft.slot_layout``) the one
    :func:`packed_attention_forward` uses from now on; None (or a batch without one): none.

    Set before each forward pass and left in place: gradient checkpointing runs the
    forward again inside the backward pass, and must take the same path there.
    """
    global _LAYOUT
    if batch is None or "slots" not in batch:
        _LAYOUT = None
        return
    import torch

    mask = batch["slot_mask"]
    if mask.dtype == torch.bool:  # additive, in the attention dtype
        mask = torch.zeros(mask.shape, dtype=dtype).masked_fill_(~mask, torch.finfo(dtype).min)
    _LAYOUT = {"slots": batch["slots"].to(device), "inverse": batch["inverse"].to(device),
               "mask": mask.to(device), "shape": tuple(batch["slot_shape"])}


def packed_attention_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                             dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers attention function: SDPA, except for full-attention layers with heads
    wider than fused kernels take (Gemma 4: 512) on a packed row with a slot layout.

    There the row's tokens are gathered into one slot per example, attention runs on
    (examples, heads, L, L) with a causal mask per slot, and the result is gathered back
    to row order: the same numbers as the (T, T) block-diagonal mask, at examples × L²
    instead of T² cost (the memory-efficient kernel such heads fall back to skips nothing).
    """
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    lay = _LAYOUT
    if (lay is None or query.shape[0] != 1 or kwargs.get("sliding_window") is not None
            or query.shape[-1] <= WIDE_HEAD or query.shape[2] != lay["inverse"].shape[0]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    n, slot = lay["shape"]
    heads, kv_heads = query.shape[1], key.shape[1]

    def grid(x: Any) -> Any:  # (1, h, T, d) -> (S, h, L, d)
        h, d = x.shape[1], x.shape[-1]
        return x[0].index_select(1, lay["slots"]).view(h, n, slot, d).transpose(0, 1)

    q, k, v = grid(query), grid(key), grid(value)
    if kv_heads != heads:  # grouped-query attention: each KV head serves heads/kv_heads queries
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=lay["mask"].to(q.dtype), dropout_p=dropout,
                                         scale=scaling)
    out = out.transpose(0, 1).reshape(heads, n * slot, -1).index_select(1, lay["inverse"])  # (h, T, d)
    return out.transpose(0, 1).unsqueeze(0), None


# The supervised positions of the packed row being trained on, for the KV-shared layers
# (set by sft._answer_logits per forward, left in place for the recomputation in backward).
_KEPT: Any = None
SHARED_SLICE = "_breachlab_shared_kv_slice"


def use_shared_layers_at_answers(model: Any) -> int:
    """Run Gemma 4's KV-shared decoder layers only at the positions the loss reads.

    The last ``num_kv_shared_layers`` layers of Gemma 4 (18 of E4B's 42) compute no keys or
    values of their own: they attend with those of an earlier layer.  So nothing reads
    their output at a position except the next layer at that position, and in the end the
    logits: for a loss over the answer tokens, their work at every prompt position is
    thrown away.  transformers skips it when generating (an integer ``logits_to_keep``);
    here it is skipped for training: a forward pre-hook on each shared layer gathers its
    inputs (the first one's hidden states; per-layer input, rotary cos/sin, the rows of the
    4-D attention mask, position ids) at the supervised positions set by
    :func:`set_kept_positions`, and the final hidden states come out at those positions only.
    The numbers are the same as running them on the whole row.  In the Juliet + SVEN training
    set answers are 7.8 % of the tokens; with :func:`lora_in_activation_dtype` this made the
    E4B QLoRA step 1.45x as fast (docs/benchmarks.md, fifth session, run 17).

    Returns the number of layers hooked (0: the model has no KV-shared layers, or is not a
    Gemma 4 text stack whose layers take these arguments).
    """
    import functools

    from breachlab.vuln.sft import decoder_layers

    base = _base(model)
    if getattr(base, SHARED_SLICE, 0):
        return getattr(base, SHARED_SLICE)
    if not str(getattr(_text_config(model), "model_type", "")).startswith("gemma4"):
        return 0
    layers = list(decoder_layers(model) or [])
    flags = [bool(getattr(getattr(layer, "self_attn", None), "is_kv_shared_layer", False)) for layer in layers]
    if not any(flags) or flags.index(True) == 0 or not all(flags[flags.index(True):]):
        return 0  # only a tail of shared layers after unshared ones is understood
    first = flags.index(True)
    for i in range(first, len(layers)):
        layers[i].register_forward_pre_hook(functools.partial(_at_kept_positions, i == first), with_kwargs=True)
    setattr(base, SHARED_SLICE, len(layers) - first)
    return len(layers) - first


def set_kept_positions(model: Any, keep: Any) -> bool:
    """Tell the KV-shared layers (:func:`use_shared_layers_at_answers`) which row positions to
    compute for the next forward pass (a 1-D index on the model's device; None: all).
    Returns whether ``model``'s shared layers will use it: the caller then asks for the
    logits of every position that comes out (``logits_to_keep=0``), which are those."""
    global _KEPT
    active = keep is not None and bool(getattr(_base(model), SHARED_SLICE, 0))
    _KEPT = keep if active else None
    return active


def _at_kept_positions(first: bool, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    import torch

    idx = _KEPT
    if idx is None:
        return None
    args = list(args)
    if first:  # the later shared layers get the first one's output, already at those positions
        args[0] = args[0].index_select(1, idx)
    if len(args) > 1 and args[1] is not None:
        args[1] = args[1].index_select(1, idx)
    elif kwargs.get("per_layer_input") is not None:
        kwargs["per_layer_input"] = kwargs["per_layer_input"].index_select(1, idx)
    if kwargs.get("position_embeddings") is not None:
        kwargs["position_embeddings"] = tuple(t.index_select(1, idx) for t in kwargs["position_embeddings"])
    if isinstance(kwargs.get("position_ids"), torch.Tensor):
        kwargs["position_ids"] = kwargs["position_ids"].index_select(1, idx)
    mask = kwargs.get("attention_mask")
    if not (isinstance(mask, torch.Tensor) and mask.dim() == 4):  # queries at some rows need explicit mask rows
        raise RuntimeError("KV-shared layers at the answer positions need a 4-D attention mask "
                           f"(got {type(mask).__name__}); set_kept_positions(model, None) turns it off")
    kwargs["attention_mask"] = mask.index_select(2, idx)
    return tuple(args), kwargs


def has_wide_heads(model: Any) -> bool:
    """Whether any attention layer of ``model`` has heads wider than :data:`WIDE_HEAD` (the
    layers :func:`packed_attention_forward` serves per example); packing skips the slot
    layout otherwise."""
    cfg = _base(model).config
    cfg = getattr(cfg, "text_config", None) or cfg
    data = cfg.to_dict()  # (attribute access raises for per-layer attributes of heterogeneous configs)
    dims = [data.get("head_dim"), data.get("global_head_dim")]
    per_layer = data.get("per_layer_config") or {}
    dims += [v.get("head_dim") for v in per_layer.values() if isinstance(v, dict)]
    return any(isinstance(d, int) and d > WIDE_HEAD for d in dims)


def use_packed_attention(model: Any) -> bool:
    """Route ``model``'s SDPA attention through :func:`packed_attention_forward` (which is
    SDPA for every other call); False when the model does not use SDPA."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(PACKED_ATTENTION, packed_attention_forward)
    # and the masks transformers builds for it (2-D padding masks in, e.g. evaluation) are
    # SDPA's: an unknown name would pass the 2-D mask through unchanged
    AttentionMaskInterface.register(PACKED_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    base = _base(model)
    configs = [base.config] + [c for c in (getattr(base.config, "text_config", None),) if c is not None]
    if not all(getattr(c, "_attn_implementation", None) in ("sdpa", PACKED_ATTENTION) for c in configs):
        return False
    for c in configs:
        c._attn_implementation = PACKED_ATTENTION
    return True


def _base(model: Any) -> Any:
    inner = getattr(model, "module", model)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


def fused_kernels(model: Any, mode: str = "auto") -> str | None:
    """Patch Liger kernels into ``model``; returns what was applied, or None.

    ``mode``: ``off``; ``liger`` (required: an error when ``liger-kernel`` is missing or
    does not know the architecture); ``auto`` (Liger when it is installed, the model is on
    CUDA and Liger knows its ``model_type``; otherwise nothing, silently).
    """
    if mode == "off":
        return None
    base = _base(model)
    on_cuda = any(p.is_cuda for p in base.parameters())
    try:
        import liger_kernel
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN, _apply_liger_kernel_to_instance
    except ImportError as exc:
        if mode == "liger":
            raise ValueError("kernels: liger needs the liger-kernel package (pip install liger-kernel); "
                             "use kernels: auto or off to train without it") from exc
        return None
    model_type = getattr(base.config, "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        if mode == "liger":
            raise ValueError(f"kernels: liger-kernel has no kernels for model type {model_type!r}")
        return None
    if mode == "auto" and not on_cuda:  # Liger's kernels are Triton: GPUs only
        return None
    import sys

    # Liger also swaps module-level classes and functions of transformers (RMSNorm, MLP, RoPE)
    # for every model built afterwards in this process: a CPU model (the planner's short copy)
    # or one Unsloth loads would then run Triton kernels.  The instance's norms and MLPs are
    # patched one by one, so the module-level swaps are undone at once.  Liger's RoPE exists
    # only as such a module-level swap, so it is not used.
    before = {name: dict(vars(mod)) for name, mod in list(sys.modules.items())
              if name.startswith("transformers.models.") and mod is not None}
    _apply_liger_kernel_to_instance(model=base, rope=False, rms_norm=True, geglu=True, swiglu=True,
                                    cross_entropy=False, fused_linear_cross_entropy=False)
    for name, was in before.items():
        mod = sys.modules[name]
        for key, value in was.items():
            if vars(mod).get(key) is not value:
                setattr(mod, key, value)
    version = getattr(liger_kernel, "__version__", None)
    if version is None:
        from importlib.metadata import version as _v

        version = _v("liger-kernel")
    return f"liger-kernel {version} (RMSNorm, gated MLP)"


class CpuTableEmbedding:
    """Stands in for a frozen scaled embedding whose table stays in CPU memory.

    Not an ``nn.Module`` child of the model on purpose: ``model.to(device)``, DDP's
    start-up broadcast and optimizer construction never see the table, so it stays where
    it is.  Call it like the embedding it replaces: ids on any device in, rows on the ids'
    device out (scaled as the original module scales them).  While ``staged`` holds a
    device tensor (rows gathered ahead of a CUDA-graph replay, see :class:`CudaGraphStep`),
    a call returns that tensor, scaled, whatever the ids: a captured graph cannot reach
    CPU memory.
    """

    staged: Any = None
    scale_dev: Any = None

    def __init__(self, embedding: Any):
        import torch

        self.weight = embedding.weight.detach().to("cpu")
        self.padding_idx = embedding.padding_idx
        scale = getattr(embedding, "embed_scale", None)
        self.scale = None if scale is None else torch.as_tensor(scale).detach().to("cpu")
        self.embedding_dim = self.weight.shape[1]

    def gather(self, input_ids: Any, pinned: bool = False) -> Any:
        """The unscaled rows of ``input_ids`` (CPU tensor; in page-locked memory if ``pinned``,
        ready for an asynchronous copy to the GPU)."""
        import torch

        ids = input_ids.to("cpu").reshape(-1)
        out = torch.empty((ids.numel(), self.embedding_dim), dtype=self.weight.dtype, pin_memory=pinned)
        torch.index_select(self.weight, 0, ids, out=out)
        return out.view(*input_ids.shape, self.embedding_dim)

    def __call__(self, input_ids: Any) -> Any:
        if self.staged is not None:  # scale_dev is set with it: no host-to-device copy in a capture
            return self.staged if self.scale_dev is None else self.staged * self.scale_dev
        rows = self.gather(input_ids, pinned=input_ids.is_cuda).to(input_ids.device, non_blocking=True)
        if self.scale is not None:
            rows = rows * self.scale.to(rows.device, rows.dtype)
        return rows


def offload_per_layer_embeddings(model: Any, include_cpu: bool = False) -> int:
    """Keep Gemma 3n/4's per-layer embedding table in CPU memory; returns its size in bytes
    (0 when the model has none, or it is trainable).  ``include_cpu``: also swap a table that
    is in CPU memory already, so that a later ``model.to("cuda")`` leaves it there."""
    import torch

    base = _base(model)
    moved = 0
    for parent in list(base.modules()):
        table = parent._modules.get(PER_LAYER_TABLE) if hasattr(parent, "_modules") else None
        if table is None or not isinstance(table, torch.nn.Embedding):
            continue
        if (table.weight.device.type == "cpu" and not include_cpu) or table.weight.requires_grad:
            continue  # nothing to gain, or it is being trained
        nbytes = table.weight.numel() * table.weight.element_size()
        cpu_table = CpuTableEmbedding(table)
        del parent._modules[PER_LAYER_TABLE]
        object.__setattr__(parent, PER_LAYER_TABLE, cpu_table)
        del table
        moved += nbytes
    if moved:
        log.info("per-layer embeddings kept in CPU memory: %.2f GiB", moved / 2**30)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return moved


def cpu_tables(model: Any) -> list[CpuTableEmbedding]:
    """The :class:`CpuTableEmbedding` stand-ins :func:`offload_per_layer_embeddings` put in."""
    found = []
    for module in _base(model).modules():
        table = module.__dict__.get(PER_LAYER_TABLE)
        if isinstance(table, CpuTableEmbedding):
            found.append(table)
    return found


class CudaGraphStep:
    """Forward + backward of a packed batch replayed from CUDA graphs.

    Why: a LoRA step of a 4-billion-parameter model on 8 short examples launches ~16,000
    kernels; eager PyTorch spends longer *launching* them than the GPU spends running them
    (profiled on an H200: the GPU busy 31-44 % of the step).  A captured graph launches
    them all at once.

    How: a graph needs fixed shapes and fixed addresses, so the packed row is padded to a
    multiple of ``t_multiple`` tokens and the supervised positions to a multiple of
    ``k_multiple``; each (length, positions) bucket gets its own graph, captured the first
    time it is seen (one eager warm-up pass on a side stream, then the capture; the
    gradients of the step in progress are saved and restored around it) and replayed after
    that.  All graphs share one memory pool.  Inputs are copied into the bucket's static
    tensors; attention masks are built outside the graph; per-layer embedding rows (kept
    in CPU memory) are gathered and copied in before the replay.  Gradients accumulate
    into ``.grad`` tensors that must stay allocated: zero them with
    ``optimizer.zero_grad(set_to_none=False)``.

    Requirements, checked by the caller: one CUDA process, no dropout (a replay repeats
    the captured random numbers), gradient checkpointing without RNG-state preservation
    (``preserve_rng_state=False``).  ``autocast`` runs the step under bf16/fp16 autocast
    (without its weight cache, which a graph cannot keep); off, the model runs in its dtype.
    """

    def __init__(self, model: Any, pad_id: int, dtype: Any = None, t_multiple: int = 512, k_multiple: int = 256,
                 warmup: int = 1, autocast: bool = True, slot_multiple: int | None = 256,
                 budget: ActivationBudget | None = None):
        import torch

        self.model = model
        self.pad_id = pad_id
        self.dtype = dtype or torch.bfloat16  # of the attention masks, and of autocast when it is on
        self.autocast = autocast
        self.t_multiple, self.k_multiple, self.warmup = t_multiple, k_multiple, warmup
        # no slot layout (and no slot shape in the bucket key) when no layer would use it
        self.slot_multiple = slot_multiple if has_wide_heads(model) else None
        self.device = next(p.device for p in model.parameters() if p.requires_grad)
        self.params = [p for p in model.parameters() if p.requires_grad]
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.pool = torch.cuda.graph_pool_handle()
        self.tables = cpu_tables(model)
        self.budget = budget  # which layers keep their activations, per bucket
        self.graphs: dict[tuple, dict] = {}
        self.capture_seconds = 0.0

    # -- public ------------------------------------------------------------------------
    def prepare(self, examples: Any) -> dict:
        """The host-side work of a step (packing, bucket, per-layer rows gathered into
        page-locked memory), done ahead: call it for the next micro-batch while the GPU
        still runs the current one, and pass the result to :meth:`forward_backward`."""
        from breachlab.vuln import sft

        import torch

        batch = sft.collate_packed(examples, self.pad_id, multiple=self.t_multiple, slot_multiple=self.slot_multiple)
        if "slot_mask" in batch:  # additive, in the attention dtype, ready to copy
            keep = batch["slot_mask"]
            batch["slot_mask"] = torch.zeros(keep.shape, dtype=self.dtype).masked_fill_(~keep,
                                                                                        torch.finfo(self.dtype).min)
        lengths = [len(e.ids) for e in examples]
        rows = [table.gather(batch["input_ids"], pinned=True) for table in self.tables]
        return {"batch": batch, "key": self._key(batch, max(lengths, default=0)), "rows": rows,
                "longest": max(lengths, default=0), "examples": examples}

    def forward_backward(self, examples: Any, inv_denom: float) -> Any:
        """Accumulate d(loss_sum * inv_denom)/dθ into ``.grad``; returns loss_sum (0-d tensor).
        ``examples``: the micro-batch's :class:`~breachlab.vuln.sft.Encoded` list, or what
        :meth:`prepare` made of it."""
        prep = examples if isinstance(examples, dict) else self.prepare(examples)
        entry = self.graphs.get(prep["key"])
        if entry is None:
            entry = self._capture(prep, inv_denom)
        self._load(entry, prep, inv_denom)
        entry["graph"].replay()
        self._unstage()
        # a copy: the next replay of this bucket (the next micro-batch of a step) overwrites it
        return entry["loss_sum"].clone()

    @property
    def captured(self) -> int:
        return len(self.graphs)

    # -- internals ---------------------------------------------------------------------
    def _key(self, batch: dict, longest: int) -> tuple:
        k = len(batch["keep"])
        kb = -(-max(k, 1) // self.k_multiple) * self.k_multiple
        cfg = _text_config(self.model)
        window = getattr(cfg, "sliding_window", None)
        sliding = bool(window) and "sliding_attention" in set(getattr(cfg, "layer_types", None) or [])
        return (batch["input_ids"].shape[1], kb, sliding, sliding and longest > window,
                tuple(batch["slot_shape"]) if "slot_shape" in batch else None)

    def _static(self, key: tuple) -> dict:
        import torch

        t, kb, sliding, binds, slot_shape = key
        dev = self.device
        full = torch.zeros((1, 1, t, t), dtype=self.dtype, device=dev)
        masks: Any = full
        if sliding:
            masks = {"full_attention": full,
                     "sliding_attention": torch.zeros_like(full) if binds else full}
        batch = {"input_ids": torch.zeros((1, t), dtype=torch.long, device=dev),
                 "position_ids": torch.zeros((1, t), dtype=torch.long, device=dev),
                 "segments": torch.zeros((1, t), dtype=torch.long, device=dev),
                 "keep": torch.zeros((kb,), dtype=torch.long, device=dev),
                 "targets": torch.full((kb,), -100, dtype=torch.long, device=dev),
                 "first": torch.zeros((1,), dtype=torch.long, device=dev),
                 "masks": masks, "n_supervised": 0}
        if slot_shape is not None:
            n, slot = slot_shape
            batch.update(slots=torch.zeros((n * slot,), dtype=torch.long, device=dev),
                         inverse=torch.zeros((t,), dtype=torch.long, device=dev),
                         slot_mask=torch.zeros((n, 1, slot, slot), dtype=self.dtype, device=dev), slot_shape=slot_shape)
        ple = [torch.zeros((1, t, tb.embedding_dim), dtype=tb.weight.dtype, device=dev) for tb in self.tables]
        return {"batch": batch, "inv_denom": torch.zeros((), dtype=torch.float32, device=dev), "ple": ple}

    def _load(self, entry: dict, prep: dict, inv_denom: float) -> None:
        """Copy a prepared batch into the bucket's static tensors (asynchronously: no sync)."""
        from breachlab.vuln import sft

        batch = prep["batch"]
        st = entry["batch"]
        for name in ("input_ids", "position_ids", "segments", "slots", "inverse", "slot_mask"):
            if name in st:
                st[name].copy_(batch[name], non_blocking=True)
        k = len(batch["keep"])
        st["keep"].zero_()
        st["keep"][:k].copy_(batch["keep"], non_blocking=True)
        st["targets"].fill_(-100)
        st["targets"][:k].copy_(batch["targets"], non_blocking=True)
        built = sft.segment_masks(self.model, st["segments"], self.dtype, longest=prep["longest"])
        if isinstance(st["masks"], dict):
            st["masks"]["full_attention"].copy_(built["full_attention"])
            if st["masks"]["sliding_attention"] is not st["masks"]["full_attention"]:
                st["masks"]["sliding_attention"].copy_(built["sliding_attention"])
        else:
            st["masks"].copy_(built)
        entry["inv_denom"].fill_(inv_denom)
        for table, buf, rows in zip(self.tables, entry["ple"], prep["rows"]):
            buf.copy_(rows.view_as(buf), non_blocking=True)
            if table.scale is not None and table.scale_dev is None:
                table.scale_dev = table.scale.to(buf.device, buf.dtype)
            table.staged = buf

    def _unstage(self) -> None:
        for table in self.tables:
            table.staged = None

    def _fwd_bwd(self, entry: dict) -> Any:
        import torch

        from breachlab.vuln import sft

        with torch.autocast("cuda", dtype=self.dtype, enabled=self.autocast, cache_enabled=False):
            loss_sum, _ = sft.forward_loss(self.model, entry["batch"], self.device)
        (loss_sum * entry["inv_denom"]).backward()
        return loss_sum.detach()

    def _capture(self, prep: dict, inv_denom: float) -> dict:
        import time

        import torch

        t0 = time.perf_counter()
        key = prep["key"]
        kept = self.budget.apply(key[0], key[1]) if self.budget is not None else 0
        entry = self._static(key)
        saved = [p.grad.clone() for p in self.params]
        graph = torch.cuda.CUDAGraph()
        try:  # whatever fails, the step's gradients so far are put back
            self._load(entry, prep, inv_denom)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self._fwd_bwd(entry)
            torch.cuda.current_stream().wait_stream(side)
            with torch.cuda.graph(graph, pool=self.pool):
                entry["loss_sum"] = self._fwd_bwd(entry)
        finally:
            self._unstage()
            for p, g in zip(self.params, saved):
                p.grad.copy_(g)
        entry["graph"] = graph
        self.graphs[key] = entry
        torch.cuda.synchronize()
        self.capture_seconds += time.perf_counter() - t0
        log.info("CUDA graph %d captured for %d tokens / %d supervised positions%s (%.1f s)",
                 len(self.graphs), key[0], key[1],
                 f", {kept} layers not recomputed" if self.budget is not None else "", time.perf_counter() - t0)
        return entry


LoraCastLinear: Any = None  # the class, made on first use (torch is imported lazily here)


def _lora_cast_linear() -> Any:
    global LoraCastLinear
    if LoraCastLinear is None:
        import torch

        class _Cast(torch.nn.Linear):
            """An adapter's ``nn.Linear`` that runs in its input's dtype: the float32 weight is
            cast inside the matmul (its gradient still reaches the float32 weight)."""

            def forward(self, x: Any) -> Any:
                w = self.weight if self.weight.dtype == x.dtype else self.weight.to(x.dtype)
                b = self.bias if self.bias is None or self.bias.dtype == x.dtype else self.bias.to(x.dtype)
                return torch.nn.functional.linear(x, w, b)

        _Cast.__name__ = _Cast.__qualname__ = "LoraCastLinear"
        LoraCastLinear = _Cast
    return LoraCastLinear


def lora_in_activation_dtype(model: Any) -> int:
    """Run the LoRA matmuls in the activations' dtype (bf16 on a GPU); the adapter weights stay
    float32 (the optimizer's master copy).  Returns how many LoRA layers changed.

    peft casts each LoRA layer's input to the adapters' dtype, float32: for a bf16 model that
    is a float32 copy of the input for every adapter (q, k and v each their own, gate and up
    too), each kept for the backward pass — ~100 KB per token in one Gemma 4 E4B layer,
    counted by ``plan.saved_bytes_per_token`` — and float32 matmuls without tensor cores.
    Here the input stays as it is and the weights are cast to its dtype inside the matmul,
    which is what bf16 autocast does (the HF Trainer's way), without autocast.  A float32
    model is unchanged.  The state dict is unchanged (the adapters stay ``nn.Linear``).
    """
    import torch

    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return 0
    cls = _lora_cast_linear()
    n = 0
    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        module.cast_input_dtype_enabled = False
        for holder in (module.lora_A, module.lora_B):
            for lin in holder.values():
                if type(lin) is torch.nn.Linear:
                    lin.__class__ = cls
        n += 1
    return n


def kept_layers(per_layer: list[float], tokens: list[int], budget_bytes: float) -> set[int]:
    """Which decoder layers keep their activations within ``budget_bytes``: layer i costs
    ``per_layer[i]`` bytes per token (``plan.saved_bytes_per_token``) times the ``tokens[i]``
    it runs at; the cheapest first, as many as fit.  Every layer costs about the same to
    recompute per token, so the cheapest buy the most recomputation per byte."""
    kept: set[int] = set()
    left = float(budget_bytes)
    for cost, i in sorted((c * n, i) for i, (c, n) in enumerate(zip(per_layer, tokens))):
        if cost > left:
            break
        kept.add(i)
        left -= cost
    return kept


class ActivationBudget:
    """Gradient checkpointing for only some decoder layers: with ``budget_bytes`` of memory
    to spare, the layers that fit (:func:`kept_layers`, per row length) keep their
    activations and are not recomputed in the backward pass; the rest are checkpointed.
    :meth:`apply` sets the layers' flags for a row before its forward pass (a CUDA graph
    takes them as they are when it is captured)."""

    def __init__(self, model: Any, per_layer: list[float], budget_bytes: float):
        from breachlab.vuln.sft import decoder_layers

        self.layers = list(decoder_layers(model) or [])
        if len(self.layers) != len(per_layer):
            raise ValueError(f"{len(per_layer)} layer costs for {len(self.layers)} decoder layers")
        self.per_layer = list(per_layer)
        # layers that run at the answer positions only (use_shared_layers_at_answers)
        self.shared = int(getattr(_base(model), SHARED_SLICE, 0) or 0)
        self.budget = float(budget_bytes)
        self.kept: set[int] = set()

    def tokens(self, row: int, answers: int | None) -> list[int]:
        n = len(self.per_layer)
        shared = self.shared if answers is not None else 0
        return [row] * (n - shared) + [answers] * shared

    def apply(self, row: int, answers: int | None = None) -> int:
        """Set the flags for a row of ``row`` tokens with ``answers`` supervised positions."""
        self.kept = kept_layers(self.per_layer, self.tokens(row, answers), self.budget)
        for i, layer in enumerate(self.layers):
            layer.gradient_checkpointing = i not in self.kept
        return len(self.kept)


def _text_config(model: Any) -> Any:
    cfg = _base(model).config
    return getattr(cfg, "text_config", None) or cfg
