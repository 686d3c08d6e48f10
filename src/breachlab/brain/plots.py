"""Figures: inflated-surface maps (nilearn, bundled fsaverage5), side-by-side maps, ROI bars.

Every function takes ``output_file=None`` (and, where it draws one panel set, ``axes=None``)
like nilearn's plotting functions and returns the matplotlib figure.  Figures come from the
shared :func:`breachlab.figures.new_figure` (a bare ``Figure``: no pyplot, no backend switch).  Titles of
figures built from synthetic predictions start with "SYNTHETIC".
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from breachlab.figures import new_figure

VIEWS = (("left", "lateral"), ("left", "medial"), ("right", "lateral"), ("right", "medial"))
N_HEMI = 10242


@functools.lru_cache(maxsize=1)
def _surface():
    from nilearn import datasets

    fs = datasets.load_fsaverage("fsaverage5")
    sulc = datasets.load_fsaverage_data(mesh="fsaverage5", data_type="sulcal")
    return fs["inflated"], sulc


def _save(fig, output_file: str | Path | None, dpi: int = 90):
    from breachlab.figures import save_figure

    return save_figure(fig, output_file, dpi=dpi)


def symmetric_vmax(maps: Sequence[np.ndarray], pct: float = 99.0) -> float:
    vals = np.concatenate([np.abs(np.asarray(m)).ravel() for m in maps])
    v = float(np.percentile(vals[np.isfinite(vals)], pct)) if vals.size else 1.0
    return v if v > 0 else 1.0


def _draw_views(stat_map: np.ndarray, axes, vmax: float, cmap: str = "RdBu_r", titles: bool = True) -> None:
    from nilearn import plotting
    from nilearn.surface import SurfaceImage

    mesh, sulc = _surface()
    img = SurfaceImage(mesh=mesh, data={"left": np.asarray(stat_map[:N_HEMI], float),
                                        "right": np.asarray(stat_map[N_HEMI:], float)})
    for ax, (hemi, view) in zip(axes, VIEWS):
        plotting.plot_surf_stat_map(mesh, stat_map=img, hemi=hemi, view=view,
                                    bg_map=np.asarray(sulc.data.parts[hemi]).ravel(), axes=ax,
                                    colorbar=False, vmax=vmax, cmap=cmap)
        ax.set_box_aspect(None, zoom=1.35)
        if titles:
            ax.set_title(f"{hemi[0].upper()} {view}", fontsize=8, pad=-4)


def plot_surface_map(stat_map: np.ndarray, title: str = "", *, vmax: float | None = None, axes=None,
                     output_file: str | Path | None = None, cmap: str = "RdBu_r"):
    """Lateral and medial views of both hemispheres (4 panels) of one (20484,) map."""
    vmax = vmax or symmetric_vmax([stat_map])
    if axes is None:
        fig, axes = new_figure((11, 2.9), 1, 4, subplot_kw={"projection": "3d"})
        fig.subplots_adjust(wspace=0, left=0, right=0.92, top=0.85, bottom=0)
    else:
        fig = axes[0].figure
    _draw_views(stat_map, axes, vmax, cmap)
    _colorbar(fig, vmax, cmap)
    if title:
        fig.suptitle(title, fontsize=11, color="#b00000" if title.startswith("SYNTHETIC") else "black")
    return _save(fig, output_file)


def _colorbar(fig, vmax: float, cmap: str, rect=(0.93, 0.15, 0.012, 0.6)) -> None:
    import matplotlib as mpl

    cax = fig.add_axes(list(rect))
    mpl.colorbar.ColorbarBase(cax, cmap=mpl.colormaps[cmap], norm=mpl.colors.Normalize(-vmax, vmax))
    cax.tick_params(labelsize=7)


def plot_maps_grid(maps: Sequence[tuple[str, np.ndarray]], title: str = "", *, vmax: float | None = None,
                   output_file: str | Path | None = None, cmap: str = "RdBu_r"):
    """One row per (label, map), four views per row, one shared colour scale: side-by-side comparisons."""
    vmax = vmax or symmetric_vmax([m for _, m in maps])
    n = len(maps)
    fig, axes = new_figure((11, 2.5 * n + 0.6), n, 4, subplot_kw={"projection": "3d"}, squeeze=False)
    fig.subplots_adjust(wspace=0, hspace=0.05, left=0.1, right=0.92, top=1 - 0.8 / (2.5 * n + 0.6), bottom=0)
    for i, (row, (label, m)) in enumerate(zip(axes, maps)):
        _draw_views(m, row, vmax, cmap, titles=i == 0)
        row[0].text2D(-0.25, 0.5, label, transform=row[0].transAxes, fontsize=9, rotation=90, va="center", ha="center")
    _colorbar(fig, vmax, cmap, rect=(0.93, 0.3, 0.012, 0.4))
    if title:
        fig.suptitle(title, fontsize=11, color="#b00000" if title.startswith("SYNTHETIC") else "black")
    return _save(fig, output_file)


def plot_roi_bars(rows: list[dict[str, Any]], title: str = "", *, rois: Sequence[str] | None = None,
                  axes=None, output_file: str | Path | None = None):
    """Grouped bars: ROI on x, one bar per type, 95% CI whiskers; one panel per (path, language).

    ``rows`` are analysis ``roi_stats`` rows (keys path, language, type, roi, diff, ci_low,
    ci_high, q_fdr); subcortical rows (diff None) are listed as "not predicted" under the axis.
    """
    import matplotlib

    panels = sorted({(r["path"], r["language"]) for r in rows}, key=lambda k: (k[0] != "text", k))
    rois = list(rois or dict.fromkeys(r["roi"] for r in rows
                                      if r["diff"] is not None and not r["roi"].endswith(("_lh", "_rh"))))
    missing = list(dict.fromkeys(r["roi"] for r in rows if r["diff"] is None))
    types = list(dict.fromkeys(r["type"] for r in rows))
    if axes is None:
        fig, axes = new_figure((4.6 * len(panels), 3.8), 1, len(panels), squeeze=False, sharey=True)
        axes = axes[0]
    else:
        fig = axes[0].figure
    colors = matplotlib.colormaps["tab10"]
    width = 0.8 / max(1, len(types))
    for ax, (path, lang) in zip(axes, panels):
        by = {(r["type"], r["roi"]): r for r in rows if r["path"] == path and r["language"] == lang}
        for i, t in enumerate(types):
            xs, ys, lo, hi, stars = [], [], [], [], []
            for j, roi in enumerate(rois):
                r = by.get((t, roi))
                if r is None or r["diff"] is None:
                    continue
                xs.append(j + (i - (len(types) - 1) / 2) * width)
                ys.append(r["diff"])
                lo.append(r["diff"] - r["ci_low"] if np.isfinite(r["ci_low"]) else 0)
                hi.append(r["ci_high"] - r["diff"] if np.isfinite(r["ci_high"]) else 0)
                stars.append(r.get("q_fdr") is not None and r["q_fdr"] < 0.05)
            ax.bar(xs, ys, width=width, color=colors(i), label=t, yerr=[lo, hi], capsize=2, error_kw={"lw": 0.8})
            for x, y, s in zip(xs, ys, stars):
                if s:
                    ax.text(x, y, "*", ha="center", va="bottom" if y >= 0 else "top", fontsize=9)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(range(len(rois)))
        ax.set_xticklabels([r.replace("_", " ") for r in rois], fontsize=8)
        ax.set_title(f"{path} · {lang.upper()}", fontsize=10)
        if missing:
            ax.set_xlabel(f"{', '.join(missing)}: not predicted (cortex-only model)", fontsize=7, color="#555")
    axes[0].set_ylabel("type − baseline (ROI mean)")
    axes[-1].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title + "\n(bars: mean over variants; whiskers: bootstrap 95% CI; *: FDR q < 0.05)", fontsize=10,
                     color="#b00000" if title.startswith("SYNTHETIC") else "black")
    fig.tight_layout()
    return _save(fig, output_file)
