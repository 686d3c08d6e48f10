"""``breachlab vuln plan MODEL --config configs/vuln/plan.yaml --set lora_r=32 --out DIR`` — the planner as a command.

:mod:`breachlab.vuln.training.plan` computes a memory table; this module is its config
(:class:`PlanConfig`, so ``vuln plan`` reads ``--config``/``--set`` like every other command
and ``vuln config plan`` lists its keys) and the step that writes the table to a folder
(``plan.json`` for scripts, ``plan.txt`` as printed) when ``--out`` is given.  A plan is a
quick question, so without ``--out`` nothing is written.

The keys are the training config's (``lora_r``, ``max_seq_len``, ``method``, …), so
``vuln plan --config configs/vuln/gemma4-e4b-qlora.yaml`` plans the run that YAML trains:
:func:`load_plan_config` keeps the keys the planner uses and drops the training-only ones.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breachlab.config import ConfigError, deep_merge, field, from_dict, read_yaml
from breachlab.errors import UserError

METHODS = ("full", "lora", "qlora")


@dataclass
class PlanConfig:
    """What to plan: a model, how it is trained, and how the activations are counted."""

    model: str = field("", help="preset (gemma-3-270m, gemma-4-e4b, gemma-3-4b-text), hf:org/name of a preset's "
                                "model, a ladder name, a config.json or a model dir")
    method: str = field("lora", help="full | lora | qlora")
    lora_r: int = field(16, help="LoRA rank, as vuln train's lora_r")
    batch_size: int = field(8, help="sequences per step per device")
    max_seq_len: int = field(512, help="tokens per sequence, as vuln train's max_seq_len")
    dtype: str = field("bfloat16", help="weights/compute dtype")
    gradient_checkpointing: bool = field(True, help="recompute layer activations in the backward pass")
    logits: str = field("answer", help="answer (only the answer tokens' logits, as vuln train) | all")
    answer_tokens: int = field(40, help="answer tokens per sequence when logits is answer")
    attention: str = field("sdpa", help="attention implementation the activation count runs with (sdpa | eager)")
    measure: bool = field(True, help="count the activations autograd keeps on a short CPU copy of the model "
                                     "(a few seconds, within 5-15% of GPU peaks); false = the quick formula "
                                     "(up to 40% low without checkpointing)")
    ple_on_cpu: bool = field(True, help="Gemma 3n/4 per-layer embedding table in CPU memory, as vuln train does "
                                        "on CUDA for LoRA/QLoRA (ple_on_cpu: auto)")
    ple_store: str = field("ram", help="where that table is kept, as vuln train's ple_store: ram (counted as "
                                       "process memory) or disk (an unlinked file, read per step)")
    head_chunk: int = field(0, help="as vuln train's head_chunk: the logits of this many answer positions at a "
                                    "time (0 = all)")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.logits not in ("answer", "all"):
            raise ConfigError("logits must be answer or all")
        if min(self.lora_r, self.batch_size, self.max_seq_len, self.answer_tokens) < 1:
            raise ConfigError("lora_r, batch_size, max_seq_len and answer_tokens must be at least 1")
        if self.ple_store not in ("ram", "disk"):
            raise ConfigError(f"ple_store must be ram or disk; got {self.ple_store!r}")
        if self.head_chunk < 0:
            raise ConfigError(f"head_chunk must be >= 0, got {self.head_chunk}")


def _from_training(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The planner's keys of a training YAML's ``data``: shared keys kept (training's
    ``auto`` values read as vuln train reads them on CUDA), training-only keys dropped,
    any other key left for the config loader to refuse."""
    from breachlab.vuln.training.config import TrainConfig

    planner = {f.name for f in dataclasses.fields(PlanConfig)}
    trainer = {f.name for f in dataclasses.fields(TrainConfig)}
    if set(data) <= planner:
        return data
    out = {k: v for k, v in data.items() if k in planner or k not in trainer}
    if out.get("dtype") == "auto":
        out["dtype"] = "bfloat16"
    if isinstance(out.get("ple_on_cpu"), str):  # training's auto | on | off; auto = on for LoRA/QLoRA on CUDA
        out["ple_on_cpu"] = out["ple_on_cpu"] != "off"
    if "supervised_logits_only" in data:
        out["logits"] = "answer" if data["supervised_logits_only"] else "all"
    if out.get("attention") is None and data.get("attn_implementation") in ("sdpa", "eager"):
        out["attention"] = data["attn_implementation"]
    return out


def load_plan_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> PlanConfig:
    """Defaults ← a plan or training YAML ← ``overrides`` (flags, ``--set``)."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        data, where = _from_training(read_yaml(path), str(path)), str(path)
    return from_dict(PlanConfig, deep_merge(data, overrides or {}), where=where)


def make_plan(cfg: PlanConfig):
    """The :class:`~breachlab.vuln.training.plan.MemoryPlan` of ``cfg``."""
    from breachlab.vuln.training.plan import plan

    if not cfg.model:
        raise UserError("name the model to plan for (MODEL argument or model: in the config)")
    return plan(cfg.model, cfg.method, cfg.lora_r, batch_size=cfg.batch_size, seq_len=cfg.max_seq_len, dtype=cfg.dtype,
                gradient_checkpointing=cfg.gradient_checkpointing, logits=cfg.logits,
                answer_tokens=cfg.answer_tokens, attention=cfg.attention, measure=cfg.measure,
                ple_on_cpu=cfg.ple_on_cpu, ple_store=cfg.ple_store, head_chunk=cfg.head_chunk)


def write_plan(p, out: str | Path) -> Path:
    """``plan.json`` and ``plan.txt`` (the printed table) in ``out``; returns the folder."""
    from breachlab.rundir import atomic_write_text
    from breachlab.vuln.training.plan import format_table

    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest / "plan.json", json.dumps(p.to_dict(), indent=2) + "\n")
    atomic_write_text(dest / "plan.txt", format_table(p) + "\n")
    return dest
