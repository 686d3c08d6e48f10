"""The evaluation report: files, embedded plots, warnings first, hostile model output escaped."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from rich.console import Console  # noqa: E402

from breachlab.vuln.eval import report as R  # noqa: E402
from breachlab.vuln.eval.summary import summarize  # noqa: E402

HOSTILE = "VULNERABLE </pre><script>alert('x')</script> ``` | <img src=x onerror=alert(1)>"


def _rows(mode: str, n: int = 60, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        y = i % 2
        p = float(np.clip(rng.normal(0.45 + 0.15 * y, 0.2), 0, 1))
        out.append({
            "id": f"s{i}", "label": y, "cwe": ["CWE-787", "CWE-416"][i % 4 // 2] if y else None,
            "source": "sven" if i < 20 else "juliet", "pair_id": f"p{i // 2}", "mode": mode,
            "raw_output": "" if mode == "logit" else HOSTILE,
            "verdict": None if mode == "logit" else (None if i % 9 == 0 else ("VULNERABLE" if p > 0.5 else "SAFE")),
            "p_vulnerable": p if mode == "logit" else None, "echo": mode == "generate" and i % 11 == 0,
            "latency_s": 0.2,
        })
    return out


@pytest.fixture(scope="module")
def both():
    rows = {"zero-shot · logit": _rows("logit"), "zero-shot · generate": _rows("generate")}
    return {n: summarize(r, n_boot=200) for n, r in rows.items()}, rows


def test_metrics_table_renders_with_warnings(both):
    summaries, _ = both
    console = Console(record=True, width=140)
    console.print(R.metrics_table(summaries["zero-shot · generate"], "zero-shot · generate"))
    text = console.export_text()
    for label in ("MCC", "Balanced accuracy", "ROC-AUC", "95% CI", "unparsable", "prompt echo"):
        assert label in text
    assert "P-C, 30 pairs" in text and "P-V / P-B / P-R" in text
    pw = summaries["zero-shot · generate"]["pairwise"]
    assert "net P-C − P-R" in text and f"{pw['net']['value']:+.3f}" in text
    notes = R.table_notes(summaries["zero-shot · generate"])
    assert any("only 60 samples" in n for n in notes)  # the small-n warning, printed under the table
    assert all("\n" not in n for n in notes)              # one line each, never wrapped by us


def test_undefined_metrics_are_a_dash_with_one_footnote():
    """A model that never answers: six undefined metrics, shown as "–", their reason said once."""
    rows = [{"id": str(i), "label": i % 2, "mode": "generate", "verdict": None} for i in range(16)]
    s = summarize(rows, n_boot=20)
    console = Console(record=True, width=80)
    console.print(R.metrics_table(s, "zero-shot · generate"))
    table = console.export_text(clear=False)
    assert max(map(len, table.splitlines())) < 70  # no long "undefined: …" cells to widen it
    for line in R.table_notes(s):
        console.print(line, soft_wrap=True, markup=False)
    text = console.export_text()
    entries = dict((label, value) for label, value, _ in R.metric_entries(s))
    assert entries["MCC"] == entries["Precision"] == "–" and entries["Accuracy"] == "0.000"
    assert text.count("no answer could be parsed") == 1


def test_undefined_metric_says_why():
    s = summarize([{"id": str(i), "label": i % 2, "mode": "generate", "verdict": "SAFE"} for i in range(10)], n_boot=20)
    entries = dict((label, value) for label, value, _ in R.metric_entries(s))
    assert entries["Precision"] == "–"
    assert [n for n in R.undefined_notes(s) if "Precision" in n and "no VULNERABLE predictions" in n]


def test_write_report_files_and_self_contained_html(tmp_path, both):
    summaries, rows = both
    md, page = R.write_report(tmp_path, summaries, rows, "Eval <zero-shot>",
                              {"model": "gemma3-270m <q4>", "command": "breachlab vuln eval", "date": "2025-01-01"})
    assert md == tmp_path / "report.md" and page == tmp_path / "report.html"
    html = page.read_text(encoding="utf-8")
    # plots embedded: 2 confusion + ROC + PR + 2 per-CWE
    assert html.count('src="data:image/png;base64,') == 6
    assert "<script" not in html.lower() and "<img src=x" not in html
    assert "&lt;script&gt;" in html and "Eval &lt;zero-shot&gt;" in html
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<link" not in html
    # warnings come before the first metrics table
    assert html.index('class="warn"') < html.index("<table")
    for section in ("Confusion matrices", "ROC and precision-recall", "Recall per CWE", "Vulnerable/fixed pairs",
                    "Example outputs", "zero-shot · logit", "zero-shot · generate", "gemma3-270m &lt;q4&gt;"):
        assert section in html


def test_markdown_links_figures_and_fences_hostile_output(tmp_path, both):
    summaries, rows = both
    md, _ = R.write_report(tmp_path, summaries, rows, "t", {"model": "m|x"})
    text = md.read_text(encoding="utf-8")
    figs = re.findall(r"\]\((figures/[^)]+\.png)\)", text)
    assert len(figs) == 6 and all((tmp_path / f).is_file() for f in figs)
    assert "````text" in text          # the output contains ``` so the fence is longer
    assert "m\\|x" in text              # table cell pipes escaped
    assert text.index("WARNING") < text.index("| metric |")


def test_report_without_scores_says_so(tmp_path):
    rows = _rows("generate", n=20)
    md, _ = R.write_report(tmp_path, {"g": summarize(rows, n_boot=20)}, {"g": rows}, "t", {})
    assert "ROC/PR curves need logit-mode predictions" in md.read_text(encoding="utf-8")


@pytest.mark.parametrize("plot, arg", [
    (R.plot_confusion, {"tp": 3, "fp": 1, "tn": 4, "fn": 2}),
    (R.plot_confusion, [[4, 1], [2, 3]]),
    (R.plot_roc, {"a": {"fpr": [0, 0.5, 1], "tpr": [0, 0.8, 1], "auc": 0.65}}),
    (R.plot_pr, {"a": {"recall": [0, 0.5, 1], "precision": [1, 0.8, 0.5], "ap": 0.7, "prevalence": 0.5}}),
    (R.plot_per_cwe, [{"cwe": "CWE-787", "n": 12, "tp": 9, "recall": 0.75, "small_n": False},
                      {"cwe": "CWE-416", "n": 4, "tp": 1, "recall": 0.25, "small_n": True}]),
])
def test_plot_functions_nilearn_style(tmp_path, plot, arg):
    out = tmp_path / "p.png"
    assert plot(arg, output_file=out) is None
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = plot(arg)
    assert ax is not None and hasattr(ax, "figure")
    from matplotlib.figure import Figure

    given = Figure().add_subplot()
    assert plot(arg, axes=given) is given


def test_report_shows_primevul_pairs_vd_s_and_per_source_pairs(tmp_path, both):
    summaries, rows = both
    md, page = R.write_report(tmp_path, summaries, rows, "pairs", {"model": "m"})
    text = md.read_text(encoding="utf-8")
    assert "Vulnerable/fixed pairs (PrimeVul)" in text and "P-C (both right)" in text and "P-R (reversed)" in text
    assert "VD-S: FNR at FPR ≤ 0.5%" in text             # logit mode has scores
    pw = summaries["zero-shot · logit"]["pairwise"]
    assert pw["n_pairs"] == 30
    cell = f"{pw['P-C']['count']} ({pw['P-C']['value']:.3f})"
    assert cell in text and cell in page.read_text(encoding="utf-8")
    net = f"{pw['P-C']['value'] - pw['P-R']['value']:+.3f} [{pw['net']['ci'][0]:.3f}, {pw['net']['ci'][1]:.3f}]"
    assert "net P-C − P-R (coin: 0)" in text and net in text
    # per-source rows: both sources have pairs here, so both carry P-C
    by = {r["source"]: r for r in summaries["zero-shot · logit"]["per_source"]}
    assert by["sven"]["pairwise"]["n_pairs"] == 10 and by["juliet"]["pairwise"]["n_pairs"] == 20
