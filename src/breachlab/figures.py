"""The one way both parts make a matplotlib figure: a bare ``Figure``, never pyplot.

Why: ``matplotlib.use("Agg")`` inside a library function changes the backend of whoever
imported us (a notebook loses its inline plots), and pyplot keeps every figure alive in a
global registry until someone calls ``close``.  A ``matplotlib.figure.Figure`` made directly
has its own Agg canvas, draws and saves without a display, and is freed like any object.
Plot functions take ``axes=None, output_file=None`` (nilearn's convention) and call
:func:`new_figure` only when no axes were given.  Nothing here imports a part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def new_figure(figsize: tuple[float, float], nrows: int | None = None, ncols: int | None = None,
               **subplots_kw: Any):
    """A fresh Figure, or ``(figure, axes)`` when ``nrows``/``ncols`` are given (``Figure.subplots``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    if nrows is None and ncols is None:
        return fig
    return fig, fig.subplots(nrows or 1, ncols or 1, **subplots_kw)


def save_figure(fig, output_file: str | Path | None, *, dpi: int = 90, **savefig_kw: Any):
    """Write ``fig`` to ``output_file`` (parents created) when one is given; returns the figure."""
    if output_file is not None:
        Path(output_file).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output_file, dpi=dpi, facecolor="white", bbox_inches="tight", **savefig_kw)
    return fig
