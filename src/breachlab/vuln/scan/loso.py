"""Leave-one-source-out: every detector fitted without a source, scored on it; pick the one
best on the *worst* source.

Why: a combiner fitted on Juliet + SVEN learned weights that silence precise checks on the
user's code.  Calibration data comes from several sources (Juliet, SVEN, PairVul, CVEfixes …);
for each source, every *arm* (a way to decide) is fitted on the other sources and scored on
this one, at file level (a file is flagged when any of its labelled functions is).  The arm
shipped is the one whose lowest per-source MCC is highest — the one that transfers, not the
one best on average.

Arms (``ARMS`` plus one ``precise@τ`` pair per candidate ``τ``):

* ``union``: any tool report;
* ``<tool>``: that tool alone;
* ``combiner (all reports)``: one logistic combiner over every report (how the scan decided
  before per-check trust);
* ``precise@τ``: only checks whose measured precision on the fitting sources is ≥ τ;
* ``precise@τ + combiner``: those, plus the combiner on the functions only noisy checks
  flagged (with the model's logit when the rows carry model scores).

Rows are :func:`~.calibrate.labelled_rows` rows: ``label``, ``source``, ``path``, ``hits``
(tool, rule, line, level, cwe) and ``p_llm``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from breachlab.vuln.scan import calibration as calmod, candidates as cands
from breachlab.vuln.scan.hybrid import StaticHit
from breachlab.vuln.scan.trust import MIN_N, Trust, measure, pool_key

TAUS = (0.6, 0.7, 0.8, 0.9)  # above 0.5: a check that fires on both sides of a fix pair reads 0.5
TOOL_FEATURES = ("cppcheck", "flawfinder_level", "flawfinder_count", "clang", "gcc", "n_tools")

Decide = Callable[[dict[str, Any]], bool]


def hits_of(row: dict[str, Any]) -> list[StaticHit]:
    return [StaticHit(h["tool"], int(h["line"]), h["rule"], h.get("cwe"), int(h["level"]), "")
            for h in row.get("hits", [])]


def with_checks(row: dict[str, Any]) -> dict[str, Any]:
    hits = hits_of(row)
    return {**row, "checks": sorted({h.check for h in hits}), "pools": sorted({pool_key(h) for h in hits})}


def fit_trust(rows: Sequence[dict[str, Any]], tau: float, min_n: int = MIN_N) -> Trust:
    return Trust(measure(with_checks(r) for r in rows), tau, min_n)


def noisy_rows(rows: Sequence[dict[str, Any]], trust: Trust, model: bool) -> list[dict[str, Any]]:
    """The rows no precise check fired in, with features of their (noisy) reports.  Rows
    without ``hits`` (made by hand, or before reports were recorded) keep their features."""
    out = []
    for r in rows:
        if "hits" not in r:
            out.append(r)
            continue
        precise, noisy = trust.split(hits_of(r))
        if not precise:
            out.append({**r, "candidate": bool(noisy),
                        "features": cands.features(noisy, r.get("p_llm") if model else None)})
    return out


def fit_combiner(rows: Sequence[dict[str, Any]], features: Sequence[str], target_fpr: float,
                 l2: float = 1.0) -> calmod.Variant | None:
    """A combiner on ``rows`` (already carrying ``features``/``candidate``); None when it cannot be fitted."""
    cand = [r for r in rows if r["candidate"]]
    if len({r["label"] for r in cand}) < 2:
        return None
    return calmod.fit_variant(rows, features, target_fpr, l2)


def arm_deciders(train: Sequence[dict[str, Any]], target_fpr: float, model: bool,
                 taus: Sequence[float] = TAUS) -> dict[str, Decide]:
    """Every arm fitted on ``train``: name → decide(row)."""
    tools = sorted({h["tool"] for r in train for h in r.get("hits", [])})
    out: dict[str, Decide] = {"union": lambda r: bool(r.get("hits"))}
    for t in tools:
        out[t] = (lambda t: lambda r: any(h["tool"] == t for h in r.get("hits", [])))(t)
    feats = TOOL_FEATURES + (("llm_logit",) if model else ())
    all_rows = [{**r, "candidate": bool(r.get("hits")),
                 "features": cands.features(hits_of(r), r.get("p_llm") if model else None)} for r in train]
    v_all = fit_combiner(all_rows, feats, target_fpr)
    if v_all is not None:
        out["combiner (all reports)"] = lambda r, v=v_all: bool(r.get("hits")) and v.confidence(
            cands.features(hits_of(r), r.get("p_llm") if model else None)) >= v.threshold
    for tau in taus:
        trust = fit_trust(train, tau)
        out[f"precise@{tau}"] = lambda r, tr=trust: bool(tr.split(hits_of(r))[0])
        v = fit_combiner(noisy_rows(train, trust, model), feats, target_fpr)
        out[f"precise@{tau} + combiner"] = (lambda tr, v: lambda r: precise_or_combiner(r, tr, v, model))(trust, v)
    return out


def precise_or_combiner(r: dict[str, Any], trust: Trust, v: calmod.Variant | None, model: bool) -> bool:
    """The scan's decision on a row: a precise report, or the combiner over the noisy ones."""
    precise, noisy = trust.split(hits_of(r))
    if precise:
        return True
    if not noisy or v is None:
        return False
    return v.confidence(cands.features(noisy, r.get("p_llm") if model else None)) >= v.threshold


def file_metrics(rows: Sequence[dict[str, Any]], decide: Decide) -> dict[str, Any]:
    """File-level counts and P/R/MCC: a file is vulnerable when a labelled function in it is."""
    files: dict[str, list[bool]] = {}
    for r in rows:
        lab, flag = files.setdefault(r["path"], [False, False])
        files[r["path"]] = [lab or bool(r["label"]), flag or decide(r)]
    tp = sum(1 for y, p in files.values() if y and p)
    fp = sum(1 for y, p in files.values() if not y and p)
    fn = sum(1 for y, p in files.values() if y and not p)
    tn = sum(1 for y, p in files.values() if not y and not p)
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {"files": len(files), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": round(tp / (tp + fp), 3) if tp + fp else 0.0,
            "recall": round(tp / (tp + fn), 3) if tp + fn else 0.0,
            "mcc": round((tp * tn - fp * fn) / den, 3) if den else 0.0}


def table(rows: Sequence[dict[str, Any]], target_fpr: float = 0.10, model: bool = False,
          taus: Sequence[float] = TAUS) -> dict[str, dict[str, dict[str, Any]]]:
    """``{arm: {held-out source: file metrics}}``, each arm fitted on the other sources."""
    sources = sorted({r["source"] for r in rows})
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for s in sources:
        train = [r for r in rows if r["source"] != s]
        test = [r for r in rows if r["source"] == s]
        for name, decide in arm_deciders(train, target_fpr, model, taus).items():
            out.setdefault(name, {})[s] = file_metrics(test, decide)
    return out


def worst(result: dict[str, dict[str, Any]]) -> float:
    return min(m["mcc"] for m in result.values()) if result else -1.0


def select(tab: dict[str, dict[str, dict[str, Any]]], sources: Sequence[str] | None = None) -> str:
    """The shippable arm (a ``precise@…`` one) with the highest worst-source MCC; ties → higher mean."""
    shippable = {k: v for k, v in tab.items() if k.startswith("precise@")
                 and (sources is None or set(sources) <= set(v))}
    if not shippable:
        raise ValueError("no precise@… arm in the table")
    return max(shippable, key=lambda k: (worst(shippable[k]),
                                         sum(m["mcc"] for m in shippable[k].values()) / len(shippable[k])))


def markdown(tab: dict[str, dict[str, dict[str, Any]]]) -> str:
    sources = sorted({s for v in tab.values() for s in v})
    head = "| arm (fitted without the source) | " + " | ".join(f"{s} MCC (P/R)" for s in sources) + " | worst |"
    lines = [head, "|---" * (len(sources) + 2) + "|"]
    for name, res in tab.items():
        cells = [f"{res[s]['mcc']:.3f} ({res[s]['precision']:.2f}/{res[s]['recall']:.2f})" if s in res else "—"
                 for s in sources]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {worst(res):.3f} |")
    return "\n".join(lines)
