"""A user-supplied subcortical head on TRIBE v2's last hidden layer, and how its input is captured.

The released TRIBE v2 checkpoint predicts cortex only.  A head (2048 → V voxels) is applied to
the input of ``model.predictor``; that input runs at the extractors' rate (2 Hz) over whole
segments, so :class:`HeadCapture` pools it the way ``model.pooler`` pools the outputs and keeps
the same TR rows that ``predict`` keeps.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from breachlab.errors import UserError


@dataclass
class SubcorticalHead:
    """A user-supplied linear head (2048 → n_voxels) on TRIBE v2's last hidden layer.

    The released checkpoint predicts cortex only (``predictor.weights`` (1, 2048, 20484);
    tribev2 issue #23 asks for the 8,808-voxel MaskProjector head).  A file with ``weight``
    (2048, V) or (1, 2048, V), optional ``bias`` (V,) and ``labels`` (.pt or .npz) is applied to
    the inputs of ``model.predictor``, captured with a forward hook.
    """

    weight: np.ndarray
    bias: np.ndarray
    labels: list[str] = field(default_factory=list)
    source: str = ""
    sha256: str = ""

    @classmethod
    def load(cls, path: str | Path) -> "SubcorticalHead":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"subcortical head not found: {path}")
        if path.suffix == ".npz":
            data = dict(np.load(path, allow_pickle=False))
        else:
            import torch

            data = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else v)
                    for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}
        w = np.asarray(data.get("weight", data.get("weights")), dtype=np.float32)
        if w.ndim == 3 and w.shape[0] == 1:
            w = w[0]
        if w.ndim != 2:
            raise UserError(f"{path}: 'weight' must be (in_features, n_voxels), got {w.shape}")
        b = np.asarray(data.get("bias", np.zeros(w.shape[1])), dtype=np.float32).reshape(-1)
        if b.shape[0] != w.shape[1]:
            raise UserError(f"{path}: bias has {b.shape[0]} values for {w.shape[1]} voxels")
        labels = [str(x) for x in np.asarray(data.get("labels", []), dtype=str).tolist()]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return cls(w, b, labels, str(path), digest)

    def apply(self, hidden: np.ndarray) -> np.ndarray:
        """(n, in_features) → (n, n_voxels)."""
        return hidden @ self.weight + self.bias


class HeadCapture:
    """Hidden states at the predictor's input, pooled like the model's outputs, kept row for row.

    Two hooks, both firing inside upstream's predict loop: a pre-hook on the network records
    which TR rows of the batch survive ``remove_empty_segments`` (it reads the segments'
    events, which exist only while the loop runs), and a hook on ``predictor`` pools its input
    with ``model.pooler`` (features run at 2 Hz; the outputs are pooled to one row per TR).
    """

    def __init__(self, tribe_model, head: SubcorticalHead):
        self.tm, self.n_in = tribe_model, head.weight.shape[0]
        self.net = tribe_model._model
        self.predictor = getattr(self.net, "predictor", None)
        if self.predictor is None:
            raise UserError("this TRIBE v2 model has no .predictor module to attach a subcortical head to")
        self.pooler = getattr(self.net, "pooler", None)
        self.keeps: list[np.ndarray] = []
        self.hidden: list[np.ndarray] = []
        self.hooks: list[Any] = []

    def __enter__(self):
        self.hooks = [self.net.register_forward_pre_hook(self._batch),
                      self.predictor.register_forward_hook(self._input)]
        return self

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()
        return False

    def _batch(self, module, args):
        tr = float(getattr(getattr(self.tm, "data", None), "TR", 1.0))
        remove = bool(getattr(self.tm, "remove_empty_segments", True))
        keep = []
        for seg in getattr(args[0], "segments", []):
            for t in np.arange(0, seg.duration - 1e-2, tr):
                keep.append(not remove or len(seg.copy(offset=t, duration=tr).ns_events) > 0)
        self.keeps.append(np.array(keep, dtype=bool))

    def _input(self, module, inp, out):
        h = inp[0].detach().float()
        if h.ndim == 3 and h.shape[1] != self.n_in and h.shape[2] == self.n_in:
            h = h.transpose(1, 2)  # (b, t, C) → (b, C, t)
        if self.pooler is not None and h.ndim == 3 and h.shape[1] == self.n_in:
            h = self.pooler(h)  # the outputs' time pooling, applied to the head's input
        self.hidden.append(_rows(h.cpu().numpy(), self.n_in))

    def rows(self) -> tuple[np.ndarray, int]:
        """(hidden rows of the kept TRs, number of empty TRs removed)."""
        if len(self.keeps) != len(self.hidden):
            raise UserError(f"subcortical head: {len(self.hidden)} predictor calls for {len(self.keeps)} batches")
        kept, n_empty = [], 0
        for h, keep in zip(self.hidden, self.keeps):
            if len(keep) != h.shape[0]:
                raise UserError(f"subcortical head: {h.shape[0]} rows for {len(keep)} TRs in a batch")
            kept.append(h[keep])
            n_empty += int((~keep).sum())
        return (np.concatenate(kept) if kept else np.zeros((0, self.n_in), np.float32)), n_empty


def _rows(h: np.ndarray, n_in: int) -> np.ndarray:
    """(b, C, t) or (b, t, C) hidden states → (b·t, C) in the order predict() flattens outputs."""
    if h.ndim == 3 and h.shape[1] == n_in:
        return h.transpose(0, 2, 1).reshape(-1, n_in)
    if h.ndim == 3 and h.shape[2] == n_in:
        return h.reshape(-1, n_in)
    raise UserError(f"subcortical head expects {n_in} input features; the predictor input is {h.shape}")
