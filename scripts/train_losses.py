"""``python scripts/train_losses.py`` — per-step losses of a tiny CPU training run, printed exactly.

Trains the tiny random Gemma 3 of the test suite (tests/vuln/tiny.py) for a few steps with a
fixed seed, packed and padded, and prints every step's train loss and the validation numbers
with full precision: run it before and after a change to the training code and diff the
output (a refactor must not move a single digit).
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    try:
        from breachlab.vuln.training.config import TrainConfig
        from breachlab.vuln.training.run import run
    except ImportError:  # the layout before the training wing
        from breachlab.vuln.train import TrainConfig, run
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


if __name__ == "__main__":
    main()
