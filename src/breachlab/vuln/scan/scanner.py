"""The scan pipeline: files → functions → (static hits) → score → explain → findings.

Why this shape: the model is the slow, single-threaded part, so everything else (reading,
tree-sitter parsing, cppcheck/flawfinder) runs in ``jobs`` worker threads a chunk of files
ahead, and only one chunk of parsed functions is alive at a time — memory is bounded by the
chunk size and the per-file limits, not by the size of the tree.

The model sits behind the :class:`Scorer` protocol (``score`` → P(vulnerable), ``explain`` →
verdict, CWE, reason) so that golden tests drive the whole pipeline with a deterministic
fake and production uses :class:`BackendScorer` over a llama.cpp/transformers backend.
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from breachlab.config import field
from breachlab.vuln.sample import code_hash, normalise_cwe
from breachlab.vuln.scan import hybrid
from breachlab.vuln.scan.cache import ScoreCache, cache_key, config_digest
from breachlab.vuln.scan.extract import Function, extract_functions
from breachlab.vuln.scan.files import SourceFile, read_source, walk
from breachlab.vuln.scan.finding import Finding, ScanReport, Skipped, fingerprint, rule_id_for, severity_for_cwe

log = logging.getLogger("breachlab.scan")

PROMPT_VERSION = "scan-v1"
_CWE_IN_TEXT = re.compile(r"\bCWE[-_ ]?(\d{1,4})\b", re.IGNORECASE)


@dataclass
class ScanConfig:
    """Settings of one scan (the CLI flags map one to one onto these fields)."""

    paths: list[str] = field(default_factory=list, help="Files or folders to scan.")
    min_confidence: float = field(0.5, help="Report functions whose confidence is at least this (0-1).")
    hybrid: list[str] = field(default_factory=list, help="Static tools for hybrid mode: cppcheck, flawfinder.")
    hybrid_candidates_only: bool = field(False, help="Hybrid: only functions with a static hit are scored.")
    evidence_in_prompt: bool = field(True, help="Hybrid: show the static hits to the model as a code comment.")
    explain: bool = field(True, help="Generate a verdict/CWE/reason for functions above the threshold.")
    explain_tokens: int = field(64, help="Max new tokens of an explanation.")
    jobs: int = field(2, help="Worker threads for reading, parsing and static tools.")
    respect_gitignore: bool = field(True, help="Skip files matched by .gitignore files.")
    include_vendored: bool = field(False, help="Also scan vendored/build folders (third_party, build, …).")
    exclude: list[str] = field(default_factory=list, help="Extra file/folder name globs to skip.")
    max_file_bytes: int = field(2_000_000, help="Skip files larger than this.")
    max_function_lines: int = field(1500, help="Skip (and report) functions longer than this many lines.")
    use_cache: bool = field(True, help="Reuse scores of unchanged functions ($BREACHLAB_CACHE/scan).")
    chunk_files: int = field(32, help="Files parsed ahead of the model (bounds memory).")
    static_timeout: float = field(300.0, help="Seconds before a static tool run on one chunk is abandoned.")
    keep_records: bool = field(False, help="Keep a score record for every function (benchmarks).")

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"--min-confidence must be in [0, 1], got {self.min_confidence}")
        bad = [t for t in self.hybrid if t not in hybrid.TOOLS]
        if bad:
            raise ValueError(f"unknown hybrid tool(s) {', '.join(bad)}: use {', '.join(hybrid.TOOLS)}")
        if self.jobs < 1:
            raise ValueError("--jobs must be at least 1")
        if self.hybrid_candidates_only and not self.hybrid:
            raise ValueError("--hybrid-candidates-only needs --hybrid")

    def digest_settings(self) -> dict[str, Any]:
        """The settings that change a score or explanation (part of the cache key)."""
        return {"prompt": PROMPT_VERSION, "explain_tokens": self.explain_tokens}


@dataclass(frozen=True)
class Explanation:
    """What the model says about a function it scored high: verdict, CWE guess, reason."""

    verdict: str | None
    cwe: str | None
    reason: str
    echo: bool = False


class Scorer(Protocol):
    """The model interface the scanner needs (tests inject a deterministic fake)."""

    model_id: str

    def score(self, code: str, lang: str) -> float:
        """P(vulnerable) of one function (``code`` may carry an evidence comment)."""

    def explain(self, code: str, lang: str) -> Explanation:
        """Verdict, CWE and a short reason for one function."""


def parse_explanation(text: str) -> Explanation:
    """Turn raw generated text into an :class:`Explanation`; echoes are flagged, not trusted."""
    from breachlab.vuln.prompts import detect_echo, parse_verdict

    text = (text or "").strip()
    echo = detect_echo(text)
    m = _CWE_IN_TEXT.search(text)
    cwe = normalise_cwe(f"CWE-{m.group(1)}") if m else None
    reason = " ".join(text.split())
    reason = re.sub(r"^(?:\*\*)?(?:VULNERABLE|SAFE)(?:\*\*)?\s*[-—:.,]*\s*", "", reason, flags=re.I)
    if len(reason) > 240:
        reason = reason[:237].rsplit(" ", 1)[0] + "…"
    if echo:
        reason = ""
    return Explanation(verdict=parse_verdict(text), cwe=cwe if not echo else None, reason=reason, echo=echo)


class BackendScorer:
    """:class:`Scorer` over a :class:`breachlab.vuln.backends.Backend` (logit-mode scoring).

    Functions longer than the context are cut at a line boundary to fit; the cut is
    recorded so a finding can say the model saw only the start of the function.
    """

    def __init__(self, backend: Any, reserve_tokens: int = 80):
        self.backend = backend
        self.model_id = backend.model_id
        self.reserve = reserve_tokens
        self.truncated = 0

    def fit(self, code: str, lang: str) -> str:
        budget = self.backend.n_ctx - self.reserve
        if len(self.backend.tokenize(self.backend.prompt(code, lang))) <= budget:
            return code
        lines = code.split("\n")
        lo, hi = 1, len(lines)
        while lo < hi:  # largest prefix of lines that fits
            mid = (lo + hi + 1) // 2
            if len(self.backend.tokenize(self.backend.prompt("\n".join(lines[:mid]), lang))) <= budget:
                lo = mid
            else:
                hi = mid - 1
        self.truncated += 1
        return "\n".join(lines[:lo])

    def score(self, code: str, lang: str) -> float:
        return float(self.backend.score(self.backend.prompt(self.fit(code, lang), lang)).p_vulnerable)

    def explain(self, code: str, lang: str, max_new_tokens: int = 64) -> Explanation:
        return parse_explanation(self.backend.generate(self.backend.prompt(self.fit(code, lang), lang), max_new_tokens))


@dataclass
class _Parsed:
    source: SourceFile
    functions: list[Function] = dc_field(default_factory=list)
    hits: list[hybrid.StaticHit] = dc_field(default_factory=list)
    skipped: list[Skipped] = dc_field(default_factory=list)
    lines: int = 0


def _parse_file(sf: SourceFile, cfg: ScanConfig) -> _Parsed:
    out = _Parsed(sf)
    data, skip = read_source(sf, cfg.max_file_bytes)
    if skip is not None:
        out.skipped.append(skip)
        return out
    out.lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    try:
        funcs = extract_functions(data, sf.lang)
    except Exception as exc:  # noqa: BLE001 - a parser failure skips one file, never the scan
        out.skipped.append(Skipped(sf.display, f"parse failed: {exc}"))
        return out
    for fn in funcs:
        if fn.n_lines > cfg.max_function_lines:
            out.skipped.append(Skipped(sf.display, f"function {fn.name} too long ({fn.n_lines} lines > "
                                                   f"{cfg.max_function_lines})", line=fn.start_line))
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


def _prepare_chunk(files: list[SourceFile], cfg: ScanConfig, pool: ThreadPoolExecutor) -> tuple[list[_Parsed], list[str]]:
    parsed = list(pool.map(lambda sf: _parse_file(sf, cfg), files))
    notes: list[str] = []
    if cfg.hybrid:
        readable = [p.source.path for p in parsed if p.functions]
        if readable:
            by_file, notes = hybrid.run_tools(cfg.hybrid, readable, timeout=cfg.static_timeout)
            for p in parsed:
                p.hits = by_file.get(str(p.source.path), [])
    return parsed, notes


def scan(cfg: ScanConfig, scorer: Scorer, *, cache: ScoreCache | None = None,
         weights: dict[str, float] | None = None, progress: Callable[[int, int], None] | None = None) -> ScanReport:
    """Scan ``cfg.paths`` with ``scorer``; return every finding at or above the threshold.

    Args:
        cfg: the scan settings.
        scorer: the model (see :class:`Scorer`).
        cache: score cache (None: no caching).
        weights: hybrid combiner weights (default :data:`hybrid.DEFAULT_WEIGHTS`).
        progress: called with (files done, functions done) after each file.
    """
    t0 = time.perf_counter()
    cache = cache or ScoreCache(None)
    digest = config_digest({**cfg.digest_settings(), "model": scorer.model_id})
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    n = dict(files=0, functions=0, lines=0, scored=0, cached=0, explained=0, not_scored=0)
    t_model = 0.0
    roots = [Path(p) for p in cfg.paths]
    selected = (x for x in walk(roots, respect_gitignore=cfg.respect_gitignore,
                                include_vendored=cfg.include_vendored, exclude=tuple(cfg.exclude)))

    def sources() -> Iterator[SourceFile]:
        for item in selected:
            if isinstance(item, Skipped):
                skipped.append(item)
            else:
                yield item

    with ThreadPoolExecutor(max_workers=cfg.jobs) as pool:
        pending = None
        chunks = _chunks(sources(), cfg.chunk_files)
        nxt = next(chunks, None)
        if nxt is not None:
            pending = pool.submit(_prepare_chunk, nxt, cfg, pool) if cfg.jobs > 1 else None
            current = nxt
        while nxt is not None:
            parsed, chunk_notes = pending.result() if pending is not None else _prepare_chunk(current, cfg, pool)
            notes.extend(chunk_notes)
            nxt = next(chunks, None)  # parse the next chunk while the model works on this one
            if nxt is not None:
                current = nxt
                pending = pool.submit(_prepare_chunk, nxt, cfg, pool) if cfg.jobs > 1 else None
            for p in parsed:
                skipped.extend(p.skipped)
                if p.skipped and not p.functions and p.lines == 0:
                    continue
                n["files"] += 1
                n["lines"] += p.lines
                for fn in p.functions:
                    n["functions"] += 1
                    t = time.perf_counter()
                    f, rec, how = _judge(fn, p, cfg, scorer, cache, digest, weights)
                    t_model += time.perf_counter() - t
                    n[how] += 1
                    if rec is not None and rec.get("explained"):
                        n["explained"] += 1
                    if f is not None:
                        findings.append(f)
                    if cfg.keep_records and rec is not None:
                        records.append(rec)
                if progress:
                    progress(n["files"], n["functions"])
            cache.commit()
    cache.commit()
    seconds = time.perf_counter() - t0
    stats = {**n, "seconds": round(seconds, 3), "model_seconds": round(t_model, 3),
             "functions_per_s": round(n["functions"] / seconds, 3) if seconds else None,
             "lines_per_s": round(n["lines"] / seconds, 1) if seconds else None,
             "truncated": getattr(scorer, "truncated", 0), "static_notes": sorted(set(notes))}
    settings = {"paths": cfg.paths, "model_id": scorer.model_id, "min_confidence": cfg.min_confidence,
                "hybrid": list(cfg.hybrid), "explain": cfg.explain}
    return ScanReport(findings=sorted(findings, key=Finding.sort_key), skipped=skipped, stats=stats,
                      settings=settings, records=records)


def _judge(fn: Function, p: _Parsed, cfg: ScanConfig, scorer: Scorer, cache: ScoreCache, digest: str,
           weights: dict[str, float] | None) -> tuple[Finding | None, dict[str, Any] | None, str]:
    hits = hybrid.hits_in(p.hits, fn.start_line, fn.end_line) if cfg.hybrid else []
    if cfg.hybrid_candidates_only and not hits:
        return None, _record(fn, p, None, hits, 0.0), "not_scored"
    evidence = hybrid.evidence_block(hits, fn.start_line) if cfg.evidence_in_prompt else ""
    code = evidence + fn.code
    key = cache_key(fn.code, evidence, scorer.model_id, digest)
    entry = cache.get(key) or {}
    how = "cached" if "p" in entry else "scored"
    if "p" not in entry:
        entry["p"] = float(scorer.score(code, fn.lang))
        cache.put(key, entry)
    p_llm = entry["p"]
    conf = hybrid.combine(p_llm, hits, weights) if cfg.hybrid else p_llm
    rec = _record(fn, p, p_llm, hits, conf)
    if conf < cfg.min_confidence:
        return None, rec, how
    expl = None
    if cfg.explain:
        if "explanation" not in entry:
            if isinstance(scorer, BackendScorer):
                e = scorer.explain(code, fn.lang, cfg.explain_tokens)
            else:
                e = scorer.explain(code, fn.lang)
            entry["explanation"] = {"verdict": e.verdict, "cwe": e.cwe, "reason": e.reason, "echo": e.echo}
            cache.put(key, entry)
        expl = Explanation(**entry["explanation"])
        rec["explained"] = True
    return _finding(fn, p, conf, p_llm, hits, expl, scorer.model_id, cfg), rec, how


def _record(fn: Function, p: _Parsed, p_llm: float | None, hits: Sequence[hybrid.StaticHit], conf: float) -> dict[str, Any]:
    return {"path": p.source.display, "function": fn.name, "start_line": fn.start_line, "end_line": fn.end_line,
            "p_llm": p_llm, "confidence": conf, "features": hybrid.features(p_llm, hits),
            "tools": sorted({h.tool for h in hits})}


def _finding(fn: Function, p: _Parsed, conf: float, p_llm: float, hits: Sequence[hybrid.StaticHit],
             expl: Explanation | None, model_id: str, cfg: ScanConfig) -> Finding:
    cwe = (expl.cwe if expl else None) or hybrid.static_cwe(hits)
    sources = tuple(["llm"] + sorted({h.tool for h in hits}))
    if expl and expl.reason:
        message = expl.reason
    elif expl and expl.echo:
        message = f"model flagged this function (P={p_llm:.2f}); its explanation echoed the prompt and was discarded"
    else:
        message = f"model flagged this function (P={p_llm:.2f})"
    if hits:
        top = max(hits, key=lambda h: (h.level, -h.line))
        message = message.rstrip(". ") + f". Static analysis: {len(hits)} hit(s), strongest {top.tool} " \
                                          f"{top.rule} at line {top.line}."
    return Finding(
        rule_id=rule_id_for(cwe), cwe=normalise_cwe(cwe), severity=severity_for_cwe(cwe),
        confidence=round(min(max(conf, 0.0), 1.0), 6), path=p.source.display, start_line=fn.start_line,
        end_line=fn.end_line, function=fn.name, message=message, model_id=model_id,
        fingerprint=fingerprint(p.source.display, fn.name, code_hash(fn.code)), sources=sources,
        evidence=tuple(h.describe() for h in hits[:10]),
    )


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
