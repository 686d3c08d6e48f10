"""Prompts, training targets, the verdict parser and the echo detector (pure functions).

Why two prompts: the original run trained with "Reply with VULNERABLE or SAFE and a brief
reason." and evaluated with the same words; the fine-tuned model then *completed the
template* ("SAFE and a brief reason.") instead of judging the code (recall 7%).  So the
training instruction and the inference question share no run of five words, the tests
check it, and :func:`detect_echo` flags any output that reproduces template text.

Turn format: a tokenizer's own chat template when it has one, else Gemma's turn markup
(``<start_of_turn>user … <end_of_turn>``; Gemma has no system role, so the system text
leads the user turn).  The embedded Gemma 3 270M is a base model without a template.
"""

from __future__ import annotations

import re
from typing import Any

from breachlab.vuln.cwe import cwe_name

VERDICT_VULNERABLE = "VULNERABLE"
VERDICT_SAFE = "SAFE"
VERDICTS = (VERDICT_VULNERABLE, VERDICT_SAFE)

SYSTEM = "You are a senior application-security engineer who audits C and C++ code."

TRAIN_INSTRUCTION = (
    "Audit the {lang} function below for memory-safety, integer and input-handling bugs. "
    "Start your answer with the verdict word, then name the weakness class and justify it in one sentence."
)

INFERENCE_QUESTION = "Is this {lang} function VULNERABLE or SAFE? Explain your reasoning."

_LANG_NAMES = {"c": "C", "cpp": "C++", "c++": "C++", "h": "C"}

GEMMA_TURN = "<start_of_turn>{role}\n{content}<end_of_turn>\n"
GEMMA_OPEN_MODEL = "<start_of_turn>model\n"


def lang_name(lang: str | None) -> str:
    return _LANG_NAMES.get((lang or "c").lower(), "C")


def _user_message(instruction: str, code: str, lang: str | None) -> str:
    fence = "cpp" if lang_name(lang) == "C++" else "c"
    return f"{SYSTEM}\n\n{instruction.format(lang=lang_name(lang))}\n\n```{fence}\n{code.strip()}\n```"


def render_turns(messages: list[dict[str, str]], tokenizer: Any = None, add_generation_prompt: bool = True) -> str:
    """Render chat messages with the tokenizer's template, or Gemma's turn markup.

    ``messages`` use roles ``user`` and ``assistant``.  With ``add_generation_prompt`` the
    text ends where the model's answer starts (the verdict position).
    """
    template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    out = []
    for m in messages:
        role = "model" if m["role"] == "assistant" else m["role"]
        out.append(GEMMA_TURN.format(role=role, content=m["content"]))
    text = "".join(out)
    if add_generation_prompt:
        text += GEMMA_OPEN_MODEL
    return text


def inference_prompt(code: str, lang: str | None = "c", tokenizer: Any = None) -> str:
    """The text a model sees at evaluation/scan time; the verdict goes right after it."""
    return render_turns([{"role": "user", "content": _user_message(INFERENCE_QUESTION, code, lang)}], tokenizer)


def training_target(label: int, cwe: str | None = None, reason: str | None = None) -> str:
    """The model turn we train on: the verdict first, then CWE and a short reason.

    ``VULNERABLE — CWE-787 (Out-of-bounds Write): <reason>`` or ``SAFE: <reason>``.
    """
    if label == 1:
        head = VERDICT_VULNERABLE
        if cwe:
            name = cwe_name(cwe)
            head += f" — {cwe}" + (f" ({name})" if name else "")
        why = reason or (f"the code is exposed to {cwe_name(cwe) or cwe}." if cwe else "the code mishandles untrusted data.")
        return f"{head}: {why}"
    why = reason or "inputs are validated and memory accesses stay within bounds."
    return f"{VERDICT_SAFE}: {why}"


def training_example(code: str, label: int, cwe: str | None = None, lang: str | None = "c",
                     reason: str | None = None, tokenizer: Any = None) -> tuple[str, str]:
    """(prompt, completion) for SFT with loss on the completion (model turn) only."""
    prompt = render_turns([{"role": "user", "content": _user_message(TRAIN_INSTRUCTION, code, lang)}], tokenizer)
    completion = training_target(label, cwe, reason)
    end = "<end_of_turn>\n" if not getattr(tokenizer, "chat_template", None) else (getattr(tokenizer, "eos_token", "") or "")
    return prompt, completion + end


# ---------------------------------------------------------------------------------------
# Verdict parsing
# ---------------------------------------------------------------------------------------
_NEG = r"(?:not|n't|never|no longer|isn't|is not|doesn't appear to be|does not appear to be)"
_VERDICT_RE = re.compile(
    r"\b(?P<neg>" + _NEG + r"\s+(?:be\s+|considered\s+|appear\s+(?:to\s+be\s+)?)?)?"
    r"(?P<word>vulnerable|vulnerability|vulnerabilities|unsafe|insecure|safe|secure|benign|exploitable)\b",
    re.IGNORECASE,
)
_NO_VULN_RE = re.compile(r"\bno\s+(?:known\s+|obvious\s+|apparent\s+)?(?:vulnerabilit(?:y|ies)|security\s+(?:issues?|flaws?|bugs?))\b", re.IGNORECASE)

_POSITIVE = {"vulnerable", "vulnerability", "vulnerabilities", "unsafe", "insecure", "exploitable"}
_NEGATIVE = {"safe", "secure", "benign"}


def parse_verdict(text: str) -> str | None:
    """The first verdict stated in ``text``: ``VULNERABLE``, ``SAFE`` or None (unparsable).

    Reads left to right and stops at the first verdict-bearing phrase, so "SAFE. A careless
    reader might call it vulnerable" is SAFE.  Negation flips the word: "not vulnerable"
    and "no vulnerability" are SAFE, "not safe" is VULNERABLE — the original keyword parser
    counted "NOT VULNERABLE" as vulnerable.
    """
    if not text:
        return None
    no_vuln = _NO_VULN_RE.search(text)
    m = _VERDICT_RE.search(text)
    if no_vuln and (m is None or no_vuln.start() <= m.start()):
        return VERDICT_SAFE
    if m is None:
        return None
    word = m.group("word").lower()
    positive = word in _POSITIVE
    if m.group("neg"):
        positive = not positive
    return VERDICT_VULNERABLE if positive else VERDICT_SAFE


# ---------------------------------------------------------------------------------------
# Echo detection
# ---------------------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9+]+", text.lower())


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


TEMPLATE_TEXTS = (SYSTEM, TRAIN_INSTRUCTION, INFERENCE_QUESTION)


def detect_echo(output: str, templates: tuple[str, ...] = TEMPLATE_TEXTS, n: int = 5) -> bool:
    """True when ``output`` reproduces ``n`` consecutive words of any prompt/template text.

    This is the failure of the original run ("SAFE and a brief reason."): the model
    completes memorised template text instead of judging the code.  Template placeholders
    such as ``{lang}`` are matched against any language name.
    """
    out = _ngrams(_words(output), n)
    if not out:
        return False
    for tpl in templates:
        for lang in ("C", "C++"):
            if out & _ngrams(_words(tpl.format(lang=lang)), n):
                return True
    return False


def shared_ngrams(a: str, b: str, n: int = 5) -> set[tuple[str, ...]]:
    """Runs of ``n`` words that two texts share (used to keep train and inference prompts apart)."""
    return _ngrams(_words(a), n) & _ngrams(_words(b), n)
