"""``breachlab vuln eval --data RUN_DIR [--model …] [--mode logit,generate]`` — honest evaluation.

Writes into a run directory: ``predictions.jsonl`` (one row per sample and mode, enough to
recompute every metric), ``metrics.json`` (per mode: metrics with bootstrap CIs, AUCs,
per-CWE, paired, warnings), ``report.md`` + ``report.html``, and prints the metrics table.

``--adapter a,b`` (or a list; ``none``/``base`` is the base model) loads the base once and
evaluates the samples once per adapter, each into its own ordinary eval run directory
``OUT/<label>/`` — ``breachlab vuln compare OUT/<first> OUT/<second> …`` takes them as they are.

Crash-safe: rows go to ``predictions.partial.jsonl`` one at a time (appended, flushed), and
the file becomes ``predictions.jsonl`` only when every row is there.  ``breachlab vuln eval
--resume RUN_DIR`` continues an interrupted or killed run from the rows it already wrote, with
the run's own config: same samples, same order, same results as a run that never stopped.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breachlab.config import ConfigError, field
from breachlab.errors import UserError
from breachlab.progress import Heartbeat
from breachlab.rundir import RunDir, atomic_write_json, sha256_file
from breachlab.vuln.sample import Sample

log = logging.getLogger("breachlab.vuln.eval.evaluate")


@dataclass
class EvalConfig:
    """How to evaluate a model on a labelled split."""

    data: str = field("", help="data run directory (from `breachlab vuln data build`) or a samples .jsonl file")
    split: str = field("test", help="which split of a data run directory to evaluate")
    model: str = field("embedded", help="a ladder name (embedded, qwen2.5-coder-0.5b, …: breachlab models list), "
                                        "a .gguf file, a transformers directory or hf:org/name")
    backend: str = field("auto", help="auto | llama.cpp | transformers (auto: GGUF → llama.cpp)")
    adapter: Any | None = field(None, help="LoRA adapter: a PEFT directory (transformers), a GGUF LoRA (llama.cpp) or "
                                "'default'; several as a comma list or a list (none/base = the base model, "
                                "LABEL=PATH names one): the base is loaded once and each gets a run in OUT/<label>/")
    modes: list[str] = field(default_factory=lambda: ["logit", "generate"],
                             help="decision modes: logit (one forward pass, P(VULNERABLE) vs P(SAFE)) and/or generate")
    threshold: float = field(0.5, help="logit mode: predict VULNERABLE when P(vulnerable) >= threshold")
    max_new_tokens: int = field(64, help="generate mode: tokens to generate per sample")
    limit: int | None = field(None, help="evaluate at most this many samples (class balance kept, vulnerable/fixed "
                                         "pairs whole)")
    generate_limit: int | None = field(None, help="generate mode on at most this many of the samples (balanced, "
                                                  "every source; generation is slow on CPU); logit mode keeps all")
    sources: list[str] = field(default_factory=list,
                               help="evaluate only samples from these sources (e.g. [sven]); empty = all")
    n_ctx: int = field(2048, help="context window; longer functions are shortened from the end and flagged")
    threads: int | None = field(None, help="CPU threads (default: all cores)")
    device: str = field("cpu", help="transformers device: cpu or cuda")
    n_boot: int = field(1000, help="bootstrap resamples for the 95% confidence intervals")
    seed: int = field(42, help="seed for bootstrap resampling")
    allow_pickle: bool = field(False, help="allow loading pickled (.bin) weights — only for checkpoints you trust")
    kb: str | None = field(None, help="KB folder (`breachlab vuln kb build`): show the model the kb_k most similar "
                                      "known vulnerable functions and their fixes before each function; "
                                      "none by default")
    kb_k: int = field(1, help="with kb: how many known pairs to show per function")
    kb_chars: int = field(1200, help="with kb: at most this many characters of each known fix's diff")

    def __post_init__(self) -> None:
        if isinstance(self.adapter, Path):
            self.adapter = str(self.adapter)
        elif isinstance(self.adapter, (list, tuple)):
            if not all(isinstance(a, (str, Path)) for a in self.adapter):
                raise ConfigError(f"adapter: expected paths, got {self.adapter!r}")
            self.adapter = [str(a) for a in self.adapter]
        elif self.adapter is not None and not isinstance(self.adapter, str):
            raise ConfigError(f"adapter: expected a path, a comma list or a list, got {self.adapter!r}")
        bad = [m for m in self.modes if m not in ("logit", "generate")]
        if bad or not self.modes:
            raise ConfigError(f"modes must be a non-empty subset of logit, generate; got {self.modes}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must lie strictly between 0 and 1, got {self.threshold}")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens must be at least 1")
        if self.limit is not None and self.limit < 2:
            raise ConfigError("limit must be at least 2 (one sample per class)")
        if self.generate_limit is not None and self.generate_limit < 0:
            raise ConfigError("generate_limit must be >= 0")
        if self.n_boot < 0:
            raise ConfigError("n_boot must be >= 0")
        if self.kb_k < 1 or self.kb_chars < 80:
            raise ConfigError(f"kb_k must be >= 1 and kb_chars >= 80, got {self.kb_k}, {self.kb_chars}")


def load_eval_samples(data: str | Path, split: str = "test") -> tuple[list[Sample], Path]:
    """Samples from a data run directory or a .jsonl file; returns them and the file read."""
    from breachlab.vuln.sample import read_samples

    if not str(data):
        raise UserError("no evaluation data: pass --data RUN_DIR (from `breachlab vuln data build`) or a .jsonl file")
    path = Path(data)
    if path.is_dir():
        path = path / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"evaluation data not found: {path}")
    samples = read_samples(path, unique_ids=True)
    if not samples:
        raise UserError(f"{path} holds no samples")
    return samples, path


def spread_limit(samples: list[Sample], limit: int | None) -> list[Sample]:
    """Like :func:`balanced_limit`, but drawn round-robin over the data sources (all appear)."""
    from itertools import zip_longest

    if limit is None or limit >= len(samples):
        return samples
    buckets: dict[str, list[Sample]] = {}
    for s in samples:
        buckets.setdefault(s.source, []).append(s)
    order = [s for group in zip_longest(*buckets.values()) for s in group if s is not None]
    picked = {s.id for s in balanced_limit(order, limit)}
    return [s for s in samples if s.id in picked]


def balanced_limit(samples: list[Sample], limit: int | None, whole_pairs: bool = False) -> list[Sample]:
    """At most ``limit`` samples, half of each class where possible, keeping file order.

    ``whole_pairs``: take a vulnerable/fixed pair's two halves together or not at all (pairs
    in order of their first half), so that every pair in the result is complete.
    """
    if limit is None or limit >= len(samples):
        return samples
    per_class = limit // 2
    if not whole_pairs:
        out, counts = [], {0: 0, 1: 0}
        for s in samples:
            if counts[s.label] < per_class:
                out.append(s)
                counts[s.label] += 1
        return out
    units: dict[str, list[Sample]] = {}
    for s in samples:
        units.setdefault(f"pair:{s.pair_id}" if s.pair_id else f"row:{s.id}", []).append(s)
    picked, counts = set(), {0: 0, 1: 0}
    for unit in units.values():
        need = {0: sum(s.label == 0 for s in unit), 1: sum(s.label == 1 for s in unit)}
        if all(counts[c] + need[c] <= per_class for c in (0, 1)):
            picked.update(s.id for s in unit)
            counts = {c: counts[c] + need[c] for c in (0, 1)}
    return [s for s in samples if s.id in picked]


def evaluate_samples(run: RunDir, cfg: EvalConfig, samples: list[Sample], *, title: str,
                     meta: dict[str, Any] | None = None, progress: bool = True,
                     backend: Any = None, resume: bool = False) -> dict[str, dict]:
    """Predict every sample in every mode, then write predictions, metrics and the report.

    ``backend``: an already loaded backend to use as it is (its active adapter) and leave
    open; by default one is loaded from ``cfg`` and closed at the end.  ``resume``: keep the
    rows already in ``predictions.partial.jsonl`` and predict only the missing ones.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.text import Text

    from breachlab.vuln.backends import load_backend
    from breachlab.vuln.eval.predict import PredictionLog, predict_one
    from breachlab.vuln.eval.report import metrics_table, table_notes, write_report
    from breachlab.vuln.eval.summary import summarize

    console = Console(stderr=True, soft_wrap=True)  # step lines stay whole in logs
    digest = samples_digest(samples)
    if resume and run.manifest.get("samples_sha256") != digest:
        raise UserError(f"{run.path} was started on other samples (their ids' sha256 differs): it cannot be resumed "
                        "with this config")
    run.update_manifest(samples_sha256=digest)
    own = backend is None
    if own:
        backend = _load(cfg, load_backend)
    partial = run / "predictions.partial.jsonl"
    refs = sample_references(cfg, samples)
    if refs:
        run.update_manifest(kb=str(cfg.kb), kb_k=cfg.kb_k,
                            kb_functions_with_references=sum(bool(ids) for _, ids in refs.values()))
    rows_by_mode: dict[str, list[dict]] = {mode: [] for mode in cfg.modes}
    with PredictionLog(partial, resume=resume) as sink, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, disable=not progress, transient=False,
    ) as bar, Heartbeat(f"eval {backend.model_id}", enabled=progress and not console.is_terminal) as beat:
        gen_ids = {s.id for s in spread_limit(samples, cfg.generate_limit)}
        total = sum(len(samples) if m != "generate" else len(gen_ids) for m in cfg.modes)
        task = bar.add_task(f"{'+'.join(cfg.modes)} {backend.model_id}", total=total)
        if sink.done:
            log.info("resuming: %d prediction rows already written", len(sink.done))
        for sample in samples:
            for mode in cfg.modes:
                if mode == "generate" and sample.id not in gen_ids:
                    continue
                row = sink.done.pop((sample.id, mode), None)
                if row is None:
                    text, ids = refs.get(sample.id, ("", []))
                    row = predict_one(backend, sample, mode, threshold=cfg.threshold,
                                      max_new_tokens=cfg.max_new_tokens, references=text,
                                      reference_ids=ids if cfg.kb else None)
                    sink.write(row)
                rows_by_mode[mode].append(row)
                bar.advance(task)
                beat.step(sum(map(len, rows_by_mode.values())), total)
        if sink.done:  # rows of samples this config does not select: not the same run
            raise UserError(f"{partial} holds {len(sink.done)} rows this run's config does not select "
                            f"(e.g. {sorted(sink.done)[:2]}); it cannot be resumed")
    partial.rename(run / "predictions.jsonl")
    if own:
        backend.close()

    summaries = {mode: summarize(rows, threshold=cfg.threshold, n_boot=cfg.n_boot, seed=cfg.seed)
                 for mode, rows in rows_by_mode.items()}
    atomic_write_json(run / "metrics.json", summaries)
    names = {mode: f"{title} · {mode}" for mode in summaries}
    meta = {"model": backend.model_id, "backend": backend.name, "samples": len(samples), **(meta or {})}
    write_report(run.path, {names[m]: s for m, s in summaries.items()},
                 {names[m]: rows_by_mode[m] for m in summaries}, title=title, meta=meta)
    out = Console()
    for mode, summary in summaries.items():
        out.print(metrics_table(summary, names[mode]))
        for line in table_notes(summary):
            out.print(Text(line, style="bold red" if line.startswith("!") else ""), soft_wrap=True)
    run.update_manifest(model_id=backend.model_id, backend=backend.name, n_samples=len(samples),
                        throughput={m: _throughput(r) for m, r in rows_by_mode.items()})
    return summaries


def sample_references(cfg: EvalConfig, samples: list[Sample]) -> dict[str, tuple[str, list[str]]]:
    """``{sample id: (reference block, known pair ids)}`` from ``cfg.kb``; empty without a KB.

    A known pair holding the sample itself is never shown (:mod:`breachlab.vuln.kb.retrieve`).
    """
    if not cfg.kb:
        return {}
    from breachlab.vuln.kb.retrieve import KnowledgeBase, hits_from_row
    from breachlab.vuln.prompts import reference_block

    kb = KnowledgeBase.load(cfg.kb)
    sv, sf = kb.similarities([s.code for s in samples])
    out = {}
    for i, s in enumerate(samples):
        hits = hits_from_row(kb.pairs, sv[i], sf[i], cfg.kb_k)
        text = reference_block([(h.pair.vulnerable, h.pair.fixed, h.pair.cwe) for h in hits], cfg.kb_chars)
        out[s.id] = (text, [h.pair.id for h in hits] if text else [])
    log.info("references from %s (%d known pairs) for %d of %d functions", cfg.kb, len(kb),
             sum(bool(ids) for _, ids in out.values()), len(samples))
    return out


def samples_digest(samples: list[Sample]) -> str:
    """sha256 of the ordered sample ids: a resumed run must predict the very same list."""
    import hashlib

    return hashlib.sha256("\n".join(s.id for s in samples).encode()).hexdigest()


def _throughput(rows: list[dict]) -> dict[str, float]:
    total = sum(r["latency_s"] for r in rows)
    return {"samples": len(rows), "seconds": round(total, 2),
            "samples_per_s": round(len(rows) / total, 3) if total else 0.0}


def _load(cfg: EvalConfig, load_backend: Any) -> Any:
    return load_backend(cfg.model, backend=cfg.backend, adapter=cfg.adapter, n_ctx=cfg.n_ctx,
                        threads=cfg.threads, device=cfg.device, allow_pickle=cfg.allow_pickle)


def _select_samples(cfg: EvalConfig) -> tuple[list[Sample], Path]:
    samples, data_file = load_eval_samples(cfg.data, cfg.split)
    if cfg.sources:
        from breachlab.vuln.sample import only_sources

        samples = only_sources(samples, cfg.sources, where=str(data_file))
    return balanced_limit(samples, cfg.limit, whole_pairs=True), data_file


def _model_name(cfg: EvalConfig) -> str:
    return Path(cfg.model).name if cfg.model != "embedded" else "embedded"


def is_multi_adapter(cfg: EvalConfig) -> bool:
    """Whether ``cfg.adapter`` names several adapters (checks every path)."""
    from breachlab.vuln.backends import adapter_specs

    return len(adapter_specs(cfg.adapter, model=cfg.model)) > 1


def run(cfg: EvalConfig, out: str | Path | None = None, root: str | Path = "runs", progress: bool = True) -> Path:
    """Evaluate ``cfg.model`` on ``cfg.data``; returns the run directory.

    With several adapters (see :func:`run_adapters`) it returns the folder holding one run
    directory per adapter.
    """
    if is_multi_adapter(cfg):
        return run_adapters(cfg, out=out, root=root, progress=progress).path
    samples, data_file = _select_samples(cfg)
    run_dir = RunDir.create("vuln-eval", cfg, root=root, out=out, seed=cfg.seed, inputs=[data_file])
    with run_dir.running(resume_hint=f"breachlab vuln eval --resume {run_dir.path}"):
        log.info("evaluating %s on %d samples from %s", cfg.model, len(samples), data_file)
        evaluate_samples(run_dir, cfg, samples, title=_title(cfg), meta={"data": str(data_file)}, progress=progress)
    return run_dir.path


def _title(cfg: EvalConfig) -> str:
    return f"{_model_name(cfg)}{' + adapter' if cfg.adapter else ''}"


def resume(path: str | Path, progress: bool = True) -> Path:
    """Continue an interrupted or killed eval run from the predictions it already wrote.

    The run's own ``config.yaml`` decides everything (samples, order, modes, threshold), and
    its data file must still hash as the manifest recorded; a finished run is left alone.
    """
    from breachlab.config import from_dict

    try:
        run_dir = RunDir.open(path)  # also rewrites a dead process's `running` to `incomplete`
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    manifest = run_dir.manifest
    if manifest.get("kind") != "vuln-eval":
        raise UserError(f"{path} is a {manifest.get('kind')} run, not an eval run")
    status = manifest.get("status")
    if status == "finished":
        raise UserError(f"{path} finished already: nothing to resume")
    if not (run_dir / "predictions.partial.jsonl").is_file():
        raise UserError(f"{path} has no predictions.partial.jsonl to continue from")
    cfg = from_dict(EvalConfig, run_dir.config_dict(), where=str(run_dir / "config.yaml"))
    if is_multi_adapter(cfg):
        raise UserError(f"{path} names several adapters: resume each OUT/<label>/ run on its own")
    samples, data_file = _select_samples(cfg)
    recorded = manifest.get("inputs", {}).get(str(data_file))
    if recorded and recorded != sha256_file(data_file):
        raise UserError(f"{data_file} changed since {path} started (sha256 differs from its manifest): "
                        "the run cannot be resumed on other data")
    with run_dir.running(resume_hint=f"breachlab vuln eval --resume {run_dir.path}"):
        log.info("resuming %s (was %s) on %d samples from %s", run_dir.path, status, len(samples), data_file)
        evaluate_samples(run_dir, cfg, samples, title=_title(cfg), meta={"data": str(data_file)},
                         progress=progress, resume=True)
    return run_dir.path


@dataclass
class AdapterRun:
    """One adapter's evaluation inside a multi-adapter eval."""

    label: str
    adapter: str | None
    path: Path
    model_id: str
    summaries: dict[str, dict]


@dataclass
class MultiEval:
    """A multi-adapter eval: the folder and its runs, in ``--adapter`` order (the first is the baseline)."""

    path: Path
    runs: list[AdapterRun]

    def compare_hint(self) -> str:
        return "breachlab vuln compare " + " ".join(str(r.path) for r in self.runs)


def _group_dir(out: str | Path | None, root: str | Path) -> Path:
    import datetime as _dt

    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise FileExistsError(f"output directory {path} exists and is not empty; choose another --out")
        return path
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = Path(root) / f"vuln-eval-{stamp}", 1
    while path.exists():
        n += 1
        path = Path(root) / f"vuln-eval-{stamp}-{n}"
    return path


def run_adapters(cfg: EvalConfig, out: str | Path | None = None, root: str | Path = "runs",
                 progress: bool = True) -> MultiEval:
    """Evaluate the same samples with each adapter of ``cfg.adapter`` on one loaded base.

    Writes ``OUT/<label>/``, one ordinary eval run directory per adapter (its config.yaml
    names that adapter alone), and nothing else in ``OUT``; a run that fails is marked
    failed in its manifest and stops the rest.
    """
    from breachlab.vuln.backends import adapter_specs, load_backend

    specs = adapter_specs(cfg.adapter, model=cfg.model)
    samples, data_file = _select_samples(cfg)
    group = _group_dir(out, root)
    backend = _load(cfg, load_backend)  # the base once, every adapter on it
    runs: list[AdapterRun] = []
    try:
        group.mkdir(parents=True, exist_ok=True)
        for spec in specs:
            backend.set_adapter(spec.label if spec.path is not None else None)
            one = dataclasses.replace(cfg, adapter=spec.spec)
            run_dir = RunDir.create("vuln-eval", one, root=root, out=group / spec.label, seed=cfg.seed,
                                    inputs=[data_file])
            with run_dir.running(resume_hint=f"breachlab vuln eval --resume {run_dir.path}"):
                log.info("evaluating %s with adapter %s on %d samples from %s", cfg.model, spec.label,
                         len(samples), data_file)
                title = _model_name(cfg) + (f" + {spec.label}" if spec.path is not None else "")
                summaries = evaluate_samples(run_dir, one, samples, title=title, progress=progress, backend=backend,
                                             meta={"data": str(data_file), "adapter": spec.label})
                run_dir.update_manifest(adapter_label=spec.label, adapter_group=str(group))
            runs.append(AdapterRun(spec.label, spec.spec, run_dir.path, backend.model_id, summaries))
    finally:
        backend.close()
    return MultiEval(group, runs)


def adapters_table(result: MultiEval) -> Any:
    """A ``rich`` table: per adapter, balanced accuracy (95% CI) per mode and ROC AUC in logit mode."""
    from rich.table import Table

    from breachlab.vuln.eval.report import fmt, fmt_ci

    modes = list(dict.fromkeys(m for r in result.runs for m in r.summaries))
    table = Table(title="balanced accuracy per adapter (one base)")
    table.add_column("adapter", no_wrap=True)
    for mode in modes:
        table.add_column(f"{mode} (95% CI)", justify="right", no_wrap=True)
        if mode == "logit":
            table.add_column("ROC AUC", justify="right", no_wrap=True)
    for r in result.runs:
        cells = [r.label]
        for mode in modes:
            s = r.summaries.get(mode)
            if s is None:
                cells += ["", ""] if mode == "logit" else [""]
                continue
            bacc = s["metrics"]["balanced_accuracy"]
            cells.append(fmt(bacc["value"]) + (f" {fmt_ci(bacc['ci'])}" if bacc.get("ci") else ""))
            if mode == "logit":
                cells.append(fmt(((s.get("auc") or {}).get("roc_auc") or {}).get("value")))
        table.add_row(*cells)
    return table
