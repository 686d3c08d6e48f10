"""Gemma 3n / Gemma 4's per-layer embedding table kept off the GPU (``ple_on_cpu``, ``ple_store``).

"E" models carry a second, per-layer embedding table (262,144 × layers·256: 2.8 B
parameters, 5.25 GiB in bf16 for E4B, more than the rest of the quantised model).  It is a
frozen lookup table: a step needs only the rows of its own tokens.  Kept in CPU memory, rows
gathered there and copied to the GPU, it stops costing GPU memory at all.
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
IOV_MAX = 1024  # buffers one preadv may scatter a read into (Linux's limit)
REPEAT_CHUNK = 1024  # repeated rows copied this many at a time


class CpuTableEmbedding:
    """Stands in for a frozen scaled embedding whose table stays in CPU memory.

    Not an ``nn.Module`` child of the model on purpose: ``model.to(device)``, DDP's
    start-up broadcast and optimizer construction never see the table, so it stays where
    it is.  Call it like the embedding it replaces: ids on any device in, rows on the ids'
    device out (scaled as the original module scales them).  While ``staged`` holds a
    device tensor (rows gathered ahead of a CUDA-graph replay, see
    :class:`~breachlab.vuln.training.speed.graphs.CudaGraphStep`),
    a call returns that tensor, scaled, whatever the ids: a captured graph cannot reach
    CPU memory.
    """

    staged: Any = None
    scale_dev: Any = None
    pin_rows = True  # a step's rows in page-locked memory on their way to the GPU (ple_pin_rows)

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
        rows = self.gather(input_ids, pinned=input_ids.is_cuda and self.pin_rows)
        rows = rows.to(input_ids.device, non_blocking=True)
        if self.scale is not None:
            rows = rows * self.scale.to(rows.device, rows.dtype)
        return rows


class DiskTableEmbedding(CpuTableEmbedding):
    """A :class:`CpuTableEmbedding` whose table is in a file, not in process memory.

    The table is written once, in chunks of ``chunk_bytes`` (no whole copy in memory at any
    time), to a temporary file in ``directory`` (``$TMPDIR`` when None) that is unlinked at
    once: the open descriptor keeps it, and nothing is left behind however the run ends.
    :meth:`gather` reads each distinct row of a step once, straight into the step's buffer
    (``os.preadv``, runs of consecutive rows in one call), and copies its repeats there.  The
    bytes read are the table's own: the rows, and so the model's outputs, are bit for bit those
    of the table in memory.
    """

    def __init__(self, embedding: Any, directory: str | None = None, chunk_bytes: int = 64 << 20):
        import torch

        weight = embedding.weight.detach()
        self._take_lookup(embedding)
        self.rows, self.embedding_dim = weight.shape
        self._dtype = weight.dtype
        self.row_bytes = self.embedding_dim * weight.element_size()
        try:
            fd, path = tempfile.mkstemp(prefix="breachlab-ple-", suffix=".bin", dir=directory)
        except OSError as exc:
            where = directory or tempfile.gettempdir()
            raise OSError(exc.errno, f"ple_store: disk cannot make its file in {where} "
                                     f"(set TMPDIR to a writable folder): {exc.strerror}") from exc
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

    def gather(self, input_ids: Any, pinned: bool = False) -> Any:
        """The rows of ``input_ids``, read straight into the step's buffer: each distinct row once,
        at its first position (one ``preadv`` per run of consecutive row ids, scattered to where
        they go), its repeats copied from there.  No second buffer of the distinct rows: with
        E4B's random-id batches nearly every row is distinct, and that buffer was as large as
        the step's (up to 6,144 x 21 KB)."""
        import torch

        ids = input_ids.to("cpu").reshape(-1)
        n = ids.numel()
        if n and (int(ids.min()) < 0 or int(ids.max()) >= self.rows):
            raise IndexError(f"token id out of the per-layer table's range [0, {self.rows})")
        out = torch.empty((n, self.embedding_dim), dtype=self._dtype, pin_memory=pinned)
        if n:
            distinct, where = torch.unique(ids, sorted=True, return_inverse=True)
            places = torch.arange(n)
            first = torch.full((len(distinct),), n, dtype=torch.long).scatter_reduce_(0, where, places, "amin")
            self._read_into(out, distinct.tolist(), first.tolist())
            repeats = torch.nonzero(first[where] != places).reshape(-1)
            for k in range(0, repeats.numel(), REPEAT_CHUNK):  # a bounded temporary, however many repeats
                to = repeats[k:k + REPEAT_CHUNK]
                out.index_copy_(0, to, out.index_select(0, first[where[to]]))
        return out.view(*input_ids.shape, self.embedding_dim)

    def _read_into(self, out: Any, ids: list[int], places: list[int]) -> None:
        """Row ``ids[i]`` (sorted, distinct) of the file into row ``places[i]`` of ``out``."""
        import torch

        raw = out.view(torch.uint8).numpy()
        i = 0
        while i < len(ids):  # one read per run of consecutive rows (at most IOV_MAX rows a call)
            j = i + 1
            while j < len(ids) and ids[j] == ids[j - 1] + 1 and j - i < IOV_MAX:
                j += 1
            want = (j - i) * self.row_bytes
            got = os.preadv(self.fd, [raw[k].data for k in places[i:j]], ids[i] * self.row_bytes)
            if got != want:
                raise OSError(f"per-layer table file: read {got} of {want} bytes at row {ids[i]}")
            i = j


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


STORES = ("ram", "disk")


def resolve_pin_rows(setting: str, store: str) -> bool:
    """``ple_pin_rows``: on, off, or auto = off where the table is on disk (the choice that keeps
    process memory down: torch keeps the page-locked blocks it hands out for the rest of the
    run), on in RAM."""
    return setting == "on" or (setting == "auto" and store != "disk")


def offload_per_layer_embeddings(model: Any, include_cpu: bool = False, store: str = "ram",
                                 directory: str | None = None, pin_rows: bool = True) -> int:
    """Keep Gemma 3n/4's per-layer embedding table off the GPU; returns its size in bytes
    (0 when the model has none, or it is trainable).  ``include_cpu``: also swap a table that
    is in CPU memory already, so that a later ``model.to("cuda")`` leaves it there.
    ``store``: ``ram`` (:class:`CpuTableEmbedding`) or ``disk`` (:class:`DiskTableEmbedding`,
    its file in ``directory``); ``pin_rows``: each step's rows in page-locked memory on their
    way to the GPU (:func:`resolve_pin_rows`)."""
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
        cpu_table.pin_rows = pin_rows
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
