"""The scan pipeline: files → functions → static candidates → model triage → findings.

Default (triage): cppcheck, flawfinder, the Clang Static Analyzer and GCC's analyzer flag
lines; hits are merged across tools (:mod:`.candidates`).  Reports of checks the calibration
measured *precise* (:mod:`.trust`) become findings directly — no model call, since the model
cannot change that outcome.  Functions flagged only by *noisy* checks go to the model, which
judges each with the flagged lines marked and the tools' reports beside the code
(:mod:`.modelview`); a calibrated combiner (:mod:`.calibration`) turns that evidence + the
model's score into a confidence, and the calibration's threshold decides.  So the decision is
never below the union of the precise checks.  ``deep`` also scores functions no tool
flagged and decides with the calibration's ``deep`` combiner (fitted over every function);
with no scorer (``--no-model``) the combiner uses the tool evidence alone.

Why this shape: the model is the slow part, so reading, parsing and the static tools run in
``jobs`` worker threads a chunk of files ahead, and only one chunk of parsed functions is
alive at a time — memory is bounded by the chunk size, not by the size of the tree.
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from breachlab.config import field
from breachlab.vuln.scan import candidates as cands, modelview, statictools
from breachlab.vuln.scan.cache import ScoreCache, cache_key, config_digest
from breachlab.vuln.scan.calibration import Calibration, Variant, check
from breachlab.vuln.scan.extract import Function, extract_functions
from breachlab.vuln.scan.files import SourceFile, read_source, walk
from breachlab.vuln.scan.finding import Finding, ScanReport, Skipped
from breachlab.vuln.scan.finding_build import build_finding
from breachlab.vuln.scan.hybrid import StaticHit, hits_in
from breachlab.vuln.scan.scorers import PROMPT_VERSION, BackendScorer, Explanation, Scorer, parse_explanation
from breachlab.vuln.scan.trust import Trust

__all__ = ["ScanConfig", "scan", "scan_settings", "variant_name", "apply_baseline", "Explanation", "parse_explanation",
           "BackendScorer"]

log = logging.getLogger("breachlab.scan")


@dataclass
class ScanConfig:
    """Settings of one scan (the CLI flags map one to one onto these fields)."""

    paths: list[str] = field(default_factory=list, help="Files or folders to scan.")
    tools: list[str] = field(default_factory=lambda: list(statictools.DEFAULT_TOOLS),
                             help="Static tools that produce candidates: cppcheck, flawfinder, clang-tidy, gcc "
                                  "(GCC's -fanalyzer).")
    deep: bool = field(False, help="Also let the model score functions no static tool flagged.")
    min_confidence: float | None = field(None, help="Report at or above this confidence (default: the calibration's "
                                                    "threshold).")
    strip_comments: bool = field(True, help="Remove comments before the model sees code (comments are untrusted).")
    explain: bool = field(True, help="Generate verdict/CWE/reason for findings.")
    explain_tokens: int = field(64, help="Max new tokens of an explanation.")
    jobs: int = field(2, help="Worker threads for reading, parsing and static tool processes.")
    respect_gitignore: bool = field(True, help="Skip files matched by .gitignore files (folder walks only).")
    include_vendored: bool = field(False, help="Also scan vendored/build folders (third_party, build, …).")
    exclude: list[str] = field(default_factory=list, help="Extra file/folder name globs to skip.")
    max_file_bytes: int = field(2_000_000, help="Skip files larger than this.")
    max_function_lines: int = field(1500, help="Skip (and report) functions longer than this many lines.")
    max_line_chars: int = field(500, help="Cut longer lines (minified or generated code) before the model.")
    whole_file_chars: int = field(6000, help="A file of at most this many bytes is shown to the model whole (callers, "
                                             "globals, main), the judged function marked; 0: always one function.")
    chunk_files: int = field(32, help="Files parsed ahead of the model (bounds memory).")
    static_timeout: float = field(60.0, help="Seconds before one static tool process (one batch of files; one "
                                             "file for gcc) is abandoned with a skip note (default 60).")
    keep_records: bool = field(False, help="Keep a score record for every function (calibration, benchmarks).")
    changed: dict[str, list[list[int]]] | None = field(None, help="Only functions touching these line ranges "
                                                                  "(real path → [[first, last], …]); None: all.")

    def __post_init__(self) -> None:
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"--min-confidence must be in [0, 1], got {self.min_confidence}")
        bad = [t for t in self.tools if t not in statictools.TOOLS]
        if bad:
            raise ValueError(f"unknown static tool(s) {', '.join(bad)}: use {', '.join(statictools.TOOLS)}")
        if self.jobs < 1:
            raise ValueError("--jobs must be at least 1")
        if self.static_timeout <= 0:
            raise ValueError("static_timeout must be > 0 seconds")
        if self.max_line_chars < 40:
            raise ValueError("--max-line-chars must be at least 40")


def scan_settings(cfg: ScanConfig, scorer: Scorer | None) -> dict[str, Any]:
    """What a calibration depends on: prompt, evidence layout, comment and string handling, tools, model."""
    return {"prompt": PROMPT_VERSION, "evidence": "after-code-block", "strip_comments": cfg.strip_comments,
            "view": ("strings-masked,comment-lines-dropped" if cfg.strip_comments else "as-written")
            + (f",whole-file<={cfg.whole_file_chars}" if cfg.whole_file_chars else ""),
            "max_line_chars": cfg.max_line_chars, "tools": sorted(cfg.tools),
            "model_id": scorer.model_id if scorer is not None else None}


def variant_name(cfg: ScanConfig, scorer: Scorer | None, calibration: Calibration | None = None) -> str:
    """The calibration's combiner for this scan: ``no_model``, ``model`` or, with ``deep``, ``deep``.

    A deep scan against a calibration without a ``deep`` combiner asks for it anyway (and is
    refused, see :meth:`.Calibration.variant`) unless ``min_confidence`` is given: an explicit
    threshold is the user's choice, and the ``model`` combiner then only turns evidence into
    a confidence.
    """
    if scorer is None:
        return "no_model"
    if not cfg.deep:
        return "model"
    has_deep = calibration is None or "deep" in calibration.variants
    return "deep" if has_deep or cfg.min_confidence is None else "model"


@dataclass
class _Parsed:
    source: SourceFile
    digest: str = ""
    functions: list[Function] = dc_field(default_factory=list)
    hits: list[StaticHit] = dc_field(default_factory=list)
    skipped: list[Skipped] = dc_field(default_factory=list)
    lines: int = 0
    text: str | None = None  # the whole file, kept only when it is small enough to show whole


def _parse_file(sf: SourceFile, cfg: ScanConfig) -> _Parsed:
    out = _Parsed(sf)
    data, skip = read_source(sf, cfg.max_file_bytes)
    if skip is not None:
        out.skipped.append(skip)
        return out
    out.digest = hashlib.sha256(data).hexdigest()
    if 0 < len(data) <= cfg.whole_file_chars:
        out.text = data.decode("utf-8", "replace")
    out.lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    try:
        funcs = extract_functions(data, sf.lang)
    except Exception as exc:  # noqa: BLE001 - a parser failure skips one file, never the scan
        out.skipped.append(Skipped(sf.display, f"parse failed: {exc}"))
        return out
    for fn in funcs:
        if fn.n_lines > cfg.max_function_lines:
            out.skipped.append(Skipped(sf.display, f"function {fn.name} too long ({fn.n_lines} lines > "
                                                   f"{cfg.max_function_lines}): not judged", line=fn.start_line))
        else:
            out.functions.append(fn)
    return out


def _chunks(items: Iterator, n: int) -> Iterator[list]:
    buf: list = []
    for it in items:
        buf.append(it)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def _prepare_chunk(files: list[SourceFile], cfg: ScanConfig, cache: ScoreCache,
                   include_dirs: Sequence[Path]) -> tuple[list[_Parsed], list[str], int]:
    with ThreadPoolExecutor(max_workers=cfg.jobs) as pool:
        parsed = list(pool.map(lambda sf: _parse_file(sf, cfg), files))
    readable = [(p.source.path, p.digest) for p in parsed if p.functions]
    if not (cfg.tools and readable):
        return parsed, [], 0
    by_file, notes, cached = statictools.run(cfg.tools, readable, cache=cache, jobs=cfg.jobs,
                                             include_dirs=include_dirs, timeout=cfg.static_timeout)
    for p in parsed:
        p.hits = by_file.get(p.source.path, [])
    return parsed, notes, cached


def scan(cfg: ScanConfig, scorer: Scorer | None, *, cache: ScoreCache | None = None,
         calibration: Calibration | None = None,
         progress: Callable[[int, int, int], None] | None = None) -> ScanReport:
    """Scan ``cfg.paths``; return every finding at or above the threshold.

    Args:
        cfg: the scan settings.
        scorer: the model (see :class:`~.scorers.Scorer`); None scans with the tools alone.
        cache: tool-result and score cache (None: no caching).
        calibration: combiner + threshold; refused (UserError) if made under other settings,
            or, for a deep scan without ``min_confidence``, if it has no ``deep`` combiner.
            None: confidence is the model's P (or 1.0 for any flagged function without a model).
        progress: called with (files done, functions done, files in total) after each file
            (:class:`~.progress.ScanProgress` prints it).
    """
    t0 = time.perf_counter()
    cache = cache or ScoreCache(None)
    settings = scan_settings(cfg, scorer)
    variant = check(calibration, settings, variant_name(cfg, scorer, calibration)) if calibration else None
    threshold = cfg.min_confidence if cfg.min_confidence is not None else (variant.threshold if variant else 0.5)
    trust = calibration.trust if calibration is not None else None
    digest = config_digest({**settings, "explain_tokens": cfg.explain_tokens})
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    n = dict(files=0, functions=0, lines=0, candidates=0, scored=0, cached=0, explained=0, not_scored=0,
             unchanged=0, static_cached=0, lines_cut=0)
    t_model = 0.0
    roots = [Path(p) for p in cfg.paths]
    include_dirs = [r if r.is_dir() else r.parent for r in roots]
    selected = list(walk(roots, respect_gitignore=cfg.respect_gitignore, include_vendored=cfg.include_vendored,
                         exclude=tuple(cfg.exclude)))  # paths only: the total makes an ETA
    total = sum(1 for item in selected if not isinstance(item, Skipped))

    def sources() -> Iterator[SourceFile]:
        for item in selected:
            if isinstance(item, Skipped):
                skipped.append(item)
            else:
                yield item

    with ThreadPoolExecutor(max_workers=1) as ahead:  # prepares the next chunk while the model works
        chunks = _chunks(sources(), cfg.chunk_files)
        nxt = next(chunks, None)
        pending = ahead.submit(_prepare_chunk, nxt, cfg, cache, include_dirs) if nxt is not None else None
        while pending is not None:
            parsed, chunk_notes, static_cached = pending.result()
            notes.extend(chunk_notes)
            n["static_cached"] += static_cached
            nxt = next(chunks, None)
            pending = ahead.submit(_prepare_chunk, nxt, cfg, cache, include_dirs) if nxt is not None else None
            if scorer is not None and hasattr(scorer, "prefetch"):  # a server: score the chunk concurrently
                scorer.prefetch(_to_score(parsed, cfg, scorer, cache, digest, trust, variant))
            for p in parsed:
                skipped.extend(p.skipped)
                if not p.digest:
                    continue
                n["files"] += 1
                n["lines"] += p.lines
                changed = _changed_for(cfg, p.source)
                for fn in p.functions:
                    n["functions"] += 1
                    if changed is not None and not any(a <= fn.end_line and fn.start_line <= b for a, b in changed):
                        n["unchanged"] += 1
                        continue
                    t = time.perf_counter()
                    f, rec, how = _judge(fn, p, cfg, scorer, cache, digest, variant, trust, threshold, skipped, n)
                    t_model += time.perf_counter() - t
                    n[how] += 1
                    if f is not None:
                        findings.append(f)
                    if cfg.keep_records and rec is not None:
                        records.append(rec)
                if progress:
                    progress(n["files"], n["functions"], total)
            cache.commit()
    cache.commit()
    seconds = time.perf_counter() - t0
    stats = {**n, "seconds": round(seconds, 3), "model_seconds": round(t_model, 3),
             "functions_per_s": round(n["functions"] / seconds, 3) if seconds else None,
             "lines_per_s": round(n["lines"] / seconds, 1) if seconds else None,
             "truncated": getattr(scorer, "truncated", 0), "static_notes": sorted(set(notes)),
             "cache_lost": cache.lost}
    report_settings = {"paths": cfg.paths, "model_id": settings["model_id"], "min_confidence": threshold,
                       "tools": list(cfg.tools), "deep": cfg.deep, "explain": cfg.explain,
                       "calibration": calibration.path if calibration else None}
    return ScanReport(findings=sorted(findings, key=Finding.sort_key), skipped=skipped, stats=stats,
                      settings=report_settings, records=records)


def _to_score(parsed: list[_Parsed], cfg: ScanConfig, scorer: Scorer, cache: ScoreCache,
              digest: str, trust: Trust | None = None,
              variant: Variant | None = None) -> list[tuple[str, str, str]]:
    """(code, lang, evidence) of the chunk's functions the model will be asked about (not cached)."""
    out = []
    for p in parsed:
        changed = _changed_for(cfg, p.source)
        for fn in p.functions:
            if changed is not None and not any(a <= fn.end_line and fn.start_line <= b for a, b in changed):
                continue
            hits = hits_in(p.hits, fn.start_line, fn.end_line)
            groups = cands.merge(hits)
            if not (groups or cfg.deep) or (trust is not None and trust.split(hits)[0]) or \
                    not _can_flag_noisy(cfg, variant):
                continue
            view = _view(fn, p, groups, cfg)
            if "p" not in (cache.get(cache_key(view.code, view.evidence, scorer.model_id, digest)) or {}):
                out.append((view.code, fn.lang, view.evidence))
    return out


def _view(fn: Function, p: _Parsed, groups: list, cfg: ScanConfig) -> modelview.ModelView:
    """The model's view: the whole translation unit when it is small (``whole_file_chars``), else the function."""
    if p.text is not None:
        return modelview.build_whole_file(p.text, fn.start_line, groups, strip=cfg.strip_comments,
                                          max_line_chars=cfg.max_line_chars)
    return modelview.build(fn.code, fn.start_line, groups, strip=cfg.strip_comments, max_line_chars=cfg.max_line_chars)


def _can_flag_noisy(cfg: ScanConfig, variant: Variant | None) -> bool:
    """Whether the model's score can change a decision on a function only noisy checks flagged
    (else the model is not asked): no calibration (its P decides), or a combiner that gives the
    model a weight and can reach its threshold (or the user's ``min_confidence``)."""
    if variant is None:
        return True
    reachable = variant.threshold <= 1.0 or cfg.min_confidence is not None
    return reachable and variant.weights.get("llm_logit", 0.0) != 0.0


def _changed_for(cfg: ScanConfig, sf: SourceFile) -> list[list[int]] | None:
    if cfg.changed is None:
        return None
    import os

    return cfg.changed.get(os.path.realpath(sf.path), [])


def _judge(fn: Function, p: _Parsed, cfg: ScanConfig, scorer: Scorer | None, cache: ScoreCache, digest: str,
           variant: Variant | None, trust: Trust | None, threshold: float, skipped: list[Skipped],
           n: dict[str, int]) -> tuple[Finding | None, dict[str, Any] | None, str]:
    hits = hits_in(p.hits, fn.start_line, fn.end_line)
    groups = cands.merge(hits)
    candidate = bool(groups)
    n["candidates"] += candidate
    precise, noisy = trust.split(hits) if trust else ([], hits)
    p_llm: float | None = None
    entry: dict[str, Any] = {}
    view = None
    how = "not_scored"
    if scorer is not None and not precise and (candidate or cfg.deep) and _can_flag_noisy(cfg, variant):
        # the model can change only these outcomes
        view = _view(fn, p, groups, cfg)
        n["lines_cut"] += view.lines_cut
        key = cache_key(view.code, view.evidence, scorer.model_id, digest)
        entry = cache.get(key) or {}
        how = "cached" if "p" in entry else "scored"
        if "p" not in entry:
            try:
                entry["p"] = float(scorer.score(view.code, fn.lang, evidence=view.evidence))
            except Exception as exc:  # noqa: BLE001 - one function the model cannot take never ends the scan
                skipped.append(Skipped(p.source.display, f"function {fn.name}: model could not score it "
                                                         f"({type(exc).__name__}: {str(exc)[:120]})",
                                       line=fn.start_line))
                return None, None, "not_scored"
            cache.put(key, entry)
        p_llm = entry["p"]
    feats = cands.features(noisy if trust else hits, p_llm)
    if precise:
        conf = max(trust.precision(h) or 0.0 for h in precise)
    elif not candidate and not (cfg.deep and p_llm is not None):
        conf = 0.0
    elif variant is not None:
        conf = variant.confidence(feats)
    else:
        conf = p_llm if p_llm is not None else 1.0
    rec = {"path": p.source.display, "function": fn.name, "start_line": fn.start_line, "end_line": fn.end_line,
           "p_llm": p_llm, "confidence": conf, "features": feats, "candidate": candidate,
           "features_all": cands.features(hits, p_llm), "precise": bool(precise),
           "hits": [{"tool": h.tool, "rule": h.rule, "line": h.line, "level": h.level, "cwe": h.cwe} for h in hits],
           "tools": sorted({h.tool for h in hits}), "lines": sorted({h.line for h in hits}),
           "tool_lines": {t: sorted({h.line for h in hits if h.tool == t}) for t in sorted({h.tool for h in hits})}}
    passes = (conf >= cfg.min_confidence) if (precise and cfg.min_confidence is not None) else \
        bool(precise) or conf >= threshold
    if not passes or conf <= 0.0:
        return None, rec, how
    expl = None
    if cfg.explain and scorer is not None and view is not None:
        if "explanation" not in entry:
            try:
                if isinstance(scorer, BackendScorer):
                    e = scorer.explain(view.code, fn.lang, view.evidence, cfg.explain_tokens)
                else:
                    e = scorer.explain(view.code, fn.lang, evidence=view.evidence)
                entry["explanation"] = {"verdict": e.verdict, "cwe": e.cwe, "reason": e.reason, "echo": e.echo}
                cache.put(cache_key(view.code, view.evidence, scorer.model_id, digest), entry)
            except Exception as exc:  # noqa: BLE001
                log.warning("explanation failed for %s: %s", fn.name, exc)
        if "explanation" in entry:
            expl = Explanation(**entry["explanation"])
            n["explained"] += 1
    return build_finding(fn, p.source.display, conf, p_llm, precise or hits, hits, expl,
                         scorer.model_id if scorer is not None else "none", bool(precise)), rec, how


def apply_baseline(report: ScanReport, baseline: Path) -> ScanReport:
    """Drop findings whose fingerprint is in ``baseline`` (a JSON report of an earlier scan)."""
    import json

    from breachlab.errors import UserError

    try:
        data = json.loads(Path(baseline).read_text("utf-8"))
        known = {f["fingerprint"] for f in data["findings"]}
    except FileNotFoundError:
        raise UserError(f"baseline {baseline} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"baseline {baseline} is not a breachlab JSON report: {exc}") from None
    kept = [f for f in report.findings if f.fingerprint not in known]
    report.suppressed = len(report.findings) - len(kept)
    report.findings = kept
    return report
