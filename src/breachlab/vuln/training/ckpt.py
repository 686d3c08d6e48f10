"""Training checkpoints that survive ``kill -9``: weights, optimizer, scheduler, RNG, progress.

Each checkpoint is a folder ``checkpoints/step-NNNNNN`` written under a temporary name and
renamed only when complete, so a kill mid-write leaves the previous checkpoint intact and
``latest()`` never returns a half-written one.  Nothing is pickled: weights are safetensors,
RNG states and progress are JSON or tensors, the optimizer state goes through
``torch.save`` and is read back with ``weights_only=True``.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from breachlab.rundir import atomic_write_json

PREFIX = "step-"


def trainable_state(model: Any) -> dict[str, Any]:
    """Only the parameters that train (the LoRA matrices, or everything for full FT)."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {
        "python": _jsonable(random.getstate()),
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(_tupled(state["python"]))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (tuple, list)):
        return [_jsonable(o) for o in obj]
    return obj


def _tupled(obj: Any) -> Any:
    if isinstance(obj, list):
        return tuple(_tupled(o) for o in obj)
    return obj


def _np_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _np_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def save(root: Path, step: int, *, model: Any, optimizer: Any, scheduler: Any, progress: dict[str, Any],
         rank: int = 0, keep: int = 2, weights: dict[str, Any] | None = None,
         optimizer_state: dict[str, Any] | None = None) -> Path:
    """Write checkpoint ``step`` atomically and prune all but the newest ``keep``.
    ``weights`` / ``optimizer_state``: already gathered (FSDP, :mod:`breachlab.vuln.training.shard`)."""
    import torch
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:07d}"
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(weights if weights is not None else trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save(optimizer_state if optimizer_state is not None else optimizer.state_dict(), tmp / "optimizer.pt")
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    atomic_write_json(tmp / "scheduler.json", sched)
    atomic_write_json(tmp / f"rng-{rank}.json", _np_jsonable(rng_state()))
    atomic_write_json(tmp / "progress.json", progress)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob(f"{PREFIX}*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    done = sorted(p for p in root.glob(f"{PREFIX}*") if (p / "progress.json").is_file())
    return done[-1] if done else None


def load(path: Path, *, model: Any, optimizer: Any, scheduler: Any, rank: int = 0,
         sharded: bool = False) -> dict[str, Any]:
    """Restore everything ``save`` wrote; returns the progress record.  ``sharded``: the
    model is FSDP-sharded (every process loads the full tensors, keeps its shard)."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise ValueError(f"checkpoint {path} does not fit this model (e.g. {missing[0]})")
    optim = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    if sharded:
        from breachlab.vuln.training import shard

        shard.load_full_state(model, weights)
        shard.load_full_optimizer_state(model, optimizer, optim)
    else:
        with torch.no_grad():
            for name, tensor in weights.items():
                params[name].copy_(tensor.to(params[name].device, params[name].dtype))
        optimizer.load_state_dict(optim)
    sched = json.loads((path / "scheduler.json").read_text())
    scheduler.load_state_dict({**scheduler.state_dict(), **sched})
    rng_file = path / f"rng-{rank}.json"
    if rng_file.is_file():
        state = json.loads(rng_file.read_text())
        state["numpy"]["state"] = {k: (np.array(v, dtype=np.uint32) if isinstance(v, list) else v)
                                   for k, v in state["numpy"]["state"].items()}
        set_rng_state(state)
    return json.loads((path / "progress.json").read_text())
