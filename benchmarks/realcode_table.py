"""The cross-domain table of docs/benchmarks.md, recomputed from committed predictions.

    python benchmarks/realcode_table.py docs/results/realcode-qwen2.5-coder-0.5b

Each sub-folder of a results folder is one arm (zero-shot, sft, pair-margin, ...) with the
``predictions.jsonl`` of one ``breachlab vuln eval`` run.  For every arm and every source
(Juliet held-out, SVEN, PairVul test) it prints ROC-AUC with its 95 % pair-cluster bootstrap
CI, MCC at the run's threshold, PrimeVul's P-C / P-V / P-B / P-R, VD-S (false-negative rate
at FPR <= 0.5 %) and, as a threshold-free pair number, the share of pairs whose vulnerable
half scores above its fix ("ordered"; 0.5 = chance).  Nothing is typed in: the numbers come
from the project's own ``summarize``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

SOURCES = ("juliet", "sven", "pairvul")


def ordered_pairs(rows: list[dict]) -> tuple[float | None, int]:
    """Share of complete pairs whose vulnerable half has the higher p_vulnerable (ties count half)."""
    halves: dict[str, dict[int, float]] = defaultdict(dict)
    for r in rows:
        if r.get("pair_id") and r.get("p_vulnerable") is not None:
            halves[r["pair_id"]][int(r["label"])] = float(r["p_vulnerable"])
    full = [h for h in halves.values() if len(h) == 2]
    if not full:
        return None, 0
    wins = sum(1.0 if h[1] > h[0] else 0.5 if h[1] == h[0] else 0.0 for h in full)
    return wins / len(full), len(full)


def arm_rows(folder: Path) -> dict[str, list[dict]]:
    """The logit-mode rows of one arm, per source."""
    by: dict[str, list[dict]] = defaultdict(list)
    for line in (folder / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("mode") == "logit":
            by[row["source"]].append(row)
    return by


def cell(rows: list[dict], n_boot: int) -> dict:
    """The numbers of one (arm, source) cell."""
    from breachlab.vuln.summary import summarize

    s = summarize(rows, n_boot=n_boot)
    roc = s["auc"]["roc_auc"] if s.get("auc") else None
    pw = s.get("pairwise") or {}
    vds = (s.get("low_fpr") or {}).get("vd_s") or {}
    order, n_pairs = ordered_pairs(rows)
    return {
        "n": len(rows),
        "roc_auc": roc["value"] if roc else None,
        "roc_ci": roc.get("ci") if roc else None,
        "mcc": s["metrics"]["mcc"]["value"],
        "pairs": pw.get("n_pairs", 0),
        **{k: (pw.get(k) or {}).get("value") for k in ("P-C", "P-V", "P-B", "P-R")},
        "vd_s": vds.get("value"),
        "ordered": order,
        "threshold": s["threshold"],
    }


def table(results: Path, n_boot: int = 1000) -> dict[str, dict[str, dict]]:
    """{arm: {source: cell}} for every arm folder under ``results``."""
    out: dict[str, dict[str, dict]] = {}
    for arm in sorted(p for p in results.iterdir() if (p / "predictions.jsonl").is_file()):
        by = arm_rows(arm)
        out[arm.name] = {src: cell(by[src], n_boot) for src in SOURCES if by.get(src)}
    return out


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(rows: dict[str, dict[str, dict]]) -> str:
    lines = ["| arm | source | n (pairs) | ROC-AUC [95% CI] | MCC @0.5 | P-C | P-V | P-B | P-R | VD-S | ordered |",
             "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|"]
    for arm, cells in rows.items():
        for src, c in cells.items():
            ci = f" [{_f(c['roc_ci'][0])}, {_f(c['roc_ci'][1])}]" if c["roc_ci"] else ""
            lines.append(f"| {arm} | {src} | {c['n']} ({c['pairs']}) | {_f(c['roc_auc'])}{ci} | {_f(c['mcc'])} | "
                         f"{_f(c['P-C'])} | {_f(c['P-V'])} | {_f(c['P-B'])} | {_f(c['P-R'])} | {_f(c['vd_s'])} | "
                         f"{_f(c['ordered'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="folder with one sub-folder per arm")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = ap.parse_args()
    rows = table(args.results, args.n_boot)
    print(json.dumps(rows, indent=1) if args.json else markdown(rows))


if __name__ == "__main__":
    main()
