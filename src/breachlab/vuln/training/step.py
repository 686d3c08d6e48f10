"""One micro-batch's forward + backward: CUDA-graph replay, or eager (packed or padded rows).

The :class:`Stepper` owns what can change how a micro-batch runs while training: regional
compilation (and its fallback to eager when a compiled call fails, in training or validation), the CUDA-graph
step (built on the first step, dropped with a warning if a capture fails), the next step's
host work prepared ahead, and the activation budget's per-row flags.  The loss comes from
the run's objective (:mod:`breachlab.vuln.training.objectives`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from breachlab.vuln.training import sft
from breachlab.vuln.training.anatomy import decoder_layers
from breachlab.vuln.training.config import TrainConfig
from breachlab.vuln.training.setup import Parts
from breachlab.vuln.training.speed import graphs, patches, regional

log = logging.getLogger("breachlab.vuln.train")


def _first_paragraph(exc: BaseException) -> str:
    """The message up to its first blank line (dynamo appends pages of advice after it)."""
    text = f"{type(exc).__name__}: {exc}".strip().split("\n\n")[0]
    return " ".join(text.split())[:500]


class Stepper:
    """Runs micro-batches for the trainer; see the module docstring."""

    def __init__(self, cfg: TrainConfig, acc: Any, parts: Parts, loss_fn: Callable[..., tuple[Any, Any]]):
        self.cfg, self.acc, self.parts, self.loss_fn = cfg, acc, parts, loss_fn
        self.device = acc.device
        self.is_main = acc.is_main_process
        self.compile_error: str | None = None
        self._compile_pending = False
        # Regional compile of the model inside DDP (its layers, in place): DDP's wrapper and
        # hooks stay as they are, and so do parameter names, checkpoints and saved adapters.
        self.compiled_layers = self._compile(acc.unwrap_model(parts.model))
        blocker = cfg.graphs_blocker(self.device.type, acc.num_processes)
        if cfg.cuda_graphs == "on" and blocker:
            raise ValueError(f"cuda_graphs: on needs {blocker}; use cuda_graphs: auto or off")
        self.use_graphs = cfg.wants_graphs(self.device.type, acc.num_processes)
        self.graph_step: graphs.CudaGraphStep | None = None  # built on the first step (after --resume)
        self.graphs_error: str | None = None
        self._prefetched: dict[int, list] = {}
        self.upcoming: Callable[[], Iterable[list]] | None = None  # the run's micro-batches to come (the plan's)

    # -- regional compile -------------------------------------------------------------------
    def _compile(self, model: Any) -> int:
        """:func:`regional.compile_layers` when ``compile`` asks for it; 0 (and a warning) when it fails."""
        cfg = self.cfg
        if cfg.backend != "breachlab":  # unsloth compiles what it patches itself
            return 0
        if not (cfg.compile == "on" or (cfg.compile == "auto" and self.device.type == "cuda")):
            return 0
        try:
            n = regional.compile_layers(model)
        except Exception as exc:  # e.g. torch.compile unsupported on this Python / platform
            self._compile_fallback(model, exc)
            return 0
        if self.is_main:
            layers = decoder_layers(model)
            kinds = sorted({type(layer).__name__ for layer in layers})
            log.info("regional compile: torch.compile(dynamic=True) on each of %d decoder layers (%s), "
                     "gradient checkpointing %s; graphs are built on the first steps", n, ", ".join(kinds),
                     "on" if cfg.gradient_checkpointing else "off")
        self._compile_pending = True  # the first forward/backward compiles: fall back if it fails
        return n

    def _compile_fallback(self, model: Any, exc: BaseException) -> None:
        regional.uncompile_layers(model)
        self.compiled_layers = 0
        self._compile_pending = False
        self.compile_error = _first_paragraph(exc)
        log.warning("regional torch.compile failed, training without it (compile: off avoids this): %s",
                    self.compile_error)

    def guarded(self, fn: Callable[[], Any]) -> Any:
        """``fn()``; when it fails inside the compiled layers (on any call: a training step,
        validation, a recompile for a new shape), the layers are uncompiled and ``fn`` runs
        again eagerly.  For side-effect-free calls (validation); a training micro-batch goes
        through :meth:`_forward_backward`, which also minds the gradients."""
        try:
            return fn()
        except Exception as exc:
            if not (self.compiled_layers and regional.is_compile_error(exc)):
                raise
            self._compile_fallback(self.acc.unwrap_model(self.parts.model), exc)
            return fn()

    # -- one micro-batch --------------------------------------------------------------------
    def _forward_backward(self, batch: dict, denom: float) -> Any:
        """One micro-batch's loss sum, gradients accumulated.  A compile error in the forward
        (nothing of this micro-batch is accumulated yet) falls back to eager and runs it again;
        one in the backward does so only on the first micro-batch of the run, whose step's
        gradients can be zeroed without loss."""
        loss_sum, _ = self.guarded(lambda: self.loss_fn(self.parts.fwd, batch, self.device))
        try:
            self.acc.backward(loss_sum / denom)
        except Exception as exc:
            if not (self._compile_pending and regional.is_compile_error(exc)):
                raise
            self._compile_fallback(self.acc.unwrap_model(self.parts.model), exc)
            self.parts.opt.zero_grad(set_to_none=True)
            return self._forward_backward(batch, denom)
        self._compile_pending = False
        return loss_sum

    def micro_step(self, examples: list | dict, denom: float) -> Any:
        """Forward + backward of one micro-batch (graph replay, packed or padded); its loss sum.
        ``examples``: the micro-batch, or what :meth:`graphs.CudaGraphStep.prepare` made of it."""
        if self.graph_step is not None:
            try:
                return self.graph_step.forward_backward(examples, 1.0 / denom)
            except Exception as exc:  # a capture that fails: train on without graphs, say why
                self._stop_graphs(exc)
        if isinstance(examples, dict):
            examples = examples["examples"]
        cfg, parts = self.cfg, self.parts
        batch = (sft.collate_packed(examples, parts.pad_id, slot_multiple=64 if parts.slots else None)
                 if cfg.packing else sft.collate(examples, parts.pad_id, cfg.supervised_logits_only))
        if parts.budget is not None:
            parts.budget.apply(batch["input_ids"].numel(), len(batch["keep"]) if cfg.packing else None)
        return self._forward_backward(batch, denom)

    # -- CUDA graphs ------------------------------------------------------------------------
    def micro_batches(self, step: int, micro: list[list]) -> list:
        """What to pass to :meth:`micro_step` for optimizer ``step``: the graph step's prepared
        batches when they were made ahead, else the micro-batches themselves.  Builds the
        graph step on the first step that wants it."""
        if self.use_graphs and self.graph_step is None:
            model = self.acc.unwrap_model(self.parts.model)
            # no autocast: the graphs run the model as the eager path does, in its own dtype
            self.graph_step = graphs.CudaGraphStep(model, self.parts.pad_id,
                                                   dtype=model.get_input_embeddings().weight.dtype,
                                                   autocast=False, budget=self.parts.budget, loss_fn=self.loss_fn,
                                                   limit=self.cfg.cuda_graph_limit)
            if self.is_main:
                log.info("CUDA graphs: forward+backward replayed per length bucket (cuda_graphs: off turns this off)")
            if self.cfg.cuda_graph_plan and self.upcoming is not None:
                self.graph_step.plan_ahead(m for ms in self.upcoming() for m in ms)
        ahead = self._prefetched.pop(step, None) if self.graph_step is not None else None
        return ahead or micro

    def prefetch(self, step: int, micro: list[list]) -> None:
        """The host work of optimizer ``step`` (packing, per-layer rows) while the GPU finishes
        the current one; only with graphs."""
        if self.graph_step is not None:
            self._prefetched = {step: [self.graph_step.prepare(m) for m in micro]}

    def _stop_graphs(self, exc: BaseException) -> None:
        if self.cfg.cuda_graphs == "on":
            raise exc
        self.graphs_error = _first_paragraph(exc)
        log.warning("CUDA graph capture failed, training without graphs (cuda_graphs: off avoids this): %s",
                    self.graphs_error)
        # the gradients accumulated so far this step stay (a failed capture restores them):
        # the eager path adds the rest of the step to them
        self.graph_step = None
        self.use_graphs = False

    def close(self) -> None:
        """Nothing of this run's last packed row outlives it."""
        patches.context(self.acc.unwrap_model(self.parts.model)).clear()
