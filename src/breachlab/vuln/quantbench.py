"""``breachlab vuln quantbench RUN_DIR --data DATA_RUN`` — where is the quantisation quality cliff?

Every GGUF that ``vuln export`` wrote (``export/gguf/model-*.gguf``) is scored in logit mode
on the same samples through llama.cpp: F1 with its bootstrap CI, ROC-AUC, verdict agreement
with the highest-precision file, mean |ΔP(vulnerable)|, per-CWE recall deltas, file size,
load time and throughput.  Writes ``quantbench.json``, ``quantbench.md`` and
``quantbench.png`` (F1 ± CI and agreement against file size) into ``RUN_DIR/quantbench``
(or ``--out``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breachlab.config import field
from breachlab.errors import UserError

log = logging.getLogger("breachlab.vuln.quantbench")

PRECISION_ORDER = ["f32", "bf16", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"]


@dataclass
class QuantBenchConfig:
    """One eval set, every exported precision."""

    run: str = field("", help="training run directory with export/gguf/model-*.gguf (or a folder of .gguf files)")
    data: str = field("", help="data run directory or samples .jsonl")
    split: str = field("test", help="split of the data run directory")
    limit: int | None = field(None, help="at most this many samples, class-balanced")
    threads: int | None = field(None, help="CPU threads for llama.cpp")
    n_ctx: int = field(2048, help="context window")
    n_boot: int = field(1000, help="bootstrap resamples for CIs")
    seed: int = field(42, help="bootstrap seed")


def find_ggufs(run: Path) -> list[tuple[str, Path]]:
    folder = run / "export" / "gguf" if (run / "export" / "gguf").is_dir() else run
    found = {p.stem.removeprefix("model-"): p for p in folder.glob("model-*.gguf")}
    if not found:
        raise UserError(f"no model-*.gguf in {folder}: run `breachlab vuln export {run} --format gguf` first")
    order = {q: i for i, q in enumerate(PRECISION_ORDER)}
    return sorted(found.items(), key=lambda kv: order.get(kv[0], 99))


def run(cfg: QuantBenchConfig, out: str | Path | None = None) -> Path:
    """Score every GGUF of ``cfg.run``; writes into ``out`` (default ``RUN_DIR/quantbench``) and returns it."""
    from breachlab.models import resolve
    from breachlab.rundir import atomic_write_json, atomic_write_text
    from breachlab.vuln.backends import LlamaCppBackend
    from breachlab.vuln.eval.evaluate import balanced_limit, load_eval_samples
    from breachlab.vuln.eval.predict import predict
    from breachlab.vuln.eval.summary import summarize

    if not cfg.run or not cfg.data:
        raise UserError("name the training run (RUN_DIR) and the eval set (--data or data: in the config)")
    run_dir = Path(cfg.run)
    ggufs = find_ggufs(run_dir)
    samples, _ = load_eval_samples(cfg.data, cfg.split)
    samples = balanced_limit(samples, cfg.limit)
    results: list[dict[str, Any]] = []
    ref_rows: list[dict] | None = None
    for quant, path in ggufs:
        t0 = time.perf_counter()
        backend = LlamaCppBackend(resolve(str(path)), n_ctx=cfg.n_ctx, threads=cfg.threads)
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        rows = list(predict(backend, samples, "logit"))
        secs = time.perf_counter() - t1
        backend.close()
        summary = summarize(rows, n_boot=cfg.n_boot, seed=cfg.seed)
        ref_rows = ref_rows or rows
        agree = float(np.mean([a["verdict"] == b["verdict"] for a, b in zip(rows, ref_rows)]))
        dp = float(np.mean([abs(a["p_vulnerable"] - b["p_vulnerable"]) for a, b in zip(rows, ref_rows)]))
        f1 = summary["metrics"]["f1"]
        results.append({
            "quant": quant, "file": str(path), "bytes": path.stat().st_size, "load_s": round(load_s, 2),
            "samples_per_s": round(len(rows) / secs, 3), "f1": f1.get("value"), "f1_ci": f1.get("ci"),
            "accuracy": summary["metrics"]["accuracy"].get("value"),
            "roc_auc": (summary.get("auc") or {}).get("roc_auc", {}).get("value"),
            "agreement_with_reference": round(agree, 4), "mean_abs_dp": round(dp, 5),
            "per_cwe": summary["per_cwe"],
        })
        log.info("%s: F1 %.3f, agreement %.3f", quant, f1.get("value") or float("nan"), agree)
    _cwe_deltas(results)
    out = Path(out) if out else run_dir / "quantbench"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "quantbench.json", {"reference": ggufs[0][0], "n": len(samples), "results": results})
    atomic_write_text(out / "quantbench.md", table(results, ggufs[0][0], len(samples)))
    plot(results, out / "quantbench.png")
    return out


def _cwe_deltas(results: list[dict]) -> None:
    ref = {r["cwe"]: r for r in results[0]["per_cwe"]}
    for res in results:
        deltas = []
        for row in res["per_cwe"]:
            base = ref.get(row["cwe"])
            if base and row.get("recall") is not None and base.get("recall") is not None:
                deltas.append({"cwe": row["cwe"], "n": row.get("n_vulnerable", row.get("n")),
                               "recall_delta": round(row["recall"] - base["recall"], 4)})
        res["per_cwe_delta"] = deltas
        res["worst_cwe_recall_drop"] = min((d["recall_delta"] for d in deltas), default=None)


def _fmt(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def table(results: list[dict], reference: str, n: int) -> str:
    lines = [f"Quantisation benchmark on {n} samples (reference: {reference})", "",
             "| quant | MiB | load s | samples/s | F1 [95% CI] | ROC-AUC | agreement | mean abs dP | "
             "worst CWE recall delta |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in results:
        ci = r["f1_ci"]
        f1 = _fmt(r["f1"]) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
        lines.append(f"| {r['quant']} | {r['bytes'] / 2**20:.1f} | {r['load_s']} | {r['samples_per_s']} | {f1} | "
                     f"{_fmt(r['roc_auc'])} | {_fmt(r['agreement_with_reference'])} | {_fmt(r['mean_abs_dp'], 4)} | "
                     f"{_fmt(r['worst_cwe_recall_drop'])} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], output_file: Path, axes: Any = None) -> Path:
    """F1 (with CI) and agreement with the reference against file size, one point per GGUF."""
    from breachlab.figures import new_figure, save_figure

    fig = None
    if axes is None:
        fig, axes = new_figure((7, 4), 1, 1)
    sizes = [r["bytes"] / 2**20 for r in results]
    f1 = [r["f1"] if r["f1"] is not None else np.nan for r in results]
    err = [[(r["f1"] - r["f1_ci"][0]) if r["f1_ci"] else 0 for r in results],
           [(r["f1_ci"][1] - r["f1"]) if r["f1_ci"] else 0 for r in results]]
    axes.errorbar(sizes, f1, yerr=err, fmt="o-", capsize=3, label="F1 (95% CI)")
    axes.plot(sizes, [r["agreement_with_reference"] for r in results], "s--", label="agreement with reference")
    for s, r in zip(sizes, results):
        axes.annotate(r["quant"], (s, r["agreement_with_reference"]), textcoords="offset points", xytext=(4, 4))
    axes.set_xlabel("file size (MiB)")
    axes.set_ylim(0, 1.05)
    axes.legend()
    axes.grid(alpha=0.3)
    if fig is not None:
        fig.tight_layout()
        save_figure(fig, output_file, dpi=120)
    return output_file
