"""A calibration: combiner weights and a decision threshold, fitted for a target false-positive
rate, with the exact scan settings they hold for.

Why a file and not constants: weights fitted on one prompt, evidence layout, tool set or
model do not transfer to another, so the file records those settings and :func:`check`
refuses to use it under different ones.  It also records hashes of the data it was fitted
on, so anyone can tell which calibration produced a result and refit it
(``breachlab vuln calibrate``).

Since version 2 a file also holds the per-check ``trust`` (:mod:`.trust`): reports of checks
measured precise become findings directly, and the combiners below are fitted on, and only
decide, the functions no precise check fired in (the noisy candidates).

Up to three variants are fitted from the same run: ``model`` (tool features + the model's
logit), ``no_model`` (tool features only, for ``--no-model``) and ``deep`` (the same features
fitted on *every* function, the model having scored the unflagged ones too, for ``--deep``).
The combiner is a logistic regression; the threshold is the lowest score whose
false-positive rate on the calibration functions is at most the target (functions that are
not candidates — no tool flagged them, and for ``deep`` the model could not score them —
count as negatives the scan never reports).  Files made before ``deep`` existed have no such
variant: ``--deep`` refuses them rather than apply ``model``'s threshold to functions it was
not fitted on.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from breachlab.errors import UserError
from breachlab.vuln.scan.trust import Trust

FORMAT = "breachlab-scan-calibration"
VERSION = 2  # 2: per-check trust (precise checks pass straight through)


@dataclass(frozen=True)
class Variant:
    """Weights (``bias`` + one per feature) and the threshold of one combiner."""

    features: tuple[str, ...]
    weights: dict[str, float]
    threshold: float
    fit: dict[str, Any] = field(default_factory=dict)

    def confidence(self, feats: dict[str, float]) -> float:
        z = self.weights.get("bias", 0.0) + sum(self.weights.get(k, 0.0) * feats.get(k, 0.0) for k in self.features)
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


@dataclass(frozen=True)
class Calibration:
    """A loaded calibration file (see the module docstring)."""

    settings: dict[str, Any]
    variants: dict[str, Variant]
    data: dict[str, Any] = field(default_factory=dict)
    target_fpr: float = 0.10
    created: str = ""
    path: str = ""
    trust: Trust | None = None
    selection: dict[str, Any] = field(default_factory=dict)

    def variant(self, name: str) -> Variant:
        if name not in self.variants:
            hint = (": re-run `breachlab vuln calibrate` (it fits `deep` by default), or give --min-confidence"
                    if name == "deep" else "")
            raise UserError(f"calibration {self.path or '?'} has no {name!r} combiner "
                            f"(has {', '.join(self.variants)}){hint}")
        return self.variants[name]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "created": self.created, "target_fpr": self.target_fpr,
                "settings": self.settings, "data": self.data,
                **({"trust": self.trust.to_dict()} if self.trust else {}),
                **({"selection": self.selection} if self.selection else {}),
                "variants": {k: {**asdict(v), "features": list(v.features)} for k, v in self.variants.items()}}


def load(path: Path) -> Calibration:
    """Read a calibration file; a malformed one is a one-line :class:`UserError`."""
    try:
        d = json.loads(Path(path).read_text("utf-8"))
        if d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        if int(d.get("version", 0)) > VERSION:
            raise ValueError(f"made by a newer breachlab (version {d['version']} > {VERSION})")
        variants = {k: Variant(tuple(v["features"]), {kk: float(vv) for kk, vv in v["weights"].items()},
                               float(v["threshold"]), v.get("fit", {})) for k, v in d["variants"].items()}
        return Calibration(d["settings"], variants, d.get("data", {}), float(d.get("target_fpr", 0.1)),
                           d.get("created", ""), str(path), Trust.from_dict(d.get("trust")), d.get("selection", {}))
    except FileNotFoundError:
        raise UserError(f"calibration {path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"calibration {path}: unreadable ({exc})") from None


def save(cal: Calibration, path: Path) -> Path:
    from breachlab.rundir import atomic_write_text

    atomic_write_text(Path(path), json.dumps(cal.to_dict(), indent=1, sort_keys=False) + "\n")
    return Path(path)


def check(cal: Calibration, settings: dict[str, Any], variant: str) -> Variant:
    """The ``variant`` combiner if ``cal`` was made under ``settings``; else a one-line error."""
    keys = [k for k in settings if k != "model_id" or variant != "no_model"]
    diff = [k for k in keys if cal.settings.get(k) != settings[k]]
    if diff:
        k = diff[0]
        raise UserError(f"calibration {cal.path or '?'} was made with {k}={cal.settings.get(k)!r}, this scan uses "
                        f"{k}={settings[k]!r}: refit it with `breachlab vuln calibrate` under these settings")
    return cal.variant(variant)


# ---------------------------------------------------------------------------------------
# fitting (pure)
# ---------------------------------------------------------------------------------------
def fit_logistic(X: Sequence[Sequence[float]], y: Sequence[int], l2: float = 1.0,
                 iters: int = 50) -> tuple[float, list[float]]:
    """L2-regularised logistic regression by Newton's method; (bias, weights).

    Small and dependency-free on purpose: the calibration sets are a few hundred rows and
    the fit must be bit-for-bit reproducible from the file's data hashes.
    """
    import numpy as np

    A = np.hstack([np.ones((len(X), 1)), np.asarray(X, dtype=np.float64).reshape(len(X), -1)])
    t = np.asarray(y, dtype=np.float64)
    w = np.zeros(A.shape[1])
    reg = np.full(A.shape[1], l2)
    reg[0] = 1e-6  # the bias is not shrunk
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ w, -50, 50)))
        g = A.T @ (p - t) + reg * w
        H = (A * (p * (1 - p))[:, None]).T @ A + np.diag(reg)
        step = np.linalg.solve(H, g)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(w[0]), [float(v) for v in w[1:]]


def threshold_for_fpr(scores: Sequence[float | None], labels: Sequence[int], target: float) -> tuple[float, dict]:
    """Lowest threshold whose FPR ≤ ``target``; ``None`` scores are never flagged.

    Returns the threshold and the confusion counts it gives on these rows.
    """
    neg = sum(1 for y in labels if not y)
    cands = sorted({s for s in scores if s is not None}, reverse=True)
    best = 1.0 + 1e-9
    for t in cands:  # descending: FP only grows, keep the last one within the target
        fp = sum(1 for s, y in zip(scores, labels) if s is not None and s >= t and not y)
        if neg and fp / neg > target:
            break
        best = t
    return best, confusion(scores, labels, best)


def confusion(scores: Sequence[float | None], labels: Sequence[int], thr: float) -> dict[str, Any]:
    pred = [s is not None and s >= thr for s in scores]
    tp = sum(1 for p, y in zip(pred, labels) if p and y)
    fp = sum(1 for p, y in zip(pred, labels) if p and not y)
    fn = sum(1 for p, y in zip(pred, labels) if not p and y)
    tn = sum(1 for p, y in zip(pred, labels) if not p and not y)
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
            "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
            "fpr": round(fp / (fp + tn), 4) if fp + tn else 0.0,
            "mcc": round((tp * tn - fp * fn) / den, 4) if den else 0.0}


def fit_variant(rows: Sequence[dict[str, Any]], features: Sequence[str], target_fpr: float,
                l2: float = 1.0) -> Variant:
    """Fit one combiner on ``rows`` = [{"label", "features", "candidate"}].

    Only candidates (functions a tool flagged, or every function in deep mode) are fitted
    and scored; the others count as never flagged when the threshold is chosen.
    """
    cand = [r for r in rows if r["candidate"]]
    if len({r["label"] for r in cand}) < 2:
        raise UserError("calibration data: the candidates need both vulnerable and safe functions")
    bias, w = fit_logistic([[r["features"][k] for k in features] for r in cand], [r["label"] for r in cand], l2)
    v = Variant(tuple(features), {"bias": round(bias, 6), **{k: round(x, 6) for k, x in zip(features, w)}}, 0.5)
    scores = [v.confidence(r["features"]) if r["candidate"] else None for r in rows]
    thr, counts = threshold_for_fpr(scores, [r["label"] for r in rows], target_fpr)
    fit = {"n_functions": len(rows), "n_positive": sum(r["label"] for r in rows), "n_candidates": len(cand),
           "l2": l2, "at_threshold": counts}
    return Variant(tuple(features), v.weights, math.floor(thr * 1e6) / 1e6, fit)  # floor: the row at thr stays in
