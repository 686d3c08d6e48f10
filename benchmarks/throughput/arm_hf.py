"""The floor: ``transformers.Trainer`` + PEFT as it comes out of the box.

Batches padded right to the longest in the batch, labels -100 on the prompt (what TRL's
SFTTrainer does with completion-only loss), full logits over the vocabulary at every
position, gradient checkpointing.  The Trainer's sampler is replaced by a sequential one
over the examples laid out in the benchmark's batch order, so its batches are ours.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .measure import diffs


def step_log(device: str, times: list[float], losses: list[float]) -> Any:
    """A Trainer callback that stamps the end of every step and keeps every logged loss."""
    import torch
    from transformers import TrainerCallback

    class Log(TrainerCallback):
        def on_step_end(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())

        def on_log(self, a: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    return Log()


def ordered(trainer_cls: Any) -> Any:
    """``trainer_cls`` with a sequential sampler: the dataset is already in our batch order."""
    from torch.utils.data import SequentialSampler

    class Ordered(trainer_cls):
        def _get_train_sampler(self, *a: Any, **k: Any) -> Any:
            return SequentialSampler(self.train_dataset)

    return Ordered


def common_args(args: Any, n_steps: int, sub: str) -> dict:
    """The TrainingArguments every Trainer-based arm shares (lr 2e-4 constant, AdamW, clip 1.0)."""
    return dict(
        output_dir=str(Path(args.tmp) / sub), per_device_train_batch_size=args.batch_size, max_steps=n_steps,
        learning_rate=2e-4, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1, save_strategy="no",
        report_to=[], bf16=args.device == "cuda", use_cpu=args.device == "cpu", dataloader_drop_last=True,
        optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0, disable_tqdm=True, seed=args.seed,
        # explicit: Unsloth's patched SFTConfig defaults to 2, which would train on two of
        # our batches per step (seen on the H200, 2026-12-02)
        gradient_accumulation_steps=1,
    )


def run(model: Any, examples: list[Any], batches: list[list[int]], args: Any) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

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

    losses: list[float] = []
    times: list[float] = []
    targs = TrainingArguments(remove_unused_columns=False, gradient_checkpointing=False,
                              **common_args(args, len(batches), "hf"))
    trainer = ordered(Trainer)(model=model, args=targs, train_dataset=data, data_collator=collate,
                               callbacks=[step_log(args.device, times, losses)])
    start = time.perf_counter()
    trainer.train()
    return {"step_times": diffs([start, *times]), "losses": losses}
