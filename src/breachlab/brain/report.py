"""A self-contained HTML report (figures embedded as base64 PNG, no external assets).

One file a reader can open offline or attach to a ticket: title (SYNTHETIC when the
predictions are), provenance, post 4's ROI table with CIs and FDR, correlations with spin
p-values, and every figure.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

from breachlab.brain.analysis import AnalysisResult, fmt_signed, roi_table

CSS = ("body{font-family:system-ui,-apple-system,'Noto Sans CJK JP',sans-serif;margin:24px auto;"
       """max-width:1150px;color:#222}
h1{font-size:24px} h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right} th{background:#f3f3f3} td.l,th.l{text-align:left}
.banner{background:#b00000;color:#fff;padding:10px 14px;font-weight:bold;border-radius:4px}
.np{color:#777;font-style:italic} .sig{font-weight:bold} img{max-width:100%;border:1px solid #eee;margin:6px 0}
.meta{font-size:12px;color:#555} figure{margin:0 0 18px 0} figcaption{font-size:12px;color:#444}""")


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).name)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    out = ["<table><tr>" + "".join(f'<th class="{"l" if i < left else ""}">{html.escape(str(h))}</th>'
                                   for i, h in enumerate(header)) + "</tr>"]
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            cls = "l" if i < left else ""
            text = str(v)
            if text == "not predicted":
                cls += " np"
            if text.endswith("*"):
                cls += " sig"
            cells.append(f'<td class="{cls.strip()}">{html.escape(text)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


def _p(v: Any) -> str:
    return "—" if v is None else f"{v:.3g}"


def render_html(res: AnalysisResult, figures: Sequence[tuple[str, Path]], *, provenance: dict[str, Any],
                title: str = "Scam messages through a brain-encoding model") -> str:
    tag = "SYNTHETIC — " if res.synthetic else ""
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(tag + title)}</title>"
             f"<style>{CSS}</style></head><body>", f"<h1>{html.escape(tag + title)}</h1>"]
    if res.synthetic:
        parts.append("<p class='banner'>SYNTHETIC PREDICTIONS — planted effects from `breachlab brain synth`, "
                     "not output of TRIBE v2. Numbers below test the pipeline, not brains.</p>")
    parts.append("<p class='meta'>" + "<br>".join(f"<b>{html.escape(str(k))}</b>: {html.escape(str(v))}"
                                                  for k, v in provenance.items()) + "</p>")
    if res.not_predicted:
        parts.append(f"<p>{', '.join(res.not_predicted)}: <span class='np'>not predicted</span> — the model has no "
                     "subcortical output, so these ROIs are reported as missing, never as 0.</p>")
    # post 4's table
    table = roi_table(res)
    if table:
        rois = [k for k in table[0] if k not in ("path", "language", "type")]
        parts.append("<h2>ROI means of type − baseline (post 4's table)</h2>")
        rows = [[f"{r['type']} ({r['path']}, {r['language'].upper()})"] + [fmt_signed(r[k]) for k in rois]
                for r in table]
        parts.append(_table(["Message type"] + rois, rows))
    # statistics
    st = [r for r in res.roi_stats if r["diff"] is not None and not r["roi"].endswith(("_lh", "_rh"))]
    if st:
        parts.append("<h2>Statistics over variants</h2><p>Bootstrap 95% CI of type − baseline; two-sided "
                     "permutation p (variants relabelled; exact when small); q: Benjamini–Hochberg across the "
                     "ROIs of each contrast; * marks q &lt; 0.05.</p>")
        rows = [[r["path"], r["language"].upper(), r["type"], r["roi"], fmt_signed(r["diff"]),
                 f"[{fmt_signed(r['ci_low'])}, {fmt_signed(r['ci_high'])}]", _p(r["p_perm"]),
                 _p(r["q_fdr"]) + ("*" if r["q_fdr"] is not None and r["q_fdr"] < 0.05 else ""),
                 f"{r['n_type']} vs {r['n_baseline']}"] for r in st]
        parts.append(_table(["path", "lang", "type", "ROI", "diff", "95% CI", "p perm", "q FDR", "n"], rows, left=4))
        hemi = [r for r in res.roi_stats if r["diff"] is not None and r["roi"].endswith(("_lh", "_rh"))]
        if hemi:
            parts.append("<details><summary>Per-hemisphere ROIs</summary>")
            parts.append(_table(["path", "lang", "type", "ROI", "diff", "95% CI", "p perm"],
                                [[r["path"], r["language"].upper(), r["type"], r["roi"], fmt_signed(r["diff"]),
                                  f"[{fmt_signed(r['ci_low'])}, {fmt_signed(r['ci_high'])}]", _p(r["p_perm"])]
                                 for r in hemi], left=4))
            parts.append("</details>")
    if res.correlations:
        parts.append("<h2>Map correlations</h2><p>Pearson r between condition maps (and between differential "
                     "maps) over cortex; p from a spin test (random rotations of nilearn's fsaverage5 sphere).</p>")
        rows = [[c["comparison"], c["type"], c["within"], f"{c['r']:.3f}", _p(c.get("p_spin")),
                 f"{c['r_diff']:.3f}" if c.get("r_diff") is not None else "—", _p(c.get("p_spin_diff"))]
                for c in res.correlations]
        parts.append(_table(["comparison", "type", "within", "r", "p spin", "r (diff maps)", "p spin (diff)"], rows,
                            left=3))
    parts.append("<h2>Figures</h2>")
    for caption, path in figures:
        parts.append(f"<figure>{_img(path)}<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
