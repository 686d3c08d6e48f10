"""The model's share of a scan with and without the saved prompt prefix, in one run.

    L=/tmp/x/llama_cpp_python-0.3.36/vendor/llama.cpp      # see scan_speed.py for the sdist
    python benchmarks/scan_prefix.py $L/common $L/ggml/src/ggml.c $L/ggml/src/ggml-quants.c \
        --threads 2 --limit 40 --out /tmp/prefix.json

1. One scan without a model records the inputs the default scan gives the model (each flagged
   function's view: comments stripped, flagged lines marked, the tools' evidence).
2. The same embedded model + default adapter, opened twice (``reuse_prefix`` on / off),
   scores those inputs alternately — on, off, off, on, … — so machine load falls on both arms
   alike. Reported: seconds per function of each arm, their ratio, prompt and prefix token
   counts, and the largest score difference between the arms (the reuse must change none).

Measured, not asserted; machine, load average and versions are written with the numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breachlab.vuln.scan.cache import ScoreCache  # noqa: E402
from breachlab.vuln.scan.loading import choose_adapter, make_scorer  # noqa: E402
from breachlab.vuln.scan.scanner import ScanConfig, scan  # noqa: E402


class Recorder:
    """A scorer that keeps what the scan would have asked the model and answers 1.0."""

    model_id = "recorder"

    def __init__(self) -> None:
        self.inputs: list[tuple[str, str, str]] = []

    def score(self, code: str, lang: str, evidence: str = "") -> float:
        self.inputs.append((code, lang, evidence))
        return 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--limit", type=int, default=0, help="score only the first N model inputs (0: all)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    res = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
           "loadavg_start": [round(x, 1) for x in os.getloadavg()]}
    rec = Recorder()
    cache = ScoreCache(Path(os.environ.get("TMPDIR", "/tmp")) / f"scan-prefix-{os.getpid()}.sqlite")
    scan(ScanConfig(paths=[str(p) for p in a.paths], explain=False), rec, cache=cache)
    inputs = rec.inputs[: a.limit or None]
    adapter = choose_adapter(None, model="embedded")
    arms = {name: make_scorer("embedded", "llama.cpp", adapter, 4096, a.threads) for name in ("on", "off")}
    arms["on"].backend.reuse_prefix = True
    arms["off"].backend.reuse_prefix = False
    secs: dict[str, list[float]] = {"on": [], "off": []}
    scores: dict[str, list[float]] = {"on": [0.0] * len(inputs), "off": [0.0] * len(inputs)}
    tokens = []
    for i, (code, lang, ev) in enumerate(inputs):
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        for name in order:
            t = time.perf_counter()
            scores[name][i] = arms[name].score(code, lang, ev)
            secs[name].append(time.perf_counter() - t)
        fitted = arms["off"].fit(code, lang, ev)
        tokens.append(len(arms["off"].backend.tokenize(arms["off"]._prompt(fitted[0], lang, fitted[1]))))
        if (i + 1) % 10 == 0:
            print(f"{i + 1}/{len(inputs)}: on {sum(secs['on']):.1f} s, off {sum(secs['off']):.1f} s", flush=True)
    on = arms["on"].backend
    res.update({
        "model": arms["on"].model_id, "functions_recorded": len(rec.inputs), "functions_scored": len(inputs),
        "prefix_tokens": len(on._prefix[0]) if on._prefix else 0, "prefix_tokens_reused": on.prefix_tokens_reused,
        "prompt_tokens_mean": round(statistics.mean(tokens), 1), "prompt_tokens_median": statistics.median(tokens),
        "seconds_on": round(sum(secs["on"]), 2), "seconds_off": round(sum(secs["off"]), 2),
        "per_function_on_s": round(statistics.mean(secs["on"]), 3),
        "per_function_off_s": round(statistics.mean(secs["off"]), 3),
        "speedup_off_over_on": round(sum(secs["off"]) / sum(secs["on"]), 3),
        "max_abs_score_diff": max(abs(x - y) for x, y in zip(scores["on"], scores["off"])),
        "loadavg_end": [round(x, 1) for x in os.getloadavg()],
    })
    print(json.dumps(res, indent=1))
    if a.out:
        a.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
