"""What a training run leaves behind: weights (best, final), checkpoints, the manifest, trackers.

Weights are the PEFT adapter (safetensors) or the full model, plus the tokenizer, written
under a temporary name and renamed when complete.  Under FSDP every process takes part in
gathering the full tensors and the main process writes them, so the files are the same as
a one-process run's and ``--resume``, ``vuln export`` and evaluation need nothing new.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

from breachlab.rundir import RunDir, package_versions
from breachlab.vuln.training import ckpt
from breachlab.vuln.training.config import TrainConfig
from breachlab.vuln.training.curves import plot_curves, write_curves
from breachlab.vuln.training.setup import Parts
from breachlab.vuln.training.speed import ple


def save_weights(acc: Any, parts: Parts, path: Path) -> None:
    """Adapter (PEFT, safetensors) or the full model, plus the tokenizer."""
    acc.wait_for_everyone()
    extra = {}
    if parts.fsdp:  # every process takes part in gathering the full tensors
        from breachlab.vuln.training import shard

        extra["state_dict"] = shard.full_state(parts.model)
    if not acc.is_main_process:
        return
    import shutil

    model = acc.unwrap_model(parts.model)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True, **extra)
    parts.tok.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def save_checkpoint(acc: Any, parts: Parts, ckdir: Path, step: int, state: dict, keep: int) -> None:
    """Checkpoint ``step`` (weights, optimizer, schedule, RNG, progress); one writer."""
    gathered = {}
    if parts.fsdp:  # every process takes part in gathering the full tensors
        from breachlab.vuln.training import shard

        gathered = {"weights": shard.full_state(parts.model, trainable_only=True),
                    "optimizer_state": shard.full_optimizer_state(parts.model, parts.opt.optimizer)}
    if acc.is_main_process:  # one writer; the other ranks' dropout RNG is not restored (dropout 0 default)
        ckpt.save(ckdir, step, model=acc.unwrap_model(parts.model), optimizer=parts.opt, scheduler=parts.sched,
                  progress=state, rank=acc.process_index, keep=keep, **gathered)
    acc.wait_for_everyone()


def finish(acc: Any, cfg: TrainConfig, parts: Parts, stepper: Any, run_dir: RunDir, state: dict) -> None:
    """Final weights, ``best/`` (a copy of final when no validation chose one), curves and the
    manifest's numbers (parameters, speed, memory, what was applied)."""
    import torch

    save_weights(acc, parts, run_dir.path / "final")
    if not acc.is_main_process:
        return
    if not (run_dir.path / "best").exists():
        import shutil

        shutil.copytree(run_dir.path / "final", run_dir.path / "best")
    cuda = acc.device.type == "cuda"
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available() and cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    secs = max(1e-9, state["train_seconds"])
    steps_done = state["step"]
    write_curves(run_dir.path, state["history"])
    plot_curves(run_dir.path)
    best = next((r for r in state["history"] if r["step"] == state["best_step"] and r["val_loss"] != ""), {})
    graph = stepper.graph_step
    run_dir.update_manifest(
        method=cfg.method, model=cfg.model,
        trainable_params=parts.trainable, total_params=parts.total,
        trainable_percent=round(100 * parts.trainable / parts.total, 4),
        peak_memory_bytes=int(peak), peak_memory_kind="cuda_allocated" if cuda else "cpu_rss",
        tokens_per_second=round(state["tokens"] / secs, 2), steps_per_second=round(steps_done / secs, 4),
        samples_per_second=round(steps_done * cfg.batch_size * cfg.grad_accum * acc.num_processes / secs, 3),
        steps=steps_done, planned_steps=parts.total_steps, train_seconds=round(secs, 2),
        load_seconds=round(parts.load_seconds, 2), processes=acc.num_processes,
        train_samples=len(parts.train_enc), val_samples=len(parts.val_enc),
        truncated_train_samples=sum(e.truncated for e in parts.train_enc),
        best_val_loss=best.get("val_loss"), best_val_verdict_nll=best.get("val_verdict_nll"),
        best_val_verdict_acc=best.get("val_verdict_acc"), best_val_verdict_auc=best.get("val_verdict_auc"),
        selected_on=cfg.select_on,
        best_step=state["best_step"], stopped_early=state["stopped_early"],
        compile=stepper.compiled_layers > 0, compiled_layers=stepper.compiled_layers,
        packing=cfg.packing, kernels=parts.kernels, ple_on_cpu_bytes=parts.ple_offloaded,
        ple_store=cfg.ple_store if parts.ple_offloaded else None,
        ple_pin_rows=ple.resolve_pin_rows(cfg.ple_pin_rows, cfg.ple_store) if parts.ple_offloaded else None,
        slot_attention=parts.slots,
        head_chunk=cfg.head_chunk if cfg.packing else 0,
        activation_budget_gib=cfg.activation_budget_gib, lora_float32=cfg.lora_float32,
        shared_layers_at_answers=parts.shared_at_answers, backend=cfg.backend, fsdp=parts.fsdp,
        objective=cfg.objective,
        **({"unsloth_version": package_versions().get("unsloth")} if cfg.backend == "unsloth" else {}),
        cuda_graphs=(graph.captured if graph is not None else 0),
        **({"cuda_graph_limit": cfg.cuda_graph_limit, "cuda_graph_plan": cfg.cuda_graph_plan,
            "cuda_graph_padded_batches": graph.plan.padded} if graph is not None else {}),
        graph_capture_seconds=(round(graph.capture_seconds, 2) if graph is not None else 0),
        **({"cuda_graphs_error": stepper.graphs_error} if stepper.graphs_error else {}),
        **({"compile_error": stepper.compile_error} if stepper.compile_error else {}),
        outputs={"best": "best", "final": "final", "curves": ["metrics.csv", "curves.png"]},
    )


def tracker(kind: str, run_dir: RunDir) -> Any:
    """A ``write(row)`` for TensorBoard or MLflow (``report_to``), or None."""
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
