"""Gemma 3n / Gemma 4's per-layer embedding table kept in CPU memory (``ple_on_cpu``).

"E" models carry a second, per-layer embedding table (262,144 × layers·256: 2.8 B
parameters, 5.25 GiB in bf16 for E4B, more than the rest of the quantised model).  It is a
frozen lookup table: a step needs only the rows of its own tokens.  Kept in CPU memory, rows
gathered there and copied to the GPU, it stops costing GPU memory at all (fourth session).
"""

from __future__ import annotations

import logging
from typing import Any

from breachlab.vuln.training.anatomy import base as _base

log = logging.getLogger(__name__)

PER_LAYER_TABLE = "embed_tokens_per_layer"


class CpuTableEmbedding:
    """Stands in for a frozen scaled embedding whose table stays in CPU memory.

    Not an ``nn.Module`` child of the model on purpose: ``model.to(device)``, DDP's
    start-up broadcast and optimizer construction never see the table, so it stays where
    it is.  Call it like the embedding it replaces: ids on any device in, rows on the ids'
    device out (scaled as the original module scales them).  While ``staged`` holds a
    device tensor (rows gathered ahead of a CUDA-graph replay, see :class:`~breachlab.vuln.training.graphs.CudaGraphStep`),
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
