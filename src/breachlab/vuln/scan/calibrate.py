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

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breachlab.config import field
from breachlab.errors import UserError
from breachlab.vuln.scan import calibration as calmod
from breachlab.vuln.scan import statictools
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
    tools: list[str] = field(default_factory=lambda: list(statictools.DEFAULT_TOOLS), help="Static tools.")
    l2: float = field(1.0, help="L2 penalty of the logistic fit (weights only, not the bias).")
    n_ctx: int = field(4096, help="Model context.")
    threads: int | None = field(None, help="Model CPU threads.")
    jobs: int = field(2, help="Parallel static-tool processes.")
    deep: bool = field(True, help="Also fit the `deep` combiner for `vuln scan --deep` (the model scores every "
                                  "function; false: skip it, faster).")

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


def fit(rows: list[dict[str, Any]], settings: dict[str, Any], target_fpr: float, l2: float, with_model: bool,
        data: dict[str, Any], deep: bool = False) -> calmod.Calibration:
    """The combiners: ``no_model`` always, ``model`` when the rows carry model scores, ``deep``
    when asked (rows from a deep scan: model scores on unflagged functions too).

    ``no_model`` and ``model`` read only the candidate rows, so a deep scan's extra scores on
    unflagged functions leave them exactly as a candidates-only scan fits them.
    """
    variants = {"no_model": calmod.fit_variant(rows, NO_MODEL_FEATURES, target_fpr, l2)}
    if with_model:
        variants["model"] = calmod.fit_variant(rows, FEATURES, target_fpr, l2)
        if deep:
            variants["deep"] = calmod.fit_variant(deep_rows(rows), FEATURES, target_fpr, l2)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return calmod.Calibration(settings, variants, data, target_fpr, created)


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
                  data_hashes(root, labels), deep=deep)
        calmod.save(cal, run_dir / "calibration.json")
        summary = {"target_fpr": cfg.target_fpr, "n_rows": len(rows),
                   "by_source": {s: sum(1 for r in rows if r["source"] == s) for s in {r["source"] for r in rows}},
                   "scan_stats": {k: v for k, v in report.stats.items() if k != "static_notes"},
                   "static_notes": report.stats.get("static_notes", []),
                   "variants": {k: {"weights": v.weights, "threshold": v.threshold, **v.fit}
                                for k, v in cal.variants.items()}}
        atomic_write_json(run_dir / "report.json", summary)
        atomic_write_json(run_dir / "rows.json", rows)
    return run_dir.path
