"""Compare evaluation runs on the very same samples: deltas with paired CIs and McNemar.

Used by ``breachlab vuln compare RUN_DIR RUN_DIR ...`` (e.g. zero-shot vs fine-tuned, or
GGUF Q4 vs Q8 vs the 16-bit model). Two models evaluated on different samples cannot be
compared at the precision that matters here (a few points), so runs are aligned on
identical ``(id, mode)`` keys and the comparison is refused when they differ by more than
a small tolerance. Differences are judged *paired*: every bootstrap resample draws the
same samples (pairs as clusters) for all runs, and McNemar's exact test looks only at the
samples where the runs disagree — far tighter than comparing two independent CIs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from breachlab.config import ConfigError, field
from breachlab.errors import UserError
from breachlab.rundir import RunDir
from breachlab.vuln.eval import bootstrap as B, metrics as M, pairwise as PW, report as R
from breachlab.vuln.eval.rows import NO_PARSED_NOTE, policy_predictions, row_prediction
from breachlab.vuln.eval.summary import summarize

PREDICTIONS = "predictions.jsonl"


@dataclass
class CompareConfig:
    """How runs are lined up and judged (the run directories themselves are the arguments)."""

    threshold: float = field(0.5, help="logit-mode decision threshold, the same for every run")
    n_boot: int = field(1000, help="paired bootstrap resamples for the delta CIs")
    seed: int = field(0, help="bootstrap seed")
    max_missing: float = field(0.01, help="largest share of samples a run may lack before the comparison is refused")
    source: str | None = field(None, help="compare only the samples of this data source (e.g. sven)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError("threshold must be within [0, 1]")
        if self.n_boot < 1 or not 0.0 <= self.max_missing < 1.0:
            raise ConfigError("n_boot must be at least 1 and max_missing within [0, 1)")


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"{path.parent} has no {PREDICTIONS}: run `breachlab vuln eval` there first")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    if not rows:
        raise UserError(f"{path} is empty")
    return rows


def load_run(run_dir: Path) -> tuple[dict[tuple[str, str], dict], dict]:
    """Rows keyed by ``(id, mode)`` and the manifest of one run directory."""
    try:
        run = RunDir.open(run_dir)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    keyed: dict[tuple[str, str], dict] = {}
    for r in _read_rows(run.path / PREDICTIONS):
        if "id" not in r:
            raise UserError(f"{run.path / PREDICTIONS}: a row has no 'id'")
        key = (str(r["id"]), str(r.get("mode") or "unknown"))
        if key in keyed:
            raise UserError(f"{run.path / PREDICTIONS}: sample {key[0]} appears twice in mode {key[1]}")
        keyed[key] = r
    return keyed, run.manifest


def _names(run_dirs: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for p in run_dirs:
        base = Path(p).resolve().name or str(p)
        name, k = base, 2
        while name in names:
            name, k = f"{base}#{k}", k + 1
        names.append(name)
    return names


def _check_coverage(names: list[str], keyed: list[dict], mode: str, max_missing: float) -> tuple[list[str], dict]:
    sets = [{i for (i, m) in k if m == mode} for k in keyed]
    union, common = set().union(*sets), set.intersection(*sets)
    missing = {n: len(union - s) for n, s in zip(names, sets)}
    cov = {"n_union": len(union), "n_common": len(common), "missing": missing}
    frac = 1 - len(common) / len(union)
    if frac > max_missing:
        lacking = ", ".join(f"{n} lacks {k}" for n, k in missing.items() if k)
        example = sorted(union - common)[:3]
        raise UserError(f"runs do not cover the same samples in mode {mode!r}: {len(union) - len(common)} of "
                        f"{len(union)} ({frac:.1%}) are not in every run ({lacking}; e.g. {example}); evaluate "
                        f"them on the same data, or allow up to a share with max_missing (now {max_missing:.1%})")
    if not common:
        raise UserError(f"runs share no samples in mode {mode!r}")
    return sorted(common), cov


def _delta(y: np.ndarray, clusters: np.ndarray, base: dict, other: dict, n_boot: int, seed: int) -> dict:
    """Paired differences ``other - base`` with bootstrap CIs on identical resamples."""
    sa, sb = B.confusion_stat(y, base["pred"]), B.confusion_stat(y, other["pred"])
    both = ~np.isnan(base["score"]) & ~np.isnan(other["score"])
    use_auc = bool(both.all() and 0 < y.sum() < y.size)

    def stat(w: np.ndarray) -> np.ndarray:
        cols = [sb(w) - sa(w)]
        if use_auc:
            ra, rb = (np.stack(M.ranking_from_weights(d["score"], y, w), axis=1) for d in (base, other))
            cols.append(rb - ra)
        return np.concatenate(cols, axis=1)

    ones = np.ones((1, y.size))
    point_a, point_b = _at_ones(sa, ones), _at_ones(sb, ones)
    boot = B.bootstrap(stat, clusters, n_boot, seed) if n_boot > 0 else np.empty((0, 0))
    out: dict[str, dict] = {}
    names = list(M.METRICS) + (["roc_auc", "pr_auc"] if use_auc else [])
    if use_auc:
        point_a += [float(v[0]) for v in M.ranking_from_weights(base["score"], y, ones)]
        point_b += [float(v[0]) for v in M.ranking_from_weights(other["score"], y, ones)]
    for j, name in enumerate(names):
        a, b = point_a[j], point_b[j]
        ci = B.percentile_ci(boot[:, j])[0] if boot.size else None
        out[name] = {"baseline": a, "other": b, "delta": None if np.isnan(a) or np.isnan(b) else b - a,
                     "ci": ci, "excludes_zero": bool(ci and (ci[0] > 0 or ci[1] < 0))}
    return out


def _unparsed_guard(metrics: dict[str, dict], base_none: bool, other_none: bool) -> dict[str, dict]:
    """A run with no parsable answer has no MCC, precision, ...: those values and deltas are not numbers."""
    if base_none or other_none:
        for name, d in metrics.items():
            if name not in ("accuracy", "roc_auc", "pr_auc"):
                d.update(delta=None, ci=None, excludes_zero=False, note=NO_PARSED_NOTE)
                d.update({k: None for k, none in (("baseline", base_none), ("other", other_none)) if none})
    return metrics


def _at_ones(stat: Any, ones: np.ndarray) -> list[float]:
    return [float(v) for v in stat(ones)[0]]


def _mcnemar(y: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> dict:
    ca, cb = pa == y, pb == y
    b, c = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
    return {"baseline_only_correct": b, "other_only_correct": c, "n_discordant": b + c,
            "p_value": M.mcnemar_exact(b, c), "test": "exact McNemar (two-sided binomial on discordant samples); "
            "unparsable answers count as wrong"}


def compare(run_dirs: list[Path], *, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0,
            max_missing: float = 0.01, source: str | None = None) -> dict:
    """Compare runs on their common samples; the first run is the baseline.

    Args:
        run_dirs: eval run directories, each with ``predictions.jsonl`` and ``manifest.json``.
        threshold: logit-mode threshold, the same for every run.
        n_boot: paired bootstrap resamples for the delta CIs.
        seed: bootstrap seed.
        max_missing: largest share of ``(id, mode)`` keys that may be missing from some run
            before the comparison is refused (the rest is compared on the intersection).
        source: compare only the samples of this data source (e.g. ``sven``): in-domain and
            cross-domain results must be read apart.

    Returns:
        ``{"schema", "baseline", "runs", "threshold", "n_boot", "seed", "max_missing",
        "coverage", "modes_skipped", "modes", "warnings"}``; ``modes[mode]`` holds ``n``,
        ``summaries`` (name → :func:`~breachlab.vuln.eval.summary.summarize`) and ``deltas``
        (one per non-baseline run: per-metric baseline/other/delta/ci, ``pairwise`` deltas of
        P-C/P-V/P-B/P-R and of the net P-C − P-R over the complete pairs common to all runs and ``low_fpr`` deltas of
        VD-S and FNR at FPR <= 5%, each with paired bootstrap CIs or None, and ``mcnemar``).
    """
    if len(run_dirs) < 2:
        raise UserError("compare needs at least two run directories")
    names = _names(run_dirs)
    loaded = [load_run(Path(p)) for p in run_dirs]
    keyed = [k for k, _ in loaded]
    mode_sets = [{m for (_, m) in k} for k in keyed]
    shared = sorted(set.intersection(*mode_sets))
    skipped = sorted(set().union(*mode_sets) - set(shared))
    if not shared:
        raise UserError("the runs share no decision mode "
                        f"({', '.join(f'{n}: {sorted(s)}' for n, s in zip(names, mode_sets))})")
    result: dict[str, Any] = {
        "schema": "breachlab.vuln.eval.compare/1", "baseline": names[0],
        "runs": [{"name": n, "path": str(p), **{k: man.get(k)
                                               for k in ("kind", "command", "git_sha", "started", "model_id", "backend")
                                               if k in man}} for n, p, (_, man) in zip(names, run_dirs, loaded)],
        "threshold": threshold, "n_boot": n_boot, "seed": seed, "max_missing": max_missing,
        "coverage": {}, "modes_skipped": skipped, "modes": {}, "warnings": [], "source": source,
    }
    if skipped:
        result["warnings"].append({"code": "modes_skipped",
                                   "message": f"modes not present in every run are not compared: {skipped}"})
    for mode in shared:
        ids, cov = _check_coverage(names, keyed, mode, max_missing)
        result["coverage"][mode] = cov
        if cov["n_common"] < cov["n_union"]:
            result["warnings"].append({"code": "partial_overlap", "message": f"{mode}: compared on the "
                                       f"{cov['n_common']} of {cov['n_union']} samples present in every run"})
        if source is not None:
            ids = [i for i in ids if keyed[0][(i, mode)].get("source") == source]
            if len({keyed[0][(i, mode)]["label"] for i in ids}) < 2:
                result["modes_skipped"].append(mode)
                result["warnings"].append({"code": "source_missing", "message": f"{mode}: too few samples from "
                                           f"source {source!r} (need both classes); mode not compared"})
                continue
        rows = {n: [k[(i, mode)] for i in ids] for n, k in zip(names, keyed)}
        y = np.array([r["label"] for r in rows[names[0]]])
        for n in names[1:]:
            bad = [r["id"] for r, b in zip(rows[n], rows[names[0]]) if r.get("label") != b.get("label")]
            if bad:
                raise UserError(f"{n} and {names[0]} disagree on the label of {len(bad)} samples (e.g. {bad[:3]}): "
                                "they were not evaluated on the same data")
        summaries = {n: summarize(rows[n], threshold, n_boot, seed) for n in names}
        arrays = {}
        for n in names:
            pred = np.array([-1 if (v := row_prediction(r, threshold)) is None else v for r in rows[n]])
            score = np.array([np.nan if r.get("p_vulnerable") is None else float(r["p_vulnerable"]) for r in rows[n]])
            arrays[n] = {"pred": policy_predictions(y, pred), "raw": pred, "score": score,
                         "none_parsed": bool((pred < 0).all())}
        base = rows[names[0]]
        pair_ids = [None if r.get("pair_id") in (None, "") else str(r["pair_id"]) for r in base]
        clusters = B.cluster_codes([str(r["id"]) for r in base], pair_ids)
        a0 = arrays[names[0]]
        deltas = [{"baseline": names[0], "other": n,
                   "metrics": _unparsed_guard(_delta(y, clusters, a0, arrays[n], n_boot, seed),
                                              a0["none_parsed"], arrays[n]["none_parsed"]),
                   "pairwise": PW.pairwise_delta(pair_ids, y, a0["raw"], arrays[n]["raw"], n_boot, seed),
                   "low_fpr": PW.low_fpr_delta(a0["score"], arrays[n]["score"], y, clusters, n_boot, seed),
                   "mcnemar": _mcnemar(y, a0["pred"], arrays[n]["pred"])} for n in names[1:]]
        result["modes"][mode] = {"n": len(ids), "summaries": summaries, "deltas": deltas}
    if not result["modes"]:
        raise UserError(f"no decision mode has samples of both classes from source {source!r} in these runs")
    return result


def write_compare_report(result: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write ``compare.md`` (+ ``figures/``) and a self-contained ``compare.html``.

    Reuses the evaluation report's blocks: side-by-side metrics, ROC/PR overlays, then the
    paired deltas and McNemar per decision mode.
    """
    blocks: list[R.Block] = []
    warn = [w["message"] for w in result["warnings"]] + [f"{mode} · {n}: {w['message']}"
                                                         for mode, m in result["modes"].items()
                                                         for n, s in m["summaries"].items() for w in s["warnings"]]
    if warn:
        blocks.append(("warn", warn))
    blocks += [("h", 2, "Runs"),
               ("table", ["run", "model", "path", "command", "git sha"],
                [[r["name"], r.get("model_id", ""), r["path"], r.get("command", ""), (r.get("git_sha") or "")[:10]]
                 for r in result["runs"]]),
               ("p", f"Baseline: {result['baseline']}. Deltas are other − baseline, with {result['n_boot']} paired "
                     f"bootstrap resamples (seed {result['seed']}); unparsable answers count as wrong.")]
    for mode, m in result["modes"].items():
        cov = result["coverage"][mode]
        blocks += [("h", 2, f"Mode: {mode} ({m['n']} common samples of {cov['n_union']})"),
                   R.side_by_side_table(m["summaries"]), *R.undefined_blocks(m["summaries"])]
        blocks += R.curve_blocks(m["summaries"], key=f"compare-{R.slug(mode)}")
        for d in m["deltas"]:
            mc = d["mcnemar"]
            blocks += [("h", 3, f"{d['other']} vs {d['baseline']}"),
                       ("table", ["metric", d["baseline"], d["other"], "delta", "95% CI", "CI excludes 0"],
                        [[R.METRIC_LABELS[k], R.fmt(v["baseline"]), R.fmt(v["other"]),
                          "–" if v["delta"] is None else f"{v['delta']:+.3f}", R.fmt_ci(v["ci"]),
                          "yes" if v["excludes_zero"] else ""] for k, v in d["metrics"].items()]),
                       ("p", f"McNemar exact: {mc['baseline_only_correct']} samples only {d['baseline']} got right, "
                             f"{mc['other_only_correct']} only {d['other']} got right; p = {mc['p_value']:.4g}.")]
            blocks += R.pair_delta_blocks(d)
        cwes = sorted({r["cwe"] for s in m["summaries"].values() for r in s["per_cwe"]})
        if cwes:
            by = {n: {r["cwe"]: r for r in s["per_cwe"]} for n, s in m["summaries"].items()}
            blocks += [("h", 3, "Recall per CWE"),
                       ("table", ["CWE"] + list(by),
                        [[c] + [(f"{by[n][c]['tp']}/{by[n][c]['n']} ({by[n][c]['recall']:.2f})" if c in by[n] else "–")
                                for n in by] for c in cwes])]
    return R.write_documents(Path(out_dir), "breachlab vuln compare", blocks, stem="compare")
