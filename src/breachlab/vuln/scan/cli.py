"""``breachlab vuln scan PATH… [--format sarif] [--config FILE.yaml] [--set key=value] [--out DIR]`` — scan offline.

Scans C/C++ code.  Settings resolve as in every command (defaults ← ``--config`` ← named
flags ← ``--set``) into a :class:`~.command_config.ScanCommandConfig`.  ``--out DIR`` writes a
run directory (config.yaml, manifest.json, the report); ``--output FILE`` (``-o``, as it
always was here) writes only the report; with either, the report is not printed.

Default: cppcheck, flawfinder and clang-tidy's Clang Static Analyzer flag candidates, the
embedded model triages each flagged function, and the shipped calibration decides at its
calibrated false-positive rate.  ``--no-model`` uses the tools alone; ``--deep`` also lets the
model score functions no tool flagged, and the calibration's ``deep`` combiner (fitted over
every function) decides.

Exit codes: 0 nothing at or above the threshold (after ``--baseline``), 1 findings, 2 usage
or input error (including a scan that read no file), 3 internal error.  Nothing in the
scanned tree is built or executed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from breachlab.cli_options import CONFIG_OPT, SET_OPT, load_config
from breachlab.errors import UserError
from breachlab.vuln.scan.command_config import ScanCommandConfig
from breachlab.vuln.scan.loading import choose_adapter, make_scorer, shipped_calibration  # noqa: F401 (seams)

EXIT_INTERNAL = 3


def _no_files_error(report: Any, paths: List[Path]) -> UserError:
    reasons = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped[:3])
    more = f" (+{len(report.skipped) - 3} more)" if len(report.skipped) > 3 else ""
    why = f"every file was skipped — {reasons}{more}" if report.skipped else \
        "no C/C++ source below them (.gitignore, vendored/build folders and --exclude apply inside folders)"
    return UserError(f"nothing scanned in {', '.join(map(str, paths))}: {why}")


# --out without its usual -o: on scan, -o has always meant --output (the report file).
SCAN_OUT_OPT = typer.Option(None, "--out", help="Run directory to create: config.yaml, manifest.json and the report "
                                                "(report.sarif for --format sarif, …). No -o here: -o is --output.")


def scan(
    paths: Optional[List[Path]] = typer.Argument(None, help="C/C++ files or folders to scan (named files are always "
                                                            "scanned; or paths: in the config)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="embedded (default), a ladder name (breachlab "
                                        "models list), a .gguf file, a HF dir; with --backend openai the server's "
                                        "model name."),
    backend: Optional[str] = typer.Option(None, help="auto (default), llama.cpp, transformers, openai (a server) or "
                                                     "none (no model)."),
    base_url: Optional[str] = typer.Option(None, help="--backend openai: the server, e.g. http://127.0.0.1:8080/v1."),
    concurrency: Optional[int] = typer.Option(None, help="--backend openai: requests in flight (default 4)."),
    no_model: Optional[bool] = typer.Option(None, "--no-model", help="Static tools and the calibrated combiner only."),
    adapter: Optional[str] = typer.Option(None, help="LoRA adapter: default (shipped), none (zero-shot), a .gguf "
                                                     "LoRA or a PEFT dir. Unset: default for the embedded model."),
    deep: Optional[bool] = typer.Option(None, "--deep/--no-deep", help="Also let the model score functions no static "
                                                                       "tool flagged (slow); the calibration's deep "
                                                                       "combiner decides."),
    tools: Optional[str] = typer.Option(None, help="Static tools that produce candidates, comma list (default "
                                                   "cppcheck,flawfinder,clang-tidy,gcc; \"\": none)."),
    calibration: Optional[Path] = typer.Option(None, help="Calibration JSON from `breachlab vuln calibrate` "
                                                          "(default: the shipped one, when it matches the settings)."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="text (default), json, sarif, markdown or html."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report to this file instead of "
                                                                       "stdout."),
    min_confidence: Optional[float] = typer.Option(None, help="Report at or above this confidence "
                                                              "(default: the calibration's threshold)."),
    baseline: Optional[Path] = typer.Option(None, help="JSON report of an earlier scan: its findings are suppressed."),
    changed_since: Optional[str] = typer.Option(None, help="Only functions a `git diff GIT_REF` touches "
                                                           "(tracked files)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Parallel static-tool processes and parser threads "
                                                                  "(default 2)."),
    threads: Optional[int] = typer.Option(None, help="Model CPU threads (default: all cores)."),
    n_ctx: Optional[int] = typer.Option(None, help="Model context (default 4096); longer functions are cut, never "
                                                   "fatal."),
    explain: Optional[bool] = typer.Option(None, "--explain/--no-explain", help="Generate verdict/CWE/reason for "
                                           "findings (default; --no-explain: scores only)."),
    strip_comments: Optional[bool] = typer.Option(None, "--strip-comments/--no-strip-comments", help="Remove "
                                                  "comments before the model sees code (default; they are untrusted)."),
    cache: Optional[bool] = typer.Option(None, "--cache/--no-cache", help="Reuse tool results and scores of unchanged "
                                                                         "code from $BREACHLAB_CACHE/scan (default)."),
    gitignore: Optional[bool] = typer.Option(None, "--gitignore/--no-gitignore", help="Respect .gitignore files in "
                                                                                     "folder walks (default)."),
    include_vendored: Optional[bool] = typer.Option(None, "--include-vendored/--no-include-vendored",
                                                    help="Also scan third_party/vendor/build folders."),
    exclude: Optional[List[str]] = typer.Option(None, help="Extra file/folder globs to skip (repeatable)."),
    max_file_bytes: Optional[int] = typer.Option(None, help="Skip files larger than this (default 2000000)."),
    max_line_chars: Optional[int] = typer.Option(None, help="Cut longer lines before the model (default 500; a note "
                                                            "says so)."),
    config: Optional[Path] = CONFIG_OPT,
    sets: Optional[List[str]] = SET_OPT,
    out: Optional[Path] = SCAN_OUT_OPT,
) -> None:
    """Scan C/C++ code: static candidates triaged by a local model; exit 1 when there are findings."""
    cfg = load_config(ScanCommandConfig, config, sets, paths=[str(p) for p in paths] if paths else None, model=model,
                      backend=backend, base_url=base_url, concurrency=concurrency, no_model=no_model,
                      adapter=adapter, deep=deep, tools=_csv(tools),
                      calibration=str(calibration) if calibration else None, format=fmt,
                      output=str(output) if output else None, min_confidence=min_confidence,
                      baseline=str(baseline) if baseline else None, changed_since=changed_since, jobs=jobs,
                      threads=threads, n_ctx=n_ctx, explain=explain, strip_comments=strip_comments, cache=cache,
                      gitignore=gitignore, include_vendored=include_vendored, exclude=exclude or None,
                      max_file_bytes=max_file_bytes, max_line_chars=max_line_chars)
    if out is None:
        report = run_command(cfg)
    else:
        from breachlab.rundir import RunDir, check_run_dir

        check_inputs(cfg)  # bad input makes no run directory
        check_run_dir(out)
        run_dir = RunDir.create("vuln-scan", cfg, out=out, inputs=[cfg.baseline] if cfg.baseline else None)
        with run_dir.running():
            report = run_command(cfg, report_dir=run_dir.path)
            run_dir.update_manifest(findings=len(report.findings), report=cfg.report_file,
                                    exit_code=1 if report.findings else 0)
    if report.findings:
        raise SystemExit(1)  # exit 1: findings at or above the threshold


def _csv(text: Optional[str]) -> Optional[List[str]]:
    """``--tools a,b`` → ``["a", "b"]``; ``--tools ""`` → ``[]`` (no tool); not given → None."""
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _calibration_for(cfg: ScanCommandConfig, scan_cfg: Any, scorer: Any) -> Any:
    """The explicit calibration, else the shipped one when it covers these settings, else None (with a note)."""
    from breachlab.vuln.scan import calibration as calmod
    from breachlab.vuln.scan.scanner import scan_settings

    if cfg.calibration is not None:
        return calmod.load(Path(cfg.calibration))  # an explicit calibration must match (scan() refuses it otherwise)
    if not shipped_calibration().is_file():
        return None
    shipped = calmod.load(shipped_calibration())
    try:
        calmod.check(shipped, scan_settings(scan_cfg, scorer), "model" if scorer is not None else "no_model")
        return shipped
    except UserError:
        typer.echo("note: the shipped calibration does not cover these settings (model, tools, prompt): "
                   "confidence is the model's P at threshold 0.5 — run `breachlab vuln calibrate` for a "
                   "calibrated threshold", err=True)
        return None


def _model_has_no_say(cfg: ScanCommandConfig) -> bool:
    """Whether the scan would load the model for nothing: the shipped calibration applies (no
    calibration file, threshold or ``--deep`` of the user's) and its ``model`` combiner gives
    the model's score weight 0, so no score can change a decision and none is asked for (the
    model explains only the functions it scored)."""
    from breachlab.vuln.scan import calibration as calmod

    if cfg.calibration is not None or cfg.deep or cfg.min_confidence is not None or not shipped_calibration().is_file():
        return False
    variant = calmod.load(shipped_calibration()).variants.get("model")
    return variant is not None and variant.weights.get("llm_logit", 0.0) == 0.0


def check_inputs(cfg: ScanCommandConfig) -> None:
    """Refuse (exit 2) a scan of nothing, of a missing path, against a missing baseline or into an
    ``--output`` that is a folder (all before the scan starts)."""
    if not cfg.paths:
        raise UserError("nothing to scan: give PATH arguments (or paths: in the config)")
    missing = [p for p in cfg.paths if not Path(p).exists() and not Path(p).is_symlink()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    if cfg.baseline and not Path(cfg.baseline).is_file():
        raise UserError(f"baseline {cfg.baseline} does not exist")
    if cfg.output:
        from breachlab.rundir import check_output_file

        check_output_file(cfg.output)


def run_command(cfg: ScanCommandConfig, report_dir: Optional[Path] = None) -> Any:
    """Scan as ``cfg`` says, write the report where it says; return the report.

    The report goes to ``cfg.output`` when set, into ``report_dir`` (a run directory) when
    given, and to stdout when neither is.  Raises :class:`UserError` for bad input and
    exits 3 on an internal error, so a crash never reads as "findings".
    """
    from breachlab.vuln.scan.cache import ScoreCache, default_path
    from breachlab.vuln.scan.formats import render
    from breachlab.vuln.scan.formats.text import summary_line
    from breachlab.vuln.scan.scanner import ScanConfig, apply_baseline, scan as run_scan

    check_inputs(cfg)
    paths = [Path(p) for p in cfg.paths]
    baseline = Path(cfg.baseline) if cfg.baseline else None
    changed = None
    if cfg.changed_since:
        from breachlab.vuln.scan.gitdiff import changed_lines

        changed = changed_lines(cfg.changed_since, list(cfg.paths))
    scan_cfg = ScanConfig(paths=list(cfg.paths), tools=list(cfg.tools), deep=cfg.deep,
                          min_confidence=cfg.min_confidence, explain=cfg.explain, jobs=cfg.jobs,
                          strip_comments=cfg.strip_comments, respect_gitignore=cfg.gitignore,
                          include_vendored=cfg.include_vendored, exclude=list(cfg.exclude),
                          max_file_bytes=cfg.max_file_bytes, max_line_chars=cfg.max_line_chars,
                          changed=changed, static_timeout=cfg.static_timeout)
    scorer = None
    if cfg.use_model:
        from types import SimpleNamespace

        from breachlab.vuln.scan.files import nothing_to_scan

        only_skips = nothing_to_scan(paths, respect_gitignore=cfg.gitignore, include_vendored=cfg.include_vendored,
                                     exclude=tuple(cfg.exclude))
        if only_skips is not None:  # refused before the model loads
            raise _no_files_error(SimpleNamespace(skipped=only_skips), paths)
        if _model_has_no_say(cfg):
            typer.echo("note: the shipped calibration gives the model no say in any decision, so the model is "
                       "not loaded and the tools decide alone (`breachlab vuln calibrate` with a model gives it one; "
                       "--no-model says the same explicitly)", err=True)
        else:
            scorer = make_scorer(cfg.model, cfg.backend, choose_adapter(cfg.adapter, model=cfg.model), cfg.n_ctx,
                                 cfg.threads, cfg.base_url, cfg.concurrency)
    cal = _calibration_for(cfg, scan_cfg, scorer)
    store = ScoreCache(default_path() if cfg.cache else None)
    from breachlab.vuln.scan.progress import ScanProgress

    progress = ScanProgress(sys.stderr)  # plain lines on a pipe or file too (CI logs)
    try:
        try:
            report = run_scan(scan_cfg, scorer, cache=store, calibration=cal, progress=progress)
        finally:
            progress.close()
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
    to_stdout = cfg.output is None and report_dir is None
    color = cfg.format == "text" and to_stdout and sys.stdout.isatty()
    text = render(report, "text", color=True) if color else render(report, cfg.format)
    targets = [Path(cfg.output)] if cfg.output else []
    if report_dir is not None:
        targets.append(Path(report_dir) / cfg.report_file)
    if to_stdout:
        sys.stdout.write(text)
    else:
        from breachlab.rundir import atomic_write_text

        for target in targets:
            atomic_write_text(target, text)
        typer.echo(f"{summary_line(report)} → {', '.join(map(str, targets))}", err=True)
    return report
