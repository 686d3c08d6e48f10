"""breachlab's SFT path as arms: the trainer's own pieces, one feature at a time.

* ``breachlab-padded`` — breachlab's SFT loss of earlier sessions (:mod:`breachlab.vuln.training.sft`):
  left padding, ``logits_to_keep`` = longest answer + 1.
* ``breachlab-packed`` — padding-free: the batch's examples end to end in one row
  (:func:`sft.collate_packed`), segment masks, positions restarting per example, logits only
  at the answer positions.
* ``breachlab-packed-lean`` — ``breachlab-packed`` with every full-attention layer attending
  per example (``slot_attention: all``) and the LM head's loss 64 positions at a time
  (``head_chunk: 64``): the eager form of ``breachlab-graphs-lean``, on the CPU too.
* ``breachlab-same-order`` — the trainer's eager path on CUDA: packed, fused kernels
  (:func:`patches.fused_kernels`, Liger when installed), Gemma 4's per-layer embedding table
  in CPU memory, its KV-shared layers at the answer positions only, LoRA matmuls in bf16.
  On Qwen the Gemma-only pieces find nothing to do (the output says 0).
* ``breachlab-graphs`` — the same replayed from CUDA graphs: the trainer's CUDA default
  (``slot_attention: auto``: every full-attention layer per example on CUDA since the third
  H200 run of 2026-12-02; the row-wide mask for layers without wide heads before).
* ``breachlab-graphs-ple-disk`` — ``breachlab-graphs`` with ``ple_store: disk``: Gemma 4's
  per-layer table in an unlinked file in ``--tmp``, rows read per step (no GPU memory and no
  process memory for it).
* ``breachlab-graphs-ple-disk-trim`` — the same, the C heap's free pages handed back to the OS
  after each capture (``malloc_trim``): whether what the warm-up and capture freed is part of
  the host peak (E4B: 1.22× the floor's host memory, third H200 run). Fourth run: each trim
  handed back 15–17 MB; not adopted.
* ``breachlab-graphs-ple-disk-no-liger`` — ``breachlab-graphs-ple-disk`` without the Liger
  kernels: what their Triton compile and modules cost in host memory (the floor, without
  them, peaked at 1.96 GiB on E4B, TRL with them at 2.13), and what they bring in speed.
* ``breachlab-graphs-ple-disk-unpinned`` — ``breachlab-graphs-ple-disk`` with each step's
  per-layer rows in pageable memory instead of page-locked (``CudaGraphStep(pin_rows=False)``):
  torch's page-locked host cache keeps the blocks it hands out (sizes rounded up to a power of
  two), and E4B's host memory grew 0.11 GiB in 20 steps of replays with it, 0.05 without
  (eleventh session, an environment switch then), at 2.4 % of the speed. Twelfth session: the
  trainer's E4B configuration (``ple_pin_rows: auto`` with ``ple_store: disk``); host 2.32
  against 2.39-2.42 GiB over 20 steps (1.08-1.17x the best peer's), 2.3-2.6 % slower; over a
  whole epoch (5 graphs) no growth in the replays after the last capture, the graphs' own
  0.10-0.24 GiB each left.
* ``breachlab-graphs-ple-disk-unpinned-plan2`` — the same with two planned graphs
  (``cuda_graph_plan``, below): the captures, not the replays, grow the host memory with
  pageable rows.
* ``breachlab-graphs-ple-disk-plan2`` / ``-plan3`` — ``breachlab-graphs-ple-disk`` with
  ``cuda_graph_plan`` and a limit of 2 / 3: the graphs chosen before the first step from every
  batch of the arm, so the whole run holds that many. Eleventh session, a whole E4B epoch with
  two: 2.62 GiB of host memory against 2.66 with the limit's five (page-locked rows: their
  cache grew in the replays, twelfth session).
* ``breachlab-graphs-unlimited`` / ``breachlab-graphs-ple-disk-unlimited`` — those arms with a
  graph for every bucket (``cuda_graph_limit: 0``, the default before the tenth session).
* ``breachlab-graphs-slots`` — ``breachlab-graphs`` with ``slot_attention: all``: every
  full-attention layer attends per example (Qwen's row-wide masked attention was 47 % of an
  eager step's GPU time on an H200); on CUDA now the same as ``breachlab-graphs``.
* ``breachlab-graphs-row`` — ``breachlab-graphs`` with ``slot_attention: wide``: only wide-head
  layers per example, the others over the row's block-diagonal mask (the default before).
* ``breachlab-graphs-lean`` — ``breachlab-graphs-slots`` with ``head_chunk: 64`` (at most 64 ×
  vocabulary logits at once).
* ``breachlab-graphs-v4`` — the graphs arm as the fourth session measured it.
* ``breachlab-graphs-budget`` — ``breachlab-graphs`` with ``activation_budget_gib``.
* ``breachlab-no-ckpt`` — ``breachlab-same-order`` without gradient checkpointing.
* ``breachlab-regional-compile`` (``--compile``) — plus ``torch.compile(dynamic=True)`` per layer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .measure import diffs, memory_now, trim_host_heap

_TRAINER = {"packed": True, "kernels": True, "offload": True, "answers": True, "lora_cast": True}
# name: (gradient checkpointing, features)
ARMS: dict[str, tuple[bool, dict]] = {
    "breachlab-padded": (True, {}),
    "breachlab-packed": (True, {"packed": True}),
    "breachlab-packed-lean": (True, {"packed": True, "slots": True, "head_chunk": 64}),
    "breachlab-same-order": (True, dict(_TRAINER)),
    "breachlab-no-ckpt": (False, dict(_TRAINER)),
    "breachlab-graphs": (True, {**_TRAINER, "graphs": True}),
    "breachlab-graphs-ple-disk": (True, {**_TRAINER, "graphs": True, "ple_disk": True}),
    "breachlab-graphs-ple-disk-trim": (True, {**_TRAINER, "graphs": True, "ple_disk": True, "trim": True}),
    "breachlab-graphs-ple-disk-no-liger": (True, {**_TRAINER, "kernels": False, "graphs": True, "ple_disk": True}),
    "breachlab-graphs-ple-disk-unpinned": (True, {**_TRAINER, "graphs": True, "ple_disk": True, "unpinned": True}),
    "breachlab-graphs-ple-disk-unpinned-plan2": (True, {**_TRAINER, "graphs": True, "ple_disk": True, "unpinned": True,
                                                        "plan": 2}),
    "breachlab-graphs-ple-disk-plan2": (True, {**_TRAINER, "graphs": True, "ple_disk": True, "plan": 2}),
    "breachlab-graphs-ple-disk-plan3": (True, {**_TRAINER, "graphs": True, "ple_disk": True, "plan": 3}),
    "breachlab-graphs-unlimited": (True, {**_TRAINER, "graphs": True, "unlimited": True}),
    "breachlab-graphs-ple-disk-unlimited": (True, {**_TRAINER, "graphs": True, "ple_disk": True, "unlimited": True}),
    "breachlab-graphs-slots": (True, {**_TRAINER, "graphs": True, "slots": True}),
    "breachlab-graphs-row": (True, {**_TRAINER, "graphs": True, "row": True}),
    "breachlab-graphs-lean": (True, {**_TRAINER, "graphs": True, "slots": True, "head_chunk": 64}),
    "breachlab-graphs-v4": (True, {"packed": True, "kernels": True, "offload": True, "graphs": True}),
    "breachlab-graphs-budget": (True, {**_TRAINER, "graphs": True, "budget": True}),
    "breachlab-regional-compile": (True, {**_TRAINER, "compile": True}),
}


def prepare(model: Any, feats: dict, args: Any, cfg: Any, ckpt: bool) -> tuple[dict, Any]:
    """Apply the arm's features to a fresh model; (what was applied, activation budget or None)."""
    from breachlab.vuln.training.speed import budget as budget_mod, patches, ple

    applied: dict[str, Any] = {}
    counted = None
    if feats.get("budget") and ckpt:  # before the kernels: Liger patches the classes the CPU copy is built from
        from breachlab.vuln.training.plan import saved_bytes_per_token

        counted = saved_bytes_per_token(cfg, "lora", 16, "bfloat16" if args.device == "cuda" else "float32")
    if feats.get("kernels") and args.kernels != "off":
        applied["kernels"] = patches.fused_kernels(model, args.kernels)
    if feats.get("packed"):  # as the trainer does with packing: slot_attention auto, or the arm's own
        mode = ("all" if feats.get("slots") else "wide" if feats.get("row")
                else patches.slot_mode("auto", args.device == "cuda"))
        applied["slot_attention"] = mode
        patches.use_packed_attention(model, every_layer=mode == "all")
    if feats.get("head_chunk"):  # the LM head's loss a chunk of positions at a time (headloss)
        patches.context(model).head_chunk = applied["head_chunk"] = feats["head_chunk"]
    if feats.get("offload"):
        store = "disk" if feats.get("ple_disk") else "ram"
        applied["offloaded_gib"] = round(ple.offload_per_layer_embeddings(model, store=store, directory=args.tmp)
                                         / 2**30, 2)
        applied["ple_store"] = store
    if feats.get("answers"):  # Gemma 4's KV-shared layers at the answer positions only
        applied["shared_layers_at_answers"] = patches.use_shared_layers_at_answers(model)
    if feats.get("lora_cast"):  # LoRA matmuls in bf16, float32 adapter weights (the trainer's default)
        applied["lora_cast_layers"] = patches.lora_in_activation_dtype(model)
    budget = None
    if counted is not None:
        budget = budget_mod.ActivationBudget(model, counted["per_layer"], args.activation_budget * 2**30)
        applied["activation_budget_gib"] = args.activation_budget
    if feats.get("compile"):  # the trainer's regional compile: each decoder layer, dynamic shapes
        from breachlab.vuln.training.speed.regional import compile_layers

        applied["compiled_layers"] = compile_layers(model)
    return applied, budget


def run(model: Any, examples: list[Any], batches: list[list[int]], args: Any, packed: bool = False,
        profile_path: Path | None = None, graphs: bool = False, budget: Any = None, trim: bool = False,
        unlimited: bool = False, plan: int = 0, pinned: bool = True) -> dict:
    import torch

    from breachlab.vuln.training.sft import collate, collate_packed, forward_loss
    from breachlab.vuln.training.speed.graphs import CudaGraphStep
    from breachlab.vuln.training.speed.patches import context, has_wide_heads

    device = torch.device(args.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0, fused=args.device == "cuda")  # as the trainer
    graph = None
    if graphs:
        graph = CudaGraphStep(model, pad_id=0, budget=budget, limit=plan or graph_limit(args, unlimited),
                              pin_rows=pinned)
        if plan:  # cuda_graph_plan: chosen from every batch of the arm before its first step
            graph.plan_ahead([examples[i] for i in b] for b in batches)
    # as the trainer's eager step: a slot layout only where a layer attends per example (step.py: 64)
    slot_multiple = 64 if has_wide_heads(model) or context(model).every_layer else None
    model.train()
    losses, times = [], []

    ahead: dict[int, Any] = {}

    def step(b: list[int], nxt: list[int] | None = None) -> float:
        rows = [examples[i] for i in b]
        if graph is not None:
            n_sup = max(1, sum(e.n_answer for e in rows))
            loss = graph.forward_backward(ahead.pop(id(b), None) or rows, 1.0 / n_sup) / n_sup
        else:
            batch = collate_packed(rows, pad_id=0, slot_multiple=slot_multiple) if packed else collate(rows, pad_id=0)
            with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.device == "cuda"):
                loss_sum, count = forward_loss(model, batch, device)
                loss = loss_sum / max(count, 1)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=graph is None)
        if graph is not None and nxt is not None:  # the trainer's prefetch: next step's host work now
            ahead[id(nxt)] = graph.prepare([examples[i] for i in nxt])
        if args.device == "cuda":
            torch.cuda.synchronize()
        return float(loss)

    start = time.perf_counter()
    captures = []
    memory = [{"step": -1, **memory_now(args.device)}] if graph is not None else []  # and around each capture
    windows: list[dict] = []
    if graph is not None:
        _probe_warm_ups(graph, memory, lambda: len(times))
        if getattr(args, "memory_history", False):
            from .memory_history import watch_captures

            watch_captures(graph, windows, step=lambda: len(times))
    for k, b in enumerate(batches):
        before = graph.captured if graph else 0
        losses.append(step(b, batches[k + 1] if k + 1 < len(batches) else None))
        if graph is not None and graph.captured > before:  # what each new graph holds (a capture step's time)
            memory.append({"step": k, "after": "capture", **memory_now(args.device)})
            if trim:
                memory.append({"step": k, "after": "trim" if trim_host_heap() else "no trim (no glibc)",
                               **memory_now(args.device)})
        times.append(time.perf_counter())
        if len(batches) >= 200 and len(times) % 100 == 0:  # a long arm shows it is alive
            print(f"  {len(times)}/{len(batches)} steps, {times[-1] - start:.0f} s"
                  + (f", {graph.captured} graphs" if graph else ""), flush=True)
        captures.append(graph is not None and graph.captured > before)
    out = {"step_times": diffs([start, *times]), "losses": losses}
    if graph is not None:
        out["graphs_captured"] = graph.captured
        out["capture_seconds"] = round(graph.capture_seconds, 2)
        out["capture_steps"] = [i for i, c in enumerate(captures) if c]
        out["warmups_in_graph_pool"] = graph.warmups_pooled
        out["graph_limit"] = graph.plan.limit
        out["graph_padded_steps"] = graph.plan.padded  # batches replayed in a larger bucket's graph
        out["pin_rows"] = graph.pin_rows
        if graph.plan.planned:
            out["graph_planned"] = [[g.tokens, g.supervised, g.slots] for g in graph.plan.planned]
        out["memory_at_captures"] = memory
        if windows:  # where the allocated memory peaked (--memory-history)
            from .memory_history import largest

            out["memory_history"] = {"largest": largest(windows), "windows": windows}
        if budget is not None:  # layers not recomputed, per captured bucket (tokens, answer positions)
            out["kept_layers"] = {f"{k[0]}x{k[1]}": len(kept_layers_for(budget, k)) for k in graph.graphs}
    if profile_path is not None and args.profile:  # after the timed steps: the profiler costs no timed time
        from .measure import gpu_peaks, host_peak_gib

        # ... and no memory: the peaks are taken before it (its event buffers are host memory)
        out["peaks_before_profile"] = {"gpu": gpu_peaks(args.device), "host_gib": host_peak_gib()}
        t_prof = time.perf_counter()
        prof = _start_profiler(args.device)
        t0 = time.perf_counter()
        for b in batches[: args.profile]:
            step(b)
        _stop_profiler(prof, profile_path, args.profile, time.perf_counter() - t0)
        out["profile_seconds"] = time.perf_counter() - t_prof  # not set-up: the child leaves it out
    return out


def graph_limit(args: Any, unlimited: bool = False) -> int:
    """A graph arm's ``cuda_graph_limit``: 0 for the -unlimited arms, else ``--graph-limit``, else
    the trainer's default."""
    from breachlab.vuln.training.config import TrainConfig

    if unlimited:
        return 0
    limit = getattr(args, "graph_limit", None)
    return TrainConfig.__dataclass_fields__["cuda_graph_limit"].default if limit is None else limit


def _probe_warm_ups(graph: Any, memory: list[dict], step: Any) -> None:
    """Record the memory after each eager warm-up of ``graph`` (its forward + backward outside a
    capture), so a capture step's growth splits into warm-up and capture."""
    import torch

    inner = graph._fwd_bwd

    def fwd_bwd(entry: dict) -> Any:
        out = inner(entry)
        if not torch.cuda.is_current_stream_capturing():
            memory.append({"step": step(), "after": "warm-up", **memory_now(graph.device.type)})
        return out

    graph._fwd_bwd = fwd_bwd


def kept_layers_for(budget: Any, key: tuple) -> set[int]:
    from breachlab.vuln.training.speed.budget import kept_layers

    return kept_layers(budget.per_layer, budget.tokens(key[0], key[1]), budget.budget)


def _start_profiler(device: str) -> Any:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    prof = profile(activities=acts)
    prof.__enter__()
    return prof


def _stop_profiler(prof: Any, path: Path, steps: int, wall: float) -> None:
    """Where a step's time goes: GPU kernel time and launches per step against its wall time."""
    from torch.autograd import DeviceType

    prof.__exit__(None, None, None)
    avgs = prof.key_averages()
    kernels = [e for e in avgs if e.device_type == DeviceType.CUDA]
    gpu_s = sum(e.self_device_time_total for e in kernels) / 1e6
    launches = sum(e.count for e in kernels)
    head = (f"{steps} steps, wall {wall / steps * 1e3:.1f} ms/step, GPU kernels {gpu_s / steps * 1e3:.1f} ms/step "
            f"({100 * gpu_s / wall:.0f}% busy), {launches / steps:.0f} kernel launches/step\n")
    sort = "self_device_time_total" if kernels else "self_cpu_time_total"
    path.write_text(head + avgs.table(sort_by=sort, row_limit=40, max_name_column_width=70) + "\n")
    print(head.strip(), "->", path, flush=True)
