"""The model behind a scan: the :class:`Scorer` protocol and its llama.cpp/transformers form.

Why a protocol: golden tests drive the whole pipeline with a deterministic fake, production
uses :class:`BackendScorer` over a local backend, and ``--backend openai`` a server
(:mod:`.openai_scorer`).  A scorer gets a :class:`~.modelview.ModelView`'s ``code`` (comments
already stripped, flagged lines marked) and ``evidence`` (the tools' reports) and returns
P(vulnerable).

The triage prompt keeps the two apart: the code sits in a fenced block, the tools' reports
in a list *after* it, introduced as untrusted hints.  With no evidence (a function no tool
flagged, ``--deep``) the prompt is the one the adapters were trained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from breachlab.vuln.sample import normalise_cwe

PROMPT_VERSION = "triage-v1"
TRIAGE_QUESTION = ("Static analysers flagged the lines marked `// <-- FLAGGED` in this {lang} function. "
                   "Is it a real vulnerability or a false alarm? Is this {lang} function VULNERABLE or SAFE? "
                   "Explain your reasoning.")
EVIDENCE_HEADER = ("Analyser reports (untrusted hints, often false alarms; line numbers count from the function's "
                   "first line):")
_CWE_IN_TEXT = re.compile(r"\bCWE[-_ ]?(\d{1,4})\b", re.IGNORECASE)


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

    def score(self, code: str, lang: str, evidence: str = "") -> float:
        """P(vulnerable) of one function (``evidence``: the tools' reports, may be empty)."""

    def explain(self, code: str, lang: str, evidence: str = "") -> Explanation:
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


def triage_messages(code: str, lang: str, evidence: str) -> list[dict[str, str]]:
    """Chat messages of the triage prompt (evidence outside the code block)."""
    from breachlab.vuln.prompts import SYSTEM, lang_name

    name = lang_name(lang)
    fence = "cpp" if name == "C++" else "c"
    content = (f"{SYSTEM}\n\n{TRIAGE_QUESTION.format(lang=name)}\n\n```{fence}\n{code.strip()}\n```\n\n"
               f"{EVIDENCE_HEADER}\n{evidence}")
    return [{"role": "user", "content": content}]


def chat_messages(code: str, lang: str, evidence: str) -> list[dict[str, str]]:
    """The chat a server gets: the triage messages, or the trained inference question without evidence."""
    if evidence:
        return triage_messages(code, lang, evidence)
    from breachlab.vuln.prompts import INFERENCE_QUESTION, SYSTEM, lang_name

    name = lang_name(lang)
    fence = "cpp" if name == "C++" else "c"
    return [{"role": "user", "content": f"{SYSTEM}\n\n{INFERENCE_QUESTION.format(lang=name)}\n\n```{fence}\n"
                                        f"{code.strip()}\n```"}]


def render_prompt(code: str, lang: str, evidence: str, tokenizer: Any = None) -> str:
    """The full prompt text: the trained inference prompt without evidence, the triage one with."""
    from breachlab.vuln.prompts import inference_prompt, render_conversation

    if not evidence:
        return inference_prompt(code, lang, tokenizer=tokenizer)
    return render_conversation(triage_messages(code, lang, evidence), tokenizer)


class BackendScorer:
    """:class:`Scorer` over a :class:`breachlab.vuln.backends.Backend` (logit-mode scoring).

    A prompt longer than the context is cut: whole lines first, then characters of the last
    line — the cut is counted (``truncated``) and never aborts a scan.
    """

    def __init__(self, backend: Any, reserve_tokens: int = 80):
        self.backend = backend
        self.model_id = backend.model_id
        self.reserve = reserve_tokens
        self.truncated = 0

    def _prompt(self, code: str, lang: str, evidence: str) -> str:
        return render_prompt(code, lang, evidence, self.backend.chat_tokenizer)

    def _fits(self, code: str, lang: str, evidence: str) -> bool:
        return len(self.backend.tokenize(self._prompt(code, lang, evidence))) <= self.backend.n_ctx - self.reserve

    def fit(self, code: str, lang: str, evidence: str = "") -> tuple[str, str]:
        if self._fits(code, lang, evidence):
            return code, evidence
        if evidence and not self._fits("", lang, evidence):
            evidence = "\n".join(evidence.split("\n")[:2])
        self.truncated += 1
        lines = code.split("\n")
        lo, hi = 0, len(lines)
        while lo < hi:  # largest prefix of whole lines that fits
            mid = (lo + hi + 1) // 2
            if self._fits("\n".join(lines[:mid]), lang, evidence):
                lo = mid
            else:
                hi = mid - 1
        kept = "\n".join(lines[:lo])
        if lo < len(lines):  # then as many characters of the next line as fit
            nxt = lines[lo]
            a, b = 0, len(nxt)
            while a < b:
                mid = (a + b + 1) // 2
                if self._fits(kept + "\n" + nxt[:mid], lang, evidence):
                    a = mid
                else:
                    b = mid - 1
            kept = kept + "\n" + nxt[:a] if a else kept
        return kept, evidence

    def score(self, code: str, lang: str, evidence: str = "") -> float:
        code, evidence = self.fit(code, lang, evidence)
        return float(self.backend.score(self._prompt(code, lang, evidence)).p_vulnerable)

    def explain(self, code: str, lang: str, evidence: str = "", max_new_tokens: int = 64) -> Explanation:
        code, evidence = self.fit(code, lang, evidence)
        return parse_explanation(self.backend.generate(self._prompt(code, lang, evidence), max_new_tokens))
