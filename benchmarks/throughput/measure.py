"""What one arm's run is worth: speed, memory, MFU, losses; and the summary over arms and repeats.

Speed is read from the *median* timed step (the steps after ``--warmup``): per step,
samples (and real, unpadded tokens) over its seconds; the median of those.  One slow step
(a graph capture, a compile, the allocator growing) then moves it little; the time such
steps take is reported separately (``warmup_seconds``, ``capture_seconds``) and in
``epoch_wall_seconds``: set-up (model build, patches, trainer init) plus every step.
"""

from __future__ import annotations

import gc
import statistics
from typing import Any

H100_BF16_PEAK = 989e12  # dense bf16 tensor-core peak of an H100 / H200 SXM (vendor datasheet)
PEERS = ("baseline", "trl", "trl-packed", "unsloth")


def reset_gpu_peak(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def gpu_peaks(device: str) -> dict[str, float]:
    """Peak allocated and reserved GPU memory since the last reset (GiB)."""
    import torch

    if device != "cuda":
        return {}
    return {"alloc": torch.cuda.max_memory_allocated() / 2**30, "reserved": torch.cuda.max_memory_reserved() / 2**30}


def proc_status_gib(field: str) -> float | None:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in GiB; None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def host_peak_gib() -> float:
    """This process's resident-set high-water mark (the arm's own subprocess: its peak host memory).

    Linux: ``VmHWM``, which :func:`reset_host_peak` restarts. Not ``ru_maxrss``: on the H200 it
    still read the load's 5.8 GiB after the restart while the resident set was 1.0-2.5 GiB
    (2026-12-02). Elsewhere: ``ru_maxrss``."""
    hwm = proc_status_gib("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def process_peak_gib() -> float:
    """The whole process's peak so far, exited threads included (before :func:`reset_host_peak`)."""
    import resource

    return max(host_peak_gib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def memory_now(device: str) -> dict[str, float]:
    """This process's resident set (and its anonymous and file-backed parts) and, on CUDA, the
    allocated and reserved GPU memory now (GiB)."""
    out: dict[str, float] = {}
    for field, key in (("VmRSS", "host_rss_gib"), ("RssAnon", "host_anon_gib"), ("RssFile", "host_file_gib")):
        value = proc_status_gib(field)
        if value is not None:
            out[key] = round(value, 3)
    if device == "cuda":
        import torch

        out.update(gpu_alloc_gib=round(torch.cuda.memory_allocated() / 2**30, 3),
                   gpu_reserved_gib=round(torch.cuda.memory_reserved() / 2**30, 3))
    return out


def host_mappings(top: int = 12, smaps: str = "/proc/self/smaps") -> list[dict[str, Any]]:
    """Where the resident set is now, by mapping: the ``top`` largest by resident MiB, each
    file's mappings (a library, the page-locked ``/dev/nvidia*`` maps) added up, the anonymous
    ones as ``[anon]`` (``[heap]``, ``[stack]`` as the kernel names them), each with its
    anonymous MiB; [] where there is no ``smaps`` (not Linux)."""
    sizes: dict[str, list[int]] = {}
    name = "[anon]"
    try:
        with open(smaps) as f:
            for line in f:
                head = line.split(None, 1)[0]
                if "-" in head and not head.endswith(":"):  # a mapping: range perms offset dev inode [path]
                    parts = line.split(None, 5)
                    name = parts[5].strip() if len(parts) > 5 and parts[5].strip() else "[anon]"
                    sizes.setdefault(name, [0, 0])
                elif head == "Rss:":
                    sizes[name][0] += int(line.split()[1])
                elif head == "Anonymous:":
                    sizes[name][1] += int(line.split()[1])
    except OSError:
        return []
    ranked = sorted(sizes.items(), key=lambda kv: -kv[1][0])[:top]
    return [{"mapping": k, "rss_mib": round(v[0] / 1024, 1), "anon_mib": round(v[1] / 1024, 1)} for k, v in ranked]


def trim_host_heap() -> bool:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim(0)``); False where there
    is no glibc.  What a warm-up's compilers and a capture free stays in the process's resident
    set otherwise (the ``-trim`` arms measure whether that is part of the host peak)."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)  # 1 if pages went back, 0 if there were none
    except (OSError, AttributeError):
        return False
    return True


def reset_host_peak() -> bool:
    """Start this process's resident-set high-water mark again (Linux: ``5`` into
    ``/proc/self/clear_refs``; :func:`host_peak_gib` then reads the peak since); False where
    that cannot be done (the peak then stays the whole process's)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def diffs(ts: list[float]) -> list[float]:
    return [b - a for a, b in zip(ts[:-1], ts[1:])]


def summarize(name: str, res: dict, examples: list[Any], batches: list[list[int]], device: str, warmup: int,
              n_params: int, vocab: int, hidden: int) -> dict:
    """One run of one arm: median-step speed, warm-up, epoch wall time, memory, MFU, losses."""
    times = res["step_times"]
    skip = min(warmup, len(times) - 1)
    timed = range(skip, len(times))
    own = "step_samples" in res
    if own:  # the arm chose its own rows (trl-packed): what each step held
        per_step = [(res["step_samples"][i], res["step_tokens"][i], res["step_supervised"][i], times[i])
                    for i in timed]
    else:
        per_step = [(len(batches[i]), sum(len(examples[j].ids) for j in batches[i]),
                     sum(examples[j].n_answer for j in batches[i]), times[i]) for i in timed]
    med = statistics.median(t for *_, t in per_step)
    out = {
        "arm": name, "timed_steps": len(per_step),
        "samples_per_s": round(statistics.median(s / t for s, _, _, t in per_step), 3),
        "real_tokens_per_s": round(statistics.median(k / t for _, k, _, t in per_step), 1),
        "median_step_s": round(med, 4),
        "samples_per_s_mean": round(sum(s for s, *_ in per_step) / sum(t for *_, t in per_step), 3),
        "warmup_seconds": round(sum(times[:skip]), 2),
        "all_steps_seconds": round(sum(times), 2),
        "epoch_wall_seconds": round(res.get("setup_seconds", 0.0) + sum(times), 2),
        "setup_seconds": round(res.get("setup_seconds", 0.0), 2),
        "losses": [round(x, 4) for x in res["losses"]],
    }
    if own:  # its losses are of other batches: no step-by-step gap to the floor
        out["own_batches"] = True
    for key in ("peak_gpu_alloc_gib", "peak_gpu_reserved_gib", "build_peak_gpu_gib", "peak_host_gib",
                "train_peak_host_gib", "train_start_host_gib"):
        if key in res:
            out[key] = round(res[key], 2)
    if "host_at" in res:  # the resident set at the training's start and end, anonymous / file-backed, by mapping
        out["host_at"] = res["host_at"]
    if "profiled_steps" in res:  # profiled after the timed steps; not in the peaks, set-up or epoch time
        out["profiled_steps"] = res["profiled_steps"]
    if device == "cuda":  # useful FLOPs: 6·N·tokens for the body, 6·V·H per supervised position for the head
        flops = [6 * n_params * k + 6 * vocab * hidden * a for _, k, a, _ in per_step]
        out["mfu_useful"] = round(statistics.median(f / t for f, (*_, t) in zip(flops, per_step)) / H100_BF16_PEAK, 4)
    if "graphs_captured" in res:  # the steps that captured a graph, apart
        cap = set(res["capture_steps"])
        out.update(graphs_captured=res["graphs_captured"], capture_seconds=res["capture_seconds"],
                   capture_steps=res["capture_steps"],
                   replay_steps=sum(1 for i in timed if i not in cap))
        replay = [(n, t) for i, (n, _, _, t) in zip(timed, per_step) if i not in cap]
        if replay:  # the timed steps that replayed a graph (none captured one)
            out["samples_per_s_replay"] = round(statistics.median(n / t for n, t in replay), 3)
        for key in ("kept_layers", "warmups_in_graph_pool", "memory_at_captures", "memory_history", "graph_limit",
                    "graph_padded_steps", "graph_planned", "pin_rows"):
            if key in res:
                out[key] = res[key]
    return out


def _span(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(max(values), 3)]


def compare(runs: dict[str, list[dict]], floor: str = "baseline") -> dict[str, dict]:
    """Per arm over its repeats: ranges of speed and memory; ratios to the floor and the best peer.

    ``runs``: arm -> its repeats (result dicts; those with ``error`` / ``skipped`` are left
    out of the numbers).  The best peer is the peer arm (baseline, trl, unsloth) of highest
    median samples/s; ratios are of medians over repeats, with min–max ranges (the arm's
    slowest run over the other's fastest, and the reverse).  Loss gaps are against the
    floor's first repeat (every arm trains the floor's batches in its order).
    """
    ok = {a: [r for r in rs if "samples_per_s" in r] for a, rs in runs.items()}
    med = {a: statistics.median(r["samples_per_s"] for r in rs) for a, rs in ok.items() if rs}
    peers = {a: v for a, v in med.items() if a in PEERS}
    best = max(peers, key=peers.get) if peers else None
    out: dict[str, dict] = {}
    for arm, rs in runs.items():
        good = ok[arm]
        s: dict[str, Any] = {"runs": len(rs)}
        bad = [r for r in rs if r not in good]
        if bad:
            s["not_run"] = sorted({r.get("skipped") or r.get("error", "?") for r in bad})
        if not good:
            out[arm] = s
            continue
        s["samples_per_s"] = _span([r["samples_per_s"] for r in good])
        s["real_tokens_per_s"] = _span([r["real_tokens_per_s"] for r in good])
        s["epoch_wall_seconds"] = _span([r["epoch_wall_seconds"] for r in good])
        for key in ("peak_gpu_alloc_gib", "peak_gpu_reserved_gib", "peak_host_gib", "train_peak_host_gib",
                    "mfu_useful"):
            if all(key in r for r in good):
                s[key] = _span([r[key] for r in good])
        for ref, label in ((floor, "vs_floor"), (best, "vs_best_peer")):
            if ref in med and ok.get(ref):
                other = [r["samples_per_s"] for r in ok[ref]]
                mine = [r["samples_per_s"] for r in good]
                s[label] = {"arm": ref, "samples_per_s_ratio": round(med[arm] / med[ref], 3),
                            "range": [round(min(mine) / max(other), 3), round(max(mine) / min(other), 3)]}
                for key in ("peak_gpu_alloc_gib", "peak_gpu_reserved_gib", "peak_host_gib", "train_peak_host_gib"):
                    if key in good[0] and key in ok[ref][0] and ok[ref][0][key]:
                        s[label][key.replace("_gib", "_ratio")] = round(good[0][key] / ok[ref][0][key], 3)
        if ok.get(floor) and arm != floor and not good[0].get("own_batches"):  # trl-packed: its own batches
            pairs = list(zip(ok[floor][0]["losses"], good[0]["losses"]))
            if pairs:
                s["loss_gap_max"] = round(max(abs(a - b) for a, b in pairs), 4)
                s["loss_gap_mean"] = round(sum(abs(a - b) for a, b in pairs) / len(pairs), 4)
                s["first_loss_gap"] = round(abs(pairs[0][0] - pairs[0][1]), 6)
        out[arm] = s
    return out


def table(summary: dict[str, dict]) -> str:
    """A compact text table of :func:`compare`'s result."""
    cols = ("samples_per_s", "real_tokens_per_s", "epoch_wall_seconds", "peak_gpu_alloc_gib", "peak_gpu_reserved_gib",
            "peak_host_gib", "train_peak_host_gib", "mfu_useful")
    head = ["arm", "samples/s", "tokens/s", "epoch s", "GPU alloc", "GPU resv", "host GiB", "train host", "MFU",
            "x floor", "x best peer", "loss gap"]
    rows = [head]
    for arm, s in summary.items():
        if "samples_per_s" not in s:
            rows.append([arm, "; ".join(s.get("not_run", ["-"]))[:90]])
            continue
        cells = [arm] + [("–".join(f"{v:g}" for v in s[c]) if c in s else "-") for c in cols]
        cells += [f"{s[k]['samples_per_s_ratio']:g}" if k in s else "-" for k in ("vs_floor", "vs_best_peer")]
        cells.append(f"{s['loss_gap_max']:g}" if "loss_gap_max" in s else "-")
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows if len(r) > 2 or i == 0) for i in range(len(head))]
    lines = []
    for r in rows:
        if len(r) == 2:
            lines.append(f"{r[0]:<{widths[0]}}  {r[1]}")
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)
