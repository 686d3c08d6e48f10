"""The training loop: :class:`Trainer`, built by :func:`breachlab.vuln.training.run.run`.

One process per device through ``accelerate`` (a single CPU process is the degenerate
case).  A step is ``grad_accum`` micro-batches per process (a global batch of
``batch_size x processes x grad_accum`` sequences); the loss of a step is the mean token NLL
over all its supervised tokens, on all processes.  The trainer keeps the loop itself — the
order of the batches, the step, validation every ``eval_every`` steps, early stopping,
checkpoints every ``save_every`` — and hands the rest to its parts: :mod:`.setup` (model,
data, optimizer), :mod:`.step` (one micro-batch), :mod:`.validate`, :mod:`.save`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from breachlab.rundir import RunDir
from breachlab.vuln.training import ckpt, objectives, pairloss, save, setup, sft, validate
from breachlab.vuln.training.config import TrainConfig
from breachlab.vuln.training.curves import write_curves
from breachlab.vuln.training.load import import_unsloth, load_data, set_sdpa_kernels
from breachlab.vuln.training.step import Stepper

log = logging.getLogger("breachlab.vuln.train")


def selection_number(select_on: str, val: dict) -> float:
    """The validation number ``select_on`` keeps the best checkpoint by, lower = better
    (``auc`` enters negated; a validation set with one class scores 0.5)."""
    if select_on == "auc":
        auc = val.get("verdict_auc")
        return -(0.5 if auc is None else auc)
    return val["verdict_nll" if select_on == "verdict" else "loss"]


class Trainer:
    def __init__(self, cfg: TrainConfig):
        import torch
        from accelerate import Accelerator

        self.cfg = cfg
        self.loss_fn = objectives.bind(cfg)  # an unknown objective fails before anything loads
        if cfg.backend == "unsloth":  # before the model libraries are used: it patches them
            import_unsloth()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
        self.acc = Accelerator(cpu=cpu)
        set_sdpa_kernels(cfg.sdpa_kernels)
        self.is_main = self.acc.is_main_process
        self.device = self.acc.device
        if cfg.backend == "unsloth" and self.acc.num_processes > 1:
            raise ValueError("backend: unsloth trains in one process; use backend: breachlab with accelerate launch")
        self.train_samples, self.val_samples, self.inputs = load_data(cfg)

    def share_run_dir(self, run_dir: RunDir | None) -> RunDir:
        from accelerate.utils import broadcast_object_list

        box = [str(run_dir.path) if run_dir is not None else None]
        if self.acc.num_processes > 1:
            broadcast_object_list(box)
        return RunDir(box[0])

    # -- the order of the data --------------------------------------------------------------
    def _step_batches(self, step: int) -> list[list[int]]:
        """The micro-batches (index lists) this process trains on at optimizer ``step``."""
        cfg = self.cfg
        epoch, k = divmod(step, self.steps_per_epoch)
        lengths = [len(e.ids) for e in self.train_enc]
        key = (epoch,)
        if getattr(self, "_order_key", None) != key:
            if cfg.objective == "pair_margin":  # both halves of a pair in one micro-batch
                self._order = pairloss.pair_batches([e.pair for e in self.train_enc], cfg.batch_size, cfg.seed, epoch)
            elif cfg.length_grouping:
                self._order = sft.grouped_batches(lengths, cfg.batch_size, cfg.seed, epoch)
            else:
                self._order = sft.plain_batches(len(lengths), cfg.batch_size, cfg.seed, epoch)
            self._order_key = key
        world, rank, ga = self.acc.num_processes, self.acc.process_index, cfg.grad_accum
        group = self._order[k * ga * world : (k + 1) * ga * world]
        if len(group) < ga * world:  # ragged epoch end: wrap to the start of the order
            group = group + self._order[: ga * world - len(group)]
        return group[rank::world]

    def _micro(self, step: int) -> list[list]:
        return [[self.train_enc[i] for i in b] for b in self._step_batches(step)]

    # -- the loop ---------------------------------------------------------------------------
    def fit(self, run_dir: RunDir, resume: bool = False) -> None:
        cfg = self.cfg
        self.parts = parts = setup.build(cfg, self.acc, self.train_samples, self.val_samples)
        self.train_enc, self.val_enc = parts.train_enc, parts.val_enc
        self.steps_per_epoch, self.total_steps = parts.steps_per_epoch, parts.total_steps
        self.stepper = stepper = Stepper(cfg, self.acc, parts, self.loss_fn)
        state = self._start(run_dir, resume)
        # cuda_graph_plan: the graphs are chosen from every micro-batch still to come
        stepper.upcoming = lambda: (self._micro(s) for s in range(state["step"], self.total_steps))
        writer = save.tracker(cfg.report_to, run_dir) if self.is_main else None
        parts.model.train()
        window: list[float] = []
        world = self.acc.num_processes
        while state["step"] < self.total_steps and not state["stopped_early"]:
            t0 = time.perf_counter()
            micro = self._micro(state["step"])
            mine_sup = sum(e.n_answer for m in micro for e in m)
            mine_tokens = sum(len(e.ids) for m in micro for e in m)
            n_sup = max(1, mine_sup)
            denom = n_sup
            if world > 1:
                # DDP averages the ranks' gradients: dividing each rank's loss sum by (global
                # answer tokens / world) makes that average the global token-mean, as one
                # process on the whole global batch computes (ranks hold unequal token counts).
                n_sup = max(1.0, self._sum_over_ranks(mine_sup)[0])
                denom = n_sup / world
            sums = []
            for j, m in enumerate(stepper.micro_batches(state["step"], micro)):
                ctx = self.acc.no_sync(parts.model) if j < len(micro) - 1 else contextlib.nullcontext()
                with ctx:
                    sums.append(stepper.micro_step(m, denom))
            total_t = sum(x.detach().float() for x in sums)
            state["tokens"] += mine_tokens
            if world > 1:  # the logged loss and token count are those of the global batch
                total, tokens = self._sum_over_ranks(float(total_t), mine_tokens)
                state["tokens"] += int(tokens) - mine_tokens
            if cfg.max_grad_norm:
                self.acc.clip_grad_norm_(parts.model.parameters(), cfg.max_grad_norm)
            parts.opt.step()
            parts.sched.step()
            parts.opt.zero_grad(set_to_none=stepper.graph_step is None)  # graphs keep their .grad tensors
            if stepper.graph_step is not None and state["step"] + 1 < self.total_steps:
                stepper.prefetch(state["step"] + 1, self._micro(state["step"] + 1))
            if world == 1:
                total = float(total_t)  # the step's one device sync
            state["step"] += 1
            state["train_seconds"] += time.perf_counter() - t0
            loss = total / n_sup
            window.append(loss)
            self._after_step(state, loss, window, run_dir, writer)
        stepper.close()
        save.finish(self.acc, cfg, parts, stepper, run_dir, state)

    def _start(self, run_dir: RunDir, resume: bool) -> dict:
        """The progress record: fresh, or the newest checkpoint's (``--resume``)."""
        parts = self.parts
        ckdir = run_dir.path / "checkpoints"
        state = {"step": 0, "best_val": None, "best_step": None, "bad_evals": 0, "history": [],
                 "tokens": 0, "train_seconds": 0.0, "stopped_early": False}
        if resume:
            last = ckpt.latest(ckdir)
            if last is None:
                log.warning("no checkpoint in %s: starting from step 0", ckdir)
            else:
                state = ckpt.load(last, model=self.acc.unwrap_model(parts.model), optimizer=parts.opt.optimizer
                                  if parts.fsdp else parts.opt, scheduler=parts.sched, rank=self.acc.process_index,
                                  sharded=parts.fsdp)
                log.info("resumed from %s (step %d)", last, state["step"])
                if self.is_main:
                    resumes = run_dir.manifest.get("resumed_from", [])
                    run_dir.update_manifest(status="running", resumed_from=[*resumes, last.name])
        if self.is_main:
            log.info("trainable %s / %s parameters (%.2f%%); %d train, %d val samples; %d steps",
                     f"{parts.trainable:,}", f"{parts.total:,}", 100 * parts.trainable / parts.total,
                     len(self.train_enc), len(self.val_enc), self.total_steps)
        return state

    def _after_step(self, state: dict, loss: float, window: list[float], run_dir: RunDir, writer: Any) -> None:
        """Log, validate (and keep the best weights, stop early), write the curves, checkpoint."""
        cfg, parts = self.cfg, self.parts
        step = state["step"]
        row = {"step": step, "epoch": round(step / self.steps_per_epoch, 4), "train_loss": round(loss, 5),
               "val_loss": "", "lr": parts.sched.get_last_lr()[0], "tokens": state["tokens"],
               "seconds": round(state["train_seconds"], 2), "val_verdict_nll": "", "val_verdict_acc": "",
               "val_verdict_auc": ""}
        if step % max(1, cfg.log_every) == 0 and self.is_main:
            log.info("step %d/%d loss %.4f (%.1f tok/s)", step, self.total_steps, sum(window) / len(window),
                     state["tokens"] / max(1e-9, state["train_seconds"]))
            window.clear()
        at_end = step >= self.total_steps
        if self.val_enc and ((cfg.eval_every and step % cfg.eval_every == 0) or at_end):
            val = self.evaluate()
            row["val_loss"] = round(val["loss"], 5)
            row["val_verdict_nll"] = round(val["verdict_nll"], 5)
            row["val_verdict_acc"] = round(val["verdict_acc"], 4) if val["verdict_acc"] is not None else ""
            if val.get("verdict_auc") is not None:
                row["val_verdict_auc"] = round(val["verdict_auc"], 4)
            self._early_stopping(state, selection_number(cfg.select_on, val), run_dir)
        state["history"].append(row)
        if writer is not None:
            writer(row)
        if self.is_main and (row["val_loss"] != "" or step % max(1, cfg.log_every) == 0 or at_end):
            write_curves(run_dir.path, state["history"])
        if cfg.save_every and step % cfg.save_every == 0 and not at_end:
            save.save_checkpoint(self.acc, parts, run_dir.path / "checkpoints", step, state, cfg.keep_checkpoints)

    def _sum_over_ranks(self, *values: float) -> list[float]:
        import torch

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.acc.reduce(t, reduction="sum").tolist()

    def _early_stopping(self, state: dict, val: float, run_dir: RunDir) -> None:
        cfg = self.cfg
        if state["best_val"] is None or val < state["best_val"] - cfg.min_delta:
            state["best_val"], state["best_step"], state["bad_evals"] = val, state["step"], 0
            self.save_weights(run_dir.path / "best")
        else:
            state["bad_evals"] += 1
            if cfg.patience and state["bad_evals"] >= cfg.patience:
                state["stopped_early"] = True
                if self.is_main:
                    log.info("early stop at step %d: no val %s improvement > %g in %d evaluations (best %.4f at %d)",
                             state["step"], cfg.select_on, cfg.min_delta, cfg.patience, state["best_val"],
                             state["best_step"])

    def evaluate(self) -> dict[str, float | None]:
        """Validation numbers over all processes (:func:`breachlab.vuln.training.validate.evaluate`)."""
        return self.stepper.guarded(lambda: validate.evaluate(self.acc, self.parts, self.cfg.batch_size))

    def save_weights(self, path: Path) -> None:
        """Adapter (PEFT, safetensors) or the full model, plus the tokenizer."""
        save.save_weights(self.acc, self.parts, path)
