"""Benchmark-style scoring of scan detectors, per source: file-level P/R/MCC, flaw lines hit, score.

    python benchmarks/scan_data.py /tmp/sb/bench --split bench --juliet-per-cwe 5 ...
    python benchmarks/scan_score.py /tmp/sb/bench --calibration src/breachlab/data/scan/calibration.json \
        --before OLD_CALIBRATION.json --out docs/results/scan/bench-score.json

One model-free scan of the labelled tree (every tool, records kept; or ``--records`` of an
earlier one) gives each function's tool reports; each detector then decides per function:

* ``<tool>`` alone, and ``union`` of all tools: the function has a report of it;
* ``precise checks only``: a report of a check the calibration's trust calls precise;
* ``default (--no-model)``: precise checks, plus the calibration's ``no_model`` combiner on the
  functions only noisy checks flagged (what ``vuln scan --no-model`` decides);
* ``before (--no-model, v1 combiner)`` with ``--before``: the earlier calibration's combiner
  over cppcheck, flawfinder and clang-tidy (no GCC, no per-check trust).

Per file: flagged when any function is.  "Flaw lines hit": vulnerable files with a reported
line within ±2 of a labelled flaw line (Juliet's ``POTENTIAL FLAW`` lines, the lines a fix
changed).  The score follows the issue's benchmark: +5 per vulnerable file with a finding on
a flaw line or of the labelled CWE family, +2 per safe file with no finding, −1 for every other
finding (one finding per flagged function); the top-25-CWE bonus is left out (not defined
precisely enough to reproduce), so a perfect run scores 5 × vulnerable + 2 × safe files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breachlab.vuln.sample import normalise_cwe  # noqa: E402
from breachlab.vuln.scan import (
    calibration as calmod,  # noqa: E402
    candidates as cands,  # noqa: E402
)
from breachlab.vuln.scan.hybrid import static_cwe  # noqa: E402
from breachlab.vuln.scan.loso import hits_of  # noqa: E402

Decision = tuple[bool, list[int], "str | None"]  # flagged, lines it points at, CWE


def _tool(t: str) -> Callable[[dict], Decision]:
    def f(r: dict) -> Decision:
        hs = [h for h in hits_of(r) if h.tool == t]
        return bool(hs), [h.line for h in hs], static_cwe(hs)
    return f


def _union(r: dict) -> Decision:
    hs = hits_of(r)
    return bool(hs), [h.line for h in hs], static_cwe(hs)


def _default(cal: calmod.Calibration, precise_only: bool = False) -> Callable[[dict], Decision]:
    v = cal.variants["no_model"]

    def f(r: dict) -> Decision:
        hs = hits_of(r)
        precise, noisy = cal.trust.split(hs) if cal.trust else ([], hs)
        if precise:
            return True, [h.line for h in hs], static_cwe(precise) or static_cwe(hs)
        if precise_only or not noisy:
            return False, [], None
        ok = v.confidence(cands.features(noisy, None)) >= v.threshold
        return ok, [h.line for h in hs], static_cwe(hs)
    return f


def _before(cal: calmod.Calibration) -> Callable[[dict], Decision]:
    """The v1 ``no_model`` combiner: cppcheck, flawfinder, clang-tidy only, n_tools over 3."""
    v = cal.variants["no_model"]

    def f(r: dict) -> Decision:
        hs = [h for h in hits_of(r) if h.tool != "gcc"]
        if not hs:
            return False, [], None
        feats = cands.features(hs, None)
        feats["n_tools"] = len({h.tool for h in hs}) / 3.0
        return v.confidence(feats) >= v.threshold, [h.line for h in hs], static_cwe(hs)
    return f


def score_files(labels: dict, records: list[dict], decide: Callable[[dict], Decision],
                sources: set[str] | None = None) -> dict[str, Any]:
    by_file: dict[str, list[dict]] = {}
    for r in records:
        by_file.setdefault(r["path"], []).append(r)
    tp = fp = fn = tn = hit = score = findings = 0
    perfect = 0
    for f in labels["files"]:
        if sources is not None and f["source"] not in sources:
            continue
        decided = [d for d in (decide(r) for r in by_file.get(f["path"], [])) if d[0]]
        findings += len(decided)
        flaws = [ln for fn_ in f["functions"] for ln in fn_.get("flaw_lines", [])]
        fam = cands.cwe_family(normalise_cwe(f.get("cwe")))
        if f["file_label"]:
            perfect += 5
            on_line = [d for d in decided if any(abs(a - b) <= 2 for a in d[1] for b in flaws)]
            right = [d for d in decided if d in on_line or (fam not in ("?",) and cands.cwe_family(d[2]) == fam)]
            hit += bool(on_line)
            if decided:
                tp += 1
            else:
                fn += 1
            score += (5 if right else 0) - (len(decided) - (1 if right else 0))
        else:
            perfect += 2
            if decided:
                fp += 1
                score -= len(decided)
            else:
                tn += 1
                score += 2
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {"files": tp + fp + fn + tn, "vulnerable": tp + fn, "safe": fp + tn, "tp": tp, "fp": fp,
            "precision": round(tp / (tp + fp), 3) if tp + fp else 0.0,
            "recall": round(tp / (tp + fn), 3) if tp + fn else 0.0,
            "mcc": round((tp * tn - fp * fn) / den, 3) if den else 0.0,
            "flaw_line_files": hit, "findings": findings, "score": score, "perfect": perfect}


def detectors(records: list[dict], cal: calmod.Calibration, before: calmod.Calibration | None) -> dict[str, Callable]:
    tools = sorted({h["tool"] for r in records for h in r.get("hits", [])})
    out: dict[str, Callable] = {t: _tool(t) for t in tools}
    out["union"] = _union
    out["precise checks only"] = _default(cal, precise_only=True)
    out["default (--no-model)"] = _default(cal)
    if before is not None:
        out["before (--no-model, v1 combiner)"] = _before(before)
    return out


def table(res: dict[str, dict[str, Any]], source: str) -> str:
    lines = [f"| detector ({source}) | files flagged TP / FP (of V / S) | precision | recall | file MCC "
             f"| vulnerable files hit on a flaw line ±2 | findings | score (perfect) |", "|---" * 8 + "|"]
    for name, per in res.items():
        m = per[source]
        lines.append(f"| {name} | {m['tp']} / {m['fp']} (of {m['vulnerable']} / {m['safe']}) | {m['precision']:.3f} "
                     f"| {m['recall']:.3f} | {m['mcc']:.3f} | {m['flaw_line_files']} | {m['findings']} "
                     f"| {m['score']} ({m['perfect']}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--calibration", type=Path, required=True)
    ap.add_argument("--before", type=Path, help="an earlier calibration file (v1) for the 'before' row")
    ap.add_argument("--records", type=Path, help="records of an earlier model-free scan (no scan)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    labels = json.loads((a.root / "labels.json").read_text())
    cal = calmod.load(a.calibration)
    before = calmod.load(a.before) if a.before else None
    seconds = None
    if a.records:
        records = json.loads(a.records.read_text())["records"]
    else:
        from breachlab.vuln.scan.scanner import ScanConfig, scan

        t = time.perf_counter()
        report = scan(ScanConfig(paths=[str(a.root)], explain=False, keep_records=True, respect_gitignore=False,
                                 min_confidence=1.0), None)
        seconds = round(time.perf_counter() - t, 1)
        records = report.records
    sources = sorted({f["source"] for f in labels["files"]})
    res: dict[str, dict[str, Any]] = {}
    for name, d in detectors(records, cal, before).items():
        res[name] = {s: score_files(labels, records, d, {s}) for s in sources}
        res[name]["all"] = score_files(labels, records, d)
    doc = {"root": str(a.root), "calibration": str(a.calibration), "before": str(a.before) if a.before else None,
           "selection": {k: v for k, v in cal.selection.items() if k != "loso"}, "scan_seconds": seconds,
           "machine": f"{os.cpu_count()} CPU, {platform.processor() or platform.machine()}",
           "date": time.strftime("%Y-%m-%d", time.gmtime()), "metrics": res}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1))
    for s in ["all", *sources]:
        print(table(res, s), end="\n\n")


if __name__ == "__main__":
    main()
