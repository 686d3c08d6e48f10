"""Scan accuracy on held-out labelled code, every detector in one run.

    python benchmarks/scan_data.py /tmp/sb/calib --split calib --juliet-per-cwe 4 --sven-pairs 40 --sven-max-lines 80
    python benchmarks/scan_data.py /tmp/sb/bench --split bench --juliet-per-cwe 4 --sven-pairs 45 --sven-max-lines 150
    breachlab vuln calibrate /tmp/sb/calib --out /tmp/cal          # or the shipped calibration
    python benchmarks/scan_bench.py /tmp/sb/bench --calibration /tmp/cal/calibration.json --out /tmp/bench.json

One scan of the benchmark tree (split disjoint from the calibration one: other Juliet
families, SVEN val instead of train) with cppcheck, flawfinder, clang-tidy and the model on
every flagged function gives the records; from them, each detector's decisions:

* ``cppcheck`` / ``flawfinder`` / ``clang-tidy``: the tool flags the function;
* ``union``: any tool flags it (the candidates);
* ``hybrid (no model)``: the calibration's ``no_model`` combiner at its threshold;
* ``triage (default)``: the calibration's ``model`` combiner at its threshold (= ``vuln scan``);
* ``model on candidates``: the model's P ≥ 0.5 on flagged functions, no combiner.

With ``--deep`` the scan lets the model score every function (as ``vuln scan --deep``), which
leaves the rows above as they are and adds:

* ``model on every function``: the model's P ≥ 0.5, no tools, no combiner;
* ``deep (model on every function, deep calibration)``: the calibration's ``deep`` combiner
  at its threshold (= ``vuln scan --deep``);
* ``--deep before``: the ``model`` combiner on every function (what ``--deep`` did before it
  had a combiner of its own: a threshold fitted on candidates, applied to all functions).

Function level and file level (a file is flagged when any function in it is), with precision,
recall, MCC and false-positive rate; the FPR each calibrated detector's combiner promised (its
in-sample FPR on the calibration split) is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breachlab.vuln.scan import calibration as calmod  # noqa: E402
from breachlab.vuln.scan.calibrate import labelled_rows  # noqa: E402
from breachlab.vuln.scan.loso import precise_or_combiner  # noqa: E402
from breachlab.vuln.scan.scanner import ScanConfig, scan, scan_settings  # noqa: E402


def metrics(y: list[int], pred: list[bool]) -> dict[str, Any]:
    tp = sum(1 for a, b in zip(y, pred) if a and b)
    fp = sum(1 for a, b in zip(y, pred) if not a and b)
    fn = sum(1 for a, b in zip(y, pred) if a and not b)
    tn = sum(1 for a, b in zip(y, pred) if not a and not b)
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {"n": len(y), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": round(tp / (tp + fp), 3) if tp + fp else 0.0,
            "recall": round(tp / (tp + fn), 3) if tp + fn else 0.0,
            "mcc": round((tp * tn - fp * fn) / den, 3) if den else 0.0,
            "fpr": round(fp / (fp + tn), 3) if fp + tn else 0.0}


def lines_hit(rows: list[dict], name: str, flag: Callable[[dict], bool], near: int = 2) -> dict[str, int]:
    """Labelled flaw lines (Juliet ``POTENTIAL FLAW`` lines, lines a SVEN fix changed) that a
    detector points at within ±``near`` lines."""
    total = hit = 0
    for r in rows:
        if not r["label"] or not r.get("flaw_lines"):
            continue
        if name in ("cppcheck", "flawfinder", "clang-tidy"):
            pointed = r.get("tool_lines", {}).get(name, [])
        else:
            pointed = r["lines"] if flag(r) else []
        for ln in r["flaw_lines"]:
            total += 1
            hit += any(abs(ln - x) <= near for x in pointed)
    return {"labelled_lines": total, "hit": hit}


DEEP = "deep (model on every function, deep calibration)"
DEEP_BEFORE = "--deep before: model combiner on every function"
# detector → the calibration combiner it applies (its promised FPR is printed beside it)
VARIANT_OF = {"hybrid (no model)": "no_model", "triage (default)": "model", DEEP: "deep", DEEP_BEFORE: "model"}


def is_deep(records: list[dict]) -> bool:
    """Whether the records come from a deep scan (the model scored some unflagged function)."""
    return any(not r["candidate"] and r["p_llm"] is not None for r in records)


def detectors(cal: calmod.Calibration | None, deep: bool = False,
              records_have_hits: bool = False) -> dict[str, Callable[[dict], bool]]:
    f = lambda k: (lambda r: r["features"][k] > 0)  # noqa: E731
    out = {"cppcheck": f("cppcheck"), "flawfinder": f("flawfinder_level"), "clang-tidy": f("clang"),
           "union": lambda r: bool(r["candidate"]),
           "model on candidates": lambda r: bool(r["candidate"]) and (r["p_llm"] or 0.0) >= 0.5}
    if deep:
        out["model on every function"] = lambda r: r["p_llm"] is not None and r["p_llm"] >= 0.5
    if cal is not None:
        for name, key in VARIANT_OF.items():
            if key in cal.variants and (name not in (DEEP, DEEP_BEFORE) or deep):
                v = cal.variants[key]
                if name in (DEEP, DEEP_BEFORE):  # every function the model scored is a candidate (as in the scan)
                    out[name] = (lambda v: lambda r: (bool(r["candidate"]) or r["p_llm"] is not None)
                                 and v.confidence(r["features"]) >= v.threshold)(v)
                elif cal.trust is not None and records_have_hits:  # v2: precise checks pass straight through
                    out[name] = (lambda v, model: lambda r: precise_or_combiner(r, cal.trust, v, model))(
                        v, key != "no_model")
                else:
                    out[name] = (lambda v: lambda r: bool(r["candidate"])
                                 and v.confidence(r["features"]) >= v.threshold)(v)
    return out


def evaluate(labels: dict, records: list[dict], cal: calmod.Calibration | None) -> dict[str, Any]:
    rows = labelled_rows(labels, records)
    by_file: dict[str, list[dict]] = {}
    for r in records:
        by_file.setdefault(r["path"], []).append(r)
    out: dict[str, Any] = {}
    for name, flag in detectors(cal, is_deep(records), bool(records) and "hits" in records[0]).items():
        res = {}
        for subset in ("juliet", "sven", "all"):
            sel = [r for r in rows if subset == "all" or r["source"] == subset]
            files = [f for f in labels["files"] if subset == "all" or f["source"] == subset]
            res[subset] = {"function": metrics([r["label"] for r in sel], [flag(r) for r in sel]),
                           "lines": lines_hit(sel, name, flag),
                           "file": metrics([f["file_label"] for f in files],
                                           [any(flag(r) for r in by_file.get(f["path"], [])) for f in files])}
        out[name] = res
    return out


def table(result: dict[str, Any], level: str, subset: str, promised: dict[str, Any] | None = None) -> str:
    lines = [f"| detector ({level}, {subset}) | precision | recall | MCC | FP rate | promised FPR | TP | FP "
             f"| flaw lines hit ±2 |", "|---|---|---|---|---|---|---|---|---|"]
    for name, res in result.items():
        m, ln = res[subset][level], res[subset]["lines"]
        p = (promised or {}).get(VARIANT_OF.get(name, ""))
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['mcc']:.3f} | {m['fpr']:.3f} "
                     f"| {'—' if p is None else f'{p:.3f}'} | {m['tp']} | {m['fp']} "
                     f"| {ln['hit']} of {ln['labelled_lines']} |")
    return "\n".join(lines)


def subset_labels(labels: dict, juliet_cases: int | None) -> dict:
    """The first ``juliet_cases`` Juliet test cases per CWE (by name; both files of a case) and
    every SVEN file: a smaller, label-blind subset when the model is slow (None: all files)."""
    if juliet_cases is None:
        return labels
    keep, seen = [], {}
    for f in sorted(labels["files"], key=lambda f: f["path"]):
        if f["source"] == "juliet":
            case = f["path"].rsplit("_", 1)[0]
            cases = seen.setdefault(f["cwe"], [])
            if case not in cases:
                if len(cases) >= juliet_cases:
                    continue
                cases.append(case)
        keep.append(f)
    return {**labels, "files": keep}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--calibration", type=Path)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--backend", default="auto", help="auto, llama.cpp, transformers or none")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--juliet-cases", type=int, default=None,
                    help="only the first N Juliet test cases per CWE (by name; both files of a case) "
                         "and all SVEN files")
    ap.add_argument("--deep", action="store_true",
                    help="let the model score every function (records a score for unflagged ones too)")
    ap.add_argument("--records", type=Path, help="evaluate the records of an earlier run (no scan)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    labels = subset_labels(json.loads((a.root / "labels.json").read_text()), a.juliet_cases)
    cal = calmod.load(a.calibration) if a.calibration else None
    if a.records:  # e.g. the scan ran before the calibration was fitted
        old = json.loads(a.records.read_text())
        if cal is not None:  # refuses records made under other settings (one-line UserError)
            calmod.check(cal, old["settings"], "model" if old["model_id"] else "no_model")
        report_stats, records, model_id, seconds = old["scan_stats"], old["records"], old["model_id"], old["seconds"]
        if records and "tool_lines" not in records[0]:  # older records: per-tool lines from a model-free scan
            free = scan(ScanConfig(paths=[str(a.root)], explain=False, keep_records=True, respect_gitignore=False,
                                   min_confidence=1.0), None)
            per = {(r["path"], r["start_line"]): r["tool_lines"] for r in free.records}
            for r in records:
                r["tool_lines"] = per.get((r["path"], r["start_line"]), {})
        write(a, labels, cal, records, report_stats, model_id, seconds, old["settings"])
        return
    scorer = None
    if a.backend != "none":
        from breachlab.vuln.scan.cli import choose_adapter, make_scorer

        scorer = make_scorer(a.model, a.backend, choose_adapter(None, model=a.model), 4096, a.threads)
    a.root = a.root.resolve()
    paths = [str(a.root)] if a.juliet_cases is None else [f["path"] for f in labels["files"]]
    if a.juliet_cases is not None:
        os.chdir(a.root)  # reported paths relative to the tree, as in labels.json
    cfg = ScanConfig(paths=paths, explain=False, keep_records=True, respect_gitignore=False, min_confidence=1.0,
                     deep=a.deep)
    if cal is not None:  # the same settings the calibration was made under, or a clear refusal
        calmod.check(cal, scan_settings(cfg, scorer), "model" if scorer else "no_model")
    t = time.perf_counter()
    report = scan(cfg, scorer)
    write(a, labels, cal, report.records, report.stats, scorer.model_id if scorer else None,
          round(time.perf_counter() - t, 1), scan_settings(cfg, scorer))


def write(a: argparse.Namespace, labels: dict, cal: calmod.Calibration | None, records: list[dict], stats: dict,
          model_id: str | None, seconds: float, settings: dict) -> None:
    result = evaluate(labels, records, cal)
    doc = {"root": str(a.root), "calibration": str(a.calibration) if a.calibration else None,
           "promised_fpr": ({k: v.fit.get("at_threshold", {}).get("fpr") for k, v in cal.variants.items()}
                            if cal else None),
           "target_fpr": cal.target_fpr if cal else None, "model_id": model_id, "settings": settings,
           "seconds": seconds, "scan_stats": stats, "machine": f"{os.cpu_count()} CPU",
           "loadavg": [round(x, 1) for x in os.getloadavg()], "metrics": result, "records": records}
    a.out.write_text(json.dumps(doc, indent=1))
    promised = doc["promised_fpr"]
    for level in ("function", "file"):
        print(table(result, level, "all", promised), end="\n\n")
    for subset in ("juliet", "sven"):
        print(table(result, "function", subset, promised), end="\n\n")
    if is_deep(records) and cal is not None and "deep" not in cal.variants:
        print(f"note: {a.calibration} has no deep combiner (re-run `breachlab vuln calibrate`): no deep row")
    print(f"{doc['seconds']} s; calibration promised FPR ≤ {doc['target_fpr']} "
          f"(calibration split: {doc['promised_fpr']})")


if __name__ == "__main__":
    main()
