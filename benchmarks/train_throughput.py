"""Training throughput: plain HF Trainer + PEFT vs breachlab's SFT path, in ONE run.

    # on the lent H100 (random-init models of the real architectures, no weights needed)
    python benchmarks/train_throughput.py --shape e4b --methods qlora,lora --steps 20 --out e4b.json
    python benchmarks/train_throughput.py --shape 270m --methods lora --steps 20 --out 270m.json
    # + the regionally compiled arm (what the trainer's compile: auto does on CUDA)
    python benchmarks/train_throughput.py --shape e4b --methods qlora --compile --steps 24 --warmup 4 \
        --arms baseline,breachlab,breachlab-regional-compile --out e4b-compile.json
    # on the 2-core CPU
    python benchmarks/train_throughput.py --shape 270m --methods lora --device cpu --batch-size 4 --steps 4

Arms, each on a fresh model with the same seed and the same samples:

* ``baseline`` — ``transformers.Trainer`` + PEFT, batches padded right to the longest in the
  batch, labels -100 on the prompt (what TRL's SFTTrainer does with completion-only loss),
  full logits over the 262k vocabulary at every position.
* ``breachlab-same-order`` — breachlab's collate/loss (:mod:`breachlab.vuln.sft`): left
  padding, ``logits_to_keep`` = longest answer + 1, so logits exist only where the loss
  needs them; the baseline's batches in the baseline's order → per-step losses comparable.
* ``breachlab`` — the same plus length-grouped batches (:func:`sft.grouped_batches`).
* ``breachlab-regional-compile`` (with ``--compile``) — ``breachlab`` plus regional
  compilation, the trainer's own :func:`sft.compile_layers` (what ``compile: auto`` does on
  CUDA): ``torch.compile(dynamic=True)`` on each decoder layer, not on the whole stack, so
  the layers share a few compiled graphs and every sequence length reuses them.  The first
  ``--warmup`` steps, not timed, include the compilation.

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


def make_model(shape: str, method: str, device: str, seed: int, grad_ckpt: bool) -> Any:
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
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
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
    from breachlab.vuln.sft import Encoded

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


def arm_breachlab(model: Any, examples: list[Any], batches: list[list[int]], args: argparse.Namespace) -> dict:
    import torch

    from breachlab.vuln.sft import collate, forward_loss

    device = torch.device(args.device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.0)
    model.train()
    losses, times = [], []
    start = time.perf_counter()
    for b in batches:
        batch = collate([examples[i] for i in b], pad_id=0)
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.device == "cuda"):
            loss_sum, count = forward_loss(model, batch, device)
            loss = loss_sum / max(count, 1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if args.device == "cuda":
            torch.cuda.synchronize()
        losses.append(float(loss))
        times.append(time.perf_counter())
    return {"step_times": _diffs([start, *times]), "losses": losses}


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
        "samples_per_s": round(samples / secs, 3), "real_tokens_per_s": round(tokens / secs, 1),
        "peak_mem_gib": round(res["peak_mem_gib"], 2), "losses": [round(x, 4) for x in res["losses"]],
    }
    if args.device == "cuda":
        out["mfu_useful"] = round(useful_flops / secs / H100_BF16_PEAK, 4)
    return out


def run_shape(args: argparse.Namespace, method: str) -> dict:
    import torch

    grad_ckpt = args.grad_ckpt
    examples = make_examples(args.steps * args.batch_size, 262144, args.seed)
    from breachlab.vuln.sft import grouped_batches, plain_batches

    order = plain_batches(len(examples), args.batch_size, args.seed, 0)
    grouped = grouped_batches([len(e.ids) for e in examples], args.batch_size, args.seed, 0)
    # (name, loop, batches, gradient checkpointing, torch.compile)
    arms = [("baseline", arm_baseline, order, grad_ckpt, False),
            ("breachlab-same-order", arm_breachlab, order, grad_ckpt, False),
            ("breachlab", arm_breachlab, grouped, args.breachlab_grad_ckpt, False),
            ("breachlab-regional-compile", arm_breachlab, grouped, args.breachlab_grad_ckpt, True)]
    results = []
    for name, fn, batches, ckpt, compiled in arms:
        if (args.arms and name not in args.arms.split(",")) or (compiled and not args.compile):
            continue
        reset_mem(args.device)
        model = make_model(args.shape, method, args.device, args.seed, ckpt)
        if compiled:  # the trainer's regional compile: each decoder layer, dynamic shapes
            from breachlab.vuln.sft import compile_layers

            print(f"{name}: torch.compile(dynamic=True) on {compile_layers(model)} decoder layers", flush=True)
        n_params = nonembedding_params(model)
        cfg = model.get_base_model().config
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        res = fn(model, examples, batches, args)
        res["peak_mem_gib"] = peak_mem(args.device)
        results.append(summarize(name, res, examples, batches, args, n_params, cfg.vocab_size, cfg.hidden_size))
        results[-1]["grad_ckpt"] = ckpt
        # the whole arm, per-step losses included: a later arm that times out loses nothing
        print(json.dumps({**results[-1], "losses": [round(float(x), 5) for x in results[-1].get("losses", [])]}),
              flush=True)
        del model
        reset_mem(args.device)
    base = next((r for r in results if r["arm"] == "baseline"), None)
    if base:
        for r in results:
            r["samples_per_s_ratio"] = round(r["samples_per_s"] / base["samples_per_s"], 2)
            r["peak_mem_ratio"] = round(r["peak_mem_gib"] / base["peak_mem_gib"], 3)
    same = next((r for r in results if r["arm"] == "breachlab-same-order"), None)
    loss_gap = None
    if base and same:
        pairs = list(zip(base["losses"], same["losses"]))
        loss_gap = {"max_abs_diff": round(max(abs(a - b) for a, b in pairs), 4),
                    "mean_abs_diff": round(sum(abs(a - b) for a, b in pairs) / len(pairs), 4)}
    return {"method": method, "grad_ckpt": grad_ckpt, "trainable_params": trainable, "arms": results,
            "same_order_loss_gap": loss_gap,
            "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=["e4b", "270m"], required=True)
    ap.add_argument("--methods", default="lora", help="comma list of lora, qlora")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3, help="first steps not timed")
    ap.add_argument("--grad-ckpt", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--breachlab-grad-ckpt", action=argparse.BooleanOptionalAction, default=False,
                    help="gradient checkpointing in the grouped breachlab arms (memory is small without it: "
                         "logits exist only on answer tokens)")
    ap.add_argument("--compile", action="store_true", help="add the breachlab-regional-compile arm: torch.compile on each decoder "
                    "layer (the trainer's sft.compile_layers)")
    ap.add_argument("--arms", default="", help="subset: baseline,breachlab-same-order,breachlab,"
                                             "breachlab-regional-compile")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tmp", default="/tmp/bl-bench")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
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
    summary = [{"method": r["method"], "loss_gap": r["same_order_loss_gap"],
                "arms": [{k: a[k] for k in a if k != "losses"} for a in r["arms"]]} for r in report["results"]]
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
