"""Regions of interest on fsaverage5: atlas loading, ROI masks, ROI means, centroids.

The pure core (:func:`build_rois`, :func:`roi_means`, :func:`roi_centroids`) works on plain
arrays so that tests can check it against hand-computed answers; the edges read the atlas
(``$BREACHLAB_DATA/atlases``) and nilearn's bundled fsaverage5 mesh.  Vertex order is
0–10,241 left hemisphere, 10,242–20,483 right — the order of nilearn's fsaverage5 and of
TRIBE v2's output.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from breachlab.errors import UserError

N_VERTICES = 20484
N_HEMI = 10242
HEMIS = ("lh", "rh")


@dataclass(frozen=True)
class RoiSet:
    """Cortical ROI masks (bilateral and per hemisphere) plus ROIs no cortical model predicts."""

    atlas: str
    masks: dict[str, np.ndarray]  # name -> bool (20484,)
    labels_used: dict[str, list[str]]
    subcortical: tuple[str, ...] = ()
    descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def bilateral(self) -> list[str]:
        return [n for n in self.masks if not n.endswith(("_lh", "_rh"))]


def hemi_slice(hemi: str) -> slice:
    return slice(0, N_HEMI) if hemi == "lh" else slice(N_HEMI, N_VERTICES)


def normalize_label(name: str) -> str:
    """Fold whitespace/line breaks and drop hemisphere prefixes (lh_, rh_, Left , Right )."""
    name = " ".join(str(name).split())
    for prefix in ("lh_", "rh_", "Left ", "Right "):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def hemi_of_label(name: str) -> str | None:
    name = str(name)
    if name.startswith(("lh_", "Left ")):
        return "lh"
    if name.startswith(("rh_", "Right ")):
        return "rh"
    return None


def load_roi_definitions(path: str | Path | None = None) -> dict[str, Any]:
    """The ROI data file (default: the shipped ``brain/data/rois.yaml``)."""
    if path is None:
        text = resources.files("breachlab.brain").joinpath("data/rois.yaml").read_text(encoding="utf-8")
        where = "rois.yaml"
    else:
        if not Path(path).is_file():
            raise UserError(f"ROI definition file not found: {path}")
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    data = yaml.safe_load(text) or {}
    if not isinstance(data.get("rois"), dict) or not data["rois"]:
        raise UserError(f"{where}: expected a mapping 'rois: {{name: {{destrieux: [...], ...}}}}'")
    return data["rois"]


def build_rois(defs: dict[str, Any], labels: np.ndarray, names: dict[int, str], atlas: str) -> RoiSet:
    """Masks for every ROI in ``defs`` using the atlas ``labels`` (per vertex) and ``names`` (id → name).

    A label named in ``defs`` but absent from the atlas is an error (a typo would silently
    shrink an ROI otherwise).  Each ROI yields ``name`` (both hemispheres), ``name_lh`` and
    ``name_rh``; a label is assigned to the hemisphere its vertices sit in.
    """
    labels = np.asarray(labels)
    if labels.shape != (N_VERTICES,):
        raise UserError(f"atlas {atlas}: expected {N_VERTICES} labels, got shape {labels.shape}")
    by_name: dict[str, list[int]] = {}
    for lid, lname in names.items():
        if lname and int(lid) != 0:
            by_name.setdefault(normalize_label(lname), []).append(int(lid))
    masks: dict[str, np.ndarray] = {}
    used: dict[str, list[str]] = {}
    subcortical: list[str] = []
    desc: dict[str, str] = {}
    for roi, spec in defs.items():
        desc[roi] = str(spec.get("description", ""))
        if spec.get("subcortical"):
            subcortical.append(roi)
            continue
        wanted = spec.get(atlas)
        if not wanted:
            raise UserError(f"ROI {roi}: no '{atlas}' labels defined")
        missing = [w for w in wanted if normalize_label(w) not in by_name]
        if missing:
            raise UserError(f"ROI {roi}: label(s) not in atlas {atlas}: {', '.join(missing)}")
        ids = sorted(i for w in wanted for i in by_name[normalize_label(w)])
        mask = np.isin(labels, ids)
        if not mask.any():
            raise UserError(f"ROI {roi}: labels {wanted} cover no vertex of the {atlas} atlas")
        masks[roi] = mask
        used[roi] = [names[i] for i in ids]
        for hemi in HEMIS:
            hm = np.zeros(N_VERTICES, bool)
            hm[hemi_slice(hemi)] = mask[hemi_slice(hemi)]
            masks[f"{roi}_{hemi}"] = hm
    return RoiSet(atlas=atlas, masks=masks, labels_used=used, subcortical=tuple(subcortical), descriptions=desc)


def roi_means(maps: np.ndarray, rois: RoiSet, names: list[str] | None = None) -> dict[str, Any]:
    """Mean of ``maps[..., vertex]`` inside each ROI; subcortical ROIs map to ``None`` (not predicted).

    NaN vertices (e.g. a masked medial wall) are ignored.
    """
    maps = np.asarray(maps, dtype=float)
    if maps.shape[-1] != N_VERTICES:
        raise ValueError(f"maps must end with {N_VERTICES} vertices, got shape {maps.shape}")
    out: dict[str, Any] = {}
    for name in names or list(rois.masks):
        if name in rois.subcortical:
            out[name] = None
            continue
        out[name] = np.nanmean(maps[..., rois.masks[name]], axis=-1)
    for name in rois.subcortical:
        out.setdefault(name, None)
    return out


def roi_centroids(rois: RoiSet, coords: np.ndarray) -> dict[str, np.ndarray]:
    """Mean vertex coordinate of each ROI (use the pial mesh for anatomy)."""
    return {name: coords[mask].mean(axis=0) for name, mask in rois.masks.items()}


# --------------------------------------------------------------------------- I/O edges
@functools.lru_cache(maxsize=4)
def load_atlas(atlas: str = "destrieux") -> tuple[np.ndarray, dict[int, str]]:
    """(labels per vertex, {label id: name}) from ``atlases/fsaverage5_parcellations.npz``."""
    from breachlab.datadir import data_file

    npz = data_file("atlases", "fsaverage5_parcellations.npz")
    with np.load(npz) as data:
        if atlas not in data:
            raise UserError(f"atlas {atlas!r} not in {npz.name}; available: {', '.join(data.files)}")
        labels = data[atlas].astype(np.int32)
    names_all = json.loads(data_file("atlases", "fsaverage5_parcellation_labels.json").read_text(encoding="utf-8"))
    names = {int(k): v for k, v in names_all.get(atlas, {}).items() if v}
    return labels, names


def load_rois(atlas: str = "destrieux", path: str | Path | None = None) -> RoiSet:
    labels, names = load_atlas(atlas)
    return build_rois(load_roi_definitions(path), labels, names, atlas)


def cortex_mask(atlas: str = "destrieux") -> np.ndarray:
    """True on labelled cortex, False on the medial wall (label 0)."""
    labels, _ = load_atlas(atlas)
    return labels != 0


@functools.lru_cache(maxsize=4)
def fsaverage5_mesh(kind: str = "pial") -> tuple[np.ndarray, np.ndarray]:
    """(coords (20484, 3), faces (n, 3) with right-hemisphere indices offset) from nilearn's bundled fsaverage5."""
    from nilearn import datasets

    mesh = datasets.load_fsaverage("fsaverage5")[kind]
    left, right = mesh.parts["left"], mesh.parts["right"]
    coords = np.vstack([left.coordinates, right.coordinates]).astype(float)
    faces = np.vstack([left.faces, right.faces + N_HEMI]).astype(np.int64)
    if coords.shape[0] != N_VERTICES:
        raise UserError(f"nilearn fsaverage5 {kind} mesh has {coords.shape[0]} vertices, expected {N_VERTICES}")
    return coords, faces
