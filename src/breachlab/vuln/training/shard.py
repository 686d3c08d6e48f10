"""FSDP for ``vuln train`` (``fsdp: true`` with several processes): PyTorch's FSDP2.

Each decoder layer, then the whole model, is a ``fully_shard`` unit: every process keeps
1/N of the parameters, gradients and optimizer state, and gathers a layer's parameters
only while it runs (forward, the recomputation of checkpointing, backward).  Launching is
unchanged (``torchrun`` / ``accelerate launch``): this only replaces DDP's full copy per
process.  Checkpoints and saved weights are the full (gathered) tensors, the same files as
a one-process run writes, so ``--resume``, ``vuln export`` and evaluation need nothing new.

Why not accelerate's FSDP plugin: it is ignored on CPU processes (accelerate 1.x treats
them as DDP), so the CPU/gloo tests that check the distributed trainer could not run it.
"""

from __future__ import annotations

from typing import Any


def shard_model(model: Any) -> int:
    """``fully_shard`` each decoder layer and then the root; returns the number of units.
    Parameters of mixed dtypes (a bf16 model with float32 LoRA adapters) are gathered and
    computed in the model's dtype, with float32 gradient reduction."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from breachlab.vuln.training.anatomy import decoder_layers

    dtypes = {p.dtype for p in model.parameters()}
    policy = MixedPrecisionPolicy()
    if len(dtypes) > 1:
        compute = model.get_input_embeddings().weight.dtype
        policy = MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32)
    layers = list(decoder_layers(model) or [])
    for layer in layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return len(layers) + 1


def _options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kw)


def full_state(model: Any, trainable_only: bool = False) -> dict[str, Any]:
    """The gathered state dict (every process must call it; tensors land on the CPU).
    ``trainable_only``: the parameters that train (what checkpoints keep)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_options())
    if trainable_only:
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        state = {n: t for n, t in state.items() if n in names}
    return state


def full_optimizer_state(model: Any, optimizer: Any) -> dict[str, Any]:
    """The optimizer's gathered state, keyed by parameter name (every process calls it)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options())


def load_full_state(model: Any, state: dict[str, Any]) -> None:
    """Load full tensors (some of the parameters: strict=False) into the sharded model."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, state, options=_options(strict=False))


def load_full_optimizer_state(model: Any, optimizer: Any, state: dict[str, Any]) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=_options())
