"""Scan accuracy on labelled real code: LLM-only vs cppcheck vs flawfinder vs hybrid.

    python benchmarks/scan_data.py /tmp/sb/calib --split calib --juliet-per-cwe 1 --sven-pairs 12 --sven-max-lines 60
    python benchmarks/scan_data.py /tmp/sb/bench --split bench --juliet-per-cwe 2 --sven-pairs 44 --sven-max-lines 60
    python benchmarks/scan_bench.py calibrate /tmp/sb/calib --out /tmp/weights.json
    python benchmarks/scan_bench.py bench /tmp/sb/bench --weights /tmp/weights.json --out /tmp/bench.json

``calibrate`` fits the hybrid combiner (logistic regression on :func:`hybrid.features`) on
the calibration split only; ``bench`` applies those weights to the disjoint benchmark split
and reports function- and file-level P/R/F1 with MCC and balanced accuracy (a set that is
mostly vulnerable rewards "flag everything" with a high F1; MCC and balanced accuracy do not).
Everything is one run of the real scanner (embedded model via llama.cpp, explanations off).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breachlab.vuln.scan import hybrid  # noqa: E402
from breachlab.vuln.scan.scanner import ScanConfig, scan  # noqa: E402

FEATURES = ("llm_logit", "cppcheck", "flawfinder_level", "flawfinder_count")


def binary_metrics(y: list[int], pred: list[int]) -> dict:
    tp = sum(1 for a, b in zip(y, pred) if a and b)
    fp = sum(1 for a, b in zip(y, pred) if not a and b)
    fn = sum(1 for a, b in zip(y, pred) if a and not b)
    tn = sum(1 for a, b in zip(y, pred) if not a and not b)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    spec = tn / (tn + fp) if tn + fp else 0.0
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {"n": len(y), "pos": tp + fn, "tp": tp, "fp": fp, "tn": tn, "fn": fn, "precision": round(p, 3),
            "recall": round(r, 3), "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0,
            "mcc": round((tp * tn - fp * fn) / den, 3) if den else 0.0, "balanced_acc": round((r + spec) / 2, 3)}


def auc(y: list[int], s: list[float]) -> float | None:
    pos = [v for v, t in zip(s, y) if t]
    neg = [v for v, t in zip(s, y) if not t]
    if not pos or not neg:
        return None
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return round(wins / (len(pos) * len(neg)), 3)


def run(root: Path, tools: list[str]) -> tuple[list[dict], dict]:
    # evidence stays out of the prompt: one model pass gives the LLM-only score and the
    # hybrid features, so calibration and benchmark see the same model input
    cfg = ScanConfig(paths=[str(root)], hybrid=tools, explain=False, min_confidence=1.0, keep_records=True,
                     respect_gitignore=False, evidence_in_prompt=False)
    from breachlab.vuln.backends import load_backend
    from breachlab.vuln.scan.scanner import BackendScorer

    global _SCORER
    if _SCORER is None:
        _SCORER = BackendScorer(load_backend("embedded", backend="llama.cpp"))
    r = scan(cfg, _SCORER)
    return r.records, r.stats


_SCORER = None


def attach(labels: dict, records: list[dict], root: Path) -> tuple[list[dict], dict[str, list[dict]]]:
    """Labelled functions with their record, and all records grouped by file."""
    by_file: dict[str, list[dict]] = {}
    for rec in records:
        by_file.setdefault(rec["path"], []).append(rec)
    rows = []
    for f in labels["files"]:
        recs = by_file.get(f["path"], [])
        for fn in f["functions"]:
            if fn["start_line"] is None:  # SVEN: the file is one function; take the widest unit
                rec = max(recs, key=lambda r: r["end_line"] - r["start_line"], default=None)
            else:
                rec = next((r for r in recs if r["start_line"] == fn["start_line"]), None)
            if rec is not None:
                rows.append({"label": fn["label"], "source": f["source"], "path": f["path"], **rec})
    return rows, by_file


def predictors(weights: dict | None, plain: dict | None) -> dict:
    def llm(rec: dict) -> float:
        return plain[(rec["path"], rec["start_line"])] if plain else rec["p_llm"]

    preds = {
        "llm_only": lambda rec: llm(rec),
        "cppcheck": lambda rec: rec["features"]["cppcheck"],
        "flawfinder": lambda rec: 1.0 if rec["features"]["flawfinder_level"] > 0 else 0.0,
    }
    if weights:
        preds["hybrid"] = lambda rec: 1 / (1 + math.exp(-(weights["bias"] + sum(weights[k] * rec["features"][k] for k in FEATURES))))
    return preds


def evaluate(labels: dict, records: list[dict], weights: dict | None, plain: dict | None, thr: float = 0.5) -> dict:
    rows, by_file = attach(labels, records, Path("."))
    out: dict = {}
    for name, fn in predictors(weights, plain).items():
        res = {}
        for subset in ("juliet", "sven", "all"):
            sel = [r for r in rows if subset == "all" or r["source"] == subset]
            y = [r["label"] for r in sel]
            s = [fn(r) for r in sel]
            fl = [f for f in labels["files"] if subset == "all" or f["source"] == subset]
            fy = [f["file_label"] for f in fl]
            fs = [max((fn(r) for r in by_file.get(f["path"], [])), default=0.0) for f in fl]
            res[subset] = {"function": binary_metrics(y, [int(v >= thr) for v in s]) | {"auc": auc(y, s)},
                           "file": binary_metrics(fy, [int(v >= thr) for v in fs]) | {"auc": auc(fy, fs)}}
        out[name] = res
    return out


def calibrate(root: Path, out: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    labels = json.loads((root / "labels.json").read_text())
    t = time.perf_counter()
    records, stats = run(root, list(hybrid.TOOLS))
    rows, _ = attach(labels, records, root)
    X = [[r["features"][k] for k in FEATURES] for r in rows]
    y = [r["label"] for r in rows]
    lr = LogisticRegression(C=1.0, max_iter=1000).fit(X, y)
    weights = {"bias": round(float(lr.intercept_[0]), 4), **{k: round(float(w), 4) for k, w in zip(FEATURES, lr.coef_[0])}}
    res = {"weights": weights, "n_functions": len(rows), "n_positive": sum(y), "scan_stats": stats,
           "seconds": round(time.perf_counter() - t, 1), "in_sample": evaluate(labels, records, weights, None)["hybrid"]["all"]}
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


def bench(root: Path, weights_file: Path, out: Path) -> None:
    labels = json.loads((root / "labels.json").read_text())
    weights = json.loads(weights_file.read_text())["weights"]
    t = time.perf_counter()
    records, stats = run(root, list(hybrid.TOOLS))
    ps = sorted(r["p_llm"] for r in records)
    res = {"weights": weights, "sven": labels.get("sven"), "scan": stats,
           "n_files": len(labels["files"]), "n_labelled_functions": len(attach(labels, records, root)[0]),
           "seconds": round(time.perf_counter() - t, 1), "metrics": evaluate(labels, records, weights, None),
           "llm_p_deciles": [round(ps[int(i * (len(ps) - 1) / 10)], 4) for i in range(11)]}
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("calibrate", "bench"))
    ap.add_argument("root", type=Path)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.mode == "calibrate":
        calibrate(a.root, a.out)
    else:
        bench(a.root, a.weights, a.out)


if __name__ == "__main__":
    main()
