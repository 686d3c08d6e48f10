"""``breachlab vuln train --config configs/vuln/gemma3-270m-lora.yaml`` — fine-tune a classifier.

LoRA, QLoRA (bitsandbytes NF4 + double quantisation, GPU only) or full fine-tuning of a
causal LM on (prompt, answer) pairs from :mod:`breachlab.vuln.prompts`, loss on the model
turn only, logits only where the loss needs them (:mod:`breachlab.vuln.training.sft`).  The run
directory gets ``best/`` (lowest validation loss, or verdict-token NLL with ``select_on: verdict``)
and ``final/`` weights, ``metrics.csv`` +
``curves.png``, ``checkpoints/`` every ``save_every`` steps and a manifest with trainable
parameters, peak memory and tokens/s.  ``--resume RUN_DIR`` continues after a crash or
``kill -9`` from the newest checkpoint, losing at most one interval.

Multi-GPU: the same command under ``accelerate launch`` (DDP, or FSDP with ``fsdp: true``).
LoRA adapters go on the language model only (:mod:`breachlab.vuln.training.anatomy`).
The top of the training wing: it builds the :class:`~breachlab.vuln.training.loop.Trainer`
and gives it a run directory; nothing in the wing imports this module.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from breachlab.vuln.training.config import TrainConfig


def run(cfg: TrainConfig, *, out: str | Path | None = None, root: str | Path = "runs",
        resume: str | Path | None = None) -> Path:
    """Train and return the run directory (``resume``: continue that run from its newest checkpoint)."""
    from breachlab.config import from_dict
    from breachlab.rundir import RunDir
    from breachlab.vuln.training.loop import Trainer

    if resume is not None:
        run_dir = RunDir.open(resume)
        cfg = from_dict(TrainConfig, run_dir.config_dict(), where=str(run_dir / "config.yaml"))
    else:
        run_dir = None
    trainer = Trainer(cfg)
    if run_dir is None:
        if trainer.is_main:
            run_dir = RunDir.create("vuln train", cfg, root=root, out=out, seed=cfg.seed, inputs=trainer.inputs)
        run_dir = trainer.share_run_dir(run_dir)
    with run_dir.running() if trainer.is_main else contextlib.nullcontext():
        trainer.fit(run_dir, resume=resume is not None)
    if trainer.acc.num_processes > 1:  # NCCL/gloo: tear the process group down (torch warns otherwise)
        trainer.acc.end_training()
    return run_dir.path


def resume(run_dir: str | Path) -> Path:
    """Continue a killed or crashed run from its newest checkpoint."""
    return run(TrainConfig(), resume=run_dir)
