"""Gemma 3n / Gemma 4's per-layer embedding table kept off the GPU (``ple_on_cpu``, ``ple_store``).

"E" models carry a second, per-layer embedding table (262,144 × layers·256: 2.8 B
parameters, 5.25 GiB in bf16 for E4B, more than the rest of the quantised model).  It is a
frozen lookup table: a step needs only the rows of its own tokens.  Kept in CPU memory, rows
gathered there and copied to the GPU, it stops costing GPU memory at all (fourth session).
Kept in a file instead (``ple_store: disk``), rows read per step, it stops costing process
memory too: the operating system's page cache holds what is read, and gives it back under
pressure.
"""

from __future__ import annotations

import logging
import os
import tempfile
import weakref
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
        self.weight = embedding.weight.detach().to("cpu")
        self._take_lookup(embedding)
        self.embedding_dim = self.weight.shape[1]

    def _take_lookup(self, embedding: Any) -> None:
        """What a lookup needs besides the rows: the padding index and the output scale."""
        import torch

        self.padding_idx = embedding.padding_idx
        scale = getattr(embedding, "embed_scale", None)
        self.scale = None if scale is None else torch.as_tensor(scale).detach().to("cpu")

    @property
    def dtype(self) -> Any:
        return self.weight.dtype

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


class DiskTableEmbedding(CpuTableEmbedding):
    """A :class:`CpuTableEmbedding` whose table is in a file, not in process memory.

    The table is written once, in chunks of ``chunk_bytes`` (no whole copy in memory at any
    time), to a temporary file in ``directory`` (``$TMPDIR`` when None) that is unlinked at
    once: the open descriptor keeps it, and nothing is left behind however the run ends.
    :meth:`gather` reads each distinct row of a step once (``os.preadv``, runs of consecutive
    rows in one call) and expands them to the step's ids.  The bytes read are the table's
    own: the rows, and so the model's outputs, are bit for bit those of the table in memory.
    """

    def __init__(self, embedding: Any, directory: str | None = None, chunk_bytes: int = 64 << 20):
        import torch

        weight = embedding.weight.detach()
        self._take_lookup(embedding)
        self.rows, self.embedding_dim = weight.shape
        self._dtype = weight.dtype
        self.row_bytes = self.embedding_dim * weight.element_size()
        fd, path = tempfile.mkstemp(prefix="breachlab-ple-", suffix=".bin", dir=directory)
        os.unlink(path)
        self.fd = fd
        weakref.finalize(self, os.close, fd)  # the file goes with its last reader
        step = max(1, chunk_bytes // self.row_bytes)
        try:
            for start in range(0, self.rows, step):
                chunk = weight[start:start + step].to("cpu").contiguous().view(torch.uint8).numpy()
                _write_all(fd, chunk.reshape(-1).data, start * self.row_bytes)
        except OSError as exc:
            need = self.rows * self.row_bytes / 2**30
            where = directory or tempfile.gettempdir()
            raise OSError(exc.errno, f"ple_store: disk needs {need:.2f} GiB free in {where} "
                                     f"(set TMPDIR elsewhere): {exc.strerror}") from exc

    @property
    def dtype(self) -> Any:
        return self._dtype

    def read(self, ids: Any) -> Any:
        """The rows ``ids`` (sorted, distinct ints) as a CPU tensor, read from the file."""
        import torch

        ids = list(ids)
        out = torch.empty((len(ids), self.embedding_dim), dtype=self._dtype)
        raw = out.view(torch.uint8).numpy()
        i = 0
        while i < len(ids):  # one read per run of consecutive rows
            j = i + 1
            while j < len(ids) and ids[j] == ids[j - 1] + 1:
                j += 1
            want = (j - i) * self.row_bytes
            got = os.preadv(self.fd, [raw[i:j].reshape(-1).data], ids[i] * self.row_bytes)
            if got != want:
                raise OSError(f"per-layer table file: read {got} of {want} bytes at row {ids[i]}")
            i = j
        return out

    def gather(self, input_ids: Any, pinned: bool = False) -> Any:
        import torch

        ids = input_ids.to("cpu").reshape(-1)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.rows):
            raise IndexError(f"token id out of the per-layer table's range [0, {self.rows})")
        distinct, where = torch.unique(ids, sorted=True, return_inverse=True)
        rows = self.read(distinct.tolist())
        out = torch.empty((ids.numel(), self.embedding_dim), dtype=self._dtype, pin_memory=pinned)
        torch.index_select(rows, 0, where, out=out)
        return out.view(*input_ids.shape, self.embedding_dim)


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


STORES = ("ram", "disk")


def offload_per_layer_embeddings(model: Any, include_cpu: bool = False, store: str = "ram",
                                 directory: str | None = None) -> int:
    """Keep Gemma 3n/4's per-layer embedding table off the GPU; returns its size in bytes
    (0 when the model has none, or it is trainable).  ``include_cpu``: also swap a table that
    is in CPU memory already, so that a later ``model.to("cuda")`` leaves it there.
    ``store``: ``ram`` (:class:`CpuTableEmbedding`) or ``disk`` (:class:`DiskTableEmbedding`,
    its file in ``directory``)."""
    import torch

    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}, not {store!r}")
    base = _base(model)
    moved = 0
    for parent in list(base.modules()):
        table = parent._modules.get(PER_LAYER_TABLE) if hasattr(parent, "_modules") else None
        if table is None or not isinstance(table, torch.nn.Embedding):
            continue
        if (table.weight.device.type == "cpu" and not include_cpu) or table.weight.requires_grad:
            continue  # nothing to gain, or it is being trained
        nbytes = table.weight.numel() * table.weight.element_size()
        cpu_table = DiskTableEmbedding(table, directory) if store == "disk" else CpuTableEmbedding(table)
        del parent._modules[PER_LAYER_TABLE]
        object.__setattr__(parent, PER_LAYER_TABLE, cpu_table)
        del table
        moved += nbytes
    if moved:
        log.info("per-layer embeddings kept %s: %.2f GiB", "in a file, read per step" if store == "disk"
                 else "in CPU memory", moved / 2**30)
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
