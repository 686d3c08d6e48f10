"""Evaluation report: a rich table for the terminal, ``report.md`` and a self-contained ``report.html``.

Written by ``breachlab vuln eval`` (and quickstart) from the dicts of
:func:`breachlab.vuln.eval.summary.summarize`. The report opens with the warnings, because the
reference post's first number (94.5% accuracy on a 95/5 set) is exactly what a reader
must not take home; where pairs exist, PrimeVul's P-C/P-V/P-B/P-R come before any
per-sample number a reader could misread.

A report is a list of neutral blocks (:mod:`breachlab.vuln.eval.document`) rendered twice, so
Markdown and HTML never drift apart; :mod:`breachlab.vuln.eval.compare` reuses the same blocks.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

from breachlab.vuln.eval.document import Block, fmt, fmt_ci, render_html, render_markdown, slug, write_documents
from breachlab.vuln.eval.metrics import METRICS
from breachlab.vuln.eval.rows import row_prediction

METRIC_LABELS = {
    "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "precision": "Precision",
    "recall": "Recall", "specificity": "Specificity", "f1": "F1", "mcc": "MCC",
    "roc_auc": "ROC-AUC", "pr_auc": "PR-AUC (AP)",
}
MAX_EXAMPLE_CHARS = 800
PAIR_LABELS = {"P-C": "P-C (both right)", "P-V": "P-V (both VULNERABLE)", "P-B": "P-B (both SAFE)",
               "P-R": "P-R (reversed)", "unparsable": "unparsable half"}
NET_LABEL = "net P-C − P-R (coin: 0)"
__all__ = ["Block", "fmt", "fmt_ci", "render_html", "render_markdown", "slug", "write_documents", "write_report",
           "metrics_table", "summary_blocks", "pair_blocks", "pair_delta_blocks", "undefined_notes",
           "undefined_blocks", "table_notes"]


UNDEFINED = "–"


def fmt_signed(x: float | None) -> str:
    """``+0.125`` / ``-0.050``; ``–`` for None (a net or a delta has a sign worth seeing)."""
    return "–" if x is None else f"{x:+.3f}"


def metric_entries(summary: Mapping[str, Any], parsed: bool = False) -> list[tuple[str, str, str]]:
    """(label, value, CI) rows for one summary; an undefined metric is "–" (why: :func:`undefined_notes`)."""
    out = []
    ms = summary["metrics_parsed" if parsed else "metrics"]
    for name in METRICS:
        m = ms[name]
        value = fmt(m["value"]) if m["defined"] else UNDEFINED
        out.append((METRIC_LABELS[name], value, fmt_ci(m.get("ci")) if m["defined"] else ""))
    auc = summary.get("auc") or {}
    for name in ("roc_auc", "pr_auc"):
        a = auc.get(name) or {}
        out.append((METRIC_LABELS[name], fmt(a.get("value")) if a else "no scores", fmt_ci(a.get("ci")) if a else ""))
    return out


def undefined_notes(summary: Mapping[str, Any], parsed: bool = False) -> list[str]:
    """One footnote per reason a metric is undefined: "– Precision, F1: no VULNERABLE predictions"."""
    why: dict[str, list[str]] = {}
    for name, m in summary["metrics_parsed" if parsed else "metrics"].items():
        if name in METRICS and not m["defined"]:
            why.setdefault(m.get("note") or "undefined", []).append(METRIC_LABELS[name])
    return [f"{UNDEFINED} {', '.join(labels)}: undefined, {note}" for note, labels in why.items()]


def table_notes(summary: Mapping[str, Any]) -> list[str]:
    """What goes under :func:`metrics_table`, one line each: why a "–" is undefined, then the warnings."""
    return undefined_notes(summary) + [f"! {' '.join(w['message'].split())}" for w in summary["warnings"]]


def metrics_table(summary: Mapping[str, Any], title: str):
    """A ``rich`` table (metric, value, 95% CI); its notes (:func:`table_notes`) are printed under it,
    each on one line, so that they are not wrapped to the table's width."""
    from rich.table import Table

    c = summary["counts"]
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column(f"{summary['ci_level']:.0%} CI", justify="right")
    for label, value, ci in metric_entries(summary):
        table.add_row(label, value, ci)
    pw, lf = summary.get("pairwise"), summary.get("low_fpr")
    if pw:
        if pw["n_pairs"]:
            table.add_row(f"P-C, {pw['n_pairs']} pairs", fmt(pw["P-C"]["value"]), fmt_ci(pw["P-C"]["ci"]))
            table.add_row("P-V / P-B / P-R", " / ".join(fmt(pw[k]["value"]) for k in ("P-V", "P-B", "P-R")), "")
            if "net" in pw:
                table.add_row(NET_LABEL, fmt_signed(pw["net"]["value"]), fmt_ci(pw["net"]["ci"]))
        else:
            table.add_row("P-C, no complete pair", UNDEFINED, "")
    if lf:
        table.add_row("VD-S (FNR at FPR ≤ 0.5%)", fmt(lf["vd_s"]["value"]), fmt_ci(lf["vd_s"]["ci"]))
    table.add_row("samples (vuln / safe)", f"{c['n']} ({c['n_vulnerable']} / {c['n_safe']})", "")
    table.add_row("majority-class baseline", f"{summary['baseline']['majority_accuracy']:.3f}", "")
    table.add_row("unparsable", f"{c['n_unparsable']} ({c['unparsable_rate']:.1%})", "")
    table.add_row("prompt echo", f"{c['n_echo']} ({c['echo_rate']:.1%})", "")
    return table


# --------------------------------------------------------------------------------- plots
def _axes(axes: Any, figsize: tuple[float, float]):
    if axes is not None:
        return axes
    from breachlab.figures import new_figure  # no pyplot: no global backend state, Agg canvas

    return new_figure(figsize).add_subplot()


def _finish(ax: Any, output_file: str | Path | None):
    if output_file is None:
        return ax
    ax.figure.savefig(output_file, dpi=110, bbox_inches="tight")
    return None


def plot_confusion(cm: Any, axes: Any = None, output_file: str | Path | None = None, title: str | None = None):
    """Confusion matrix heat map, rows = true class, columns = predicted class.

    Args:
        cm: ``{"tp","fp","tn","fn"}`` dict or a 2x2 array ``[[tn, fp], [fn, tp]]``.
        axes: matplotlib Axes to draw into; a new figure when None.
        output_file: save there and return None; otherwise return the Axes.
    """
    import numpy as np

    m = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]]) if isinstance(cm, Mapping) else np.asarray(cm)
    ax = _axes(axes, (3.4, 3.0))
    ax.imshow(m, cmap="Blues", vmin=0)
    labels = ["SAFE", "VULNERABLE"]
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = m.max() or 1
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(int(m[i, j])), ha="center", va="center",
                    color="white" if m[i, j] > peak / 2 else "black", fontsize=12)
    if title:
        ax.set_title(title, fontsize=9)
    return _finish(ax, output_file)


def plot_roc(roc_by_name: Mapping[str, Mapping[str, Any]], axes: Any = None,
             output_file: str | Path | None = None, title: str = "ROC"):
    """ROC curves, one per name; each value has ``fpr``, ``tpr`` and optional ``auc``."""
    ax = _axes(axes, (4.2, 4.0))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance (0.5)")
    for name, c in roc_by_name.items():
        label = name if c.get("auc") is None else f"{name} (AUC {c['auc']:.3f})"
        ax.plot(c["fpr"], c["tpr"], lw=1.6, label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate (recall)", title=title)
    ax.legend(fontsize=7, loc="lower right")
    return _finish(ax, output_file)


def plot_pr(pr_by_name: Mapping[str, Mapping[str, Any]], axes: Any = None,
            output_file: str | Path | None = None, title: str = "Precision-recall"):
    """PR curves, one per name; values have ``recall``, ``precision``, optional ``ap`` and
    ``prevalence`` (drawn as the no-skill line: a PR-AUC is only as good as its distance to it)."""
    ax = _axes(axes, (4.2, 4.0))
    for name, c in pr_by_name.items():
        label = name if c.get("ap") is None else f"{name} (AP {c['ap']:.3f})"
        (line,) = ax.step(c["recall"], c["precision"], where="post", lw=1.6, label=label)
        if c.get("prevalence") is not None:
            ax.axhline(c["prevalence"], ls=":", lw=1, color=line.get_color())
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall", ylabel="precision", title=title)
    ax.legend(fontsize=7, loc="lower left")
    return _finish(ax, output_file)


def plot_per_cwe(per_cwe: Sequence[Mapping[str, Any]], axes: Any = None,
                 output_file: str | Path | None = None, title: str = "Recall per CWE"):
    """Horizontal recall bars with ``tp/n`` labels; small-n CWEs are pale and hatched."""
    rows = list(per_cwe)
    ax = _axes(axes, (5.0, max(1.6, 0.28 * len(rows) + 0.8)))
    ys = range(len(rows))
    for y, r in zip(ys, rows):
        ax.barh(y, r["recall"], color="#9ecae1" if r["small_n"] else "#3182bd", hatch="//" if r["small_n"] else None)
        ax.text(min(r["recall"] + 0.02, 0.98), y, f"{r['tp']}/{r['n']}", va="center", fontsize=7)
    ax.set_yticks(list(ys), [r["cwe"] for r in rows], fontsize=7)
    ax.set(xlim=(0, 1.1), xlabel="recall (pale, hatched: n < 10)", title=title)
    return _finish(ax, output_file)


def figure_png(plot: Any, *args: Any, figsize: tuple[float, float] = (4.2, 4.0), **kwargs: Any) -> bytes:
    """Run a ``plot_*`` function on a fresh figure and return PNG bytes."""
    from breachlab.figures import new_figure

    fig = new_figure(figsize)
    plot(*args, axes=fig.add_subplot(), **kwargs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def side_by_side_table(summaries: Mapping[str, Mapping[str, Any]], parsed: bool = False) -> Block:
    """One row per metric, one column per summary: ``value [CI]``."""
    names = list(summaries)
    cols = {n: metric_entries(s, parsed) for n, s in summaries.items()}
    rows = [[label] + [f"{cols[n][i][1]} {cols[n][i][2]}".strip() for n in names]
            for i, (label, _, _) in enumerate(cols[names[0]])]
    rows.append(["Majority-class baseline"] + [fmt(summaries[n]["baseline"]["majority_accuracy"]) for n in names])
    return ("table", ["metric"] + names, rows)


def undefined_blocks(summaries: Mapping[str, Mapping[str, Any]], parsed: bool = False) -> list[Block]:
    """The footnote under :func:`side_by_side_table`: why each "–" is undefined, once per run and reason."""
    notes = [f"{n}: {note}" for n, s in summaries.items() for note in undefined_notes(s, parsed)]
    return [("p", "; ".join(notes))] if notes else []


def curve_blocks(summaries: Mapping[str, Mapping[str, Any]], key: str = "all") -> list[Block]:
    """ROC and PR overlays for every summary that has scores (logit mode)."""
    scored = {n: s for n, s in summaries.items() if s.get("curves")}
    if not scored:
        return [("p", "No p_vulnerable scores: ROC/PR curves need logit-mode predictions.")]
    roc = {n: {**s["curves"]["roc"], "auc": s["auc"]["roc_auc"]["value"]} for n, s in scored.items()}
    pr = {n: {**s["curves"]["pr"], "ap": s["auc"]["pr_auc"]["value"], "prevalence": s["auc"]["prevalence"]}
          for n, s in scored.items()}
    blocks: list[Block] = [("fig", f"roc-{key}", figure_png(plot_roc, roc), "ROC curves"),
                           ("fig", f"pr-{key}", figure_png(plot_pr, pr),
                            "Precision-recall curves (dotted: prevalence)")]
    rows = [[n, fmt(s["auc"]["best_threshold"]["threshold"]), fmt(s["auc"]["best_threshold"]["balanced_accuracy"]),
             fmt(s["threshold"]), fmt(s["metrics"]["balanced_accuracy"]["value"])] for n, s in scored.items()]
    blocks += [("table", ["run", "best threshold (optimistic)", "its balanced acc.", "threshold used",
                          "balanced acc."], rows),
               ("p", "The best threshold is chosen on this very set, so its balanced accuracy is optimistic; "
                     "choose thresholds on validation data.")]
    return blocks


def _examples(rows: Sequence[Mapping[str, Any]], threshold: float, per_kind: int = 2) -> list[Block]:
    picked: dict[str, list] = {"missed vulnerability": [], "false alarm": [], "unparsable": [],
                               "prompt echo": [], "correct": []}
    for r in rows:
        p = row_prediction(r, threshold)
        kind = ("prompt echo" if r.get("echo") else "unparsable" if p is None
                else "correct" if p == r["label"] else "missed vulnerability" if r["label"] == 1 else "false alarm")
        if len(picked[kind]) < per_kind:
            picked[kind].append(r)
    out: list[Block] = []
    for kind, items in picked.items():
        for r in items:
            score = r.get("p_vulnerable")
            cap = (f"{kind}: {r.get('id')} · label {'VULNERABLE' if r['label'] else 'SAFE'} · "
                   f"cwe {r.get('cwe')} · verdict {r.get('verdict')}"
                   + (f" · p_vulnerable {score:.3f}" if score is not None else ""))
            text = str(r.get("raw_output") or "(no generated text: logit mode)")
            if len(text) > MAX_EXAMPLE_CHARS:
                text = text[:MAX_EXAMPLE_CHARS] + f" … [{len(text) - MAX_EXAMPLE_CHARS} more characters]"
            out.append(("pre", cap, text))
    return out


def summary_blocks(summaries: Mapping[str, Mapping[str, Any]],
                   rows_by_name: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                   key: str = "all") -> list[Block]:
    """Everything but the meta: warnings, tables, plots, per-CWE, pairs, examples."""
    warn = [f"{n}: {w['message']}" for n, s in summaries.items() for w in s["warnings"]]
    first = next(iter(summaries.values()))
    blocks: list[Block] = []
    if warn:
        blocks.append(("warn", warn))
    blocks += [("h", 2, "Metrics (unparsable answers counted as wrong)"), side_by_side_table(summaries),
               *undefined_blocks(summaries),
               ("p", f"{first['ci_level']:.0%} CIs: bootstrap, {first['n_boot']} resamples, seed {first['seed']}; "
                     f"{first['bootstrap']}. {first['unparsable_policy']}."),
               ("h", 3, "Metrics on parsed answers only"), side_by_side_table(summaries, parsed=True),
               *undefined_blocks(summaries, parsed=True),
               ("h", 2, "Counts"),
               ("table", ["run", "n", "vulnerable", "safe", "pred. VULNERABLE", "pred. SAFE", "unparsable", "echo"],
                [[n, c["n"], c["n_vulnerable"], c["n_safe"], c["n_pred_vulnerable"], c["n_pred_safe"],
                  f"{c['n_unparsable']} ({c['unparsable_rate']:.1%})", f"{c['n_echo']} ({c['echo_rate']:.1%})"]
                 for n, c in ((n, s["counts"]) for n, s in summaries.items())]),
               ("h", 2, "Confusion matrices")]
    blocks += [("fig", f"confusion-{key}-{i}-{slug(n)}", figure_png(plot_confusion, s["confusion"], title=n,
                                                                    figsize=(3.4, 3.0)),
                f"{n}: confusion (unparsable counted as wrong)")
               for i, (n, s) in enumerate(summaries.items())]
    blocks += [("h", 2, "ROC and precision-recall")] + curve_blocks(summaries, key)
    blocks.append(("h", 2, "Recall per CWE"))
    for i, (n, s) in enumerate(summaries.items()):
        if not s["per_cwe"]:
            continue
        rows = s["per_cwe"]
        blocks += [("h", 3, n),
                   ("fig", f"cwe-{key}-{i}-{slug(n)}", figure_png(plot_per_cwe, rows, title=f"{n}: recall per CWE",
                                                             figsize=(5.0, max(1.6, 0.28 * len(rows) + 0.8))),
                    f"{n}: recall per CWE"),
                   ("table", ["CWE", "n", "tp", "recall", "95% CI", "small n", "safe n", "false alarms"],
                    [[r["cwe"], r["n"], r["tp"], fmt(r["recall"]), fmt_ci(r["ci"]), "yes" if r["small_n"] else "",
                      r["n_safe"], r["fp"]] for r in rows])]
    blocks += [("h", 2, "Per source"),
               ("table", ["run", "source", "n", "vulnerable", "accuracy", "balanced acc.", "recall", "specificity",
                          "MCC", "ROC-AUC", "pairs", "P-C", "P-V", "P-B", "P-R", "net", "VD-S"],
                [[n, r["source"], r["n"], r["n_vulnerable"], fmt(r["accuracy"]), fmt(r["balanced_accuracy"]),
                  fmt(r["recall"]), fmt(r["specificity"]), fmt(r["mcc"]), fmt(r["roc_auc"])] + _source_pairs(r)
                 for n, s in summaries.items() for r in s["per_source"]])]
    blocks += pair_blocks(summaries)
    if rows_by_name:
        blocks.append(("h", 2, "Example outputs"))
        for n, rows in rows_by_name.items():
            if n in summaries:
                blocks += [("h", 3, n)] + _examples(rows, summaries[n]["threshold"])
    return blocks


def _source_pairs(row: Mapping[str, Any]) -> list[str]:
    pw, lf = row.get("pairwise"), row.get("low_fpr")
    cells = ["–"] * 6 if not pw else [str(pw["n_pairs"])] \
        + [fmt(pw[k]["value"]) for k in ("P-C", "P-V", "P-B", "P-R")] \
        + [fmt_signed((pw.get("net") or {}).get("value"))]
    return cells + [fmt(lf["vd_s"]["value"]) if lf else "–"]


def pair_blocks(summaries: Mapping[str, Mapping[str, Any]]) -> list[Block]:
    """PrimeVul's pairwise table (with CIs), the score ordering of pairs, and VD-S."""
    blocks: list[Block] = []
    pw = {n: s["pairwise"] for n, s in summaries.items() if s.get("pairwise")}
    if pw:
        rows = [[n, f"{p['n_pairs']}" + (" (small n)" if p["small_n"] else ""), p["n_incomplete"]]
                + [f"{p[k]['count']} ({fmt(p[k]['value'])}) {fmt_ci(p[k]['ci'])}" for k in PAIR_LABELS]
                + [f"{fmt_signed(p['net']['value'])} {fmt_ci(p['net']['ci'])}" if "net" in p else "–"]
                for n, p in pw.items()]
        ordered = {n: s["paired"]["ordered"] for n, s in summaries.items() if (s.get("paired") or {}).get("ordered")}
        blocks += [("h", 2, "Vulnerable/fixed pairs (PrimeVul)"),
                   ("table", ["run", "complete pairs", "incomplete (ignored)"] + list(PAIR_LABELS.values())
                    + [NET_LABEL], rows),
                   ("p", "Fractions of complete pairs, 95% CI from resampling pairs. Only P-C shows the model tells "
                         "a fix apart from the bug; P-V means it recognises the code, not the vulnerability; "
                         "a pair with an unparsable half is in none of the four. A coin that guesses each "
                         "function independently gets P-C 0.25 and P-R 0.25: the net P-C − P-R is what is "
                         "left above chance.")]
        if ordered:
            blocks.append(("table", ["run", "pairs scored", "p(vuln) > p(fixed)", "ties", "rate (ties half)", "95% CI"],
                           [[n, o["n_scored"], o["ordered"], o["ties"], fmt(o["rate"]), fmt_ci(o["ci"])]
                            for n, o in ordered.items()]))
    lf = {n: s["low_fpr"] for n, s in summaries.items() if s.get("low_fpr")}
    if lf:
        blocks += [("h", 2, "Detection at a low false-alarm rate"),
                   ("table", ["run", "scored (safe)", "VD-S: FNR at FPR ≤ 0.5%", "95% CI", "false alarms allowed",
                              "FNR at FPR ≤ 5%", "95% CI"],
                    [[n, f"{d['n_scored']} ({d['n_safe']})",
                      fmt(d["vd_s"]["value"]) + (" (small n)" if d["vd_s"]["small_n"] else ""),
                      fmt_ci(d["vd_s"]["ci"]), d["vd_s"]["allowed_fp"], fmt(d["fnr_at_fpr_5"]["value"]),
                      fmt_ci(d["fnr_at_fpr_5"]["ci"])] for n, d in lf.items()]),
                   ("p", "VD-S: share of vulnerable functions missed at the lowest threshold that keeps false alarms "
                         "at or below 0.5% of safe functions; lower is better, 1.0 = finds nothing.")]
    return blocks


def pair_delta_blocks(delta: Mapping[str, Any]) -> list[Block]:
    """Paired deltas of P-C/P-V/P-B/P-R and VD-S for one compared run (``vuln compare``)."""
    rows = []
    pw, lf = delta.get("pairwise"), delta.get("low_fpr")
    for key, label in (*PAIR_LABELS.items(), ("net", NET_LABEL)):
        if pw and key in pw:
            d = pw[key]
            rows.append([label, fmt(d["baseline"]), fmt(d["other"]), f"{d['delta']:+.3f}", fmt_ci(d["ci"]),
                         "yes" if d["excludes_zero"] else ""])
    for key, label in (("vd_s", "VD-S (FNR at FPR ≤ 0.5%)"), ("fnr_at_fpr_5", "FNR at FPR ≤ 5%")):
        if lf:
            d = lf[key]
            rows.append([label, fmt(d["baseline"]), fmt(d["other"]), f"{d['delta']:+.3f}", fmt_ci(d["ci"]),
                         "yes" if d["excludes_zero"] else ""])
    if not rows:
        return []
    note = f"{pw['n_pairs']} complete pairs common to both runs" + (" (small n)" if pw["small_n"] else "") if pw \
        else "no complete pairs in common"
    return [("table", ["pairwise / low-FPR", delta["baseline"], delta["other"], "delta", "95% CI", "CI excludes 0"],
             rows),
            ("p", f"{note}; CIs from one paired bootstrap of pairs (rows for VD-S).")]


def meta_block(meta: Mapping[str, Any]) -> list[Block]:
    return [("h", 2, "Run"), ("table", ["field", "value"], [[k, v] for k, v in meta.items()])]


def write_report(out_dir: Path, summaries: dict[str, dict], rows_by_name: dict[str, list[dict]],
                 title: str, meta: dict) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``figures/``) and self-contained ``report.html`` into ``out_dir``.

    Args:
        out_dir: usually the eval run directory.
        summaries: name (e.g. ``"zero-shot · logit"``) → :func:`~breachlab.vuln.eval.summary.summarize` dict;
            all are shown side by side.
        rows_by_name: the prediction rows behind each summary, for example outputs.
        title: the page title.
        meta: model, data, command, date, ... shown at the end.

    Returns:
        ``(markdown_path, html_path)``.
    """
    if not summaries:
        raise ValueError("write_report needs at least one summary")
    return write_documents(Path(out_dir), title, summary_blocks(summaries, rows_by_name) + meta_block(meta))
