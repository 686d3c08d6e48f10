"""Training throughput: plain HF Trainer + PEFT vs breachlab's SFT path, in ONE run.

    # on the lent H100 (random-init models of the real architectures, no weights needed)
    python benchmarks/train_throughput.py --shape e4b --methods qlora,lora --steps 20 --out e4b.json
    python benchmarks/train_throughput.py --shape 270m --methods lora --steps 20 --out 270m.json
    # where a step's time goes (torch.profiler tables next to the JSON), and the no-checkpointing arm
    python benchmarks/train_throughput.py --shape e4b --methods qlora --steps 16 --profile 3 --profile-dir . \
        --arms baseline,breachlab-same-order,breachlab-no-ckpt
    # on the 2-core CPU
    python benchmarks/train_throughput.py --shape 270m --methods lora --device cpu --batch-size 4 --steps 4

Arms, each on a fresh model with the same seed and the same batches in the same order (so
every arm's per-step losses compare with the baseline's):

* ``baseline`` — ``transformers.Trainer`` + PEFT, batches padded right to the longest in the
  batch, labels -100 on the prompt (what TRL's SFTTrainer does with completion-only loss),
  full logits over the 262k vocabulary at every position, gradient checkpointing.
* ``breachlab-padded`` — breachlab's SFT loss of earlier sessions (:mod:`breachlab.vuln.training.sft`):
  left padding, ``logits_to_keep`` = longest answer + 1, so logits exist only where the loss
  needs them.
* ``breachlab-packed`` — padding-free: the batch's examples end to end in one row
  (:func:`sft.collate_packed`), segment masks, positions restarting per example, logits only
  at the answer positions (a 1-D ``logits_to_keep``).
* ``breachlab-same-order`` — the trainer's eager path on CUDA: packed, plus fused kernels
  (:func:`patches.fused_kernels`, Liger when installed), Gemma 4's per-layer embedding
  table kept in CPU memory (:func:`ple.offload_per_layer_embeddings`), its KV-shared
  layers at the answer positions only (:func:`patches.use_shared_layers_at_answers`) and the
  LoRA matmuls in bf16 (:func:`patches.lora_in_activation_dtype`).
* ``breachlab-graphs`` — the same replayed from CUDA graphs: the trainer's CUDA default.
* ``breachlab-graphs-v4`` — the graphs arm as the fourth session measured it (KV-shared
  layers over the whole row, peft's float32 LoRA path).
* ``breachlab-graphs-budget`` — ``breachlab-graphs`` with ``activation_budget_gib``
  (``--activation-budget``): the layers that fit keep their activations.
* ``breachlab-no-ckpt`` — the same without gradient checkpointing.
* ``breachlab-regional-compile`` (with ``--compile``) — the same plus the trainer's regional
  compile (:func:`regional.compile_layers`): ``torch.compile(dynamic=True)`` on each decoder
  layer.  The first ``--warmup`` steps, not timed, include the compilation.

Peak memory is the training peak: it is reset after the model is built (a random-init
QLoRA model is built in bf16 and then quantised, a transient a real load does not have).
Lengths are the real (prompt, answer) token counts of the Juliet + SVEN training set
through the real training template (``benchmarks/data/train_lengths_juliet_sven_512.json``);
token ids are random (the model is random too).  Reported: samples/s, real tokens/s (no
padding), peak memory, an MFU estimate, ratios to the baseline, per-step losses.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LENGTHS = HERE / "data" / "train_lengths_juliet_sven_512.json"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
H100_BF16_PEAK = 989e12  # dense bf16 tensor-core peak of an H100 SXM (vendor datasheet)


def build_config(shape: str) -> Any:
    """Random-init configs of the real architectures (what we set is printed in the output)."""
    if shape == "e4b":
        from transformers import Gemma4TextConfig

        # Gemma 4 E4B text model: 42 layers, hidden 2560, FFN 10240, 8 heads / 2 KV heads,
        # head_dim 256 (sliding) and 512 (full), 5 sliding + 1 full, window 512, per-layer
        # embeddings of 256 per layer, vocab 262144, KV shared across the last 18 layers.
        return Gemma4TextConfig(
            vocab_size=262144, hidden_size=2560, intermediate_size=10240, num_hidden_layers=42,
            num_attention_heads=8, num_key_value_heads=2, head_dim=256, global_head_dim=512,
            sliding_window=512, hidden_size_per_layer_input=256, vocab_size_per_layer_input=262144,
            num_kv_shared_layers=18, max_position_embeddings=4096,
        )
    if shape == "270m":
        from transformers import Gemma3TextConfig

        # Gemma 3 270M (the embedded model's GGUF header): 18 layers, hidden 640, FFN 2048,
        # 4 heads / 1 KV head, head_dim 256, window 512, vocab 262144.
        return Gemma3TextConfig(
            vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
            num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
            max_position_embeddings=32768, rope_theta=1_000_000.0,
        )
    raise SystemExit(f"unknown shape {shape}")


def make_model(shape: str, method: str, device: str, seed: int, grad_ckpt: bool, rng_state: bool = True) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    cfg = build_config(shape)
    cfg._attn_implementation = "sdpa"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    if method == "qlora":
        quantize_nf4(model)
    for p in model.parameters():
        p.requires_grad_(False)
    if grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False,
                                                                           "preserve_rng_state": rng_state})
        model.enable_input_require_grads()
    model.config.use_cache = False
    torch.manual_seed(seed + 1)
    return get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS))


def quantize_nf4(model: Any) -> None:
    """Swap the language model's projection Linears for bitsandbytes NF4 (double quant, bf16 compute)."""
    import bitsandbytes as bnb
    import torch

    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and child_name in TARGETS:
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                                      device="cpu")
                q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, compress_statistics=True,
                                             quant_type="nf4")
                q = q.to(child.weight.device)
                setattr(module, child_name, q)
    torch.cuda.empty_cache()


def make_examples(n: int, vocab: int, seed: int) -> list[Any]:
    from breachlab.vuln.training.sft import Encoded

    lengths = json.loads(LENGTHS.read_text())["prompt_answer_tokens"]
    rng = random.Random(seed)
    rng.shuffle(lengths)
    out = []
    for i in range(n):
        p, a = lengths[i % len(lengths)]
        ids = [2] + [rng.randrange(10, vocab) for _ in range(p + a - 1)]
        out.append(Encoded(ids, p))
    return out


def nonembedding_params(model: Any) -> int:
    return sum(p.numel() for n, p in model.named_parameters()
               if "embed" not in n and "lora_" not in n and p.dim() >= 2) or 1


def peak_mem(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process high-water mark (GiB)


def reset_mem(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def arm_baseline(model: Any, examples: list[Any], batches: list[list[int]], args: argparse.Namespace) -> dict:
    import torch
    from torch.utils.data import SequentialSampler
    from transformers import Trainer, TrainerCallback, TrainingArguments

    flat = [i for b in batches for i in b]
    data = [{"input_ids": examples[i].ids, "n_prompt": examples[i].n_prompt} for i in flat]

    def collate(rows: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            mask[i, :n] = 1
            labels[i, r["n_prompt"]:n] = ids[i, r["n_prompt"]:n]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    class Ordered(Trainer):
        def _get_train_sampler(self, *a: Any, **k: Any) -> Any:  # keep our batch order
            return SequentialSampler(self.train_dataset)

    losses: list[float] = []
    times: list[float] = []

    class Log(TrainerCallback):
        def on_step_end(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            if args.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())

        def on_log(self, a: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    targs = TrainingArguments(
        output_dir=str(Path(args.tmp) / "hf"), per_device_train_batch_size=args.batch_size, max_steps=len(batches),
        learning_rate=2e-4, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1, save_strategy="no",
        report_to=[], bf16=args.device == "cuda", use_cpu=args.device == "cpu", remove_unused_columns=False,
        dataloader_drop_last=True, optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0,
        gradient_checkpointing=False, disable_tqdm=True, seed=args.seed,
    )
    trainer = Ordered(model=model, args=targs, train_dataset=data, data_collator=collate, callbacks=[Log()])
    start = time.perf_counter()
    trainer.train()
    return {"step_times": _diffs([start, *times]), "losses": losses}


def arm_breachlab(model: Any, examples: list[Any], batches: list[list[int]], args: argparse.Namespace,
                  packed: bool = False, profile_path: Path | None = None, graphs: bool = False,
                  budget: Any = None) -> dict:
    import torch

    from breachlab.vuln.training.sft import collate, collate_packed, forward_loss
    from breachlab.vuln.training.graphs import CudaGraphStep

    device = torch.device(args.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0, fused=args.device == "cuda")  # as the trainer
    graph = CudaGraphStep(model, pad_id=0, budget=budget) if graphs else None
    model.train()
    losses, times = [], []

    ahead: dict[int, Any] = {}

    def step(b: list[int], nxt: list[int] | None = None) -> float:
        rows = [examples[i] for i in b]
        if graph is not None:
            n_sup = max(1, sum(e.n_answer for e in rows))
            loss = graph.forward_backward(ahead.pop(id(b), None) or rows, 1.0 / n_sup) / n_sup
        else:
            batch = collate_packed(rows, pad_id=0) if packed else collate(rows, pad_id=0)
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
    for k, b in enumerate(batches):
        before = graph.captured if graph else 0
        losses.append(step(b, batches[k + 1] if k + 1 < len(batches) else None))
        times.append(time.perf_counter())
        if len(batches) >= 200 and len(times) % 100 == 0:  # a long arm shows it is alive
            print(f"  {len(times)}/{len(batches)} steps, {times[-1] - start:.0f} s"
                  + (f", {graph.captured} graphs" if graph else ""), flush=True)
        captures.append(graph is not None and graph.captured > before)
    out = {"step_times": _diffs([start, *times]), "losses": losses}
    if graph is not None:
        out["graphs_captured"] = graph.captured
        out["capture_seconds"] = round(graph.capture_seconds, 2)
        out["capture_steps"] = [i for i, c in enumerate(captures) if c]
        if budget is not None:  # layers not recomputed, per captured bucket (tokens, answer positions)
            out["kept_layers"] = {f"{k[0]}x{k[1]}": len(kept_layers_for(budget, k)) for k in graph.graphs}
    if profile_path is not None and args.profile:  # after the timed steps: the profiler costs no timed time
        prof = _start_profiler(args.device)
        t0 = time.perf_counter()
        for b in batches[: args.profile]:
            step(b)
        _stop_profiler(prof, profile_path, args.profile, time.perf_counter() - t0)
    return out


def kept_layers_for(budget: Any, key: tuple) -> set[int]:
    from breachlab.vuln.training.budget import kept_layers

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


def _diffs(ts: list[float]) -> list[float]:
    return [b - a for a, b in zip(ts[:-1], ts[1:])]


def summarize(name: str, res: dict, examples: list[Any], batches: list[list[int]], args: argparse.Namespace,
              n_params: int, vocab: int, hidden: int) -> dict:
    skip = min(args.warmup, len(batches) - 1)
    timed = batches[skip:]
    secs = sum(res["step_times"][skip:])
    samples = sum(len(b) for b in timed)
    tokens = sum(len(examples[i].ids) for b in timed for i in b)
    supervised = sum(examples[i].n_answer for b in timed for i in b)
    useful_flops = 6 * n_params * tokens + 6 * vocab * hidden * supervised
    out = {
        "arm": name, "timed_steps": len(timed), "seconds": round(secs, 3),
        "all_steps_seconds": round(sum(res["step_times"]), 2),  # warm-up (and graph captures) included
        "samples_per_s": round(samples / secs, 3), "real_tokens_per_s": round(tokens / secs, 1),
        "peak_mem_gib": round(res["peak_mem_gib"], 2), "losses": [round(x, 4) for x in res["losses"]],
    }
    if args.device == "cuda":
        out["mfu_useful"] = round(useful_flops / secs / H100_BF16_PEAK, 4)
    if "graphs_captured" in res:  # what the timed steps cost without the steps that captured a graph
        cap = set(res["capture_steps"])
        steady = [i for i in range(skip, len(batches)) if i not in cap]
        s_secs = sum(res["step_times"][i] for i in steady)
        out.update(graphs_captured=res["graphs_captured"], capture_seconds=res["capture_seconds"],
                   capture_steps=res["capture_steps"], replay_steps=len(steady))
        if "kept_layers" in res:
            out["kept_layers"] = res["kept_layers"]
        if steady:
            out["samples_per_s_replay"] = round(sum(len(batches[i]) for i in steady) / s_secs, 3)
    return out


# name: (loop, gradient checkpointing, breachlab features); every arm runs the same batches in one order
ARMS: dict[str, tuple[str, bool, dict]] = {
    "baseline": ("hf", True, {}),
    # the SFT path of earlier sessions: left padding, logits only on the answer positions
    "breachlab-padded": ("bl", True, {}),
    "breachlab-packed": ("bl", True, {"packed": True}),
    # the trainer's default on CUDA: packed + fused kernels + per-layer embeddings on the CPU
    "breachlab-same-order": ("bl", True, {"packed": True, "kernels": True, "offload": True, "answers": True,
                                          "lora_cast": True}),
    "breachlab-no-ckpt": ("bl", False, {"packed": True, "kernels": True, "offload": True, "answers": True,
                                        "lora_cast": True}),
    # + CUDA graphs: forward+backward captured per (length, supervised positions) bucket
    "breachlab-graphs": ("bl", True, {"packed": True, "kernels": True, "offload": True, "graphs": True,
                                      "answers": True, "lora_cast": True}),
    # the graphs arm as the fourth session measured it: KV-shared layers over the whole row,
    # LoRA matmuls in float32 (peft's default)
    "breachlab-graphs-v4": ("bl", True, {"packed": True, "kernels": True, "offload": True, "graphs": True}),
    # + activation_budget_gib (--activation-budget): the layers that fit are not recomputed
    "breachlab-graphs-budget": ("bl", True, {"packed": True, "kernels": True, "offload": True, "graphs": True,
                                             "answers": True, "lora_cast": True, "budget": True}),
    "breachlab-regional-compile": ("bl", True, {"packed": True, "kernels": True, "offload": True,
                                               "answers": True, "lora_cast": True, "compile": True}),
}
DEFAULT_ARMS = "baseline,breachlab-padded,breachlab-packed,breachlab-same-order"


def run_shape(args: argparse.Namespace, method: str) -> dict:
    import torch

    from breachlab.vuln.training.sft import plain_batches

    steps = {name: args.steps for name in args.arms.split(",")}
    for item in filter(None, args.arm_steps.split(",")):
        name, n = item.split("=")
        steps[name] = int(n)
    examples = make_examples(max(steps.values()) * args.batch_size, 262144, args.seed)
    order = plain_batches(len(examples), args.batch_size, args.seed, 0)
    results: list[dict] = []
    for name in args.arms.split(","):
        reset_mem(args.device)
        try:
            results.append(run_arm(name, method, args, examples, order[: steps[name]]))
        except Exception as exc:  # one failing arm (an OOM, a kernel) does not lose the others
            import traceback

            traceback.print_exc()
            results.append({"arm": name, "error": f"{type(exc).__name__}: {exc}"[:400], "losses": []})
        print(json.dumps(results[-1]), flush=True)
        reset_mem(args.device)
    base = next((r for r in results if r["arm"] == "baseline" and "error" not in r), None)
    if base:
        for r in results:
            if "error" in r:
                continue
            r["samples_per_s_ratio"] = round(r["samples_per_s"] / base["samples_per_s"], 2)
            r["peak_mem_ratio"] = round(r["peak_mem_gib"] / base["peak_mem_gib"], 3)
            pairs = list(zip(base["losses"], r["losses"]))
            if r is not base and pairs:  # every arm runs the baseline's batches in its order
                r["loss_gap_max"] = round(max(abs(a - b) for a, b in pairs), 4)
                r["loss_gap_mean"] = round(sum(abs(a - b) for a, b in pairs) / len(pairs), 4)
    return {"method": method, "grad_ckpt": args.grad_ckpt, "arms": results,
            "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"}


def run_arm(name: str, method: str, args: argparse.Namespace, examples: list[Any], order: list[list[int]]) -> dict:
    """One arm on a fresh model: its speed, training peak memory and per-step losses."""
    from breachlab.vuln.training import budget as budget_mod
    from breachlab.vuln.training import patches, ple

    loop, ckpt, feats = ARMS[name]
    ckpt = ckpt and args.grad_ckpt
    model = make_model(args.shape, method, args.device, args.seed, ckpt, rng_state=not feats.get("graphs"))
    build_peak = peak_mem(args.device)
    applied = {}
    counted = None
    if feats.get("budget") and ckpt:  # before the kernels: Liger patches the classes the CPU copy is built from
        from breachlab.vuln.plan import saved_bytes_per_token

        counted = saved_bytes_per_token(build_config(args.shape), "lora", 16,
                                        "bfloat16" if args.device == "cuda" else "float32")
    if feats.get("kernels") and args.kernels != "off":
        applied["kernels"] = patches.fused_kernels(model, args.kernels)
    if feats.get("packed"):  # as the trainer does with packing: wide heads attend per example
        patches.use_packed_attention(model)
    if feats.get("offload"):
        applied["offloaded_gib"] = round(ple.offload_per_layer_embeddings(model) / 2**30, 2)
    if feats.get("answers"):  # Gemma 4's KV-shared layers at the answer positions only
        applied["shared_layers_at_answers"] = patches.use_shared_layers_at_answers(model)
    if feats.get("lora_cast"):  # LoRA matmuls in bf16, float32 adapter weights (the trainer's default)
        applied["lora_cast_layers"] = patches.lora_in_activation_dtype(model)
    budget = None
    if counted is not None:
        budget = budget_mod.ActivationBudget(model, counted["per_layer"], args.activation_budget * 2**30)
        applied["activation_budget_gib"] = args.activation_budget
    if feats.get("compile"):  # the trainer's regional compile: each decoder layer, dynamic shapes
        from breachlab.vuln.training.regional import compile_layers

        applied["compiled_layers"] = compile_layers(model)
    n_params = nonembedding_params(model)
    cfg = model.get_base_model().config
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    reset_mem(args.device)  # the training peak, not the random-init build (bf16 before NF4)
    if loop == "hf":
        res = arm_baseline(model, examples, order, args)
    else:
        prof = (Path(args.profile_dir) / f"profile-{args.shape}-{method}-{name}.txt") if args.profile else None
        res = arm_breachlab(model, examples, order, args, packed=bool(feats.get("packed")), profile_path=prof,
                            graphs=bool(feats.get("graphs")), budget=budget)
    res["peak_mem_gib"] = peak_mem(args.device)
    out = summarize(name, res, examples, order, args, n_params, cfg.vocab_size, cfg.hidden_size)
    out.update(grad_ckpt=ckpt, build_peak_gib=round(build_peak, 2), trainable_params=trainable, **applied)
    del model
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=["e4b", "270m"], required=True)
    ap.add_argument("--methods", default="lora", help="comma list of lora, qlora")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3, help="first steps not timed")
    ap.add_argument("--grad-ckpt", action=argparse.BooleanOptionalAction, default=True,
                    help="gradient checkpointing in the arms that use it (all but breachlab-no-ckpt)")
    ap.add_argument("--kernels", default="auto", choices=["auto", "liger", "off"],
                    help="fused kernels in the arms that use them (breachlab.vuln.training.patches.fused_kernels)")
    ap.add_argument("--compile", action="store_true", help="add the breachlab-regional-compile arm")
    ap.add_argument("--activation-budget", type=float, default=4.0, metavar="GIB",
                    help="activation_budget_gib of the breachlab-graphs-budget arm")
    ap.add_argument("--arms", default=DEFAULT_ARMS, help="comma list of: " + ", ".join(ARMS))
    ap.add_argument("--arm-steps", default="", metavar="ARM=N,...",
                    help="steps for some arms (e.g. breachlab-graphs=750: a whole 6,000-sample epoch at batch 8); "
                         "every arm starts with the same batches in the same order")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="torch.profiler over N steps after the warm-up of every breachlab arm")
    ap.add_argument("--profile-dir", default=".", help="where the profile tables go")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tmp", default="/tmp/bl-bench")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.compile and "breachlab-regional-compile" not in args.arms:
        args.arms += ",breachlab-regional-compile"
    unknown = [a for a in args.arms.split(",") if a not in ARMS]
    if unknown:
        ap.error(f"unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"shape": args.shape, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "lengths": str(LENGTHS.name),
              "config": build_config(args.shape).to_dict(), "results": []}
    for method in args.methods.split(","):
        report["results"].append(run_shape(args, method))
    text = json.dumps(report, indent=1, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    summary = [{"method": r["method"],
                "arms": [{k: a[k] for k in a if k != "losses"} for a in r["arms"]]} for r in report["results"]]
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
