"""Evaluation report: a rich table for the terminal, ``report.md`` and a self-contained ``report.html``.

Written by ``breachlab vuln eval`` (and quickstart) from the dicts of
:func:`breachlab.vuln.metrics.summarize`. The report opens with the warnings, because the
reference post's first number (94.5% accuracy on a 95/5 set) is exactly what a reader
must not take home. The HTML embeds every plot as a base64 PNG and needs no network, no
JS and no other file, so it can be mailed or archived in an air-gapped network. Model
outputs are untrusted text (a model can emit ``<script>``), so every string goes through
one escaping path per format.

A report is built as a list of neutral blocks (heading, paragraph, table, figure, code)
rendered twice, so Markdown and HTML never drift apart; :mod:`breachlab.vuln.compare`
reuses the same blocks and writers.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from breachlab.rundir import atomic_write_text
from breachlab.vuln.metrics import METRICS, row_prediction

METRIC_LABELS = {
    "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "precision": "Precision",
    "recall": "Recall", "specificity": "Specificity", "f1": "F1", "mcc": "MCC",
    "roc_auc": "ROC-AUC", "pr_auc": "PR-AUC (AP)",
}
MAX_EXAMPLE_CHARS = 800

Block = tuple  # ("h", level, text) | ("p", text) | ("warn", [str]) | ("table", headers, rows)
#                | ("fig", key, png_bytes, caption) | ("pre", caption, text)


# ---------------------------------------------------------------------------- formatting
def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def fmt_ci(ci: Sequence[float] | None) -> str:
    return "–" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def metric_entries(summary: Mapping[str, Any], parsed: bool = False) -> list[tuple[str, str, str]]:
    """(label, value, CI) rows for one summary; undefined metrics say why instead of a bare 0."""
    out = []
    ms = summary["metrics_parsed" if parsed else "metrics"]
    for name in METRICS:
        m = ms[name]
        value = fmt(m["value"]) if m["defined"] else f"{m['value']:.3f} (undefined: {m['note']})"
        out.append((METRIC_LABELS[name], value, fmt_ci(m.get("ci"))))
    auc = summary.get("auc") or {}
    for name in ("roc_auc", "pr_auc"):
        a = auc.get(name) or {}
        out.append((METRIC_LABELS[name], fmt(a.get("value")) if a else "no scores", fmt_ci(a.get("ci")) if a else ""))
    return out


def metrics_table(summary: Mapping[str, Any], title: str):
    """A ``rich`` table (metric, value, 95% CI) with the warnings as its caption."""
    from rich.table import Table

    c = summary["counts"]
    caption = "\n".join(f"! {w['message']}" for w in summary["warnings"]) or None
    table = Table(title=title, caption=caption, caption_style="bold red", caption_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column(f"{summary['ci_level']:.0%} CI", justify="right")
    for label, value, ci in metric_entries(summary):
        table.add_row(label, value, ci)
    table.add_row("samples (vuln / safe)", f"{c['n']} ({c['n_vulnerable']} / {c['n_safe']})", "")
    table.add_row("majority-class baseline", f"{summary['baseline']['majority_accuracy']:.3f}", "")
    table.add_row("unparsable", f"{c['n_unparsable']} ({c['unparsable_rate']:.1%})", "")
    table.add_row("prompt echo", f"{c['n_echo']} ({c['echo_rate']:.1%})", "")
    return table


# --------------------------------------------------------------------------------- plots
def _axes(axes: Any, figsize: tuple[float, float]):
    if axes is not None:
        return axes
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg canvas

    return Figure(figsize=figsize).add_subplot()


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
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    plot(*args, axes=fig.add_subplot(), **kwargs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


# ---------------------------------------------------------------------------- renderers
def _md_cell(v: Any) -> str:
    return html.escape(str(v), quote=False).replace("|", "\\|").replace("\n", " ")


def _md_inline(v: Any) -> str:
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", str(v))


def render_markdown(title: str, blocks: Sequence[Block], fig_dir: str = "figures") -> str:
    out = [f"# {_md_inline(title)}", ""]
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out += ["#" * b[1] + " " + _md_inline(b[2]), ""]
        elif kind == "p":
            out += [_md_inline(b[1]), ""]
        elif kind == "warn":
            out += [f"> **WARNING** {_md_inline(w)}  " for w in b[1]] + [""]
        elif kind == "table":
            out.append("| " + " | ".join(_md_cell(h) for h in b[1]) + " |")
            out.append("|" + "|".join("---" for _ in b[1]) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b[2]] + [""]
        elif kind == "fig":
            out += [f"![{_md_inline(b[3])}]({fig_dir}/{b[1]}.png)", ""]
        elif kind == "pre":
            fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", b[2])), default=0))
            out += [f"*{_md_inline(b[1])}*", "", fence + "text", b[2], fence, ""]
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f2f2f2}.warn{background:#fff0f0;border-left:6px solid #c00;
padding:.5em 1em;font-weight:600;color:#900}pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap;overflow-wrap:anywhere}
figure{display:inline-block;margin:.5em}figcaption{font-size:.8em;color:#555}"""


def render_html(title: str, blocks: Sequence[Block]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif kind == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif kind == "warn":
            out += [f'<div class="warn">WARNING: {e(w)}</div>' for w in b[1]]
        elif kind == "table":
            out.append("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in b[1]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b[2]]
            out.append("</table>")
        elif kind == "fig":
            data = base64.b64encode(b[2]).decode("ascii")
            out.append(f'<figure><img alt="{e(b[3])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{e(b[3])}</figcaption></figure>")
        elif kind == "pre":
            out.append(f"<p><em>{e(b[1])}</em></p><pre>{e(b[2])}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_documents(out_dir: Path, title: str, blocks: Sequence[Block], stem: str = "report") -> tuple[Path, Path]:
    """Write ``<stem>.md`` (+ ``figures/*.png``) and a self-contained ``<stem>.html``."""
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    for b in blocks:
        if b[0] == "fig":
            fig_dir.mkdir(parents=True, exist_ok=True)
            (fig_dir / f"{b[1]}.png").write_bytes(b[2])
    md = atomic_write_text(out_dir / f"{stem}.md", render_markdown(title, blocks))
    page = atomic_write_text(out_dir / f"{stem}.html", render_html(title, blocks))
    return md, page


# ------------------------------------------------------------------------------- content
def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "run"


def side_by_side_table(summaries: Mapping[str, Mapping[str, Any]], parsed: bool = False) -> Block:
    """One row per metric, one column per summary: ``value [CI]``."""
    names = list(summaries)
    cols = {n: metric_entries(s, parsed) for n, s in summaries.items()}
    rows = [[label] + [f"{cols[n][i][1]} {cols[n][i][2]}".strip() for n in names]
            for i, (label, _, _) in enumerate(cols[names[0]])]
    rows.append(["Majority-class baseline"] + [fmt(summaries[n]["baseline"]["majority_accuracy"]) for n in names])
    return ("table", ["metric"] + names, rows)


def curve_blocks(summaries: Mapping[str, Mapping[str, Any]], key: str = "all") -> list[Block]:
    """ROC and PR overlays for every summary that has scores (logit mode)."""
    scored = {n: s for n, s in summaries.items() if s.get("curves")}
    if not scored:
        return [("p", "No p_vulnerable scores: ROC/PR curves need logit-mode predictions.")]
    roc = {n: {**s["curves"]["roc"], "auc": s["auc"]["roc_auc"]["value"]} for n, s in scored.items()}
    pr = {n: {**s["curves"]["pr"], "ap": s["auc"]["pr_auc"]["value"], "prevalence": s["auc"]["prevalence"]}
          for n, s in scored.items()}
    blocks: list[Block] = [("fig", f"roc-{key}", figure_png(plot_roc, roc), "ROC curves"),
                           ("fig", f"pr-{key}", figure_png(plot_pr, pr), "Precision-recall curves (dotted: prevalence)")]
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
               ("p", f"{first['ci_level']:.0%} CIs: bootstrap, {first['n_boot']} resamples, seed {first['seed']}; "
                     f"{first['bootstrap']}. {first['unparsable_policy']}."),
               ("h", 3, "Metrics on parsed answers only"), side_by_side_table(summaries, parsed=True),
               ("h", 2, "Counts"),
               ("table", ["run", "n", "vulnerable", "safe", "pred. VULNERABLE", "pred. SAFE", "unparsable", "echo"],
                [[n, c["n"], c["n_vulnerable"], c["n_safe"], c["n_pred_vulnerable"], c["n_pred_safe"],
                  f"{c['n_unparsable']} ({c['unparsable_rate']:.1%})", f"{c['n_echo']} ({c['echo_rate']:.1%})"]
                 for n, c in ((n, s["counts"]) for n, s in summaries.items())]),
               ("h", 2, "Confusion matrices")]
    blocks += [("fig", f"confusion-{key}-{i}-{slug(n)}", figure_png(plot_confusion, s["confusion"], title=n,
                                                                    figsize=(3.4, 3.0)), f"{n}: confusion (unparsable counted as wrong)")
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
                          "MCC", "ROC-AUC"],
                [[n, r["source"], r["n"], r["n_vulnerable"], fmt(r["accuracy"]), fmt(r["balanced_accuracy"]),
                  fmt(r["recall"]), fmt(r["specificity"]), fmt(r["mcc"]), fmt(r["roc_auc"])]
                 for n, s in summaries.items() for r in s["per_source"]])]
    pairs = {n: s["paired"] for n, s in summaries.items() if s.get("paired")}
    if pairs:
        blocks += [("h", 2, "Vulnerable/fixed pairs"),
                   ("table", ["run", "pairs", "correct", "95% CI", "both VULNERABLE", "both SAFE", "reversed",
                              "unparsable", "ordered p(vuln) > p(fixed)"],
                    [[n, p["n_pairs"], f"{p['counts']['correct']} ({p['rates']['correct']:.1%})",
                      fmt_ci(p["pair_correct"]["ci"]), p["counts"]["both_vulnerable"], p["counts"]["both_safe"],
                      p["counts"]["reversed"], p["counts"]["unparsable"],
                      "–" if not p["ordered"] else f"{p['ordered']['rate']:.3f} {fmt_ci(p['ordered']['ci'])}"]
                     for n, p in pairs.items()]),
                   ("p", "Only 'correct' shows the model tells a fix apart from the bug; flagging both halves "
                         "means it recognises the code, not the vulnerability.")]
    if rows_by_name:
        blocks.append(("h", 2, "Example outputs"))
        for n, rows in rows_by_name.items():
            if n in summaries:
                blocks += [("h", 3, n)] + _examples(rows, summaries[n]["threshold"])
    return blocks


def meta_block(meta: Mapping[str, Any]) -> list[Block]:
    return [("h", 2, "Run"), ("table", ["field", "value"], [[k, v] for k, v in meta.items()])]


def write_report(out_dir: Path, summaries: dict[str, dict], rows_by_name: dict[str, list[dict]],
                 title: str, meta: dict) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``figures/``) and self-contained ``report.html`` into ``out_dir``.

    Args:
        out_dir: usually the eval run directory.
        summaries: name (e.g. ``"zero-shot · logit"``) → :func:`~breachlab.vuln.metrics.summarize` dict;
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
