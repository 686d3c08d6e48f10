"""``python scripts/train_losses.py`` — per-step losses of a tiny CPU training run, printed exactly.

Trains the tiny random Gemma 3 of the test suite (tests/vuln/tiny.py) for a few steps with a
fixed seed, packed and padded, and prints every step's train loss and the validation numbers
as the run's metrics.csv holds them (5 decimals), and the sha256 of the trained adapter
(a refactor that changes no number leaves it byte-identical): run it before and after a
change to the training code and diff the output.
"""

from __future__ import annotations

import csv
import hashlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from breachlab.vuln.training.config import TrainConfig
    from breachlab.vuln.training.run import run
    from tests.vuln.tiny import gemma3_dir, samples_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        model, data = gemma3_dir(base / "model"), samples_jsonl(base / "data")
        for packing in (True, False):
            cfg = TrainConfig(model=str(model), data=str(data), batch_size=4, max_steps=6, eval_every=3,
                              save_every=0, lr=1e-3, log_every=1, max_seq_len=512, threads=1, seed=42,
                              packing=packing)
            out = run(cfg, out=base / f"run-{packing}")
            for row in csv.DictReader((out / "metrics.csv").open()):
                print(f"packing={packing} step={row['step']} train_loss={row['train_loss']} "
                      f"val_loss={row['val_loss']} val_verdict_nll={row['val_verdict_nll']}")
            adapter = (out / "final" / "adapter_model.safetensors").read_bytes()
            print(f"packing={packing} final adapter sha256={hashlib.sha256(adapter).hexdigest()}")


if __name__ == "__main__":
    main()
