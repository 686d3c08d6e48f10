"""From predictions to maps, ROI tables, correlations and statistics (no plotting, no I/O).

Vocabulary (post 4):
* response map — one prediction averaged over the response window (TRs), shape (20484,);
* condition map — response maps of one (path, language, type) averaged over its variants;
* differential map — condition map of a type minus that of its baseline (legitimate; ham for
  spam), per path and language; per variant: variant map minus the baseline condition map;
* ROI table — ROI means of differential maps, rows (path, language, type), as post 4.

Statistics (over variants, which the original lacked): bootstrap CI of type − baseline,
permutation p (type variants vs baseline variants) with BH-FDR across the ROIs of each
contrast, and spin-test p for every map correlation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from breachlab.brain import stats
from breachlab.brain.corpus import BASELINE_FOR, TYPES
from breachlab.brain.predictions import Store
from breachlab.brain.rois import RoiSet, roi_means
from breachlab.errors import UserError

Key = tuple[str, str, str]  # (path, language, type)


@dataclass
class AnalysisResult:
    synthetic: bool
    model: str
    paths: list[str]
    languages: list[str]
    types: list[str]
    condition_maps: dict[Key, np.ndarray]
    differential_maps: dict[Key, np.ndarray]
    roi_values: list[dict[str, Any]] = field(default_factory=list)  # per stimulus × path × ROI
    roi_stats: list[dict[str, Any]] = field(default_factory=list)  # per contrast × ROI
    correlations: list[dict[str, Any]] = field(default_factory=list)
    not_predicted: tuple[str, ...] = ()
    rois: list[str] = field(default_factory=list)


def window_mean(arr: np.ndarray, tr_s: float, start_s: float = 0.0, end_s: float | None = None) -> np.ndarray:
    """Mean over the TRs whose time ``t * tr_s`` lies in [start_s, end_s)."""
    t = np.arange(arr.shape[0]) * tr_s
    sel = (t >= start_s) & (t < end_s if end_s is not None else True)
    if not sel.any():
        raise ValueError(f"the response window [{start_s}, {end_s}) s holds no TR of a {arr.shape[0]}-TR prediction")
    return arr[sel].mean(axis=0)


def subcortical_columns(roi: str, description: str, labels: list[str]) -> list[int]:
    """Columns of a subcortical head whose label names the ROI (case-insensitive).

    A label matches the ROI's name (``amygdala`` in ``Left-Amygdala``) or a distinctive word of
    its description (``accumbens`` for NAcc); generic words (nucleus, subcortical) never match.
    """
    words = {roi.lower()} | {w for w in description.lower().replace("(", " ").replace(")", " ").split()
                             if len(w) >= 6 and w not in ("nucleus", "subcortical")}
    return [i for i, label in enumerate(labels) if any(w in label.lower() for w in words)]


def _type_order(types) -> list[str]:
    order = {t: i for i, t in enumerate(TYPES)}
    return sorted(types, key=lambda t: (order.get(t, 99), t))


def check_contrasts(types: set[str], where: str = "the predictions") -> None:
    """Refuse a store with no (type, baseline) pair to contrast: one line, before anything is written.

    Every table, map and statistic is a type minus its baseline (legitimate; ham for spam); a
    store with one type, or with scam types but none of their baselines, has nothing to analyse.
    """
    pairs = [t for t in types if BASELINE_FOR.get(t, t) != t and BASELINE_FOR.get(t) in types]
    if pairs:
        return
    have = ", ".join(sorted(types)) or "none"
    if len(types) <= 1:
        raise UserError(f"{where} hold one message type ({have}): the analysis contrasts each type with its baseline "
                        "(legitimate; ham for spam), so it needs the baseline and at least one other type")
    need = sorted({BASELINE_FOR[t] for t in types if t in BASELINE_FOR and BASELINE_FOR[t] != t})
    raise UserError(f"{where} hold the types {have} but no baseline to contrast them with "
                    f"(add {' / '.join(need) or 'legitimate'} messages)")


def analyze(store: Store, rois: RoiSet, *, start_s: float = 0.0, end_s: float | None = None,
            n_boot: int = 2000, n_perm: int = 10000, ci: float = 0.95, seed: int = 0,
            spins: np.ndarray | None = None, cortex: np.ndarray | None = None) -> AnalysisResult:
    """Everything post 4 reported, plus CIs, permutation/FDR and spin tests."""
    resp = {e.key: window_mean(store.array(e), store.meta.tr_s, start_s, end_s) for e in store}
    paths = [p for p in ("text", "screenshot", "audio") if any(e.path == p for e in store)]
    langs = sorted({e.language for e in store})
    types = _type_order({e.type for e in store})
    groups: dict[Key, list] = {}
    for e in store:
        groups.setdefault((e.path, e.language, e.type), []).append(e)
    cond = {k: np.mean([resp[e.key] for e in v], axis=0) for k, v in groups.items()}
    diff: dict[Key, np.ndarray] = {}
    for (p, lang, t), m in cond.items():
        base = BASELINE_FOR.get(t)
        if base and base != t and (p, lang, base) in cond:
            diff[(p, lang, t)] = m - cond[(p, lang, base)]
    # subcortical ROIs: values only where a supplied head's labels name them, for every prediction
    labels = store.subcortical_labels
    sub_cols = {roi: subcortical_columns(roi, rois.descriptions.get(roi, ""), labels) for roi in rois.subcortical}
    predicted_sub = [roi for roi, cols in sub_cols.items()
                     if cols and store.meta.has_subcortical and all(e.key in store.subcortical for e in store)]
    not_predicted = tuple(r for r in rois.subcortical if r not in predicted_sub)
    res = AnalysisResult(store.meta.synthetic, store.meta.model, paths, langs, types, cond, diff,
                         not_predicted=not_predicted, rois=list(rois.masks) + predicted_sub)

    # ROI means per prediction (long table)
    roi_of: dict[tuple[str, str], dict[str, float]] = {}
    for e in store:
        means = roi_means(resp[e.key], rois)
        if predicted_sub:
            sub = window_mean(store.subcortical[e.key], store.meta.tr_s, start_s, end_s)
            means.update({roi: float(sub[sub_cols[roi]].mean()) for roi in predicted_sub})
        roi_of[e.key] = {k: float(v) for k, v in means.items() if v is not None}
        for roi, v in means.items():
            res.roi_values.append({"stimulus_id": e.stimulus_id, "path": e.path, "language": e.language,
                                   "type": e.type, "variant": e.variant, "roi": roi,
                                   "value": None if v is None else float(v)})

    # contrasts: type vs baseline per path × language × ROI
    for (p, lang, t) in sorted(diff, key=lambda k: (paths.index(k[0]), k[1], types.index(k[2]))):
        base = BASELINE_FOR[t]
        rows = []
        for roi in [*rois.masks, *predicted_sub]:
            a = [roi_of[e.key][roi] for e in groups[(p, lang, t)]]
            b = [roi_of[e.key][roi] for e in groups[(p, lang, base)]]
            est, lo, hi = stats.bootstrap_diff_ci(a, b, n_boot=n_boot, ci=ci, seed=seed)
            _, pval = stats.permutation_test(a, b, n_perm=n_perm, seed=seed)
            rows.append({"path": p, "language": lang, "type": t, "baseline": base, "roi": roi,
                         "diff": est, "ci_low": lo, "ci_high": hi, "p_perm": pval,
                         "n_type": len(a), "n_baseline": len(b)})
        bil = [r for r in rows if r["roi"] in rois.bilateral or r["roi"] in predicted_sub]
        for r, q in zip(bil, stats.fdr_bh([r["p_perm"] for r in bil])):
            r["q_fdr"] = float(q)
        for r in rows:
            r.setdefault("q_fdr", None)
        res.roi_stats.extend(rows)
        for roi in not_predicted:
            res.roi_stats.append({"path": p, "language": lang, "type": t, "baseline": base, "roi": roi,
                                  "diff": None, "ci_low": None, "ci_high": None, "p_perm": None, "q_fdr": None,
                                  "n_type": 0, "n_baseline": 0, "note": "not predicted (no subcortical output)"})

    # correlations: EN vs JA per type × path; text vs screenshot per type × language
    def corr(kind: str, t: str, where: str, ka: Key, kb: Key) -> None:
        row: dict[str, Any] = {"comparison": kind, "type": t, "within": where}
        for label, maps in (("", cond), ("_diff", diff)):
            if ka in maps and kb in maps:
                if spins is not None:
                    r, p = stats.spin_test(maps[ka], maps[kb], spins, cortex)
                else:
                    x = maps[ka] if cortex is None else maps[ka][cortex]
                    y = maps[kb] if cortex is None else maps[kb][cortex]
                    r, p = stats.pearson_r(x, y), None
                row[f"r{label}"], row[f"p_spin{label}"] = r, p
        if "r" in row:
            res.correlations.append(row)

    if "en" in langs and "ja" in langs:
        for p in paths:
            for t in types:
                corr("EN vs JA", t, p, (p, "en", t), (p, "ja", t))
    if "text" in paths and "screenshot" in paths:
        for lang in langs:
            for t in types:
                corr("text vs screenshot", t, lang, ("text", lang, t), ("screenshot", lang, t))
    return res


def roi_table(res: AnalysisResult, rois: list[str] | None = None) -> list[dict[str, Any]]:
    """Post 4's table: one row per (path, language, type), ROI columns; subcortical → 'not predicted'."""
    stat = {(r["path"], r["language"], r["type"], r["roi"]): r for r in res.roi_stats}
    keys = sorted({(r["path"], r["language"], r["type"]) for r in res.roi_stats},
                  key=lambda k: (res.paths.index(k[0]), k[1], res.types.index(k[2])))
    rois = rois or [r for r in res.rois if not r.endswith(("_lh", "_rh"))]
    out = []
    for k in keys:
        row: dict[str, Any] = {"path": k[0], "language": k[1], "type": k[2]}
        for roi in rois:
            row[roi] = stat[(*k, roi)]["diff"]
        for roi in res.not_predicted:
            row[roi] = "not predicted"
        out.append(row)
    return out


def fmt_signed(v: Any, digits: int = 3) -> str:
    """'+0.053', '−0.038', '0.000' — the post's typography (a real minus sign)."""
    if v is None or isinstance(v, str):
        return "not predicted" if v is None else v
    if isinstance(v, float) and np.isnan(v):
        return "n/a"
    s = f"{v:+.{digits}f}"
    if float(s) == 0:
        return f"{0:.{digits}f}"
    return s.replace("-", "−")
