"""Scan speed on a real C/C++ code base: the default scan, cold and cached, against the tools' own time.

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/x
    tar xzf /tmp/x/llama_cpp_python-0.3.36.tar.gz -C /tmp/x
    L=/tmp/x/llama_cpp_python-0.3.36/vendor/llama.cpp
    python benchmarks/scan_speed.py $L/common $L/ggml/src/ggml.c $L/ggml/src/ggml-quants.c --out /tmp/speed.json

In one run, on a private copy of the tree (a git repository, so ``--changed-since`` works):

1. ``cppcheck`` and ``flawfinder`` alone, each one process over the whole tree with the
   settings the scan uses (their own time: the floor a scan built on them can reach);
2. the default scan (cppcheck + flawfinder + clang-tidy candidates, embedded model + default
   adapter triaging each flagged function, explanations off), cold: empty cache;
3. the same scan again: nothing changed (tool results and scores come from the cache);
4. one function changed, ``--changed-since HEAD``: only the functions the diff touches.

Measured, not asserted; machine, load average and versions are written with the numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breachlab.vuln.scan import statictools  # noqa: E402
from breachlab.vuln.scan.cache import ScoreCache  # noqa: E402
from breachlab.vuln.scan.gitdiff import changed_lines  # noqa: E402
from breachlab.vuln.scan.hybrid import available  # noqa: E402
from breachlab.vuln.scan.scanner import ScanConfig, scan  # noqa: E402


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    return round(time.perf_counter() - t, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=None, help="model threads")
    ap.add_argument("--backend", default="llama.cpp", help="llama.cpp, transformers or none (--no-model)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scan-speed-"))
    tree = work / "tree"
    tree.mkdir()
    for p in a.paths:
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, tree / p.name)
    git = ["git", "-c", "user.email=b@l", "-c", "user.name=bl", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "tree"]):
        subprocess.run(git + cmd, cwd=tree, check=True, capture_output=True)
    files = [str(p) for p in sorted(tree.rglob("*")) if p.suffix in (".c", ".cpp", ".h", ".hpp")]
    lines = sum(Path(f).read_bytes().count(b"\n") for f in files)
    res = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
           "loadavg_start": [round(x, 1) for x in os.getloadavg()], "files": len(files), "lines": lines,
           "tool_versions": {t: statictools.tool_version(t) for t in statictools.TOOLS}}
    res["cppcheck_alone_s"] = timed([available("cppcheck"), "--enable=warning,portability", "--quiet",
                                     "--max-configs=1", "--suppress=missingIncludeSystem", "--suppress=missingInclude",
                                     "-j", "2", str(tree)])
    res["flawfinder_alone_s"] = timed([available("flawfinder"), "--csv", "--quiet", "--dataonly", str(tree)])
    print(json.dumps(res), flush=True)

    from breachlab.vuln.scan.cli import choose_adapter, make_scorer

    t = time.perf_counter()
    scorer = None if a.backend == "none" else make_scorer("embedded", a.backend, choose_adapter(None, model="embedded"),
                                                          4096, a.threads)
    res["model"], res["model_load_s"] = (scorer.model_id if scorer else None), round(time.perf_counter() - t, 1)
    cache = ScoreCache(work / "cache.sqlite")
    cfg = ScanConfig(paths=[str(tree)], explain=False)
    for name in ("cold", "cached"):
        r = scan(cfg, scorer, cache=cache)
        res[name] = {k: v for k, v in r.stats.items() if k != "static_notes"} | {"findings": len(r.findings)}
        print(name, json.dumps(res[name]), flush=True)
    from breachlab.vuln.scan.extract import extract_functions

    target = Path(next(f for f in files if f.endswith(".cpp")))
    fn = next(f for f in extract_functions(target.read_bytes(), "cpp") if f.kind in ("function", "method")
              and "{" in f.code)
    lines = target.read_text().split("\n")
    at = next(i for i in range(fn.start_line - 1, fn.end_line) if "{" in lines[i])
    lines.insert(at + 1, "    (void)0;")  # one statement added inside the first function body
    target.write_text("\n".join(lines))
    os.chdir(tree)
    changed = changed_lines("HEAD", [str(tree)])
    r = scan(ScanConfig(paths=[str(tree)], explain=False, changed=changed), scorer, cache=cache)
    res["changed_since_HEAD_one_function"] = {k: v for k, v in r.stats.items() if k != "static_notes"} | {
        "changed_file": target.name, "changed_function": fn.name}
    res["loadavg_end"] = [round(x, 1) for x in os.getloadavg()]
    import resource

    res["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(res, indent=1))
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))
    os.chdir("/")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
