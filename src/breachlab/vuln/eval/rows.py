"""Prediction rows (``predictions.jsonl``) → validated arrays and 0/1/unparsable verdicts.

Unparsable answers (``verdict`` null and no score) are kept as ``-1`` here; the summary
counts them as the *wrong* class in ``metrics`` (the honest, deployable number) and drops
them in ``metrics_parsed``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from breachlab.errors import UserError


def split_by_mode(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """Group prediction rows by decision mode; each group is summarised on its own."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[str(r.get("mode") or "unknown")].append(r)
    return dict(out)


def row_prediction(row: dict, threshold: float = 0.5) -> int | None:
    """1 / 0 / None (unparsable) for one row: logit mode thresholds ``p_vulnerable``."""
    verdict = row.get("verdict")
    v = None if verdict is None else str(verdict).strip().upper()
    if v not in (None, "VULNERABLE", "SAFE"):
        raise UserError(f"prediction {row.get('id')}: verdict must be VULNERABLE, SAFE or null, got {verdict!r}")
    if row.get("mode") == "logit" and row.get("p_vulnerable") is not None:
        return int(float(row["p_vulnerable"]) >= threshold)
    return None if v is None else int(v == "VULNERABLE")


def prepare_rows(rows: Sequence[dict], threshold: float) -> dict[str, Any]:
    """Validate rows and turn them into arrays; ``pred`` is -1 where unparsable."""
    if not rows:
        raise UserError("no predictions to evaluate (empty predictions file?)")
    n = len(rows)
    y, pred = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    score, echo = np.full(n, np.nan), np.zeros(n, dtype=bool)
    for i, r in enumerate(rows):
        rid = r.get("id", f"#{i}")
        if r.get("label") not in (0, 1) or isinstance(r.get("label"), bool):
            raise UserError(f"prediction {rid}: label must be 0 or 1, got {r.get('label')!r}")
        y[i] = r["label"]
        p = r.get("p_vulnerable")
        if p is not None:
            p = float(p)
            if not 0.0 <= p <= 1.0:
                raise UserError(f"prediction {rid}: p_vulnerable must be in [0, 1], got {p}")
            score[i] = p
        v = row_prediction(r, threshold)
        pred[i] = -1 if v is None else v
        echo[i] = bool(r.get("echo"))
    return {
        "ids": [str(r.get("id", i)) for i, r in enumerate(rows)], "y": y, "pred": pred,
        "score": score, "echo": echo,
        "cwe": [r.get("cwe") or "unknown" for r in rows],
        "source": [r.get("source") or "unknown" for r in rows],
        "pair": [None if r.get("pair_id") in (None, "") else str(r["pair_id"]) for r in rows],
    }


NO_PARSED_NOTE = "no answer could be parsed: only accuracy (0 under the unparsable-is-wrong policy) is meaningful"


def policy_predictions(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Predictions with unparsable answers (-1) turned into the wrong class."""
    return np.where(pred < 0, 1 - y, pred)
