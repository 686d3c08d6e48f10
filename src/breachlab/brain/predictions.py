"""The predictions store: the contract between an encoder and the analysis.

A predictions directory (a run directory of ``brain synth`` or, next, ``brain encode``)::

    <dir>/corpus.json                        the messages the predictions are for
    <dir>/predictions/index.json             store metadata + one entry per (stimulus, path)
    <dir>/predictions/<id>.<path>.npy        float32 array (n_TR, 20484) on fsaverage5
    <dir>/predictions/<id>.<path>.subcortical.npy   (n_TR, n_labels), only with has_subcortical

``index.json``::

    {"format": "breachlab.brain.predictions/1",
     "model": "facebook/tribev2" | "SYNTHETIC ...", "synthetic": false,
     "mesh": "fsaverage5", "n_vertices": 20484, "tr_s": 1.0, "offset_s": 5.0,
     "has_subcortical": false,
     "entries": [{"stimulus_id", "path": "text"|"screenshot"|"audio", "type", "language",
                  "variant", "presentation", "file", "n_tr"}]}

Rows are TRs (``tr_s`` apart, already shifted by ``offset_s`` for the haemodynamic lag, as
TRIBE v2 does); columns are vertices, left hemisphere first.  :func:`load_store` checks every
file (shape, vertex count, NaN/inf, dtype, duplicates) and names the entry that is wrong.
An encoder writes through :class:`StoreWriter`, so the format lives in one place.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from breachlab.brain.corpus import Message
from breachlab.errors import UserError

FORMAT = "breachlab.brain.predictions/1"
N_VERTICES = 20484
PATHS = ("text", "screenshot", "audio")
SYNTHETIC_MODEL = "SYNTHETIC (breachlab brain synth: planted effects, not TRIBE v2)"


class PredictionStoreError(UserError):
    """A predictions directory is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Entry:
    stimulus_id: str
    path: str
    type: str
    language: str
    variant: int
    presentation: str
    file: str
    n_tr: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.stimulus_id, self.path)


@dataclass
class StoreMeta:
    model: str
    synthetic: bool = False
    mesh: str = "fsaverage5"
    n_vertices: int = N_VERTICES
    tr_s: float = 1.0
    offset_s: float = 5.0
    has_subcortical: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Store:
    root: Path
    meta: StoreMeta
    entries: list[Entry]
    arrays: dict[tuple[str, str], np.ndarray]
    #: (n_TR, n_labels) arrays of a user-supplied subcortical head, when ``meta.has_subcortical``
    subcortical: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    @property
    def subcortical_labels(self) -> list[str]:
        """Column names of the subcortical arrays (the head's ``labels``), or [] when unknown."""
        sub = (self.meta.notes or {}).get("subcortical")
        return [str(x) for x in sub.get("labels", [])] if isinstance(sub, dict) else []

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def array(self, entry: Entry) -> np.ndarray:
        return self.arrays[entry.key]

    @property
    def title_tag(self) -> str:
        """'SYNTHETIC — ' for synthetic predictions: every figure/report title starts with it."""
        return "SYNTHETIC — " if self.meta.synthetic else ""


def validate_array(arr: Any, where: str) -> np.ndarray:
    """Check one prediction array; returns it as float32 or raises PredictionStoreError."""
    if not isinstance(arr, np.ndarray):
        raise PredictionStoreError(f"{where}: expected a numpy array, got {type(arr).__name__}")
    if arr.ndim != 2:
        raise PredictionStoreError(f"{where}: expected shape (n_TR, {N_VERTICES}), got {arr.shape}")
    if arr.shape[1] != N_VERTICES:
        raise PredictionStoreError(f"{where}: expected {N_VERTICES} fsaverage5 vertices, got {arr.shape[1]}"
                                   + (" (transposed?)" if arr.shape[0] == N_VERTICES else ""))
    if arr.shape[0] < 1:
        raise PredictionStoreError(f"{where}: no time points (n_TR = 0)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise PredictionStoreError(f"{where}: expected floating-point values, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr)
    if bad.any():
        t, v = np.argwhere(bad)[0]
        raise PredictionStoreError(f"{where}: {int(bad.sum())} NaN/inf value(s), first at TR {t}, vertex {v}")
    return arr.astype(np.float32, copy=False)


class StoreWriter:
    """Write predictions one (stimulus, path) at a time, then :meth:`close` writes the index."""

    def __init__(self, root: str | Path, meta: StoreMeta):
        self.root = Path(root)
        self.meta = meta
        self.entries: list[Entry] = []
        (self.root / "predictions").mkdir(parents=True, exist_ok=True)

    def add(self, msg: Message, path: str, arr: np.ndarray) -> Entry:
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        arr = validate_array(np.asarray(arr), f"{msg.id}/{path}")
        name = f"{msg.id}.{path}.npy"
        np.save(self.root / "predictions" / name, arr)
        entry = Entry(msg.id, path, msg.type, msg.language, msg.variant, msg.presentation, name, int(arr.shape[0]))
        self.entries.append(entry)
        return entry

    def close(self) -> Path:
        from breachlab.rundir import atomic_write_json

        index = {"format": FORMAT, **asdict(self.meta), "entries": [asdict(e) for e in self.entries]}
        return atomic_write_json(self.root / "predictions" / "index.json", index)


def load_store(root: str | Path) -> Store:
    """Read and validate a predictions directory (the folder holding ``predictions/index.json``)."""
    root = Path(root)
    index_path = root / "predictions" / "index.json"
    if not index_path.is_file():
        raise PredictionStoreError(f"{root}: not a predictions directory (no predictions/index.json); "
                                   "make one with `breachlab brain synth` or the encoder")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PredictionStoreError(f"{index_path}: invalid JSON ({exc})") from None
    if index.get("format") != FORMAT:
        raise PredictionStoreError(f"{index_path}: format {index.get('format')!r}, expected {FORMAT!r}")
    meta_keys = set(StoreMeta.__dataclass_fields__)
    try:
        meta = StoreMeta(**{k: v for k, v in index.items() if k in meta_keys})
    except TypeError as exc:
        raise PredictionStoreError(f"{index_path}: bad metadata ({exc})") from None
    if meta.n_vertices != N_VERTICES or meta.mesh != "fsaverage5":
        raise PredictionStoreError(f"{index_path}: mesh {meta.mesh} with {meta.n_vertices} vertices; "
                                   f"the analysis needs fsaverage5 ({N_VERTICES})")
    if not meta.tr_s or meta.tr_s <= 0:
        raise PredictionStoreError(f"{index_path}: tr_s must be positive")
    raw_entries = index.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise PredictionStoreError(f"{index_path}: no entries")
    entries, arrays = [], {}
    for i, raw in enumerate(raw_entries):
        where = f"{index_path.name} entries[{i}]"
        try:
            e = Entry(**raw)
        except TypeError as exc:
            raise PredictionStoreError(f"{where}: {exc}") from None
        if e.path not in PATHS:
            raise PredictionStoreError(f"{where}: path {e.path!r} is not one of {', '.join(PATHS)}")
        if e.key in arrays:
            raise PredictionStoreError(f"{where}: duplicate entry for {e.stimulus_id}/{e.path}")
        f = root / "predictions" / e.file
        if not f.is_file():
            raise PredictionStoreError(f"{where}: missing file {f}")
        try:
            arr = np.load(f, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise PredictionStoreError(f"{f}: unreadable ({exc})") from None
        arr = validate_array(arr, f"{e.stimulus_id}/{e.path} ({e.file})")
        if arr.shape[0] != e.n_tr:
            raise PredictionStoreError(f"{where}: index says n_tr={e.n_tr} but the file has {arr.shape[0]} TRs")
        entries.append(e)
        arrays[e.key] = arr
    subcortical = {}
    if meta.has_subcortical:
        for e in entries:
            f = root / "predictions" / f"{e.stimulus_id}.{e.path}.subcortical.npy"
            if f.is_file():
                sub = np.load(f, allow_pickle=False)
                if sub.ndim != 2 or sub.shape[0] != e.n_tr or not np.isfinite(sub).all():
                    raise PredictionStoreError(f"{f}: expected finite (n_TR={e.n_tr}, n_labels) values, "
                                               f"got {sub.shape}")
                subcortical[e.key] = sub.astype(np.float32, copy=False)
    return Store(root=root, meta=meta, entries=entries, arrays=arrays, subcortical=subcortical)
