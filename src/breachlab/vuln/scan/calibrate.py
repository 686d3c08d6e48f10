"""``breachlab vuln calibrate DATA_DIR [--target-fpr 0.10] [--out DIR]`` — fit the scan's combiner.

Scans a labelled tree (``DATA_DIR/labels.json``, as written by ``benchmarks/scan_data.py``:
Juliet functions and SVEN before/after pairs) exactly as ``breachlab vuln scan`` would, fits
the combiner of :mod:`.calibration` on the labelled functions and picks the threshold that
keeps the false-positive rate at most ``--target-fpr``.  Writes ``DIR/calibration.json`` (the
file ``vuln scan --calibration`` reads; settings, data hashes, weights, thresholds) and
``DIR/report.json`` (counts and in-sample rates of each variant).

Why the model can end up with weight ~0: the logistic fit learns how much the model's score
adds to the tool evidence on *this* data; if it adds nothing, its weight says so.

Why a third combiner, ``deep``: ``vuln scan --deep`` lets the model score functions no tool
flagged, so its decisions are over *every* function, not over the candidates the ``model``
combiner was fitted on — that combiner's threshold promises nothing there.  With a model (and
``deep`` on, the default; ``--set deep=false`` skips it, for speed) the labelled tree is
scanned as ``--deep`` scans it, and ``deep`` is fitted on all its functions: flagged ones with
the flagged-line view, unflagged ones with the plain view the deep scan gives them.  The two
other combiners see exactly the rows they saw before (candidates only), so their fit does not
change.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breachlab.config import field
from breachlab.errors import UserError
from breachlab.vuln.scan import calibration as calmod, loso, statictools, trust as trust_mod
from breachlab.vuln.scan.candidates import FEATURES
from breachlab.vuln.scan.scanner import ScanConfig, scan, scan_settings

NO_MODEL_FEATURES = tuple(f for f in FEATURES if f != "llm_logit")


@dataclass
class CalibrateConfig:
    """What ``breachlab vuln calibrate`` fits, on what, with which model."""

    data: str = field("", help="Labelled tree: a folder with labels.json (benchmarks/scan_data.py).")
    target_fpr: float = field(0.10, help="Highest false-positive rate the threshold may give on the data.")
    model: str = field("embedded", help="Model to calibrate for (as `vuln scan --model`).")
    backend: str = field("auto", help="auto, llama.cpp or transformers; none: fit only the model-free combiner.")
    adapter: str | None = field(None, help="Adapter (as `vuln scan --adapter`; unset: the scan's default).")
    tools: list[str] = field(default_factory=lambda: list(statictools.DEFAULT_TOOLS),
                             help="Static tools (default: cppcheck, flawfinder, clang-tidy, gcc).")
    l2: float = field(1.0, help="L2 penalty of the logistic fit (weights only, not the bias).")
    n_ctx: int = field(4096, help="Model context.")
    threads: int | None = field(None, help="Model CPU threads.")
    jobs: int = field(2, help="Parallel static-tool processes.")
    deep: bool = field(True, help="Also fit the `deep` combiner for `vuln scan --deep` (the model scores every "
                                  "function; false: skip it, faster).")
    min_precision: float | None = field(None, help="Measured precision at which a check passes straight through "
                                                   "(unset: chosen by leave-one-source-out among 0.6-0.9, the value "
                                                   "best on the worst source).")

    def __post_init__(self) -> None:
        if not 0.0 < self.target_fpr < 1.0:
            raise ValueError(f"--target-fpr must be in (0, 1), got {self.target_fpr}")


def labelled_rows(labels: dict[str, Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per labelled function: label, source, features, candidate, model score.

    Juliet functions are matched by start line; a SVEN file holds one function, the widest
    unit in it is taken (macros inside it are extracted as units too).
    """
    by_file: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_file.setdefault(rec["path"], []).append(rec)
    rows = []
    for f in labels["files"]:
        recs = by_file.get(f["path"], [])
        for fn in f["functions"]:
            if fn["start_line"] is None:
                rec = max(recs, key=lambda r: r["end_line"] - r["start_line"], default=None)
            else:
                rec = next((r for r in recs if r["start_line"] == fn["start_line"]), None)
            if rec is not None:
                rows.append({"label": int(fn["label"]), "source": f["source"], "path": f["path"],
                             "function": rec["function"], "features": rec["features"], "candidate": rec["candidate"],
                             "hits": rec.get("hits", []),
                             "p_llm": rec["p_llm"], "lines": rec.get("lines", []),
                             "tool_lines": rec.get("tool_lines", {}), "flaw_lines": fn.get("flaw_lines", [])})
    return rows


def data_hashes(root: Path, labels: dict[str, Any]) -> dict[str, Any]:
    """sha256 of labels.json and of the labelled files (sorted by path): which data made a fit."""
    h = hashlib.sha256()
    for f in sorted(labels["files"], key=lambda f: f["path"]):
        h.update(f["path"].encode() + b"\0" + hashlib.sha256((root / f["path"]).read_bytes()).digest())
    return {"labels_sha256": hashlib.sha256((root / "labels.json").read_bytes()).hexdigest(),
            "files_sha256": h.hexdigest(), "n_files": len(labels["files"])}


def deep_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` as ``--deep`` sees them: every function the model scored is a candidate.

    A function the model could not score stays a non-candidate (the deep scan never flags it).
    """
    return [{**r, "candidate": bool(r["candidate"]) or r["p_llm"] is not None} for r in rows]


NEVER = 1.000001  # a threshold no confidence reaches: the selected arm reports no noisy-only function


def select_arm(rows: list[dict[str, Any]], target_fpr: float, with_model: bool,
               min_precision: float | None = None) -> dict[str, Any]:
    """The per-check trust rule by leave-one-source-out (:mod:`.loso`): the ``precise@τ`` arm
    (with or without the combiner on noisy checks) best on the worst source.  With one source
    (or ``min_precision`` given) no table: τ = ``min_precision`` (default 0.6), combiner on."""
    sources = sorted({r.get("source", "?") for r in rows})
    if min_precision is not None or len(sources) < 2:
        tau = trust_mod.MIN_PRECISION if min_precision is None else min_precision
        return {"arm": f"precise@{tau} + combiner", "tau": tau, "combiner": True, "loso": None}
    tab = loso.table(rows, target_fpr, with_model)
    arm = loso.select(tab)
    return {"arm": arm, "tau": float(arm.split("@")[1].split()[0]), "combiner": arm.endswith("combiner"),
            "worst_source_mcc": loso.worst(tab[arm]), "loso": tab}


def _fit_or_never(rows: list[dict[str, Any]], features: tuple[str, ...], target_fpr: float,
                  l2: float) -> calmod.Variant:
    """The combiner on the noisy rows; one that never flags when they hold no vulnerable candidate."""
    v = loso.fit_combiner(rows, features, target_fpr, l2)
    if v is not None:
        return v
    return calmod.Variant(features, {"bias": 0.0, **{k: 0.0 for k in features}}, NEVER,
                          {"n_functions": len(rows), "note": "no vulnerable and safe noisy candidates: never flags"})


def fit(rows: list[dict[str, Any]], settings: dict[str, Any], target_fpr: float, l2: float, with_model: bool,
        data: dict[str, Any], deep: bool = False, min_precision: float | None = None) -> calmod.Calibration:
    """Per-check trust and the combiners: ``no_model`` always, ``model`` when the rows carry
    model scores, ``deep`` when asked (rows from a deep scan: model scores on unflagged
    functions too).

    The trust threshold τ and whether noisy checks are triaged at all come from
    :func:`select_arm`.  The combiners are fitted on the functions no precise check fired in,
    with the features of their noisy reports; when the selected arm has no combiner their
    threshold is never reached (noisy-only functions are not reported, nor scored).
    """
    sel = select_arm(rows, target_fpr, with_model, min_precision)
    trust = loso.fit_trust(rows, sel["tau"])
    variants = {"no_model": _fit_or_never(loso.noisy_rows(rows, trust, model=False), NO_MODEL_FEATURES,
                                          target_fpr, l2)}
    if with_model:
        variants["model"] = _fit_or_never(loso.noisy_rows(rows, trust, model=True), FEATURES, target_fpr, l2)
        if deep:
            variants["deep"] = _fit_or_never(deep_rows(loso.noisy_rows(rows, trust, model=True)), FEATURES,
                                             target_fpr, l2)
    if not sel["combiner"]:
        variants = {k: dataclasses.replace(v, threshold=NEVER) for k, v in variants.items()}
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return calmod.Calibration(settings, variants, data, target_fpr, created, trust=trust, selection=sel)


def run(cfg: CalibrateConfig, out: str | Path | None = None) -> Path:
    """Scan the labelled tree, fit, write ``calibration.json`` and ``report.json``; the run dir."""
    from breachlab.rundir import RunDir, atomic_write_json
    from breachlab.vuln.scan.cache import ScoreCache, default_path

    root = Path(cfg.data)
    if not (root / "labels.json").is_file():
        raise UserError(f"{root} has no labels.json: build one with benchmarks/scan_data.py")
    labels = json.loads((root / "labels.json").read_text("utf-8"))
    scorer = None
    if cfg.backend != "none":
        from breachlab.vuln.scan import loading

        scorer = loading.make_scorer(cfg.model, cfg.backend, loading.choose_adapter(cfg.adapter, model=cfg.model),
                                     cfg.n_ctx, cfg.threads)
    deep = cfg.deep and scorer is not None
    scan_cfg = ScanConfig(paths=[str(root)], tools=list(cfg.tools), explain=False, keep_records=True,
                          respect_gitignore=False, jobs=cfg.jobs, min_confidence=1.0, deep=deep)
    run_dir = RunDir.create("vuln-calibrate", cfg, out=out, inputs=[root / "labels.json"])
    with run_dir.running():
        store = ScoreCache(default_path())
        try:
            report = scan(scan_cfg, scorer, cache=store)
        finally:
            store.close()
        rows = labelled_rows(labels, report.records)
        if not rows:
            raise UserError(f"no labelled function of {root} was found by the scan")
        cal = fit(rows, scan_settings(scan_cfg, scorer), cfg.target_fpr, cfg.l2, scorer is not None,
                  data_hashes(root, labels), deep=deep, min_precision=cfg.min_precision)
        calmod.save(cal, run_dir / "calibration.json")
        summary = {"target_fpr": cfg.target_fpr, "n_rows": len(rows),
                   "by_source": {s: sum(1 for r in rows if r["source"] == s) for s in {r["source"] for r in rows}},
                   "scan_stats": {k: v for k, v in report.stats.items() if k != "static_notes"},
                   "static_notes": report.stats.get("static_notes", []),
                   "selection": cal.selection, "precise_checks": cal.trust.precise_checks() if cal.trust else [],
                   "variants": {k: {"weights": v.weights, "threshold": v.threshold, **v.fit}
                                for k, v in cal.variants.items()}}
        if cal.selection.get("loso"):
            (run_dir / "loso.md").write_text(loso.markdown(cal.selection["loso"]) + "\n", "utf-8")
        atomic_write_json(run_dir / "report.json", summary)
        atomic_write_json(run_dir / "rows.json", rows)
    return run_dir.path
