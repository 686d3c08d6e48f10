"""``metrics.csv`` and ``curves.png`` of a training run: one row per optimizer step.

The CSV is rewritten atomically as training goes (a run killed mid-write keeps the last
complete one); the plot follows nilearn's habit (``axes=None, output_file=None``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from breachlab.rundir import atomic_write_text

CURVE_FIELDS = ["step", "epoch", "train_loss", "val_loss", "lr", "tokens", "seconds",
                "val_verdict_nll", "val_verdict_acc", "val_verdict_auc"]


def write_curves(path: Path, history: list[dict]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CURVE_FIELDS)
    w.writeheader()
    w.writerows(history)
    return atomic_write_text(path / "metrics.csv", buf.getvalue())


def plot_curves(path: Path, axes: Any = None, output_file: str | Path | None = None) -> Path:
    """Train (per step) and validation loss against step, from ``metrics.csv``."""
    from breachlab.figures import new_figure, save_figure

    rows = list(csv.DictReader((path / "metrics.csv").open()))
    steps = [int(r["step"]) for r in rows]
    train = [float(r["train_loss"]) for r in rows]
    vsteps = [int(r["step"]) for r in rows if r["val_loss"]]
    val = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    verdict = [float(r["val_verdict_nll"]) for r in rows if r["val_loss"] and r.get("val_verdict_nll")]
    fig = None
    if axes is None:
        fig, axes = new_figure((7, 4), 1, 1)
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
        save_figure(fig, out, dpi=120)
    return out
