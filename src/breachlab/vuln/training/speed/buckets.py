"""Which CUDA graph serves a packed batch: its own bucket's, or a larger one's (``cuda_graph_limit``).

A captured graph costs a capture (a warm-up plus the capture) and keeps host memory for the
rest of the run (docs/benchmarks.md, "Training speed", has both); a whole epoch meets more
buckets than a short run (``benchmarks/graph_buckets.py`` counts them).  Past ``limit`` graphs a batch whose bucket
has no graph replays the smallest captured graph that can hold it, padded; a new graph is
captured only when none can.  The padding changes no loss: pad positions are their own
segment, and empty slots and supervised positions are masked as they are in any bucket.

With ``cuda_graph_plan`` the graphs are chosen before the first step instead, from every batch
of the run (:func:`choose`): the largest bucket and the most useful others, ``limit`` in all,
so that the whole run holds no more than ``limit`` graphs.

Pure bookkeeping on the CPU: :class:`~breachlab.vuln.training.speed.graphs.CudaGraphStep` asks, the
benchmark's bucket counter simulates with the same rules.
"""

from __future__ import annotations

from typing import Iterable, Mapping, NamedTuple


class Bucket(NamedTuple):
    """A graph's shapes: row length, supervised positions (rounded), whether the model has a
    sliding window and whether it binds, and the slot layout (examples, slot length) or None
    for the row's block-diagonal mask."""

    tokens: int
    supervised: int
    sliding: bool
    binds: bool
    slots: tuple[int, int] | None


class Need(NamedTuple):
    """What a batch needs: its own bucket, how many examples, and the slot length its longest
    example rounds up to."""

    bucket: Bucket
    examples: int
    slot: int


def covers(graph: Bucket, need: Need) -> bool:
    """Whether ``graph`` can replay a batch that needs ``need`` (its own bucket, padded).  A
    window that binds in the graph is harmless where the batch's segments fit inside it."""
    b = need.bucket
    if graph.tokens < b.tokens or graph.supervised < b.supervised or graph.sliding != b.sliding:
        return False
    if b.binds and not graph.binds:
        return False
    return graph.slots is None or (graph.slots[0] >= need.examples and graph.slots[1] >= need.slot)


def padded_work(graph: Bucket) -> tuple[int, int, int]:
    """Ordering among graphs that cover a batch: the shortest row, then the smallest slot
    attention (examples x L^2), then the fewest supervised positions."""
    area = graph.slots[0] * graph.slots[1] ** 2 if graph.slots is not None else 0
    return graph.tokens, area, graph.supervised


def smallest_cover(graphs: Iterable[Bucket], need: Need) -> Bucket | None:
    """The graph among ``graphs`` that replays a batch needing ``need`` with the least padded
    work, or None when none can."""
    return min((g for g in graphs if covers(g, need)), key=padded_work, default=None)


def largest(needs: Iterable[Need]) -> Bucket:
    """The bucket that holds every one of ``needs``: each shape at its largest (slots where any
    batch has them; a window that binds where any batch's does)."""
    needs = list(needs)
    slotted = any(n.bucket.slots is not None for n in needs)
    return Bucket(max(n.bucket.tokens for n in needs), max(n.bucket.supervised for n in needs),
                  needs[0].bucket.sliding, any(n.bucket.binds for n in needs),
                  (max(n.examples for n in needs), max(n.slot for n in needs)) if slotted else None)


def choose(counts: Mapping[Need, int], limit: int) -> list[Bucket]:
    """``cuda_graph_plan``: at most ``limit`` graphs, chosen before the first step from what every
    batch of the run needs (``counts``: need -> batches), that hold all of them: the largest
    bucket, then one by one the batches' own bucket that saves the most row tokens, while one
    still does.  Each batch then replays the smallest chosen graph that holds it."""
    if limit < 1 or not counts:
        raise ValueError("a plan needs at least one graph and one batch")
    chosen = [largest(counts)]

    def cost(graphs: list[Bucket]) -> int:  # row tokens replayed (the largest holds every batch)
        return sum(k * smallest_cover(graphs, n).tokens for n, k in counts.items())  # type: ignore[union-attr]

    best = cost(chosen)
    candidates = sorted({n.bucket for n in counts} - set(chosen), key=padded_work)
    while len(chosen) < limit and candidates:
        c = min(candidates, key=lambda c: (cost(chosen + [c]), padded_work(c)))
        c_cost = cost(chosen + [c])
        if c_cost >= best:
            break
        chosen.append(c)
        candidates.remove(c)
        best = c_cost
    return sorted(chosen, key=padded_work)


class GraphPlan:
    """The buckets that have a graph (or are about to be captured), and how often each served.

    ``limit``: graphs captured freely, one per bucket; past it a batch goes to the smallest
    covering graph, and a new one is captured only when none covers.  0 = no limit.
    ``planned``: the graphs :func:`choose` picked ahead; a batch goes to the smallest of them
    that holds it (the rules above only for a batch none holds).
    """

    def __init__(self, limit: int = 0, planned: list[Bucket] | None = None):
        if limit < 0:
            raise ValueError(f"cuda_graph_limit must be >= 0, not {limit}")
        self.limit = limit
        self.planned = list(planned or [])
        self.served: dict[Bucket, int] = {}  # graph -> batches routed to it
        self.padded = 0  # batches replayed in a larger bucket's graph

    def route(self, need: Need) -> Bucket:
        """The bucket whose graph this batch replays (counted as captured from now on: the
        caller captures it if it has none yet)."""
        own = need.bucket
        target = smallest_cover(self.planned, need)
        if target is None:  # no plan, or a batch it does not hold: the limit's rules
            target = own
            if own not in self.served and self.limit and len(self.served) >= self.limit:
                target = smallest_cover(self.served, need) or own
        self.padded += int(target != own)
        self.served[target] = self.served.get(target, 0) + 1
        return target

    @property
    def graphs(self) -> int:
        return len(self.served)
