"""``head_chunk``: the LM head and its loss a few supervised positions at a time.

A step's loss reads the vocabulary logits at every supervised position: (N, V) of them, kept
in bf16, copied to float32, and log-softmaxed for the backward pass — about 10 bytes × N × V.
For Qwen2.5-Coder (V = 151,936) and the padded answer positions of a CUDA-graph bucket (N =
256) that is ~371 MB, counted from the benchmark's batches; for Gemma (V = 262,144) ~640 MB.
Here the decoder's last hidden states at those positions come out instead, and each chunk of
``chunk`` positions is projected, soft-capped as the model does, and scored inside
``torch.utils.checkpoint``: its logits are freed at once and made again in the backward pass.
At most ``chunk`` × V logits exist at any time.  The loss is the sum of the chunks' sums: the
same number up to float32 summation order.

How the hidden states come out without copying each architecture's forward: for the one call,
the model's output projection is swapped for an identity and its logit soft-capping set to
None; the model then returns its (sliced) last hidden states as "logits".  Only architectures
whose causal-LM head is exactly "projection, then ``final_logit_softcapping`` when set" are
served (:data:`HEADS`); for any other, :func:`supported` says no and the caller computes the
logits whole, as before.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from breachlab.vuln.training.anatomy import base as _base, text_config

# causal-LM classes of the model ladder whose logits are lm_head(hidden), then the config's
# soft-capping if set (read in transformers 5.17); Gemma3ForConditionalGeneration never
# soft-caps, so only when its cap is None.  Another architecture joins with a test.
HEADS = {"Qwen2ForCausalLM", "Gemma3ForCausalLM", "Gemma4ForCausalLM", "Gemma4ForConditionalGeneration"}
UNCAPPED_ONLY = {"Gemma3ForConditionalGeneration"}
_UNSET = object()


def _cap(model: Any) -> float | None:
    return getattr(text_config(model), "final_logit_softcapping", None)


def supported(model: Any) -> bool:
    """Whether :func:`chunked_loss` can serve ``model`` (else: logits whole, as before)."""
    name = type(_base(model)).__name__
    return name in HEADS or (name in UNCAPPED_ONLY and _cap(model) is None)


@contextlib.contextmanager
def hidden_states_out(model: Any) -> Iterator[tuple[Any, float | None]]:
    """For one forward call: the model returns its last hidden states where it would return
    logits.  Yields (the real output projection, the soft-cap to apply after it, or None)."""
    import torch

    inner = _base(model)
    head = inner.get_output_embeddings()
    cap = _cap(model)
    configs = [c for c in {id(c): c for c in (inner.config, text_config(model))}.values()
               if hasattr(c, "final_logit_softcapping")]
    saved = [c.__dict__.get("final_logit_softcapping", _UNSET) for c in configs]
    inner.set_output_embeddings(torch.nn.Identity())
    for c in configs:
        c.final_logit_softcapping = None
    try:
        yield head, cap
    finally:
        inner.set_output_embeddings(head)
        for c, value in zip(configs, saved):
            if value is _UNSET:  # it was the class's default: drop the instance's
                del c.final_logit_softcapping
            else:
                c.final_logit_softcapping = value


def chunked_loss(head: Any, cap: float | None, hidden: Any, targets: Any, chunk: int, ignore_index: int) -> Any:
    """Sum of cross-entropy over ``hidden`` (N, H) against ``targets`` (N,), ``chunk``
    positions at a time, each chunk's logits recomputed in the backward pass."""
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    def piece(h: Any, t: Any) -> Any:
        logits = head(h)
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return F.cross_entropy(logits.float(), t, ignore_index=ignore_index, reduction="sum")

    total = None
    for start in range(0, hidden.shape[0], chunk):
        h, t = hidden[start:start + chunk], targets[start:start + chunk]
        # no RNG state kept: nothing here is random, and a CUDA-graph capture cannot read it
        part = (checkpoint(piece, h, t, use_reentrant=False, preserve_rng_state=False)
                if torch.is_grad_enabled() else piece(h, t))
        total = part if total is None else total + part
    return total if total is not None else hidden.sum() * 0.0
