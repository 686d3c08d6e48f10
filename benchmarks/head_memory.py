"""Peak memory of the LM head's loss, whole against ``head_chunk`` (on this machine's CPU).

``vuln train``'s ``head_chunk`` (:mod:`breachlab.vuln.training.speed.headloss`) scores the
supervised positions a chunk at a time, each chunk's logits recomputed in the backward pass.
This measures what that saves where it can be measured without a GPU: the process's
resident-set peak over one forward + backward of the head's loss, for (N supervised
positions, hidden H, vocabulary V), each setting in its own process. Prints one JSON line
per setting.

    python benchmarks/head_memory.py --positions 256 --hidden 1536 --vocab 151936 --chunks 0,64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput.measure import proc_status_gib  # noqa: E402


def _rss_gib(field: str) -> float:
    got = proc_status_gib(field)
    if got is None:
        raise RuntimeError(f"no {field} in /proc/self/status")
    return got


def one(positions: int, hidden: int, vocab: int, chunk: int, dtype: str) -> dict:
    import torch

    from breachlab.vuln.training.speed.headloss import chunked_loss

    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    head = torch.nn.Linear(hidden, vocab, bias=False).to(dt).requires_grad_(False)
    h = torch.randn(positions, hidden, dtype=dt, requires_grad=True)
    t = torch.randint(0, vocab, (positions,))
    before = _rss_gib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # the high-water mark from here on
        f.write("5")
    t0 = time.perf_counter()
    if chunk:
        loss = chunked_loss(head, None, h, t, chunk, -100)
    else:
        loss = torch.nn.functional.cross_entropy(head(h).float(), t, reduction="sum")
    loss.backward()
    seconds = time.perf_counter() - t0
    peak = _rss_gib("VmHWM")
    return {"positions": positions, "hidden": hidden, "vocab": vocab, "dtype": dtype, "head_chunk": chunk,
            "peak_over_start_mib": round((peak - before) * 1024, 1), "seconds": round(seconds, 2),
            "loss": round(float(loss), 4), "grad_sum": round(float(h.grad.float().abs().sum()), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--positions", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--chunks", default="0,64", help="comma list; 0 = the whole head at once")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.positions, args.hidden, args.vocab, args.one, args.dtype)), flush=True)
        return
    for chunk in (int(c) for c in args.chunks.split(",")):
        cmd = [sys.executable, __file__, "--positions", str(args.positions), "--hidden", str(args.hidden),
               "--vocab", str(args.vocab), "--dtype", args.dtype, "--one", str(chunk)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
