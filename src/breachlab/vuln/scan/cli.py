"""``breachlab vuln scan PATH… [--format sarif --output scan.sarif]`` — scan C/C++ code offline.

Exit codes: 0 nothing at or above ``--min-confidence`` (after ``--baseline``), 1 findings,
2 usage or input error.  Nothing leaves the machine; nothing in the scanned tree is built
or executed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from breachlab.errors import UserError


def make_scorer(model: str, backend: str, adapter: Optional[str], n_ctx: int, threads: Optional[int]) -> Any:
    """Load the model behind the scan (a seam: tests replace it with a fake scorer)."""
    from breachlab.vuln.backends import load_backend
    from breachlab.vuln.scan.scanner import BackendScorer

    return BackendScorer(load_backend(model, backend=backend, adapter=adapter, n_ctx=n_ctx, threads=threads))


def default_adapter_note() -> str:
    """What the shipped adapter is good for, from its card's held-out numbers (told on every scan)."""
    from breachlab.vuln.adapters import shipped_card

    card = shipped_card()
    roc = {d: card["heldout"][d]["fine_tuned"]["roc_auc"]["value"] for d in ("juliet", "sven") if d in card["heldout"]}
    where = ", ".join(f"{'Juliet-style' if d == 'juliet' else 'real (SVEN)'} code {v:.2f}" for d, v in roc.items())
    return (f"note: model = embedded Gemma 3 270M + adapter {card['name']}; held-out ROC-AUC: {where} "
            "(0.50 = chance). On real code its verdicts are no better than chance: add --hybrid cppcheck,flawfinder "
            "for static analysers, --adapter none for the base model.")


def choose_adapter(adapter: Optional[str], *, model: str, hybrid: bool, custom_weights: bool) -> str:
    """The adapter a scan uses when ``--adapter`` is not given (see the option's help)."""
    if adapter is not None:
        return adapter
    if hybrid and not custom_weights:
        return "none"  # DEFAULT_WEIGHTS combine *zero-shot* LLM scores with the static tools
    from breachlab.vuln.adapters import has_shipped

    return "default" if model == "embedded" and has_shipped() else "none"


def scan(
    paths: List[Path] = typer.Argument(..., help="C/C++ files or folders to scan."),
    model: str = typer.Option("embedded", "--model", "-m", help="embedded, a .gguf file, a HF directory or hub id."),
    backend: str = typer.Option("auto", help="auto, llama.cpp or transformers."),
    adapter: Optional[str] = typer.Option(
        None, help="LoRA adapter: default (the shipped one, when this version ships one), none (zero-shot), "
                   "a .gguf LoRA or a PEFT dir. "
                   "Unset: default for the embedded model when one ships, none with --hybrid (its weights were fitted on "
                   "zero-shot scores)."),
    fmt: str = typer.Option("text", "--format", "-f", help="text, json, sarif, markdown or html."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
    min_confidence: float = typer.Option(0.5, help="Report functions with confidence at least this (0-1)."),
    baseline: Optional[Path] = typer.Option(None, help="JSON report of an earlier scan: its findings are suppressed."),
    hybrid: Optional[str] = typer.Option(None, help="Static tools as candidates/evidence: cppcheck,flawfinder."),
    hybrid_candidates_only: bool = typer.Option(False, help="Hybrid: score only functions a static tool flagged."),
    hybrid_weights: Optional[Path] = typer.Option(None, help="Combiner weights JSON from `scan_bench.py calibrate`."),
    jobs: int = typer.Option(2, "--jobs", "-j", help="Worker threads for reading, parsing and static tools."),
    threads: Optional[int] = typer.Option(None, help="Model CPU threads (default: all cores)."),
    n_ctx: int = typer.Option(4096, help="Model context; longer functions are cut at a line boundary."),
    explain: bool = typer.Option(True, help="Generate verdict/CWE/reason for findings (--no-explain: scores only)."),
    cache: bool = typer.Option(True, help="Reuse scores of unchanged functions from $BREACHLAB_CACHE/scan."),
    gitignore: bool = typer.Option(True, help="Respect .gitignore files."),
    include_vendored: bool = typer.Option(False, help="Also scan third_party/vendor/build folders."),
    exclude: Optional[List[str]] = typer.Option(None, help="Extra file/folder globs to skip (repeatable)."),
    max_file_bytes: int = typer.Option(2_000_000, help="Skip files larger than this."),
) -> None:
    """Scan C/C++ code with a local model; exit 1 when there are findings."""
    from breachlab.vuln.scan.cache import ScoreCache, default_path
    from breachlab.vuln.scan.formats import FORMATS, render
    from breachlab.vuln.scan.formats.text import summary_line
    from breachlab.vuln.scan.scanner import ScanConfig, apply_baseline
    from breachlab.vuln.scan.scanner import scan as run_scan

    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}: use {', '.join(FORMATS)}")
    missing = [str(p) for p in paths if not p.exists() and not p.is_symlink()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    if baseline is not None and not baseline.is_file():
        raise UserError(f"baseline {baseline} does not exist")
    tools = [t.strip() for t in hybrid.split(",") if t.strip()] if hybrid else []
    cfg = ScanConfig(paths=[str(p) for p in paths], min_confidence=min_confidence, hybrid=tools,
                     hybrid_candidates_only=hybrid_candidates_only, explain=explain, jobs=jobs,
                     respect_gitignore=gitignore, include_vendored=include_vendored, exclude=list(exclude or []),
                     max_file_bytes=max_file_bytes, use_cache=cache)
    weights = None
    if hybrid_weights is not None:
        import json

        try:
            data = json.loads(hybrid_weights.read_text("utf-8"))
            weights = {k: float(v) for k, v in data.get("weights", data).items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise UserError(f"--hybrid-weights {hybrid_weights}: not a weights JSON ({exc})") from None
    adapter = choose_adapter(adapter, model=model, hybrid=bool(tools), custom_weights=weights is not None)
    if adapter == "default":
        typer.echo(default_adapter_note(), err=True)
    scorer = make_scorer(model, backend, adapter, n_ctx, threads)
    store = ScoreCache(default_path() if cache else None)
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                      transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("scanning", total=None)

            def _progress(files: int, functions: int) -> None:
                bar.update(task, description=f"scanning: {files} files, {functions} functions")

            report = run_scan(cfg, scorer, cache=store, weights=weights, progress=_progress)
    finally:
        store.close()
    if baseline is not None:
        report = apply_baseline(report, baseline)
    if fmt == "text" and output is None:
        text = render(report, "text", color=sys.stdout.isatty())
    else:
        text = render(report, fmt)
    if output is not None:
        from breachlab.rundir import atomic_write_text

        atomic_write_text(output, text)
        typer.echo(f"{summary_line(report)} → {output}", err=True)
    else:
        sys.stdout.write(text)
    if report.findings:
        raise SystemExit(1)  # exit 1: findings at or above the threshold
