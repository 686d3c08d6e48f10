"""What one kernel launch costs on this machine: eager, and replayed from a CUDA graph.

The training arms of ``benchmarks/train_throughput.py`` launch thousands of small kernels a
step; where a launch is dear (a sandboxed GPU runtime, a slow host), eager steps are bound by
launches, not by the GPU. This prints one JSON line: microseconds per launch of a one-element
``add_`` issued from Python (eager), the same kernels replayed from one captured graph, and
the device.

    python benchmarks/launch_latency.py [--launches 20000]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--launches", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device")
    x = torch.zeros(1, device="cuda")
    n = args.launches

    def eager() -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            x.add_(1.0)
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / n * 1e6

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        x.add_(1.0)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(n):
            x.add_(1.0)

    def replay() -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        graph.replay()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / n * 1e6

    eager()
    replay()
    e = sorted(eager() for _ in range(args.repeats))
    g = sorted(replay() for _ in range(args.repeats))
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "launches": n,
                      "eager_us_per_launch": [round(v, 2) for v in e],
                      "graph_us_per_kernel": [round(v, 2) for v in g]}), flush=True)


if __name__ == "__main__":
    main()
