"""Speed patches for training, one function each; all but the bf16 LoRA matmuls change no
number (what each measured: docs/benchmarks.md, "Training speed").

A profiled E4B QLoRA step was bound by launching kernels from Python, not by arithmetic;
the CUDA-graph step that answers that is :mod:`breachlab.vuln.training.speed.graphs`; the
per-layer embedding table in CPU memory is :mod:`breachlab.vuln.training.speed.ple`.

* :func:`use_packed_attention` — for a packed row (``sft.collate_packed``), layers whose
  heads are too wide for flash/cuDNN kernels (Gemma 4's 512) attend per example instead of
  over the whole row's block-diagonal mask (:func:`packed_attention_forward`).
* :func:`use_shared_layers_at_answers` — Gemma 4's KV-shared layers (18 of E4B's 42) run
  only at the positions the loss reads: nothing else reads their output.
* :func:`lora_in_activation_dtype` — the LoRA matmuls in bf16 with float32 adapter weights,
  instead of peft's float32 copy of every adapter's input (~100 KB per token per E4B layer).
* :func:`fused_kernels` — Liger's Triton kernels (``liger-kernel``, optional) for the
  model's RMSNorm and gated MLP, patched into the model *instance* (nothing process-wide):
  less GPU time, though not fewer launches from Python.  The loss is not fused (breachlab
  computes logits only where the loss needs them).

State: the packed row of the forward pass in progress (its slot layout, its supervised
positions) lives in a :class:`StepContext` owned by the model it patches (:func:`context`),
set by :mod:`breachlab.vuln.training.sft` before each forward and read by the patched
attention and the KV-shared layers' hooks — never in module globals, so two models in one
process (a trainer and the planner's copy, two tests) cannot see each other's rows.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from breachlab.vuln.training.anatomy import base as _base, decoder_layers, text_config

log = logging.getLogger(__name__)

PACKED_ATTENTION = "breachlab_packed"
WIDE_HEAD = 256  # head dims above this get no fused SDPA kernel (flash / cuDNN take up to 256)
CONTEXT = "_breachlab_step_context"
SHARED_SLICE = "_breachlab_shared_kv_slice"


@dataclass
class StepContext:
    """The packed row being trained on, for the patches that need more than the layer's inputs.

    ``layout``: the slot layout (``sft.slot_layout``, on the device) that
    :func:`packed_attention_forward` uses, or None; ``every_layer``: it serves every
    full-attention layer (``slot_attention: all``), not only those with wide heads.
    ``kept``: the supervised positions (1-D index) the KV-shared layers compute, or None
    (all).  Set before each forward pass and left in place: gradient checkpointing runs the
    forward again inside the backward pass, and must take the same path there.
    """

    layout: dict | None = None
    kept: Any = None
    every_layer: bool = False  # slots for every full-attention layer, not only the wide-head ones
    head_chunk: int = 0  # the LM head's loss this many supervised positions at a time (0: all; headloss)

    def clear(self) -> None:
        self.layout = None
        self.kept = None


def context(model: Any) -> StepContext:
    """The :class:`StepContext` of ``model`` (made on first use, kept on the base model)."""
    inner = _base(model)
    ctx = inner.__dict__.get(CONTEXT)
    if ctx is None:
        ctx = StepContext()
        inner.__dict__[CONTEXT] = ctx
    return ctx


def set_slot_layout(model: Any, batch: dict | None, device: Any = None) -> None:
    """Make ``batch``'s slot layout (``sft.slot_layout``) the one ``model``'s
    :func:`packed_attention_forward` uses from now on; None (or a batch without one): none."""
    ctx = context(model)
    if batch is None or "slots" not in batch:
        ctx.layout = None
        return
    ctx.layout = {"slots": batch["slots"].to(device), "inverse": batch["inverse"].to(device),
                  "shape": tuple(batch["slot_shape"])}


def packed_attention_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                             dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers attention function: SDPA, except for full-attention layers with heads
    wider than fused kernels take (Gemma 4: 512) — or every full-attention layer, with
    ``slot_attention: all`` — on a packed row with a slot layout.

    There the row's tokens are gathered into one slot per example, attention runs on
    (examples, heads, L, L), causal within each slot, and the result is gathered back to
    row order: the same numbers as the (T, T) block-diagonal mask, at examples × L²
    instead of T² cost.  Each example starts its slot, so SDPA's own causal mask keeps a
    real query to its example's earlier tokens (the empty cells after it are never seen by
    one; their outputs are never read back): no mask tensor, so a fused kernel with causal
    tiles serves it (FlashAttention for heads up to 256 wide, grouped-query heads
    unexpanded; the memory-efficient kernel for Gemma 4's 512).
    """
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    ctx = getattr(module, CONTEXT, None)
    lay = ctx.layout if ctx is not None else None
    if (lay is None or query.shape[0] != 1 or kwargs.get("sliding_window") is not None
            or (query.shape[-1] <= WIDE_HEAD and not ctx.every_layer)
            or query.shape[2] != lay["inverse"].shape[0]):
        if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[-2:] == (1, 1) \
                and query.shape[2] > 1:  # the placeholder of row_mask_unused: never attend with it
            raise RuntimeError(f"{type(module).__name__} needs the packed row's (T, T) mask, which row_mask_unused "
                               "said no layer of this model needs")
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    n, slot = lay["shape"]
    heads, kv_heads = query.shape[1], key.shape[1]

    def grid(x: Any) -> Any:  # (1, h, T, d) -> (S, h, L, d)
        h, d = x.shape[1], x.shape[-1]
        return x[0].index_select(1, lay["slots"]).view(h, n, slot, d).transpose(0, 1)

    q, k, v = grid(query), grid(key), grid(value)
    gqa = kv_heads != heads and query.shape[-1] <= WIDE_HEAD
    if kv_heads != heads and not gqa:  # the memory-efficient kernel takes no grouped heads: expand them
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling,
                                         **({"enable_gqa": True} if gqa else {}))
    out = out.transpose(0, 1).reshape(heads, n * slot, -1).index_select(1, lay["inverse"])  # (h, T, d)
    return out.transpose(0, 1).unsqueeze(0), None


def row_mask_unused(model: Any) -> bool:
    """Whether a packed row with a slot layout can go without its (T, T) row mask: every
    layer attends per slot (``slot_attention: all``, no sliding-window layers, no KV-shared
    layers hooked to the answers).  The caller passes a (1, 1, 1, 1) placeholder, which
    :func:`packed_attention_forward` refuses."""
    cfg = text_config(model)
    sliding = "sliding_attention" in set(getattr(cfg, "layer_types", None) or []) and getattr(cfg, "sliding_window",
                                                                                              None)
    return context(model).every_layer and not sliding and not getattr(_base(model), SHARED_SLICE, 0)


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
    The numbers are the same as running them on the whole row; the work saved is the prompt's
    share of the tokens (most of them in the Juliet + SVEN training set).

    Returns the number of layers hooked (0: the model has no KV-shared layers, or is not a
    Gemma 4 text stack whose layers take these arguments).
    """
    base = _base(model)
    if getattr(base, SHARED_SLICE, 0):
        return getattr(base, SHARED_SLICE)
    if not str(getattr(text_config(model), "model_type", "")).startswith("gemma4"):
        return 0
    layers = list(decoder_layers(model) or [])
    flags = [bool(getattr(getattr(layer, "self_attn", None), "is_kv_shared_layer", False)) for layer in layers]
    if not any(flags) or flags.index(True) == 0 or not all(flags[flags.index(True):]):
        return 0  # only a tail of shared layers after unshared ones is understood
    first = flags.index(True)
    ctx = context(model)
    for i in range(first, len(layers)):
        layers[i].register_forward_pre_hook(functools.partial(_at_kept_positions, ctx, i == first), with_kwargs=True)
    setattr(base, SHARED_SLICE, len(layers) - first)
    return len(layers) - first


def set_kept_positions(model: Any, keep: Any) -> bool:
    """Tell the KV-shared layers (:func:`use_shared_layers_at_answers`) which row positions to
    compute for the next forward pass (a 1-D index on the model's device; None: all).
    Returns whether ``model``'s shared layers will use it: the caller then asks for the
    logits of every position that comes out (``logits_to_keep=0``), which are those."""
    active = keep is not None and bool(getattr(_base(model), SHARED_SLICE, 0))
    context(model).kept = keep if active else None
    return active


def _at_kept_positions(ctx: StepContext, first: bool, module: Any, args: tuple,
                       kwargs: dict) -> tuple[tuple, dict] | None:
    import torch

    idx = ctx.kept
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
    data = text_config(model).to_dict()  # (attribute access raises for per-layer attributes of heterogeneous configs)
    dims = [data.get("head_dim"), data.get("global_head_dim")]
    per_layer = data.get("per_layer_config") or {}
    dims += [v.get("head_dim") for v in per_layer.values() if isinstance(v, dict)]
    return any(isinstance(d, int) and d > WIDE_HEAD for d in dims)


SLOT_ATTENTION = ("auto", "wide", "all")


def slot_mode(mode: str, cuda: bool) -> str:
    """``slot_attention`` resolved: ``auto`` is ``all`` on CUDA, ``wide`` elsewhere.

    ``all`` was faster on CUDA at the same losses (docs/benchmarks.md, "Training speed"); on
    E4B every full-attention layer has wide heads already, so there it changes nothing.  The
    CPU keeps ``wide``, where ``all`` was not measured."""
    if mode not in SLOT_ATTENTION:
        raise ValueError(f"slot_attention must be one of {SLOT_ATTENTION}, not {mode!r}")
    return ("all" if cuda else "wide") if mode == "auto" else mode


def wants_slots(model: Any, mode: str = "wide") -> bool:
    """Whether packed rows of ``model`` should carry a slot layout for a resolved ``slot_attention``
    (:func:`slot_mode`): ``wide`` — when it has wide heads (Gemma 4); ``all`` — always: every
    full-attention layer then attends per example, at examples × L² instead of T²."""
    if mode not in SLOT_ATTENTION:
        raise ValueError(f"slot_attention must be one of {SLOT_ATTENTION}, not {mode!r}")
    return mode == "all" or has_wide_heads(model)


def use_packed_attention(model: Any, every_layer: bool = False) -> bool:
    """Route ``model``'s SDPA attention through :func:`packed_attention_forward` (which is
    SDPA for every other call); False when the model does not use SDPA.  ``every_layer``:
    the slot path for every full-attention layer, not only wide-head ones."""
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
    ctx = context(model)  # the attention modules read the row's slot layout from it
    ctx.every_layer = every_layer
    for module in base.modules():
        if "Attention" in type(module).__name__:
            module.__dict__[CONTEXT] = ctx
    return True



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


@functools.lru_cache(maxsize=None)
def _lora_cast_linear() -> Any:
    """The class, made on first use (torch is imported lazily here)."""
    import torch

    class _Cast(torch.nn.Linear):
        """An adapter's ``nn.Linear`` that runs in its input's dtype: the float32 weight is
        cast inside the matmul (its gradient still reaches the float32 weight)."""

        def forward(self, x: Any) -> Any:
            w = self.weight if self.weight.dtype == x.dtype else self.weight.to(x.dtype)
            b = self.bias if self.bias is None or self.bias.dtype == x.dtype else self.bias.to(x.dtype)
            return torch.nn.functional.linear(x, w, b)

    _Cast.__name__ = _Cast.__qualname__ = "LoraCastLinear"
    return _Cast


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
