"""The benchmark's command line: parse, then run every arm (× repeats) in its own process.

The parent never trains: it converts a GGUF once (``--weights``), spawns
``train_throughput.py ... --one-arm NAME --result-file F`` per arm and repeat, reads the
one JSON line each child writes, and puts the numbers side by side (:mod:`.measure`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import arm_breachlab
from .shapes import SHAPES, family

ENTRY = Path(__file__).resolve().parents[1] / "train_throughput.py"
ARMS = ["baseline", "trl", "trl-packed", "unsloth", *arm_breachlab.ARMS]
DEFAULT_ARMS = "baseline,breachlab-padded,breachlab-packed,breachlab-same-order"


def parser(doc: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=SHAPES, required=True)
    ap.add_argument("--weights", default=None, metavar="PATH.gguf",
                    help="real weights for a Qwen shape (dequantised by transformers); without: random init")
    ap.add_argument("--methods", default="lora", help="comma list of lora, qlora")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3, help="first steps not timed")
    ap.add_argument("--repeats", type=int, default=2, help="runs of every arm, each in a fresh process")
    ap.add_argument("--grad-ckpt", action=argparse.BooleanOptionalAction, default=True,
                    help="gradient checkpointing in the arms that use it (all but breachlab-no-ckpt)")
    ap.add_argument("--kernels", default="auto", choices=["auto", "liger", "off"],
                    help="fused kernels in the arms that use them "
                         "(breachlab.vuln.training.speed.patches.fused_kernels)")
    ap.add_argument("--sdpa-kernels", default="auto", choices=["auto", "all", "no-cudnn"],
                    help="auto: cuDNN's SDPA kernel off for Qwen shapes (as the trainer), on for Gemma; "
                         "every arm alike")
    ap.add_argument("--compile", action="store_true", help="add the breachlab-regional-compile arm")
    ap.add_argument("--activation-budget", type=float, default=4.0, metavar="GIB",
                    help="activation_budget_gib of the breachlab-graphs-budget arm")
    ap.add_argument("--arms", default=DEFAULT_ARMS, help="comma list of: " + ", ".join(ARMS))
    ap.add_argument("--arm-steps", default="", metavar="ARM=N,...",
                    help="steps for some arms (e.g. breachlab-graphs=750: a whole 6,000-sample epoch at batch 8); "
                         "every arm starts with the same batches in the same order")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="torch.profiler over N steps after the warm-up of every breachlab arm")
    ap.add_argument("--profile-dir", default=".", help="where the profile tables go")
    ap.add_argument("--memory-history", action="store_true",
                    help="graph arms: record the GPU allocator's history around each capture and report where the "
                         "allocated memory peaks, by allocating line (throughput/memory_history.py; slows captures)")
    ap.add_argument("--graph-limit", type=at_least(0), default=None, metavar="N",
                    help="graph arms (but the -unlimited ones): cuda_graph_limit (default: the trainer's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tmp", default="/tmp/bl-bench")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--arm-timeout", type=float, default=None, metavar="S",
                    help="seconds before an arm is killed, with every process it started")
    ap.add_argument("--arm-timeouts", type=timeouts, default={}, metavar="ARM=S,...",
                    help="another limit for some arms (e.g. unsloth=900: its compile on E4B took longer than 400 s)")
    ap.add_argument("--merge", nargs="+", type=Path, default=None, metavar="REPORT.json",
                    help="no training: put the arms of earlier reports (same shape and settings, run in parts) "
                         "side by side in --out and print the table; an arm in several reports keeps every "
                         "run, as repeats")
    # the child's side (set by the parent)
    ap.add_argument("--one-arm", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--weights-dir", default=None, help=argparse.SUPPRESS)
    return ap


def child_argv(args: argparse.Namespace, arm: str, method: str, result: Path, weights_dir: Path | None) -> list[str]:
    argv = [sys.executable, str(ENTRY), "--shape", args.shape, "--methods", method, "--device", args.device,
            "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--kernels", args.kernels, "--sdpa-kernels", args.sdpa_kernels,
            "--activation-budget", str(args.activation_budget), "--arms", args.arms, "--arm-steps", args.arm_steps,
            "--profile", str(args.profile), "--profile-dir", args.profile_dir, "--seed", str(args.seed),
            *(["--memory-history"] if args.memory_history else []),
            *(["--graph-limit", str(args.graph_limit)] if args.graph_limit is not None else []),
            "--tmp", args.tmp, "--one-arm", arm, "--result-file", str(result)]
    argv += [] if args.grad_ckpt else ["--no-grad-ckpt"]
    argv += ["--threads", str(args.threads)] if args.threads else []
    if args.weights:
        argv += ["--weights", args.weights, "--weights-dir", str(weights_dir)]
    return argv


def at_least(low: int) -> Any:
    """An argparse type: a whole number >= ``low`` (else a one-line usage error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= {low}")
        return value
    return parse


def timeouts(text: str) -> dict[str, float]:
    """``--arm-timeouts``: ``ARM=S,...`` as {arm: seconds}."""
    out = {}
    for item in filter(None, text.split(",")):
        name, _, seconds = item.partition("=")
        try:
            out[name] = float(seconds)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: expected ARM=SECONDS, e.g. unsloth=900") from None
    return out


def arm_timeout(args: argparse.Namespace, arm: str) -> float | None:
    return args.arm_timeouts.get(arm, args.arm_timeout)


def spawn(args: argparse.Namespace, arm: str, method: str, weights_dir: Path | None) -> dict:
    """Run one arm in a fresh process; its one JSON line, or an error saying why there is none.

    The arm runs in a session of its own, and whatever it leaves running (compile workers, data
    workers) is killed with it: a timed-out arm's workers must not slow the arms after it."""
    limit = arm_timeout(args, arm)
    with tempfile.TemporaryDirectory() as d:
        result = Path(d) / "result.jsonl"
        proc = subprocess.Popen(child_argv(args, arm, method, result, weights_dir), start_new_session=True)
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            return {"arm": arm, "error": f"timed out after {limit} s", "losses": []}
        finally:
            _kill_group(proc)
        lines = result.read_text().splitlines() if result.is_file() else []
        if not lines:
            return {"arm": arm, "error": f"the arm's process exited {proc.returncode} without a result", "losses": []}
        return json.loads(lines[-1])


def _kill_group(proc: subprocess.Popen) -> None:
    """The arm's process and every process left in its session."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def main(doc: str | None = None, argv: list[str] | None = None) -> None:
    ap = parser(doc)
    args = ap.parse_args(argv)
    if args.one_arm:  # in the arm's own process
        from . import child

        child.run(args)
        return
    if args.merge:
        report = merge(args.merge)
        if args.out:
            args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
        show(report)
        return
    if args.compile and "breachlab-regional-compile" not in args.arms:
        args.arms += ",breachlab-regional-compile"
    unknown = [a for a in args.arms.split(",") if a not in ARMS]
    if unknown:
        ap.error(f"unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    if args.weights and (family(args.shape) != "qwen" or args.shape == "tiny-qwen2"
                         or not Path(args.weights).is_file()):
        ap.error("--weights takes an existing Qwen2.5-Coder GGUF, for --shape qwen-0.5b or qwen-1.5b")
    report = run(args)
    text = json.dumps(report, indent=1, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    show(report)


def show(report: dict) -> None:
    from .measure import table

    for r in report["results"]:
        print(f"\n{report['shape']} {r['method']} ({report['weights']}, batch {report['batch_size']}, "
              f"{report['steps']} steps, {report['repeats']} repeats, {r['device']})")
        print(table(r["summary"]))


def merge(paths: list[Path]) -> dict:
    """One report from several runs of the same shape and settings (a machine that allows only
    so many minutes per command: one command per arm set, or per repeat). An arm found in
    several reports keeps all its runs, renumbered as repeats, each saying which report it
    came from."""
    from .measure import compare

    reports = [json.loads(p.read_text()) for p in paths]
    first = reports[0]
    for p, r in zip(paths[1:], reports[1:]):
        for key in ("shape", "weights", "batch_size", "steps", "warmup", "examples"):
            if r[key] != first[key]:
                raise SystemExit(f"--merge: {p} has {key}={r[key]!r}, {paths[0]} has {first[key]!r}")
    out = {**first, "merged_from": [str(p) for p in paths], "results": []}
    for method in dict.fromkeys(res["method"] for r in reports for res in r["results"]):
        runs: dict[str, list[dict]] = {}
        device = None
        for p, r in zip(paths, reports):
            for res in r["results"]:
                if res["method"] != method:
                    continue
                for arm, arm_runs in res["arms"].items():
                    kept = runs.setdefault(arm, [])
                    kept += [{**x, "repeat": len(kept) + i, "from": p.name} for i, x in enumerate(arm_runs)]
                device = device or res["device"]
        out["results"].append({"method": method, "device": device, "summary": compare(runs), "arms": runs})
        out["repeats"] = max([out["repeats"], *map(len, runs.values())])
    return out


def run(args: argparse.Namespace) -> dict:
    import torch
    import transformers

    from .examples import make_examples
    from .measure import compare
    from .shapes import build_config, dequantised_dir

    weights = Path(args.weights) if args.weights else None
    Path(args.tmp).mkdir(parents=True, exist_ok=True)
    weights_dir = dequantised_dir(weights, Path(args.tmp)) if weights else None
    cfg = build_config(args.shape, weights)
    _, source = make_examples(args.shape, 1, cfg.vocab_size, args.seed)
    report = {"shape": args.shape, "weights": f"{weights.name} (dequantised to bf16)" if weights else "random init",
              "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "transformers": transformers.__version__,
              "examples": source, "config": cfg.to_dict(), "results": []}
    for method in args.methods.split(","):
        runs: dict[str, list[dict]] = {a: [] for a in args.arms.split(",")}
        for k in range(args.repeats):
            for arm in runs:
                res = spawn(args, arm, method, weights_dir)
                res["repeat"] = k
                runs[arm].append(res)
                print(json.dumps({kk: v for kk, v in res.items() if kk != "losses"}), flush=True)
        device = next((r["device"] for rs in runs.values() for r in rs if "device" in r), args.device)
        report["results"].append({"method": method, "grad_ckpt": args.grad_ckpt, "device": device,
                                  "summary": compare(runs), "arms": runs})
    return report
