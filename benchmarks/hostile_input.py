"""Hostile-input probe: each case a tiny tree, the CLI's exit code, first stderr line and time.

    python benchmarks/hostile_input.py --src src --out docs/results/security/new.json

``--src`` is the breachlab source folder to run (``src`` of this checkout, or an older one
unpacked with ``git archive REV src | tar -x -C /tmp/old``) so that a fix can be measured
against the code before it.  Every case runs ``python -m breachlab.cli`` in a fresh temporary
folder; nothing leaves the machine (the hub case has no hub to reach).  Measured, not
asserted: the tests under tests/ assert the behaviour.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

C_FILE = "int f(char *s)\n{\n    char b[8];\n    strcpy(b, s);\n    return 0;\n}\n"
ROW = '{{"id": "{id}", "code": "int f;", "label": 1, "cwe": null, "source": "s", "group": "g"}}\n'


def run(src: Path, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict:
    full_env = {**os.environ, "PYTHONPATH": str(src.resolve()), **(env or {})}
    for key in [k for k, v in full_env.items() if v is None]:
        full_env.pop(key)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "breachlab.cli", *args], cwd=cwd, capture_output=True, env=full_env,
                         timeout=600)
    err = res.stderr.decode("utf-8", "backslashreplace").splitlines()
    return {"rc": res.returncode, "seconds": round(time.perf_counter() - t0, 2),
            "stderr_first": err[0] if err else "", "stderr_lines": len(err)}


def hostile_repo(root: Path, marks: Path) -> None:
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
    root.mkdir()
    marks.mkdir()
    (root / "a.c").write_text(C_FILE)
    (root / ".gitattributes").write_text("* filter=evil diff=evil\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(git + cmd, cwd=root, check=True, capture_output=True)
    with (root / ".git" / "config").open("a") as fh:
        fh.write(f'[filter "evil"]\n\tclean = touch {marks}/clean; cat\n\tsmudge = touch {marks}/smudge; cat\n'
                 f'[diff "evil"]\n\ttextconv = touch {marks}/textconv; cat\n'
                 f'[core]\n\tfsmonitor = touch {marks}/fsmonitor\n')
    (root / "a.c").write_text(C_FILE + "int g(void) { return 1; }\n")


def cases(src: Path, work: Path, reps: int) -> dict[str, dict]:
    out: dict[str, dict] = {}
    (work / "a.c").write_text(C_FILE)
    empty = work / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no code\n")
    offline = {"HF_HUB_OFFLINE": None, "TRANSFORMERS_OFFLINE": None, "HF_HUB_CACHE": str(work / "no-hub-cache")}
    timed = {"hub id, hub unreachable": (["vuln", "scan", "a.c", "--model", "hf:org/name"], offline),
             "empty tree, default model": (["vuln", "scan", "empty"], None)}
    for name, (args, env) in timed.items():
        runs = [run(src, args, work, env) for _ in range(reps)]
        out[name] = {**runs[-1], "seconds_all": [r["seconds"] for r in runs]}
    out["model scan, stderr"] = run(src, ["vuln", "scan", "a.c", "--no-cache"], work)
    names = work / "names"
    names.mkdir()
    for i, raw in enumerate([b"bad\xff.c", b"x\x1b[2Jred.c", b"t`<img src=x onerror=alert(1)>`.c"]):
        (names / os.fsdecode(raw)).write_text(C_FILE.replace("f(", f"f{i}("))
    for fmt in ("text", "json", "sarif", "markdown", "html"):
        res = run(src, ["vuln", "scan", "names", "--deep", "--no-explain", "--no-cache", "--tools", "", "-f", fmt, "-o",
                        str(work / f"names.{fmt}")], work)
        report = work / f"names.{fmt}"
        text = report.read_bytes().decode("utf-8", "replace") if report.is_file() else ""
        out[f"non-UTF-8/escape/markup names, {fmt}"] = {**res, "report_written": report.is_file(),
                                                         "raw_ESC_in_report": "\x1b" in text,
                                                         "raw_img_tag_in_report": "<img" in text and fmt == "html"}
    (work / "folder").mkdir()
    (work / "file.txt").write_text("x")
    out["-o FOLDER"] = run(src, ["vuln", "scan", "a.c", "--no-model", "-o", "folder"], work)
    out["--out FILE"] = run(src, ["vuln", "scan", "a.c", "--no-model", "--out", "file.txt"], work)
    (work / "nonobj.jsonl").write_text(ROW.format(id="a") + "[1, 2]\n")
    (work / "dup.jsonl").write_text(ROW.format(id="a") + ROW.format(id="b") + ROW.format(id="a"))
    out["eval: JSONL line not an object"] = run(src, ["vuln", "eval", "--data", "nonobj.jsonl", "--out", "ev1"], work)
    out["eval: duplicate sample id"] = run(src, ["vuln", "eval", "--data", "dup.jsonl", "--out", "ev2", "--limit", "2"],
                                           work)
    (work / "dup.yaml").write_text("no_model: true\nformat: json\nformat: text\n")
    out["config: duplicate YAML key"] = run(src, ["vuln", "scan", "a.c", "--config", "dup.yaml"], work)
    marks = work / "marks"
    hostile_repo(work / "repo", marks)
    res = run(src, ["vuln", "scan", ".", "--no-model", "--changed-since", "HEAD"], work / "repo")
    out["--changed-since on a hostile checkout"] = {**res, "markers_created": sorted(os.listdir(marks))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=Path("src"), help="breachlab source folder to run (default src)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the timed cases (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = cases(args.src, Path(tmp), args.reps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"src": str(args.src), "cases": result}, indent=2, ensure_ascii=False) + "\n")
    for name, r in result.items():
        print(f"{name:45s} rc={r['rc']} {r['seconds']:6.2f}s  {r['stderr_first'][:100]}")


if __name__ == "__main__":
    main()
