"""A judged function → :class:`~.finding.Finding`: CWE, severity, lines and message from the evidence.

Why its own step: what a reviewer reads must come from what a tool proved, not from what
the model guessed.  The CWE is the strongest tool report's (:func:`~.hybrid.static_cwe`), the
severity follows that report's level and CWE (:func:`~.finding.severity_for_evidence`), the
message leads with the tool's own words and the CWE's name as :mod:`breachlab.vuln.cwe`
spells it; the model's reason follows (any CWE it names is relabelled with that id's own
name) and its CWE is kept only as ``suggested_cwe``.
"""

from __future__ import annotations

from typing import Sequence

from breachlab.vuln.cwe import cwe_label, fix_cwe_names
from breachlab.vuln.sample import code_hash, normalise_cwe
from breachlab.vuln.scan.extract import Function
from breachlab.vuln.scan.finding import Finding, fingerprint, rule_id_for, severity_for_evidence
from breachlab.vuln.scan.hybrid import StaticHit, static_cwe, strongest
from breachlab.vuln.scan.scorers import Explanation


def build_finding(fn: Function, path: str, conf: float, p_llm: float | None, basis: Sequence[StaticHit],
                  hits: Sequence[StaticHit], expl: Explanation | None, model_id: str, precise: bool = False) -> Finding:
    """The finding: CWE, severity and lines from the evidence ``basis`` (the precise hits when
    any, else every hit); the model's CWE only as ``suggested_cwe``."""
    top = strongest(basis)
    cwe = normalise_cwe(static_cwe(basis) or static_cwe(hits))
    sources = tuple((["llm"] if p_llm is not None else []) + sorted({h.tool for h in hits}))
    lines = tuple(sorted({h.line for h in hits}))
    if top is not None:
        label = cwe_label(top.cwe)
        message = f"{top.tool} {top.rule} at line {top.line}: {top.message[:160]}" + (f" [{label}]" if label else "")
        if len(hits) > 1:
            message += f" (+{len(hits) - 1} more tool report(s))"
    elif p_llm is not None:
        message = f"model P(vulnerable)={p_llm:.2f}"
    else:
        message = "static analysis"
    if expl and expl.reason:
        message = f"{message}. Model: {fix_cwe_names(expl.reason)}" if top is not None else fix_cwe_names(expl.reason)
    elif expl and expl.echo:
        message += "; the model's explanation echoed the prompt"
    verdict = (expl.verdict if expl and expl.verdict else None) or \
        (None if p_llm is None else ("VULNERABLE" if p_llm >= 0.5 else "SAFE"))
    flow = max((h.flow for h in basis), key=len, default=())
    return Finding(
        rule_id=rule_id_for(cwe), cwe=cwe,
        severity=severity_for_evidence(cwe, top.level if top else None, top.tool if top else None),
        confidence=round(min(max(conf, 0.0), 1.0), 6), path=path, start_line=fn.start_line,
        end_line=fn.end_line, function=fn.name, message=message,
        model_id=model_id,
        fingerprint=fingerprint(path, fn.name, code_hash(fn.code)), sources=sources,
        evidence=tuple(h.describe() for h in hits[:10]), lines=lines,
        model_score=None if p_llm is None else round(p_llm, 6), verdict=verdict,
        suggested_cwe=normalise_cwe(expl.cwe) if expl and expl.cwe else None, flow=flow,
        precise=precise,
    )
