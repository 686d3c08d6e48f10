"""The published tables of README.md and docs/benchmarks.md, generated from committed result files.

    python scripts/docs_tables.py            # rewrite every generated table in place
    python scripts/docs_tables.py --check    # exit 1 when a committed table differs from its results

A generated table sits between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``; everything
between the two markers is replaced by ``TABLES[NAME]()``.  Nothing is typed in: quality numbers
are recomputed from ``predictions.jsonl`` with the project's own ``summarize`` and ``compare``,
speed numbers are read from the benchmark's JSON reports, the adapter's from its ``card.json``.
``tests/test_docs_tables.py`` checks that the committed documents equal this script's output.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
DOCS = (ROOT / "README.md", ROOT / "docs" / "benchmarks.md")
QUICKSTART = RESULTS / "quickstart"
THROUGHPUT = RESULTS / "train-throughput"
CARD = ROOT / "src" / "breachlab" / "data" / "adapters" / "gemma3-270m-juliet-r16" / "card.json"
SCOPES = ("all", "juliet", "sven", "pairvul")
MARKER = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.S)


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def _span(pair: list[float], digits: int = 2) -> str:
    lo, hi = (f"{v:.{digits}f}" for v in pair)
    return lo if lo == hi else f"{lo}–{hi}"


# ---------------------------------------------------------------- quickstart (predictions)

def _rows(arm: str, results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / arm / "predictions.jsonl").read_text().splitlines()]


def quickstart_numbers(results: Path = QUICKSTART) -> dict:
    """Per scope: n, zero-shot and fine-tuned ROC-AUC / MCC, the paired deltas; generation parse counts."""
    from breachlab.vuln.eval import compare
    from breachlab.vuln.eval.summary import summarize

    out: dict = {"scopes": {}, "run": json.loads((results / "claims.json").read_text())["run"]}
    for scope in SCOPES:
        src = None if scope == "all" else scope
        cells = {}
        for arm in ("zero-shot", "fine-tuned"):
            rows = [r for r in _rows(arm, results) if r["mode"] == "logit" and (src is None or r["source"] == src)]
            s = summarize(rows, threshold=0.5, n_boot=0)
            cells[arm] = {"n": len(rows), "roc_auc": s["auc"]["roc_auc"]["value"], "mcc": s["metrics"]["mcc"]["value"]}
        res = compare.compare([results / "zero-shot", results / "fine-tuned"], source=src)
        deltas = res["modes"]["logit"]["deltas"][0]["metrics"]
        out["scopes"][scope] = {**cells, "delta": {k: deltas[k] for k in ("roc_auc", "mcc")}}
    out["parsed"] = {}
    for arm in ("zero-shot", "fine-tuned"):
        gen = [r for r in _rows(arm, results) if r["mode"] == "generate"]
        out["parsed"][arm] = (sum(r["verdict"] is not None for r in gen), len(gen))
    return out


def quickstart_table(results: Path = QUICKSTART) -> str:
    q = quickstart_numbers(results)
    lines = ["| scope | n | ROC-AUC zero-shot → fine-tuned | paired Δ [95% CI] | MCC zero-shot → fine-tuned |"
             " paired Δ [95% CI] |", "|---|--:|---|---|---|---|"]
    for scope, c in q["scopes"].items():
        d = c["delta"]
        cis = [f"{_signed(d[k]['delta'])} [{_signed(d[k]['ci'][0])}, {_signed(d[k]['ci'][1])}]"
               + (" significant" if d[k]["excludes_zero"] else "") for k in ("roc_auc", "mcc")]
        lines.append(f"| {scope} | {c['fine-tuned']['n']} | {_f(c['zero-shot']['roc_auc'])} → "
                     f"{_f(c['fine-tuned']['roc_auc'])} | {cis[0]} | {_f(c['zero-shot']['mcc'])} → "
                     f"{_f(c['fine-tuned']['mcc'])} | {cis[1]} |")
    (zp, zn), (fp, fn) = q["parsed"]["zero-shot"], q["parsed"]["fine-tuned"]
    run = q["run"]
    stages = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in run["timings"].items())
    lines += ["", f"Generated answers that parse: {zp} of {zn} zero-shot, {fp} of {fn} fine-tuned. "
              f"Run: `{run['command']}`, {run['started'][:10]}, {run['machine']}; {run['wall_clock']} "
              f"(stages: {stages})."]
    return "\n".join(lines)


# ---------------------------------------------------------------- the shipped adapter (card.json)

def adapter_table(card_file: Path = CARD) -> str:
    card = json.loads(card_file.read_text())
    lines = ["| domain | n | ROC-AUC [95% CI] zero-shot → fine-tuned | MCC [95% CI] zero-shot → fine-tuned |",
             "|---|--:|---|---|"]
    for domain, arms in card["heldout"].items():
        z, t = arms["zero_shot"], arms["fine_tuned"]

        def cell(m: dict) -> str:
            return f"{m['value']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]".replace("-", "−")
        lines.append(f"| {domain} | {t['n']} | {cell(z['roc_auc'])} → {cell(t['roc_auc'])} | "
                     f"{cell(z['mcc'])} → {cell(t['mcc'])} |")
    tr = card["training"]
    lines += ["", f"Adapter `{card['name']}`: trained on {tr['machine']} (code `{tr['code_commit']}`, "
              f"{tr['steps']} of {tr['planned_steps']} steps, best step {tr['best_step']}); scored on the "
              f"held-out test split through {t['backend']} (`card.json`)."]
    return "\n".join(lines)


# ---------------------------------------------------------------- real code (predictions)

def _realcode_script():
    spec = importlib.util.spec_from_file_location("realcode_table", ROOT / "benchmarks" / "realcode_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def realcode_tables(results: Path = RESULTS) -> str:
    script = _realcode_script()
    parts = []
    for folder in sorted(results.glob("realcode-*")):
        parts.append(f"`{folder.relative_to(ROOT)}/`:\n\n{script.markdown(script.table(folder))}")
    return "\n\n".join(parts)


# ---------------------------------------------------------------- training speed (benchmark JSON)

PEER_NAMES = {"baseline": "the floor, HF Trainer + PEFT", "trl": "TRL SFTTrainer", "unsloth": "Unsloth"}
PEER_SHORT = {"baseline": "HF Trainer + PEFT", "trl": "TRL", "unsloth": "Unsloth"}


def _report(name: str, folder: Path) -> tuple[dict, dict]:
    report = json.loads((folder / name).read_text())
    return report, report["results"][0]


def speed_table(name: str, folder: Path = THROUGHPUT) -> str:
    """One benchmark report: every arm's speed and memory against the floor and the best peer."""
    report, res = _report(name, folder)
    lines = ["| arm | samples/s | × floor | × best peer | GPU alloc / reserved GiB | host peak GiB "
             "(training) | max \\|Δloss\\| vs floor |", "|---|--:|--:|--:|---|---|--:|"]
    for arm, s in res["summary"].items():
        if "samples_per_s" not in s:
            lines.append(f"| {arm} | not run: {'; '.join(s.get('not_run', ['?']))[:80]} | | | | | |")
            continue
        ratio = {k: (f"{s[k]['samples_per_s_ratio']:.2f}" if k in s else "–") for k in ("vs_floor", "vs_best_peer")}
        gap = f"{s['loss_gap_max']:.3f}" if "loss_gap_max" in s else "–"
        label = f"{arm}: {PEER_NAMES[arm]}" if arm in PEER_NAMES else f"**{arm}**"
        lines.append(f"| {label} | {_span(s['samples_per_s'])} | {ratio['vs_floor']} | {ratio['vs_best_peer']} | "
                     f"{_span(s['peak_gpu_alloc_gib'])} / {_span(s['peak_gpu_reserved_gib'])} | "
                     f"{_span(s['peak_host_gib'])} ({_span(s['train_peak_host_gib'])}) | {gap} |")
    best = next((s["vs_best_peer"]["arm"] for s in res["summary"].values() if "vs_best_peer" in s), "–")
    lines += ["", f"{report['shape']} {res['method']}, {report['weights']} weights, batch {report['batch_size']}, "
              f"{report['steps']} timed steps after {report['warmup']} warm-up, {report['repeats']} round(s); "
              f"best peer: {best}; {res['device']}, torch {report['torch']}, transformers {report['transformers']}, "
              f"{report['date']} (`docs/results/train-throughput/{name}`)."]
    return "\n".join(lines)


def epoch_table(name: str = "e4b-qlora-epoch.json", folder: Path = THROUGHPUT) -> str:
    """A whole-epoch arm: speed, graphs, padding and memory over every step."""
    report, res = _report(name, folder)
    lines = ["| arm | steps | samples/s (median) | graphs captured (limit) | padded steps | GPU alloc / reserved "
             "GiB | host at training start → peak GiB |", "|---|--:|--:|---|--:|---|---|"]
    for arm, runs in res["arms"].items():
        r = runs[0]
        lines.append(f"| {arm} | {len(r['losses'])} | {r['samples_per_s']:.2f} | {r['graphs_captured']} "
                     f"({r['graph_limit']}) | {r['graph_padded_steps']} | {r['peak_gpu_alloc_gib']:.2f} / "
                     f"{r['peak_gpu_reserved_gib']:.2f} | {r['train_start_host_gib']:.2f} → {r['peak_host_gib']:.2f} |")
    lines += ["", f"{report['shape']} {res['method']}, {report['weights']} weights, batch {report['batch_size']}, "
              f"one epoch; {res['device']}, {report['date']} (`docs/results/train-throughput/{name}`)."]
    return "\n".join(lines)


def _ratio(name: str, arm: str, key: str = "vs_best_peer") -> tuple[str, dict, dict]:
    report, res = _report(name, THROUGHPUT)
    s = res["summary"][arm][key]
    return f"{s['samples_per_s_ratio']:.2f}", report, res | {"best": PEER_SHORT.get(s["arm"], s["arm"])}


# ---------------------------------------------------------------- the README's headline table

def readme_headline() -> str:
    q = quickstart_numbers()["scopes"]
    card = json.loads(CARD.read_text())["heldout"]["juliet"]
    real = _realcode_script().table(RESULTS / "realcode-qwen2.5-coder-0.5b", n_boot=0)
    qwen, qrep, qres = _ratio("qwen-1.5b-lora.json", "breachlab-graphs")
    e4b = [_ratio(f"e4b-qlora-round{i}.json", "breachlab-graphs-ple-disk-unpinned") for i in (1, 2)]

    def sig(scope: str) -> str:
        return "significant" if q[scope]["delta"]["roc_auc"]["excludes_zero"] else "not significant"

    def auc(scope: str) -> str:
        return f"{_f(q[scope]['zero-shot']['roc_auc'])} → {_f(q[scope]['fine-tuned']['roc_auc'])}"

    rows = [
        (f"Quickstart, all {q['all']['fine-tuned']['n']} held-out samples: ROC-AUC zero-shot → shipped adapter",
         auc("all"), f"2-core CPU, llama.cpp, one run; {sig('all')}", "quickstart"),
        ("Quickstart, real code only (SVEN / PairVul pairs): ROC-AUC", f"{auc('sven')} / {auc('pairvul')}",
         f"{q['sven']['fine-tuned']['n'] // 2} / {q['pairvul']['fine-tuned']['n'] // 2} pairs; {sig('sven')} / "
         f"{sig('pairvul')}", "quickstart"),
        (f"Shipped adapter, {card['fine_tuned']['n']} held-out Juliet functions: ROC-AUC",
         f"{card['zero_shot']['roc_auc']['value']:.3f} → {card['fine_tuned']['roc_auc']['value']:.3f}",
         f"{card['fine_tuned']['backend']}, adapter card", "fine-tuning-quality"),
        (f"Qwen2.5-Coder-0.5B LoRA, {real['sft']['pairvul']['pairs']} PairVul test pairs: ROC-AUC zero-shot → SFT",
         f"{_f(real['zero-shot']['pairvul']['roc_auc'])} → {_f(real['sft']['pairvul']['roc_auc'])}",
         "real weights, one GPU", "real-code"),
        (f"Training speed, Qwen2.5-Coder-1.5B LoRA: × the fastest peer ({qres['best']})", f"{qwen}×",
         f"real weights, one {qres['device'].removeprefix('NVIDIA ')}, {qrep['steps']} steps",
         "training-speed-against-the-peers"),
        ("Training speed, Gemma 4 E4B QLoRA shape: × the best peer", " / ".join(f"{r}×" for r, _, _ in e4b),
         f"random init, one {e4b[0][2]['device'].removeprefix('NVIDIA ')}, {len(e4b)} rounds, best peer "
         f"{' / '.join(x['best'] for _, _, x in e4b)}", "training-speed-against-the-peers"),
    ]
    lines = ["| what | number | conditions | details |", "|---|---|---|---|"]
    lines += [f"| {w} | {n} | {c} | [benchmarks](docs/benchmarks.md#{a}) |" for w, n, c, a in rows]
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {
    "readme-headline": readme_headline,
    "quickstart": quickstart_table,
    "adapter": adapter_table,
    "realcode": realcode_tables,
    "speed-qwen": lambda: speed_table("qwen-1.5b-lora.json"),
    "speed-e4b-round1": lambda: speed_table("e4b-qlora-round1.json"),
    "speed-e4b-round2": lambda: speed_table("e4b-qlora-round2.json"),
    "speed-e4b-epoch": epoch_table,
}


def render(text: str, tables: dict[str, Callable[[], str]] | None = None) -> str:
    """``text`` with every generated table replaced by its freshly computed content."""
    tables = TABLES if tables is None else tables
    cache: dict[str, str] = {}

    def fill(m: re.Match) -> str:
        name = m["name"]
        if name not in tables:
            raise KeyError(f"unknown generated table {name!r} (known: {', '.join(tables)})")
        if name not in cache:
            cache[name] = tables[name]().rstrip("\n")
        return f"{m.group(1)}{cache[name]}\n{m.group(4)}"

    return MARKER.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a document is out of date")
    args = ap.parse_args(argv)
    stale = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        try:
            new = render(text)
        except (KeyError, OSError, ValueError) as exc:  # an unknown marker, a missing or broken result file
            print(f"{doc.relative_to(ROOT)}: {exc}", file=sys.stderr)
            return 2
        if new != text:
            stale.append(doc.relative_to(ROOT))
            if not args.check:
                doc.write_text(new, encoding="utf-8")
    if stale:
        print(("out of date: " if args.check else "rewrote: ") + ", ".join(map(str, stale)), file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
