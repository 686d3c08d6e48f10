"""Page-locked staging buffers for the per-layer embedding rows of a CUDA-graph step, reused.

A graph replay reads Gemma 3n/4's per-layer rows from a static GPU tensor, filled by an
asynchronous copy from page-locked host memory (:mod:`breachlab.vuln.training.ple`).  Taken
fresh each step (``torch.empty(..., pin_memory=True)``), that memory comes from torch's
caching host allocator, which rounds every block up to a power of two and keeps blocks of
each size it has seen for the rest of the run: an E4B row of 3,072 tokens (66 MB of rows)
holds a 128 MB block, several in flight, and each new row length adds its own.  Host memory
is one of the goals (issue 18), so the rows go to a few buffers of exactly the size needed,
pinned in place (``cudaHostRegister``), reused once the copy that read them has finished, and
replaced only when a longer row arrives.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Callable

log = logging.getLogger(__name__)

PAGE = 4096


class PinnedRows:
    """Reusable page-locked byte buffers: :meth:`take` one for a step's rows, :meth:`release`
    it after queuing the copy that reads it (an event marks when the copy is done).

    At most ``most`` buffers exist; when all are busy the oldest copy is waited for.  A
    longer row than any buffer holds replaces the idle buffers by ones of its size, so the
    memory held is ``most`` x the longest row seen.  ``pin`` / ``unpin`` / ``event`` are the
    CUDA calls (injected by tests); a buffer that cannot be pinned still works, its copy
    is then synchronous.
    """

    def __init__(self, most: int = 3, pin: Callable[[Any], bool] | None = None,
                 unpin: Callable[[Any], None] | None = None, event: Callable[[], Any] | None = None):
        if most < 2:
            raise ValueError("PinnedRows needs at least 2 buffers (one filling, one being copied)")
        self.most = most
        self._pin, self._unpin = pin or _cuda_pin, unpin or _cuda_unpin
        self._event = event or _cuda_event
        self.free: list[dict] = []  # {"buf": uint8 tensor, "event": event | None, "pinned": bool}
        self.busy: dict[int, dict] = {}  # data_ptr -> entry, between take and release
        self.allocated = 0  # buffers made over the run (growth shows here)
        # the buffers are unpinned when this object goes: the finalizer holds them, not self
        self._held: list[dict] = []
        weakref.finalize(self, _unpin_all, self._held, self._unpin)

    @property
    def bytes_held(self) -> int:
        return sum(e["buf"].numel() for e in self._held)

    def take(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """A page-locked tensor of ``shape``/``dtype`` (a view of a reused buffer), yours until
        :meth:`release`."""
        import torch

        nbytes = _numel(shape) * torch.empty((), dtype=dtype).element_size()
        entry = self._reuse(nbytes)
        if entry is None:
            entry = self._make(max([nbytes] + [e["buf"].numel() for e in self._held]))
        entry["event"] = None
        self.busy[entry["buf"].data_ptr()] = entry
        return entry["buf"][:nbytes].view(dtype).view(shape)

    def release(self, tensor: Any, stream: Any = None) -> None:
        """The copy reading ``tensor`` is queued (on ``stream``): its buffer is reusable once
        that copy is done.  Released again (copied again before anything took it), the later
        copy is the one waited for.  A tensor not from :meth:`take` is ignored."""
        ptr = tensor.data_ptr()
        entry = self.busy.pop(ptr, None)
        if entry is None:
            entry = next((e for e in self.free if e["buf"].data_ptr() == ptr), None)
            if entry is None:
                return
        else:
            self.free.append(entry)
        event = self._event()
        if event is not None:
            event.record(stream) if stream is not None else event.record()
        entry["event"] = event

    # -- internals -------------------------------------------------------------------------
    def _reuse(self, nbytes: int) -> dict | None:
        """An idle buffer that holds ``nbytes``, the oldest first; buffers too small for the
        longest row are dropped; at ``most`` buffers, wait for the oldest copy."""
        for entry in list(self.free):
            if entry["buf"].numel() < nbytes and (entry["event"] is None or entry["event"].query()):
                self._drop(entry)
        fitting = [e for e in self.free if e["buf"].numel() >= nbytes]
        for entry in fitting:  # oldest released first
            if entry["event"] is None or entry["event"].query():
                self.free.remove(entry)
                return entry
        if len(self._held) < self.most or not self.free:  # all taken: one more (many micro-batches ahead)
            return None
        wait = fitting[0] if fitting else self.free[0]
        if wait["event"] is not None:
            wait["event"].synchronize()
        self.free.remove(wait)
        if wait["buf"].numel() >= nbytes:
            return wait
        self._drop(wait)
        return None

    def _make(self, nbytes: int) -> dict:
        import torch

        size = -(-nbytes // PAGE) * PAGE  # whole pages, from a page boundary (what pinning locks)
        raw = torch.empty((size + PAGE,), dtype=torch.uint8)
        skip = -raw.data_ptr() % PAGE
        buf = raw[skip:skip + size]
        entry = {"buf": buf, "event": None, "pinned": bool(self._pin(buf))}
        self._held.append(entry)
        self.allocated += 1
        if not entry["pinned"]:
            log.debug("staging buffer of %d bytes not page-locked: its copies will be synchronous", nbytes)
        return entry

    def _drop(self, entry: dict) -> None:
        if entry in self.free:
            self.free.remove(entry)
        self._held.remove(entry)
        if entry["pinned"]:
            self._unpin(entry["buf"])


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _unpin_all(held: list[dict], unpin: Callable[[Any], None]) -> None:
    for entry in held:
        if entry["pinned"]:
            try:
                unpin(entry["buf"])
            except Exception:  # at interpreter exit CUDA may be gone already
                pass
    held.clear()


def _cuda_pin(buf: Any) -> bool:
    import torch

    if not torch.cuda.is_available():
        return False
    err = torch.cuda.cudart().cudaHostRegister(buf.data_ptr(), buf.numel(), 0)
    return int(err) == 0


def _cuda_unpin(buf: Any) -> None:
    import torch

    torch.cuda.cudart().cudaHostUnregister(buf.data_ptr())


def _cuda_event() -> Any:
    import torch

    return torch.cuda.Event() if torch.cuda.is_available() else None
