"""Regional compilation (``compile: on``): ``torch.compile`` each decoder layer, not the stack.

Off by default: its compile time did not pay back within a short run (docs/benchmarks.md,
"Training speed").  When compiling fails (no C++ compiler, an unsupported
platform) the trainer undoes it and trains eagerly: :func:`is_compile_error` tells such
failures from the model's own.
"""

from __future__ import annotations

from typing import Any

from breachlab.vuln.training.anatomy import decoder_layers


def compile_layers(model: Any, dynamic: bool = True, **compile_kwargs: Any) -> int:
    """Regional compilation: ``torch.compile`` each decoder layer; returns how many.

    Every layer gets ``layer.compile(dynamic=True)`` (in place: parameter names, state
    dicts and the PEFT/DDP wrappers are unchanged).  Layers of one class share compiled
    code, so the cold start is a few layer graphs (one per layer variant: sliding/full
    attention, KV-shared, ...) instead of the whole stack, and ``dynamic`` lets every
    sequence length and batch size reuse them.  Compilation happens lazily, on the first
    forward.  Works with gradient checkpointing on or off (HF checkpoints inside the layer's
    forward, which dynamo traces).  ``compile_kwargs`` go to ``torch.compile`` (e.g. backend).
    """
    import torch._dynamo.config as dynamo_config

    layers = decoder_layers(model)
    if layers is None:
        raise ValueError(f"no decoder layers found in {type(model).__name__}")
    # All layers run one code object, so each variant counts against dynamo's per-code
    # recompile limit (8 by default; a tiny Gemma 4 already needs 8): past it the rest
    # would silently run uncompiled.  Room for a graph per layer in train and eval mode.
    need = 2 * len(layers) + 8
    if getattr(dynamo_config, "recompile_limit", need) < need:
        dynamo_config.recompile_limit = need
    for layer in layers:
        layer.compile(dynamic=dynamic, **compile_kwargs)
    return len(layers)


def uncompile_layers(model: Any) -> int:
    """Undo :func:`compile_layers` (eager layers again); returns how many were compiled."""
    layers = decoder_layers(model) or []
    n = 0
    for layer in layers:
        if getattr(layer, "_compiled_call_impl", None) is not None:
            layer._compiled_call_impl = None
            n += 1
    return n


def is_compile_error(exc: BaseException) -> bool:
    """An error of torch.compile itself (dynamo / inductor / a missing C++ compiler)."""
    import torch._dynamo.exc

    return isinstance(exc, torch._dynamo.exc.TorchDynamoException) or type(exc).__module__.startswith(
        ("torch._dynamo", "torch._inductor"))
