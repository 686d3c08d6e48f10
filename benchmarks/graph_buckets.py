"""How many CUDA graphs a run captures: the distinct (row length, supervised positions, slot
shape) buckets of the benchmark's batches, counted on the CPU without a model.

Each bucket is one capture (a warm-up plus the capture, about 0.6-1 s on an H200) and one
graph kept for the rest of the run. On the H200 each graph held 55 MB (Qwen 1.5B) to 120 MB
(E4B) of host memory (docs/benchmarks.md, third peer run), so the count says how a whole
epoch's host peak compares with a 20-30-step benchmark's.

    python benchmarks/graph_buckets.py --shape qwen-1.5b --steps 30 750 --limit 0 4

With ``--limit`` (the trainer's ``cuda_graph_limit``), past that many graphs a batch of a new
bucket replays the smallest captured graph that holds it: the count then says how many graphs
the trainer keeps, and ``row_tokens_over_own`` what the padding costs in row length. With
``--plan N`` it counts ``cuda_graph_plan`` instead: N graphs chosen before the first step from
every batch (:func:`planned`).

The key is :class:`breachlab.vuln.training.speed.graphs.CudaGraphStep`'s at its defaults (rows in
multiples of 512 tokens, supervised positions in multiples of 256, slots of 256) without its
sliding-window flag: exact for Qwen (no sliding window), a lower bound for Gemma, where whether
the window binds can split a bucket in two.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def needs(shape: str, steps: int, batch_size: int, slots: bool = True, seed: int = 0) -> list:
    """What each of the run's batches needs (:class:`breachlab.vuln.training.speed.buckets.Need`), in
    order: with per-example slots (the CUDA default) or the row mask."""
    from throughput.examples import make_examples
    from throughput.shapes import build_config

    from breachlab.vuln.training.sft import collate_packed, plain_batches
    from breachlab.vuln.training.speed.buckets import Bucket, Need

    examples, _ = make_examples(shape, steps * batch_size, build_config(shape).vocab_size, seed)
    out = []
    for batch in plain_batches(len(examples), batch_size, seed, 0)[:steps]:
        rows = [examples[i] for i in batch]
        packed = collate_packed(rows, 0, multiple=512, slot_multiple=256 if slots else None)
        kb = -(-max(len(packed["keep"]), 1) // 256) * 256
        own = Bucket(packed["input_ids"].shape[1], kb, False, False,
                     tuple(packed["slot_shape"]) if "slot_shape" in packed else None)
        out.append(Need(own, len(rows), -(-max(len(e.ids) for e in rows) // 256) * 256 if slots else 0))
    return out


def buckets(shape: str, steps: int, batch_size: int, slots: bool, seed: int = 0, limit: int = 0,
            stats: dict | None = None) -> list[int]:
    """The steps at which a new graph is captured, in order (their number: the graphs captured),
    under ``cuda_graph_limit`` ``limit`` (:class:`breachlab.vuln.training.speed.buckets.GraphPlan`, the
    trainer's rule).  ``stats`` (a dict) gets the padded batches and the row tokens replayed
    against the batches' own buckets'."""
    from breachlab.vuln.training.speed.buckets import GraphPlan

    plan = GraphPlan(limit)
    first: list[int] = []
    own_tokens = replayed_tokens = 0
    for step, need in enumerate(needs(shape, steps, batch_size, slots, seed)):
        before = plan.graphs
        target = plan.route(need)
        if plan.graphs > before:
            first.append(step)
        own_tokens += need.bucket.tokens
        replayed_tokens += target.tokens
    if stats is not None:
        stats.update(padded_steps=plan.padded, row_tokens_over_own=round(replayed_tokens / max(own_tokens, 1), 4))
    return first


def planned(run: list, graphs: int) -> tuple[float, list]:
    """``cuda_graph_plan`` with ``cuda_graph_limit`` ``graphs``: the graphs the trainer chooses
    before the first step from every batch (:func:`breachlab.vuln.training.speed.buckets.choose`), and
    the row tokens replayed (each batch in the smallest chosen graph that holds it) over the
    batches' own."""
    from collections import Counter

    from breachlab.vuln.training.speed.buckets import choose, smallest_cover

    chosen = choose(Counter(run), graphs)
    own = sum(n.bucket.tokens for n in run)
    replayed = sum(smallest_cover(chosen, n).tokens for n in run)
    return round(replayed / own, 4), chosen


def main(argv: list[str] | None = None) -> None:
    from throughput.cli import at_least

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="qwen-1.5b", choices=["qwen-1.5b", "e4b"])
    ap.add_argument("--steps", type=int, nargs="+", default=[30, 750], help="run lengths to count (750 = 6,000 "
                    "samples at batch 8)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--limit", type=at_least(0), nargs="+", default=[0, 4],
                    help="cuda_graph_limit values to count (0 = a graph per bucket; 4 = the trainer's default)")
    ap.add_argument("--plan", type=at_least(1), nargs="*", default=[], metavar="GRAPHS",
                    help="also count cuda_graph_plan with that cuda_graph_limit: the graphs chosen before the first "
                         "step from every batch (per-example slots); prints the row tokens over the batches' own")
    args = ap.parse_args(argv)
    for steps in args.steps:
        run = needs(args.shape, steps, args.batch_size) if args.plan else []
        for graphs in args.plan:
            over, chosen = planned(run, graphs)
            print(json.dumps({"shape": args.shape, "steps": steps, "planned_graphs": graphs,
                              "row_tokens_over_own": over, "graphs_rows_slots": [[g.tokens, g.slots] for g in chosen]}))
        for limit in args.limit:
            for mode, slots in (("row mask", False), ("per-example slots", True)):
                stats: dict = {}
                first = buckets(args.shape, steps, args.batch_size, slots, limit=limit, stats=stats)
                print(json.dumps({"shape": args.shape, "steps": steps, "limit": limit, "attention": mode,
                                  "graphs": len(first), "captured_at_step": first, **stats}))


if __name__ == "__main__":
    main()
