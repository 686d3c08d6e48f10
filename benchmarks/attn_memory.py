"""Peak memory of one training step (forward + backward) of breachlab's SFT path, by case.

    python benchmarks/attn_memory.py --shape 270m --batch-size 16 --seq-len 2048      # on the GPU

Why: the real-data 270M fine-tunes (batch 16, up to 2,048 tokens, no checkpointing) peaked at
28-39 GiB while ``breachlab vuln plan`` predicts 21 GiB for the worst case.  This isolates the
suspects on a random-init model of the real architecture, one step each, fresh model per case:

* ``equal`` — every row the same length: no padding, the 2D mask path;
* ``left-padded`` — one row half as long: breachlab's 4D masks (``sft.left_pad_masks``);
* each with attention ``sdpa`` and ``eager``, and LoRA dropout 0 or the GPU config's 0.05.

Prints one JSON line per case (peak GiB as ``torch.cuda.max_memory_allocated``) and the plan.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def one_case(args: argparse.Namespace, padded: bool, impl: str, dropout: float) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from train_throughput import build_config
    from transformers import AutoModelForCausalLM

    from breachlab.vuln.training import sft

    cfg = build_config(args.shape)
    cfg._attn_implementation = impl
    dev = args.device
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(dev):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=dropout, target_modules=TARGETS))
    if args.lora_cast:  # vuln train's default since the fifth session: LoRA matmuls in the model's dtype
        from breachlab.vuln.training.speed.patches import lora_in_activation_dtype

        lora_in_activation_dtype(model)
    model.train()
    rng = random.Random(0)
    lengths = [args.seq_len] * args.batch_size
    if padded:
        lengths[-1] = args.seq_len // 2
    enc = [sft.Encoded([rng.randrange(10, cfg.vocab_size) for _ in range(n)], n_prompt=n - args.answer)
           for n in lengths]
    batch = sft.collate(enc, pad_id=0)
    if dev == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    loss_sum, n = sft.forward_loss(model, batch, dev)
    (loss_sum / n).backward()
    out = {"case": "left-padded" if padded else "equal", "attn": impl, "lora_dropout": dropout,
           "batch": args.batch_size, "seq_len": args.seq_len, "loss": round(float(loss_sum) / n, 4),
           "lora_float32": not args.lora_cast}
    if dev == "cuda":
        torch.cuda.synchronize()
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["step_gib_above_weights"] = round((torch.cuda.max_memory_allocated() - base) / 2**30, 2)
    del model, loss_sum
    gc.collect()
    if dev == "cuda":
        torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="270m", choices=["270m", "e4b"])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--answer", type=int, default=32, help="answer tokens per row (supervised positions)")
    ap.add_argument("--attn", default="sdpa,eager")
    ap.add_argument("--dropout", default="0,0.05")
    ap.add_argument("--lora-cast", action="store_true",
                    help="LoRA matmuls in the model's dtype (patches.lora_in_activation_dtype, vuln train's default); "
                         "without it peft's float32 path, as the fourth session measured")
    args = ap.parse_args()
    for impl in args.attn.split(","):
        for dropout in (float(x) for x in args.dropout.split(",")):
            for padded in (False, True):
                try:
                    print(json.dumps(one_case(args, padded, impl, dropout)), flush=True)
                except Exception as exc:  # e.g. out of memory: report it and go on with the next case
                    print(json.dumps({"case": "left-padded" if padded else "equal", "attn": impl,
                                      "lora_dropout": dropout, "error": f"{type(exc).__name__}: {exc}"[:300]}),
                          flush=True)
                    gc.collect()


if __name__ == "__main__":
    main()
