"""The training loop behind :func:`breachlab.vuln.train.run` (kept apart to stay readable).

One process per device through ``accelerate`` (a single CPU process is the degenerate
case).  A step is ``grad_accum`` micro-batches per process (a global batch of
``batch_size x processes x grad_accum`` sequences); the loss of a step is the mean token NLL
over all its supervised tokens, on all processes.  Validation, early stopping, best/final weights,
checkpoints and the curves are all here; the pure pieces live in :mod:`breachlab.vuln.sft`
and :mod:`breachlab.vuln.ckpt`.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import resource
import time
from pathlib import Path
from typing import Any

from breachlab.rundir import RunDir, atomic_write_text, package_versions
from breachlab.vuln import ckpt, sft, speed
from breachlab.vuln.train import TrainConfig, count_params, load_data, load_for_training

log = logging.getLogger("breachlab.vuln.train")

CURVE_FIELDS = ["step", "epoch", "train_loss", "val_loss", "lr", "tokens", "seconds",
                "val_verdict_nll", "val_verdict_acc"]


class Trainer:
    def __init__(self, cfg: TrainConfig):
        import torch
        from accelerate import Accelerator

        self.cfg = cfg
        if cfg.backend == "unsloth":  # before the model libraries are used: it patches them
            from breachlab.vuln.train import import_unsloth

            import_unsloth()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
        self.acc = Accelerator(cpu=cpu)
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

    # -- setup ----------------------------------------------------------------------------
    def _setup(self) -> None:
        import torch
        from transformers import set_seed

        cfg = self.cfg
        set_seed(cfg.seed)
        t0 = time.perf_counter()
        model, self.tok = load_for_training(cfg, str(self.device))
        self.load_seconds = time.perf_counter() - t0
        self.trainable, self.total = count_params(model)
        pad = self.tok.pad_token_id
        self.pad_id = pad if pad is not None else 0
        self.train_enc = [sft.encode(self.tok, s, cfg.max_seq_len) for s in self.train_samples]
        self.val_enc = [sft.encode(self.tok, s, cfg.max_seq_len) for s in self.val_samples]
        self.verdict_ids = sft.verdict_token_ids(self.train_enc + self.val_enc)
        if cfg.select_on == "verdict" and len(self.verdict_ids) != 2:
            raise ValueError(f"select_on=verdict needs answers that start with one of two verdict tokens; "
                             f"found {len(self.verdict_ids)} distinct first answer tokens")
        cuda = self.device.type == "cuda"
        world = self.acc.num_processes
        per_epoch = len(self.train_enc) // (cfg.batch_size * cfg.grad_accum * world)
        if per_epoch == 0:
            per_epoch = 1
        self.steps_per_epoch = per_epoch
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
        self.ple_offloaded = 0
        ours = cfg.backend == "breachlab"  # unsloth brings its own kernels and checkpointing
        if ours and (cfg.ple_on_cpu == "on" or (cfg.ple_on_cpu == "auto" and cuda and cfg.method != "full")):
            # before .to(device): a table still in CPU memory never visits the GPU
            self.ple_offloaded = speed.offload_per_layer_embeddings(model, include_cpu=True)
        if model.device.type != self.device.type and getattr(model, "hf_device_map", None) is None:
            model.to(self.device)
        # wide-head full-attention layers (Gemma 4): one slot per example, not the whole row
        self.wide_heads = ours and cfg.packing and speed.has_wide_heads(model) and speed.use_packed_attention(model)
        # Gemma 4's KV-shared layers only where the loss reads them (needs the packed row's masks)
        self.shared_at_answers = speed.use_shared_layers_at_answers(model) if ours and cfg.packing else 0
        # counted on a short CPU copy of the model
        self.budget = self._activation_budget(model) if ours else None
        self.kernels = speed.fused_kernels(model, cfg.kernels) if ours else None
        if self.kernels and self.is_main:
            log.info("fused kernels: %s", self.kernels)
        self.fsdp = cfg.fsdp and world > 1
        if self.fsdp:  # before the optimizer: sharding replaces the parameters
            from breachlab.vuln import shard

            units = shard.shard_model(model)
            if self.is_main:
                log.info("FSDP: parameters, gradients and optimizer state sharded over %d processes (%d units)",
                         world, units)
        params = [p for p in model.parameters() if p.requires_grad]
        # one fused kernel for the whole update on CUDA instead of a multi-tensor loop
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cuda and not self.fsdp)
        self.sched = torch.optim.lr_scheduler.LambdaLR(opt, self._lr_lambda)
        if self.fsdp:  # the sharded model is its own wrapper: accelerate must not add DDP's
            self.model, self.opt = model, self.acc.prepare(opt)
        else:
            self.model, self.opt = self.acc.prepare(model, opt)
        inner = self.acc.unwrap_model(self.model)
        # Regional compile of the model inside DDP (its layers, in place): DDP's wrapper and
        # hooks stay as they are, and so do parameter names, checkpoints and saved adapters.
        self.compiled_layers = self._compile(inner)
        # Under DDP (2+ processes) forward through the wrapper (its gradient hooks) but let
        # sft.forward_loss read config / input embeddings of the model inside it.
        self.fwd = self.model if inner is self.model else _Forward(self.model, inner)
        blocker = cfg.graphs_blocker(self.device.type, self.acc.num_processes)
        if cfg.cuda_graphs == "on" and blocker:
            raise ValueError(f"cuda_graphs: on needs {blocker}; use cuda_graphs: auto or off")
        self.use_graphs = cfg.wants_graphs(self.device.type, self.acc.num_processes)
        self.graph_step: speed.CudaGraphStep | None = None  # built on the first step (after --resume)
        self._prefetched: dict[int, list] = {}
        self.graphs_error: str | None = None

    def _activation_budget(self, model: Any) -> speed.ActivationBudget | None:
        """``activation_budget_gib``: which layers skip their recomputation, from what the
        planner counts each layer keeps per token (a short CPU copy, a few seconds)."""
        cfg = self.cfg
        if cfg.activation_budget_gib <= 0:
            return None
        if not cfg.gradient_checkpointing:
            log.warning("activation_budget_gib has no effect without gradient checkpointing (nothing is recomputed)")
            return None
        from breachlab.vuln.plan import saved_bytes_per_token

        dtype = str(model.get_input_embeddings().weight.dtype).removeprefix("torch.")
        counted = saved_bytes_per_token(speed._text_config(model), "full" if cfg.method == "full" else "lora",
                                        cfg.lora_r, dtype, lora_float32=cfg.lora_float32)
        budget = speed.ActivationBudget(model, counted["per_layer"], cfg.activation_budget_gib * 2**30)
        if self.is_main:
            full_row = cfg.batch_size * cfg.max_seq_len
            log.info("activation budget %.1f GiB: at %d tokens (a full micro-batch) %d of %d layers keep their "
                     "activations; shorter rows keep more", cfg.activation_budget_gib, full_row,
                     budget.apply(full_row, full_row), len(budget.per_layer))
        return budget

    def _compile(self, model: Any) -> int:
        """:func:`sft.compile_layers` when ``compile`` asks for it; 0 (and a warning) when it fails."""
        cfg = self.cfg
        self.compile_error: str | None = None
        self._compile_pending = False
        if cfg.backend != "breachlab":  # unsloth compiles what it patches itself
            return 0
        if not (cfg.compile == "on" or (cfg.compile == "auto" and self.device.type == "cuda")):
            return 0
        try:
            n = sft.compile_layers(model)
        except Exception as exc:  # e.g. torch.compile unsupported on this Python / platform
            self._compile_fallback(model, exc)
            return 0
        if self.is_main:
            layers = sft.decoder_layers(model)
            kinds = sorted({type(layer).__name__ for layer in layers})
            log.info("regional compile: torch.compile(dynamic=True) on each of %d decoder layers (%s), "
                     "gradient checkpointing %s; graphs are built on the first steps", n, ", ".join(kinds),
                     "on" if cfg.gradient_checkpointing else "off")
        self._compile_pending = True  # the first forward/backward compiles: fall back if it fails
        return n

    def _compile_fallback(self, model: Any, exc: BaseException) -> None:
        sft.uncompile_layers(model)
        self.compiled_layers = 0
        self._compile_pending = False
        # the message up to its first blank line (dynamo appends pages of advice after it)
        text = f"{type(exc).__name__}: {exc}".strip().split("\n\n")[0]
        self.compile_error = " ".join(text.split())[:500]
        log.warning("regional torch.compile failed, training without it (compile: off avoids this): %s",
                    self.compile_error)

    def _forward_backward(self, batch: dict, denom: float) -> Any:
        """One micro-batch's loss sum, gradients accumulated; the first one falls back to eager
        when compiling the layers fails (nothing is lost: it is the first micro-batch of a step)."""
        try:
            loss_sum, _ = sft.forward_loss(self.fwd, batch, self.device)
            self.acc.backward(loss_sum / denom)
        except Exception as exc:
            if not (self._compile_pending and _is_compile_error(exc)):
                raise
            self._compile_fallback(self.acc.unwrap_model(self.model), exc)
            self.opt.zero_grad(set_to_none=True)
            return self._forward_backward(batch, denom)
        self._compile_pending = False
        return loss_sum

    def _micro_step(self, examples: list | dict, denom: float) -> Any:
        """Forward + backward of one micro-batch (graph replay, packed or padded); its loss sum.
        ``examples``: the micro-batch, or what :meth:`speed.CudaGraphStep.prepare` made of it."""
        if self.graph_step is not None:
            try:
                return self.graph_step.forward_backward(examples, 1.0 / denom)
            except Exception as exc:  # a capture that fails: train on without graphs, say why
                self._stop_graphs(exc)
        if isinstance(examples, dict):
            examples = examples["examples"]
        cfg = self.cfg
        batch = (sft.collate_packed(examples, self.pad_id, slot_multiple=64 if self.wide_heads else None)
                 if cfg.packing else sft.collate(examples, self.pad_id, cfg.supervised_logits_only))
        if self.budget is not None:
            self.budget.apply(batch["input_ids"].numel(), len(batch["keep"]) if cfg.packing else None)
        return self._forward_backward(batch, denom)

    def _start_graphs(self) -> None:
        model = self.acc.unwrap_model(self.model)
        # no autocast: the graphs run the model as the eager path does, in its own dtype
        self.graph_step = speed.CudaGraphStep(model, self.pad_id, dtype=model.get_input_embeddings().weight.dtype,
                                              autocast=False, budget=self.budget)
        if self.is_main:
            log.info("CUDA graphs: forward+backward replayed per length bucket (cuda_graphs: off turns this off)")

    def _stop_graphs(self, exc: BaseException) -> None:
        if self.cfg.cuda_graphs == "on":
            raise exc
        text = f"{type(exc).__name__}: {exc}".strip().split("\n\n")[0]
        self.graphs_error = " ".join(text.split())[:500]
        log.warning("CUDA graph capture failed, training without graphs (cuda_graphs: off avoids this): %s",
                    self.graphs_error)
        # the gradients accumulated so far this step stay (a failed capture restores them):
        # the eager path adds the rest of the step to them
        self.graph_step = None
        self.use_graphs = False

    def _lr_lambda(self, step: int) -> float:
        cfg = self.cfg
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.schedule == "constant":
            return 1.0
        frac = (step - cfg.warmup_steps) / max(1, self.total_steps - cfg.warmup_steps)
        frac = min(max(frac, 0.0), 1.0)
        return 1.0 - frac if cfg.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * frac))

    def _step_batches(self, step: int) -> list[list[int]]:
        """The micro-batches (index lists) this process trains on at optimizer ``step``."""
        cfg = self.cfg
        epoch, k = divmod(step, self.steps_per_epoch)
        lengths = [len(e.ids) for e in self.train_enc]
        key = (epoch,)
        if getattr(self, "_order_key", None) != key:
            make = sft.grouped_batches if cfg.length_grouping else sft.plain_batches
            self._order = (make(lengths, cfg.batch_size, cfg.seed, epoch) if cfg.length_grouping
                           else make(len(lengths), cfg.batch_size, cfg.seed, epoch))
            self._order_key = key
        world, rank, ga = self.acc.num_processes, self.acc.process_index, cfg.grad_accum
        group = self._order[k * ga * world : (k + 1) * ga * world]
        if len(group) < ga * world:  # ragged epoch end: wrap to the start of the order
            group = group + self._order[: ga * world - len(group)]
        return group[rank::world]

    # -- loop -----------------------------------------------------------------------------
    def fit(self, run_dir: RunDir, resume: bool = False) -> None:
        import torch

        cfg = self.cfg
        self._setup()
        ckdir = run_dir.path / "checkpoints"
        state = {"step": 0, "best_val": None, "best_step": None, "bad_evals": 0, "history": [],
                 "tokens": 0, "train_seconds": 0.0, "stopped_early": False}
        if resume:
            last = ckpt.latest(ckdir)
            if last is None:
                log.warning("no checkpoint in %s: starting from step 0", ckdir)
            else:
                state = ckpt.load(last, model=self.acc.unwrap_model(self.model), optimizer=self.opt.optimizer
                                  if self.fsdp else self.opt, scheduler=self.sched, rank=self.acc.process_index,
                                  sharded=self.fsdp)
                log.info("resumed from %s (step %d)", last, state["step"])
                if self.is_main:
                    resumes = run_dir.manifest.get("resumed_from", [])
                    run_dir.update_manifest(status="running", resumed_from=[*resumes, last.name])
        if self.is_main:
            log.info("trainable %s / %s parameters (%.2f%%); %d train, %d val samples; %d steps",
                     f"{self.trainable:,}", f"{self.total:,}", 100 * self.trainable / self.total,
                     len(self.train_enc), len(self.val_enc), self.total_steps)
        writer = self._tracker(run_dir) if self.is_main else None
        self.model.train()
        window: list[float] = []
        while state["step"] < self.total_steps and not state["stopped_early"]:
            t0 = time.perf_counter()
            micro = [[self.train_enc[i] for i in b] for b in self._step_batches(state["step"])]
            mine_sup = sum(e.n_answer for m in micro for e in m)
            mine_tokens = sum(len(e.ids) for m in micro for e in m)
            n_sup = max(1, mine_sup)
            denom = n_sup
            world = self.acc.num_processes
            if world > 1:
                # DDP averages the ranks' gradients: dividing each rank's loss sum by (global
                # answer tokens / world) makes that average the global token-mean, as one
                # process on the whole global batch computes (ranks hold unequal token counts).
                n_sup = max(1.0, self._sum_over_ranks(mine_sup)[0])
                denom = n_sup / world
            if self.use_graphs and self.graph_step is None:
                self._start_graphs()
            ahead = self._prefetched.pop(state["step"], None) if self.graph_step is not None else None
            sums = []
            for j, m in enumerate(ahead or micro):
                ctx = self.acc.no_sync(self.model) if j < len(micro) - 1 else _nullctx()
                with ctx:
                    sums.append(self._micro_step(m, denom))
            total_t = sum(x.detach().float() for x in sums)
            state["tokens"] += mine_tokens
            if world > 1:  # the logged loss and token count are those of the global batch
                total, tokens = self._sum_over_ranks(float(total_t), mine_tokens)
                state["tokens"] += int(tokens) - mine_tokens
            if cfg.max_grad_norm:
                self.acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=self.graph_step is None)  # graphs keep their .grad tensors
            if self.graph_step is not None and state["step"] + 1 < self.total_steps:
                # the next step's host work (packing, per-layer rows) while the GPU finishes this one
                nxt = state["step"] + 1
                self._prefetched = {nxt: [self.graph_step.prepare([self.train_enc[i] for i in b])
                                          for b in self._step_batches(nxt)]}
            if world == 1:
                total = float(total_t)  # the step's one device sync
            state["step"] += 1
            state["train_seconds"] += time.perf_counter() - t0
            loss = total / n_sup
            window.append(loss)
            step = state["step"]
            row = {"step": step, "epoch": round(step / self.steps_per_epoch, 4), "train_loss": round(loss, 5),
                   "val_loss": "", "lr": self.sched.get_last_lr()[0], "tokens": state["tokens"],
                   "seconds": round(state["train_seconds"], 2), "val_verdict_nll": "", "val_verdict_acc": ""}
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
                self._early_stopping(state, val["verdict_nll" if cfg.select_on == "verdict" else "loss"], run_dir)
            state["history"].append(row)
            if writer is not None:
                writer(row)
            if self.is_main and (row["val_loss"] != "" or step % max(1, cfg.log_every) == 0 or at_end):
                write_curves(run_dir.path, state["history"])
            if cfg.save_every and step % cfg.save_every == 0 and not at_end:
                gathered = {}
                if self.fsdp:  # every process takes part in gathering the full tensors
                    from breachlab.vuln import shard

                    gathered = {"weights": shard.full_state(self.model, trainable_only=True),
                                "optimizer_state": shard.full_optimizer_state(self.model, self.opt.optimizer)}
                if self.is_main:  # one writer; the other ranks' dropout RNG is not restored (dropout 0 default)
                    ckpt.save(ckdir, step, model=self.acc.unwrap_model(self.model), optimizer=self.opt,
                              scheduler=self.sched, progress=state, rank=self.acc.process_index,
                              keep=cfg.keep_checkpoints, **gathered)
                self.acc.wait_for_everyone()
        speed.set_slot_layout(None)  # nothing of this run's last packed row outlives it
        speed.set_kept_positions(self.model, None)
        self._finish(run_dir, state)

    def _max_over_ranks(self, value: int) -> int:
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

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
        """Validation numbers (each process a shard): ``loss`` (mean answer-token NLL),
        ``verdict_nll`` (mean NLL of the verdict token, what logit scoring reads) and
        ``verdict_acc`` (true verdict token outscores the other; None without two of them)."""
        import torch

        # The model inside DDP: no collective per forward (DDP's first forward after a step
        # broadcasts buffers), so shards with unequal batch counts, or none, cannot hang.
        model = self.acc.unwrap_model(self.model)
        self.model.eval()
        order = sorted(range(len(self.val_enc)), key=lambda i: len(self.val_enc[i].ids))
        mine = order[self.acc.process_index :: self.acc.num_processes]
        tot = torch.zeros(5, dtype=torch.float64, device=self.device)
        bs = self.cfg.batch_size
        batches = [mine[s : s + bs] for s in range(0, len(mine), bs)]
        extra = 0
        if self.fsdp:  # each forward gathers parameters from every process: all run as many
            most = self._max_over_ranks(len(batches))
            extra = most - len(batches)
        with torch.no_grad():
            for idx in batches:
                chunk = [self.val_enc[i] for i in idx]
                loss_sum, n, v_nll, right = sft.forward_eval(model, sft.collate(chunk, self.pad_id), self.device,
                                                             self.verdict_ids)
                tot += torch.tensor([loss_sum, n, v_nll, right, len(chunk)], dtype=torch.float64, device=self.device)
            for _ in range(extra):  # a forward whose numbers are not counted
                sft.forward_eval(model, sft.collate(self.val_enc[:1], self.pad_id), self.device, self.verdict_ids)
        tot = self.acc.reduce(tot, reduction="sum") if self.acc.num_processes > 1 else tot
        self.model.train()
        loss, n, v_nll, right, count = (float(x) for x in tot)
        return {"loss": loss / max(1.0, n), "verdict_nll": v_nll / max(1.0, count),
                "verdict_acc": right / max(1.0, count) if len(self.verdict_ids) == 2 else None}

    def save_weights(self, path: Path) -> None:
        """Adapter (PEFT, safetensors) or the full model, plus the tokenizer."""
        self.acc.wait_for_everyone()
        extra = {}
        if self.fsdp:  # every process takes part in gathering the full tensors
            from breachlab.vuln import shard

            extra["state_dict"] = shard.full_state(self.model)
        if not self.is_main:
            return
        import shutil

        model = self.acc.unwrap_model(self.model)
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True, **extra)
        self.tok.save_pretrained(tmp)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)

    def _finish(self, run_dir: RunDir, state: dict) -> None:
        import torch

        self.save_weights(run_dir.path / "final")
        if not self.is_main:
            return
        if not (run_dir.path / "best").exists():
            import shutil

            shutil.copytree(run_dir.path / "final", run_dir.path / "best")
        peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available() and self.device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        secs = max(1e-9, state["train_seconds"])
        steps_done = state["step"]
        write_curves(run_dir.path, state["history"])
        plot_curves(run_dir.path)
        best = next((r for r in state["history"] if r["step"] == state["best_step"] and r["val_loss"] != ""), {})
        run_dir.update_manifest(
            method=self.cfg.method, model=self.cfg.model,
            trainable_params=self.trainable, total_params=self.total,
            trainable_percent=round(100 * self.trainable / self.total, 4),
            peak_memory_bytes=int(peak), peak_memory_kind="cuda_allocated" if self.device.type == "cuda" else "cpu_rss",
            tokens_per_second=round(state["tokens"] / secs, 2), steps_per_second=round(steps_done / secs, 4),
            samples_per_second=round(steps_done * self.cfg.batch_size * self.cfg.grad_accum
                                     * self.acc.num_processes / secs, 3),
            steps=steps_done, planned_steps=self.total_steps, train_seconds=round(secs, 2),
            load_seconds=round(self.load_seconds, 2), processes=self.acc.num_processes,
            train_samples=len(self.train_enc), val_samples=len(self.val_enc),
            truncated_train_samples=sum(e.truncated for e in self.train_enc),
            best_val_loss=best.get("val_loss"), best_val_verdict_nll=best.get("val_verdict_nll"),
            best_val_verdict_acc=best.get("val_verdict_acc"), selected_on=self.cfg.select_on,
            best_step=state["best_step"], stopped_early=state["stopped_early"],
            compile=self.compiled_layers > 0, compiled_layers=self.compiled_layers,
            packing=self.cfg.packing, kernels=self.kernels, ple_on_cpu_bytes=self.ple_offloaded,
            activation_budget_gib=self.cfg.activation_budget_gib, lora_float32=self.cfg.lora_float32,
            shared_layers_at_answers=self.shared_at_answers, backend=self.cfg.backend, fsdp=self.fsdp,
            **({"unsloth_version": package_versions().get("unsloth")} if self.cfg.backend == "unsloth" else {}),
            cuda_graphs=(self.graph_step.captured if self.graph_step is not None else 0),
            graph_capture_seconds=(round(self.graph_step.capture_seconds, 2) if self.graph_step is not None else 0),
            **({"cuda_graphs_error": self.graphs_error} if self.graphs_error else {}),
            **({"compile_error": self.compile_error} if self.compile_error else {}),
            outputs={"best": "best", "final": "final", "curves": ["metrics.csv", "curves.png"]},
        )

    def _tracker(self, run_dir: RunDir) -> Any:
        kind = self.cfg.report_to
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(run_dir.path / "tensorboard"))

            def write(row: dict) -> None:
                for k in ("train_loss", "val_loss", "lr"):
                    if row[k] != "":
                        tb.add_scalar(k, row[k], row["step"])
                tb.flush()
            return write
        if kind == "mlflow":
            import mlflow

            mlflow.start_run(run_name=run_dir.path.name)

            def write(row: dict) -> None:
                mlflow.log_metrics({k: row[k] for k in ("train_loss", "val_loss", "lr") if row[k] != ""},
                                   step=row["step"])
            return write
        return None


class _Forward:
    """Calls go to the DDP-wrapped model, attribute look-ups to the model it wraps."""

    def __init__(self, wrapped: Any, inner: Any):
        self._wrapped, self._inner = wrapped, inner

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _is_compile_error(exc: BaseException) -> bool:
    """An error of torch.compile itself (dynamo / inductor / a missing C++ compiler)."""
    import torch._dynamo.exc

    return isinstance(exc, torch._dynamo.exc.TorchDynamoException) or type(exc).__module__.startswith(
        ("torch._dynamo", "torch._inductor"))


class _nullctx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def write_curves(path: Path, history: list[dict]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CURVE_FIELDS)
    w.writeheader()
    w.writerows(history)
    return atomic_write_text(path / "metrics.csv", buf.getvalue())


def plot_curves(path: Path, axes: Any = None, output_file: str | Path | None = None) -> Path:
    """Train (per step) and validation loss against step, from ``metrics.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader((path / "metrics.csv").open()))
    steps = [int(r["step"]) for r in rows]
    train = [float(r["train_loss"]) for r in rows]
    vsteps = [int(r["step"]) for r in rows if r["val_loss"]]
    val = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    verdict = [float(r["val_verdict_nll"]) for r in rows if r["val_loss"] and r.get("val_verdict_nll")]
    fig = None
    if axes is None:
        fig, axes = plt.subplots(figsize=(7, 4))
    axes.plot(steps, train, label="train", alpha=0.6)
    if val:
        axes.plot(vsteps, val, "o-", label="validation")
    if verdict and len(verdict) == len(vsteps):
        axes.plot(vsteps, verdict, "s--", label="validation, verdict token")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("answer-token loss (nats)")
    axes.legend()
    axes.grid(alpha=0.3)
    out = Path(output_file) if output_file else path / "curves.png"
    if fig is not None:
        fig.tight_layout()
        fig.savefig(out, dpi=120)
        plt.close(fig)
    return out
