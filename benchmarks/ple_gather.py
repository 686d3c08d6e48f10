"""Host memory and time of one step's per-layer rows read from the table on disk (``ple_store: disk``).

``DiskTableEmbedding.gather`` (:mod:`breachlab.vuln.training.speed.ple`) is the host work that the
E4B graphs arm does before each replay; the host peak of a step is where it allocates. This
measures, on this machine's CPU, over ``--batches`` batches of ``--tokens`` token ids drawn at
random (as the E4B benchmark's batches are: nearly every row distinct), how far each gather
raises the process's resident-set peak above what was resident before it, and how long it
takes. The table is E4B's shape by default (262,144 rows x 42 layers x 256, bf16: 5.25 GiB,
written to an unlinked file in ``--tmp``). Prints one JSON line.

    python benchmarks/ple_gather.py --tmp /var/tmp
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput.measure import proc_status_gib, reset_host_peak  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=262_144, help="table rows (the vocabulary)")
    ap.add_argument("--dim", type=int, default=42 * 256, help="row width (layers x per-layer width)")
    ap.add_argument("--tokens", type=int, default=6144, help="token ids per batch (E4B's largest bucket: 6,144)")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--tmp", default=None, help="folder of the table's file ($TMPDIR when not given)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name in ("rows", "dim", "tokens", "batches"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if args.tmp is not None and not Path(args.tmp).is_dir():
        ap.error(f"--tmp {args.tmp}: no such folder")
    import torch

    from breachlab.vuln.training.speed.ple import DiskTableEmbedding

    if not reset_host_peak():
        print(json.dumps({"error": "cannot reset the resident-set peak here (Linux only)"}))
        return 1
    emb = torch.nn.Embedding(args.rows, args.dim, dtype=torch.bfloat16)
    table = DiskTableEmbedding(emb, args.tmp)
    del emb
    g = torch.Generator().manual_seed(args.seed)
    rises, seconds, distinct = [], [], []
    for _ in range(args.batches):
        ids = torch.randint(0, args.rows, (1, args.tokens), generator=g)
        distinct.append(int(torch.unique(ids).numel()))
        before = proc_status_gib("VmRSS")
        reset_host_peak()
        t0 = time.perf_counter()
        rows = table.gather(ids)
        seconds.append(time.perf_counter() - t0)
        rises.append((proc_status_gib("VmHWM") - before) * 1024)
        del rows
    out_mib = args.tokens * args.dim * 2 / 2**20
    print(json.dumps({"rows": args.rows, "dim": args.dim, "tokens": args.tokens, "batches": args.batches,
                      "distinct_median": statistics.median(distinct), "step_rows_mib": round(out_mib, 1),
                      "peak_rise_mib": [round(r, 1) for r in rises],
                      "peak_rise_median_mib": round(statistics.median(rises), 1),
                      "seconds_median": round(statistics.median(seconds), 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
