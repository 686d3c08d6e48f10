"""Evaluation throughput: logit scoring vs generation, llama.cpp vs transformers, in ONE run.

    python benchmarks/eval_throughput.py --data runs/quickstart-…/data --n 40 --out bench.json

Every configuration scores the same samples in the same process, so the ratios compare
like with like.  Reports samples/s per configuration, the speed-up of logit scoring over
generation per backend, and how often the two modes reach the same verdict.  Measured, not
asserted: copy the printed table into docs/benchmarks.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="data run dir or samples .jsonl (test split)")
    ap.add_argument("--n", type=int, default=40, help="samples (balanced)")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8, help="transformers batched logit scoring")
    ap.add_argument("--backends", default="llama.cpp,transformers")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from breachlab.vuln.backends import load_backend
    from breachlab.vuln.eval.evaluate import balanced_limit, load_eval_samples
    from breachlab.vuln.eval.predict import predict_one

    samples, path = load_eval_samples(args.data)
    samples = balanced_limit(samples, args.n)
    results: dict[str, dict] = {}
    verdicts: dict[str, list[str | None]] = {}
    for name in args.backends.split(","):
        t0 = time.perf_counter()
        be = load_backend(args.model, backend=name, n_ctx=2048, threads=args.threads)
        load_s = time.perf_counter() - t0
        be.score(be.prompt(samples[0].code, samples[0].lang))  # warm-up
        for mode in ("logit", "generate"):
            t0 = time.perf_counter()
            rows = [predict_one(be, s, mode, max_new_tokens=args.max_new_tokens) for s in samples]
            dt = time.perf_counter() - t0
            key = f"{name} {mode}"
            verdicts[key] = [r["verdict"] for r in rows]
            results[key] = {"samples": len(rows), "seconds": round(dt, 2), "samples_per_s": round(len(rows) / dt, 3),
                            "load_s": round(load_s, 1),
                            "mean_generated_chars": round(sum(len(r["raw_output"]) for r in rows) / len(rows), 1)}
        if name == "transformers" and args.batch_size > 1:
            prompts = [be.prompt(s.code, s.lang) for s in samples]
            t0 = time.perf_counter()
            for i in range(0, len(prompts), args.batch_size):
                be.score_batch(prompts[i : i + args.batch_size])
            dt = time.perf_counter() - t0
            results[f"transformers logit batch={args.batch_size}"] = {
                "samples": len(prompts), "seconds": round(dt, 2), "samples_per_s": round(len(prompts) / dt, 3)}
        be.close()
        del be

    ratios = {}
    agreement = {}
    for name in args.backends.split(","):
        lg, gen = results.get(f"{name} logit"), results.get(f"{name} generate")
        if lg and gen:
            ratios[f"{name}: logit / generate"] = round(lg["samples_per_s"] / gen["samples_per_s"], 2)
            a, b = verdicts[f"{name} logit"], verdicts[f"{name} generate"]
            agreement[name] = round(sum(x == y for x, y in zip(a, b)) / len(a), 3)
    if "llama.cpp logit" in results and "transformers logit" in results:
        ratios["logit: llama.cpp / transformers"] = round(
            results["llama.cpp logit"]["samples_per_s"] / results["transformers logit"]["samples_per_s"], 2)
    report = {
        "data": str(path), "n": len(samples), "model": args.model, "max_new_tokens": args.max_new_tokens,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "threads": args.threads,
        "date": time.strftime("%Y-%m-%d"), "results": results, "ratios": ratios,
        "logit_vs_generate_verdict_agreement": agreement,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
