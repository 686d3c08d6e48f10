"""Scan speed on a real C/C++ code base with the embedded model through llama.cpp.

    pip download --no-deps --no-binary=:all: llama-cpp-python==0.3.36 -d /tmp/x
    tar xzf /tmp/x/llama_cpp_python-0.3.36.tar.gz -C /tmp/x
    python benchmarks/scan_speed.py /tmp/x/llama_cpp_python-0.3.36/vendor/llama.cpp/common \
        /tmp/x/llama_cpp_python-0.3.36/vendor/llama.cpp/ggml/src/ggml.c …

Three timed passes over a private copy of the tree in hybrid candidates-only mode
(cppcheck + flawfinder choose the functions the model scores): a cold scan (empty cache),
a re-scan with no change, and a re-scan after one function in one file changed (the
incremental case CI sees).  Then LLM-only throughput on a seeded random sample of the
tree's functions (every function scored; the full-tree LLM-only time is extrapolated from
it and labelled so), and the cost of explanations on a fixture file.  Explanations are off
in the timed passes.  Measured, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breachlab.vuln.backends import load_backend  # noqa: E402
from breachlab.vuln.scan.cache import ScoreCache  # noqa: E402
from breachlab.vuln.scan.scanner import BackendScorer, ScanConfig, scan  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--sample", type=int, default=40, help="functions in the LLM-only throughput sample")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scan-speed-"))
    tree = work / "tree"
    tree.mkdir()
    for p in a.paths:
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, tree / p.name)
    os.environ["BREACHLAB_CACHE"] = str(work / "cache")
    t = time.perf_counter()
    backend = load_backend("embedded", backend="llama.cpp", threads=a.threads)
    load_s = time.perf_counter() - t
    scorer = BackendScorer(backend)
    cfg = ScanConfig(paths=[str(tree)], explain=False, min_confidence=0.5, hybrid=["cppcheck", "flawfinder"],
                     hybrid_candidates_only=True)
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
               "loadavg_start": os.getloadavg(),
               "model": backend.model_id, "load_s": round(load_s, 1)}
    cache = ScoreCache(work / "cache" / "scan.sqlite")
    for name in ("cold", "unchanged"):
        r = scan(cfg, scorer, cache=cache)
        results[name] = r.stats | {"findings": len(r.findings), "skipped": len(r.skipped)}
        print(name, json.dumps(results[name]), flush=True)
    # change one function in one file: append a statement inside the first function body
    target = next(p for p in sorted(tree.rglob("*.c*")) if p.is_file())
    text = target.read_text()
    i = text.index("{", text.index(")"))
    target.write_text(text[: i + 1] + "\n    (void)0;" + text[i + 1:])
    r = scan(cfg, scorer, cache=cache)
    results["one_file_changed"] = r.stats | {"changed_file": target.name}
    print("one_file_changed", json.dumps(results["one_file_changed"]), flush=True)
    # LLM-only throughput on a random sample of functions (all scored, no static tools)
    import random

    from breachlab.vuln.scan.extract import extract_functions
    from breachlab.vuln.scan.files import SourceFile, read_source, walk

    funcs = []
    for sf in walk([tree]):
        if isinstance(sf, SourceFile):
            data, _ = read_source(sf, 2_000_000)
            funcs += extract_functions(data, sf.lang) if data else []
    sample = random.Random(0).sample(funcs, min(a.sample, len(funcs)))
    t = time.perf_counter()
    tokens = 0
    for fn in sample:
        code = scorer.fit(fn.code, fn.lang)
        tokens += len(backend.tokenize(backend.prompt(code, fn.lang)))
        backend.score(backend.prompt(code, fn.lang))
    dt = time.perf_counter() - t
    all_lines = sum(f.n_lines for f in funcs)
    results["llm_only_sample"] = {"functions": len(sample), "seconds": round(dt, 1), "prompt_tokens": tokens,
                                  "functions_per_s": round(len(sample) / dt, 3), "tokens_per_s": round(tokens / dt, 1),
                                  "sample_lines": sum(f.n_lines for f in sample),
                                  "tree_functions": len(funcs), "tree_function_lines": all_lines,
                                  "extrapolated_full_tree_s": round(dt / len(sample) * len(funcs))}
    print("llm_only_sample", json.dumps(results["llm_only_sample"]), flush=True)
    # explanation cost on the six functions of a fixture file
    sample = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "scan" / "project" / "src" / "copy.c"
    cfg2 = ScanConfig(paths=[str(sample)], explain=True, min_confidence=0.0)
    t = time.perf_counter()
    r = scan(cfg2, scorer, cache=ScoreCache(None))
    results["explain_sample"] = {"functions": r.stats["functions"], "seconds": round(time.perf_counter() - t, 2),
                                 "explained": r.stats["explained"],
                                 "examples": [f.message for f in r.findings[:3]]}
    results["loadavg_end"] = os.getloadavg()
    import resource

    results["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(results, indent=1))
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
