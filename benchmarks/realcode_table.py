"""The real-code tables of docs/realcode.md, recomputed from committed predictions.

    python benchmarks/realcode_table.py docs/results/realcode-heldout

Each sub-folder of a results folder is one arm (zero-shot, sft, retrieval, ...) holding the
``predictions.jsonl`` of one ``breachlab vuln eval`` (or ``breachlab vuln kb score``) run, or
one sub-folder per source each holding one (leave-one-source-out: every source scored by a run
that never saw it; a source must not appear in two of them). For every arm and every source
(Juliet held-out, SVEN, PairVul, CVEfixes) it prints ROC-AUC with its 95 % pair-cluster
bootstrap CI, MCC at the run's threshold, PrimeVul's P-C / P-V / P-B / P-R, the net pair
discrimination P-C − P-R with its CI, VD-S (false-negative rate at FPR <= 0.5 %) and, as a
threshold-free pair number, the share of pairs whose vulnerable half scores above its fix
("ordered"; 0.5 = chance). Every source with pairs also gets a **coin** row: the expected
values of a fair coin that guesses each function independently (P-C = P-V = P-B = P-R = 0.25,
net 0, ROC-AUC 0.5), not a measurement. Nothing is typed in: the numbers come from the
project's own ``summarize``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

SOURCES = ("juliet", "sven", "pairvul", "cvefixes")
SCORED_MODES = ("logit", "retrieval")
COIN_ARM = "coin (expected, not run)"


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


def _prediction_files(folder: Path) -> list[Path]:
    if (folder / "predictions.jsonl").is_file():
        return [folder / "predictions.jsonl"]
    return sorted(p / "predictions.jsonl" for p in folder.iterdir() if (p / "predictions.jsonl").is_file())


def arm_rows(folder: Path) -> dict[str, list[dict]]:
    """The scored rows (logit or retrieval mode) of one arm, per source."""
    by: dict[str, list[dict]] = defaultdict(list)
    owner: dict[str, Path] = {}
    for file in _prediction_files(folder):
        for line in file.read_text().splitlines():
            row = json.loads(line)
            if row.get("mode") not in SCORED_MODES:
                continue
            src = row["source"]
            if owner.setdefault(src, file) != file:
                raise ValueError(f"{folder}: source {src} appears in {owner[src]} and {file}")
            by[src].append(row)
    return by


def cell(rows: list[dict], n_boot: int) -> dict:
    """The numbers of one (arm, source) cell."""
    from breachlab.vuln.eval.summary import summarize

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
        "net": (pw.get("net") or {}).get("value"),
        "net_ci": (pw.get("net") or {}).get("ci"),
        "vd_s": vds.get("value"),
        "ordered": order,
        "threshold": s["threshold"],
    }


def coin_cell(n: int, pairs: int) -> dict:
    """What a fair coin is expected to score on a source with ``pairs`` complete pairs."""
    from breachlab.vuln.eval.pairwise import COIN

    return {"n": n, "roc_auc": 0.5, "roc_ci": None, "mcc": 0.0, "pairs": pairs,
            **{k: COIN[k] for k in ("P-C", "P-V", "P-B", "P-R")}, "net": COIN["net"], "net_ci": None,
            "vd_s": None, "ordered": 0.5, "threshold": 0.5}


def table(results: Path, n_boot: int = 1000) -> dict[str, dict[str, dict]]:
    """{arm: {source: cell}} for every arm folder under ``results``, then the coin row."""
    out: dict[str, dict[str, dict]] = {}
    for arm in sorted(p for p in results.iterdir() if p.is_dir() and _prediction_files(p)):
        by = arm_rows(arm)
        out[arm.name] = {src: cell(by[src], n_boot) for src in SOURCES if by.get(src)}
    coin: dict[str, dict] = {}
    for src in SOURCES:
        seen = [cells[src] for cells in out.values() if src in cells and cells[src]["pairs"]]
        if seen:
            coin[src] = coin_cell(seen[0]["n"], seen[0]["pairs"])
    if coin:
        out[COIN_ARM] = coin
    return out


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ci(ci: list[float] | None, signed: bool = False) -> str:
    if not ci:
        return ""
    return f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if signed else f" [{_f(ci[0])}, {_f(ci[1])}]"


def markdown(rows: dict[str, dict[str, dict]]) -> str:
    lines = ["| arm | source | n (pairs) | ROC-AUC [95% CI] | MCC @0.5 | P-C | P-V | P-B | P-R | "
             "net P-C − P-R [95% CI] | VD-S | ordered |",
             "|---|---|--:|---|--:|--:|--:|--:|--:|---|--:|--:|"]
    for arm, cells in rows.items():
        for src, c in cells.items():
            net = "–" if c["net"] is None else f"{c['net']:+.3f}{_ci(c['net_ci'], signed=True)}"
            lines.append(f"| {arm} | {src} | {c['n']} ({c['pairs']}) | {_f(c['roc_auc'])}{_ci(c['roc_ci'])} | "
                         f"{_f(c['mcc'])} | {_f(c['P-C'])} | {_f(c['P-V'])} | {_f(c['P-B'])} | {_f(c['P-R'])} | "
                         f"{net} | {_f(c['vd_s'])} | {_f(c['ordered'])} |")
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
