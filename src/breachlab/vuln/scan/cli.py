"""``breachlab vuln scan PATH… [--format sarif --output scan.sarif]`` — scan C/C++ code offline.

Default: cppcheck, flawfinder and clang-tidy's Clang Static Analyzer flag candidates, the
embedded model triages each flagged function, and the shipped calibration decides at its
calibrated false-positive rate.  ``--no-model`` uses the tools alone; ``--deep`` also lets the
model score functions no tool flagged.

Exit codes: 0 nothing at or above the threshold (after ``--baseline``), 1 findings, 2 usage
or input error (including a scan that read no file), 3 internal error.  Nothing in the
scanned tree is built or executed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from breachlab.errors import UserError
from breachlab.vuln.scan.loading import choose_adapter, make_scorer, shipped_calibration  # noqa: F401 (seams)

EXIT_INTERNAL = 3


def _no_files_error(report: Any, paths: List[Path]) -> UserError:
    reasons = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped[:3])
    more = f" (+{len(report.skipped) - 3} more)" if len(report.skipped) > 3 else ""
    why = f"every file was skipped — {reasons}{more}" if report.skipped else \
        "no C/C++ source below them (.gitignore, vendored/build folders and --exclude apply inside folders)"
    return UserError(f"nothing scanned in {', '.join(map(str, paths))}: {why}")


def scan(
    paths: List[Path] = typer.Argument(..., help="C/C++ files or folders to scan (named files are always scanned)."),
    model: str = typer.Option("embedded", "--model", "-m", help="embedded, a ladder name (breachlab models list), a .gguf file, a HF dir; with --backend "
                                                                 "openai the server's model name."),
    backend: str = typer.Option("auto", help="auto, llama.cpp, transformers, openai (a server) or none (no model)."),
    base_url: Optional[str] = typer.Option(None, help="--backend openai: the server, e.g. http://127.0.0.1:8080/v1."),
    concurrency: int = typer.Option(4, help="--backend openai: requests in flight."),
    no_model: bool = typer.Option(False, "--no-model", help="Static tools and the calibrated combiner only."),
    adapter: Optional[str] = typer.Option(None, help="LoRA adapter: default (shipped), none (zero-shot), a .gguf "
                                                     "LoRA or a PEFT dir. Unset: default for the embedded model."),
    deep: bool = typer.Option(False, help="Also let the model score functions no static tool flagged (slow)."),
    tools: str = typer.Option("cppcheck,flawfinder,clang-tidy", help="Static tools that produce candidates."),
    calibration: Optional[Path] = typer.Option(None, help="Calibration JSON from `breachlab vuln calibrate` "
                                                          "(default: the shipped one, when it matches the settings)."),
    fmt: str = typer.Option("text", "--format", "-f", help="text, json, sarif, markdown or html."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
    min_confidence: Optional[float] = typer.Option(None, help="Report at or above this confidence "
                                                              "(default: the calibration's threshold)."),
    baseline: Optional[Path] = typer.Option(None, help="JSON report of an earlier scan: its findings are suppressed."),
    changed_since: Optional[str] = typer.Option(None, help="Only functions a `git diff GIT_REF` touches (tracked files)."),
    jobs: int = typer.Option(2, "--jobs", "-j", help="Parallel static-tool processes and parser threads."),
    threads: Optional[int] = typer.Option(None, help="Model CPU threads (default: all cores)."),
    n_ctx: int = typer.Option(4096, help="Model context; longer functions are cut, never fatal."),
    explain: bool = typer.Option(True, help="Generate verdict/CWE/reason for findings (--no-explain: scores only)."),
    strip_comments: bool = typer.Option(True, help="Remove comments before the model sees code (they are untrusted)."),
    cache: bool = typer.Option(True, help="Reuse tool results and scores of unchanged code from $BREACHLAB_CACHE/scan."),
    gitignore: bool = typer.Option(True, help="Respect .gitignore files (in folder walks)."),
    include_vendored: bool = typer.Option(False, help="Also scan third_party/vendor/build folders."),
    exclude: Optional[List[str]] = typer.Option(None, help="Extra file/folder globs to skip (repeatable)."),
    max_file_bytes: int = typer.Option(2_000_000, help="Skip files larger than this."),
    max_line_chars: int = typer.Option(500, help="Cut longer lines before the model (a note says so)."),
) -> None:
    """Scan C/C++ code: static candidates triaged by a local model; exit 1 when there are findings."""
    from breachlab.vuln.scan import calibration as calmod
    from breachlab.vuln.scan.cache import ScoreCache, default_path
    from breachlab.vuln.scan.formats import FORMATS, render
    from breachlab.vuln.scan.formats.text import summary_line
    from breachlab.vuln.scan.scanner import ScanConfig, apply_baseline, scan_settings
    from breachlab.vuln.scan.scanner import scan as run_scan

    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}: use {', '.join(FORMATS)}")
    missing = [str(p) for p in paths if not p.exists() and not p.is_symlink()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    if baseline is not None and not baseline.is_file():
        raise UserError(f"baseline {baseline} does not exist")
    if backend not in ("auto", "llama.cpp", "transformers", "openai", "none"):
        raise UserError(f"unknown --backend {backend!r}: use auto, llama.cpp, transformers, openai or none")
    use_model = not no_model and backend != "none"
    changed = None
    if changed_since:
        from breachlab.vuln.scan.gitdiff import changed_lines

        changed = changed_lines(changed_since, [str(p) for p in paths])
    cfg = ScanConfig(paths=[str(p) for p in paths], tools=[t.strip() for t in tools.split(",") if t.strip()],
                     deep=deep, min_confidence=min_confidence, explain=explain, jobs=jobs,
                     strip_comments=strip_comments, respect_gitignore=gitignore, include_vendored=include_vendored,
                     exclude=list(exclude or []), max_file_bytes=max_file_bytes, max_line_chars=max_line_chars,
                     use_cache=cache, changed=changed)
    if deep and not use_model:
        raise UserError("--deep needs a model (drop --no-model / --backend none)")
    scorer = None
    if use_model:
        scorer = make_scorer(model, backend, choose_adapter(adapter, model=model), n_ctx, threads, base_url, concurrency)
    cal = None
    if calibration is not None:
        cal = calmod.load(calibration)  # an explicit calibration must match (scan() refuses it otherwise)
    elif shipped_calibration().is_file():
        shipped = calmod.load(shipped_calibration())
        try:
            calmod.check(shipped, scan_settings(cfg, scorer), "model" if scorer is not None else "no_model")
            cal = shipped
        except UserError:
            typer.echo("note: the shipped calibration does not cover these settings (model, tools, prompt): "
                       "confidence is the model's P at threshold 0.5 — run `breachlab vuln calibrate` for a "
                       "calibrated threshold", err=True)
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

            report = run_scan(cfg, scorer, cache=store, calibration=cal, progress=_progress)
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - a crash must not look like "findings" (exit 1)
        import os
        import traceback

        if os.environ.get("BREACHLAB_DEBUG"):
            traceback.print_exc()
        typer.echo(f"internal error: {type(exc).__name__}: {exc} (BREACHLAB_DEBUG=1 shows the traceback)", err=True)
        raise SystemExit(EXIT_INTERNAL) from None
    finally:
        store.close()
    if report.stats["files"] == 0:
        raise _no_files_error(report, paths)
    if baseline is not None:
        report = apply_baseline(report, baseline)
    text = render(report, "text", color=sys.stdout.isatty()) if fmt == "text" and output is None else render(report, fmt)
    if output is not None:
        from breachlab.rundir import atomic_write_text

        atomic_write_text(output, text)
        typer.echo(f"{summary_line(report)} → {output}", err=True)
    else:
        sys.stdout.write(text)
    if report.findings:
        raise SystemExit(1)  # exit 1: findings at or above the threshold
