"""Where a CUDA-graph arm's allocated GPU memory peaks, and what is alive there (``--memory-history``).

A graph arm allocates only while it captures a bucket (its eager warm-up, then the capture);
replays allocate nothing.  So the allocator's history is recorded around each capture only
(``torch.cuda.memory._record_memory_history``), and each window's trace is read back: the moment
the most memory was allocated *in that window*, and the allocations alive then, grouped by the
line of code that made them.  What was allocated before the window (weights, optimizer state,
the graphs' static tensors) is not in it: this is the step's transient, the part that decides
whether the arm stays under a peer's peak.  It costs host memory and capture time: a report
with it is for attribution, not for speed.
"""

from __future__ import annotations

from typing import Any, Callable

FREES = ("free_requested", "free_completed")
# the frames that say whose allocation it is: the first one in these, innermost first
OWNERS = ("breachlab", "transformers", "peft", "liger_kernel", "torch/nn", "torch/utils/checkpoint")


def site(frames: list[dict]) -> str:
    """The allocating line, as ``file:line (function)``: the innermost frame in :data:`OWNERS`'
    code, else the innermost frame at all."""
    for frame in frames:
        name = frame.get("filename", "")
        if any(owner in name for owner in OWNERS):
            return f"{_short(name)}:{frame.get('line', '?')} ({frame.get('name', '?')})"
    if frames:
        return f"{_short(frames[0].get('filename', '?'))}:{frames[0].get('line', '?')} ({frames[0].get('name', '?')})"
    return "?"


def _short(path: str) -> str:
    for marker in ("site-packages/", "src/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def peak_sites(trace: list[dict], top: int = 12) -> dict[str, Any]:
    """The allocated peak of one traced window and the largest live sites at that moment.

    ``trace``: a device's entries of ``torch.cuda.memory._snapshot()["device_traces"]``.  A
    free of a block allocated before the window is ignored; a block freed twice (requested,
    then completed) counts once."""
    live: dict[int, tuple[int, str]] = {}
    total = peak = 0
    at_peak: dict[int, tuple[int, str]] = {}
    for entry in trace:
        action, addr, size = entry.get("action"), entry.get("addr"), int(entry.get("size", 0))
        if action == "alloc":
            live[addr] = (size, site(entry.get("frames", [])))
            total += size
            if total > peak:
                peak, at_peak = total, dict(live)
        elif action in FREES and addr in live:
            total -= live.pop(addr)[0]
    by_site: dict[str, list[int]] = {}
    for size, where in at_peak.values():
        by_site.setdefault(where, []).append(size)
    ranked = sorted(by_site.items(), key=lambda kv: -sum(kv[1]))[:top]
    return {"peak_gib": round(peak / 2**30, 3), "blocks": len(at_peak),
            "sites": [{"site": where, "gib": round(sum(sizes) / 2**30, 3), "blocks": len(sizes)}
                      for where, sizes in ranked]}


def watch_captures(graph: Any, windows: list[dict], max_entries: int = 400_000,
                   step: Callable[[], int] = lambda: -1) -> None:
    """Record the allocator's history around each of ``graph``'s captures (warm-up included) and
    append each window's :func:`peak_sites` (with its bucket and step) to ``windows``."""
    import torch

    inner = graph._capture

    def capture(prep: dict, inv_denom: float) -> dict:
        torch.cuda.memory._record_memory_history(max_entries=max_entries, stacks="python")
        try:
            entry = inner(prep, inv_denom)
            snap = torch.cuda.memory._snapshot()
        finally:
            torch.cuda.memory._record_memory_history(enabled=None)
        traces = snap.get("device_traces") or [[]]
        windows.append({"step": step(), "bucket": list(prep["key"][:2]), **peak_sites(traces[0])})
        return entry

    graph._capture = capture


def largest(windows: list[dict]) -> dict | None:
    """The window whose transient peaked highest (the one that sets the arm's allocated peak)."""
    return max(windows, key=lambda w: w["peak_gib"], default=None)
