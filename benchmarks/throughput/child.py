"""One arm, one repeat, in its own process: build the model, train, measure, write one JSON line.

A process per arm is what makes the numbers per arm: Unsloth patches transformers globally
(imported first, here), and the process's resident-set high-water mark is the arm's own
peak host memory.  Whatever goes wrong ends as ``{"arm", "error"}`` or, where the arm's
library is missing or cannot run here, ``{"arm", "skipped"}``: the other arms go on.
"""

from __future__ import annotations

import importlib.util
import json
import time
import traceback
from pathlib import Path
from typing import Any

T0 = time.perf_counter()  # the arm's wall clock starts with its process (imports count as set-up)


def write(path: Path, result: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(result, default=str) + "\n")


def run(args: Any) -> None:
    name, out = args.one_arm, Path(args.result_file)
    if name == "unsloth":  # before anything imports transformers
        from .arm_unsloth import preimport

        reason = preimport(args.device, args.tmp)
        if reason:
            write(out, {"arm": name, "skipped": reason})
            return
    from . import arm_breachlab

    if arm_breachlab.ARMS.get(name, (True, {}))[1].get("graphs") and args.device != "cuda":
        write(out, {"arm": name, "skipped": "CUDA graphs need a CUDA device"})
        return
    if name.startswith("trl") and importlib.util.find_spec("trl") is None:
        write(out, {"arm": name, "skipped": "trl not installed"})
        return
    try:
        result = measure(args)
    except Exception as exc:  # one failing arm (an OOM, a kernel) does not lose the others
        traceback.print_exc()
        result = {"arm": name, "error": f"{type(exc).__name__}: {exc}"[:400], "losses": []}
    write(out, result)


def steps_for(args: Any) -> dict[str, int]:
    steps = {name: args.steps for name in args.arms.split(",")}
    steps[args.one_arm or "baseline"] = args.steps
    for item in filter(None, args.arm_steps.split(",")):
        arm, n = item.split("=")
        steps[arm] = int(n)
    return steps


def measure(args: Any) -> dict:
    import torch

    from breachlab.vuln.training.sft import plain_batches

    from . import arm_breachlab, arm_hf, arm_trl, measure as m
    from .examples import make_examples
    from .shapes import build_config, family, make_model, nonembedding_params

    name, method = args.one_arm, args.methods
    if args.threads:
        torch.set_num_threads(args.threads)
    sdpa = sdpa_kernels(args)
    weights_dir = Path(args.weights_dir) if args.weights_dir else None
    cfg = build_config(args.shape, Path(args.weights) if args.weights else None)
    steps = steps_for(args)
    examples, _ = make_examples(args.shape, max(steps.values()) * args.batch_size, cfg.vocab_size, args.seed)
    order = plain_batches(len(examples), args.batch_size, args.seed, 0)[: steps[name]]
    extra: dict[str, Any] = {"sdpa_kernels": sdpa}
    m.reset_gpu_peak(args.device)
    tok = None
    if name == "unsloth":
        from .arm_unsloth import build

        longest = max(len(e.ids) for e in examples)
        model, tok = build(args.shape, method, args.seed, args.tmp, weights_dir, longest)
        ckpt, feats = True, {}
    elif name in arm_breachlab.ARMS:
        ckpt, feats = arm_breachlab.ARMS[name]
        ckpt = ckpt and args.grad_ckpt
        model = make_model(args.shape, method, args.device, args.seed, ckpt, rng_state=not feats.get("graphs"),
                           weights_dir=weights_dir)
    else:  # baseline, trl, trl-packed
        ckpt, feats = args.grad_ckpt, {}
        attn = arm_trl.attention_choice(args.device)[0] if name.startswith("trl") else "sdpa"
        model = make_model(args.shape, method, args.device, args.seed, ckpt, weights_dir=weights_dir, attn=attn)
        if name.startswith("trl") and weights_dir is not None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(weights_dir))
    build_peak = m.gpu_peaks(args.device)
    budget = None
    if name in arm_breachlab.ARMS:
        applied, budget = arm_breachlab.prepare(model, feats, args, cfg, ckpt)
        extra.update(applied)
    n_params = nonembedding_params(model)
    base_cfg = model.get_base_model().config
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    m.reset_gpu_peak(args.device)  # the training peak, not the build (a random-init QLoRA model is bf16 first)
    load_host = m.process_peak_gib()  # the whole process's peak so far (imports, weights loaded and placed)
    train_host = m.reset_host_peak()  # from here on: the training's own (trainer set-up and steps)
    start_rss = m.proc_status_gib("VmRSS")  # what training starts from: its growth = train peak - this
    start_host = {**m.memory_now("cpu"), "mappings": m.host_mappings()}  # and where it is, by mapping
    if name == "baseline":
        res = arm_hf.run(model, examples, order, args)
    elif name in ("trl", "trl-packed"):
        res = arm_trl.run(model, examples, order, args, tokenizer=tok, packed=name == "trl-packed")
    elif name == "unsloth":
        res = arm_trl.run(model, examples, order, args, tokenizer=tok, liger=False)
    else:
        prof = (Path(args.profile_dir) / f"profile-{args.shape}-{method}-{name}.txt") if args.profile else None
        res = arm_breachlab.run(model, examples, order, args, packed=bool(feats.get("packed")), profile_path=prof,
                                graphs=bool(feats.get("graphs")), budget=budget, trim=bool(feats.get("trim")),
                                unlimited=bool(feats.get("unlimited")), plan=int(feats.get("plan", 0)),
                                pinned=not feats.get("unpinned"))
    before = res.pop("peaks_before_profile", None)  # a profiled arm: its peaks without the profiler's
    res["host_at"] = {"train_start": start_host, "train_end": {**m.memory_now("cpu"), "mappings": m.host_mappings()}}
    peaks = before["gpu"] if before else m.gpu_peaks(args.device)
    if peaks:
        res.update(peak_gpu_alloc_gib=peaks["alloc"], peak_gpu_reserved_gib=peaks["reserved"],
                   build_peak_gpu_gib=build_peak["alloc"])
    since = before["host_gib"] if before else m.host_peak_gib()
    res["peak_host_gib"] = max(load_host, since)  # the process's peak, load included
    if train_host:
        res["train_peak_host_gib"] = since
    if start_rss is not None:
        res["train_start_host_gib"] = start_rss
    if before:
        res["profiled_steps"] = args.profile
    res["setup_seconds"] = time.perf_counter() - T0 - sum(res["step_times"]) - res.pop("profile_seconds", 0.0)
    out = m.summarize(name, res, examples, order, args.device, args.warmup, n_params, base_cfg.vocab_size,
                      base_cfg.hidden_size)
    out.update(method=method, grad_ckpt=ckpt, trainable_params=trainable, **extra)
    for key in ("trl",):
        if key in res:
            out[key] = res[key]
    if family(args.shape) == "qwen" and name == "unsloth" and weights_dir is None:
        out["note"] = "random init saved to safetensors and loaded by Unsloth (same weights as the other arms)"
    out["device"] = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    return out


def sdpa_kernels(args: Any) -> str:
    """cuDNN's SDPA kernel off for the Qwen shapes on CUDA (it turned Qwen LoRA weights NaN on an
    H200 with masks, docs/benchmarks.md): what the trainer's ``sdpa_kernels: auto`` does; every arm alike."""
    import torch

    from .shapes import family

    choice = args.sdpa_kernels
    if choice == "auto":
        choice = "no-cudnn" if family(args.shape) == "qwen" else "all"
    if args.device == "cuda" and choice == "no-cudnn":
        torch.backends.cuda.enable_cudnn_sdp(False)
    return choice
