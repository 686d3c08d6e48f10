"""Prompts, training targets, the verdict parser and the echo detector (pure functions).

Why two prompts: the original run trained with "Reply with VULNERABLE or SAFE and a brief
reason." and evaluated with the same words; the fine-tuned model then *completed the
template* ("SAFE and a brief reason.") instead of judging the code (recall 7%).  So the
training instruction and the inference question share no run of five words, the tests
check it, and :func:`detect_echo` flags any output that reproduces template text.

Turn format: each model's own.  :func:`render_conversation` is the one place a conversation
becomes text, for training and inference alike: with the chat template of an HF tokenizer
(``apply_chat_template``) or of a GGUF (:class:`ChatTemplate`, rendered in a jinja2 sandbox:
a template inside a downloaded file is untrusted code), else Gemma's turn markup
(``<start_of_turn>user … <end_of_turn>``; Gemma has no system role, so the system text leads
the user turn).  The embedded Gemma 3 270M is a base model without a template; its prompts
are byte-for-byte those it was always given.

Token ids follow the same rule everywhere (:func:`prompt_ids`): with a template the rendered
text carries every special token the model expects, so nothing is added; without one a BOS
is prepended.  Verdict words are tokenized as they continue the rendered prompt
(:func:`verdict_ids`): Qwen writes "VULNERABLE" as V/UL/NER/ABLE after ``assistant\n`` and
" VULNERABLE" differently after text that ends without a space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from breachlab.vuln.cwe import cwe_name
from breachlab.vuln.sample import normalise_ws

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
GEMMA_STOP = ("<end_of_turn>", "<eos>")


def lang_name(lang: str | None) -> str:
    return _LANG_NAMES.get((lang or "c").lower(), "C")


def _messages(instruction: str, code: str, lang: str | None, references: str = "") -> list[dict[str, str]]:
    fence = "cpp" if lang_name(lang) == "C++" else "c"
    body = f"{instruction.format(lang=lang_name(lang))}\n\n```{fence}\n{code.strip()}\n```"
    if references:
        body = f"{references}\n\n{body}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


# ---------------------------------------------------------------------------------------
# References from known fixes
# ---------------------------------------------------------------------------------------
REFERENCE_INTRO = ("For reference, a similar known vulnerable function and its fix, as a diff "
                   "(lines starting with - were removed by the fix, lines starting with + were added):")
REFERENCE_INTRO_MANY = ("For reference, {n} similar known vulnerable functions and their fixes, as diffs "
                        "(lines starting with - were removed by the fix, lines starting with + were added):")


def fix_diff(vulnerable: str, fixed: str, max_chars: int = 1200, context: int = 3) -> str:
    """The unified diff of a known fix (no file headers), cut to whole lines within ``max_chars``.

    The diff is both halves at once: its ``-`` and context lines are the vulnerable function
    around the bug, its ``+`` lines the fix. Empty when the halves differ only in whitespace.
    """
    import difflib

    if normalise_ws(vulnerable) == normalise_ws(fixed):
        return ""
    lines = list(difflib.unified_diff(vulnerable.strip().splitlines(), fixed.strip().splitlines(),
                                      n=context, lineterm=""))[2:]
    out, used = [], 0
    for line in lines:
        if used + len(line) + 1 > max_chars:
            out.append("…")
            break
        out.append(line.replace("```", "` ` `"))     # a fence inside the diff cannot close ours
        used += len(line) + 1
    return "\n".join(out) if any(line[:1] in "+-" for line in out) else ""


def reference_block(references: list[tuple[str, str, str | None]], max_chars: int = 1200) -> str:
    """The prompt text for known pairs ``(vulnerable, fixed, cwe)``; empty without any.

    Each pair becomes a ```` ```diff ```` block of at most ``max_chars`` characters, headed by its
    CWE where known. Text from a KB is data, like the code under review: it is fenced, never
    an instruction.
    """
    parts = []
    for vulnerable, fixed, cwe in references:
        diff = fix_diff(vulnerable, fixed, max_chars)
        if diff:
            head = f"Known fix{f' ({cwe})' if cwe else ''}:\n" if len(references) > 1 else (f"({cwe})\n" if cwe else "")
            parts.append(f"{head}```diff\n{diff}\n```")
    if not parts:
        return ""
    intro = REFERENCE_INTRO if len(parts) == 1 else REFERENCE_INTRO_MANY.format(n=len(parts))
    return intro + "\n\n" + "\n\n".join(parts)


# ---------------------------------------------------------------------------------------
# Chat formats
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChatTemplate:
    """A jinja chat template read from a model file (a GGUF's ``tokenizer.chat_template``).

    Quacks like an HF tokenizer for :func:`render_conversation` (``chat_template`` +
    ``apply_chat_template``) and renders in jinja2's immutable sandbox with the settings HF
    uses (``trim_blocks``, ``lstrip_blocks``), so the llama.cpp and transformers backends
    produce the same text from the same template.
    """

    chat_template: str
    bos_token: str = ""
    eos_token: str = ""

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        from jinja2.exceptions import TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.globals["raise_exception"] = raise_exception
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=self.bos_token,
            eos_token=self.eos_token, tools=None, documents=None)


def chat_of(tokenizer: Any) -> Any:
    """``tokenizer`` when it carries a chat template, else None (Gemma turn markup)."""
    return tokenizer if tokenizer is not None and getattr(tokenizer, "chat_template", None) else None


def _fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Put a leading system message at the head of the first user turn (for formats without one)."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    if rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    return rest


def render_conversation(messages: list[dict[str, str]], chat: Any = None, add_generation_prompt: bool = True) -> str:
    """Render chat messages in the model's own format: the one renderer training and inference share.

    Args:
        messages: ``system`` (optional, first), ``user`` and ``assistant`` turns.
        chat: an HF tokenizer or a :class:`ChatTemplate` with a chat template; None (or a
            tokenizer without a template) gives Gemma's turn markup.
        add_generation_prompt: end where the model's answer starts (the verdict position).

    A template that refuses a system role gets the system text at the head of the user turn.
    """
    chat = chat_of(chat)
    if chat is not None:
        from jinja2.exceptions import TemplateError

        try:
            return chat.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        except TemplateError:
            if messages[0]["role"] != "system":
                raise
            return chat.apply_chat_template(_fold_system(messages), tokenize=False,
                                            add_generation_prompt=add_generation_prompt)
    text = "".join(GEMMA_TURN.format(role="model" if m["role"] == "assistant" else m["role"], content=m["content"])
                   for m in _fold_system(messages))
    return text + (GEMMA_OPEN_MODEL if add_generation_prompt else "")


def turn_end(chat: Any = None) -> str:
    """What the format writes after an assistant message (``<end_of_turn>\\n``, ``<|im_end|>\\n``)."""
    if chat_of(chat) is None:
        return GEMMA_TURN.split("{content}")[1]
    mark = "\u2063VERDICT\u2063"
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": mark}]
    text = render_conversation(msgs, chat, add_generation_prompt=False)
    return text[text.index(mark) + len(mark):] if mark in text else (getattr(chat, "eos_token", "") or "")


def stop_strings(chat: Any = None) -> tuple[str, ...]:
    """Where generation stops: the end of the model turn, and the end of text."""
    if chat_of(chat) is None:
        return GEMMA_STOP
    out = [s for s in (turn_end(chat).strip(), getattr(chat, "eos_token", None)) if s]
    return tuple(dict.fromkeys(out))


def inference_prompt(code: str, lang: str | None = "c", tokenizer: Any = None, references: str = "") -> str:
    """The text a model sees at evaluation/scan time; the verdict goes right after it.

    ``references``: a :func:`reference_block` shown before the question (empty: none).
    """
    return render_conversation(_messages(INFERENCE_QUESTION, code, lang, references), tokenizer)


# ---------------------------------------------------------------------------------------
# Token ids (the same rule for training, the transformers backend and llama.cpp)
# ---------------------------------------------------------------------------------------
def adds_bos(chat: Any) -> bool:
    """Whether a BOS goes before the rendered text: only without a template (a template writes its own)."""
    return chat_of(chat) is None


def prompt_ids(tok: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt for an HF tokenizer, exactly as the model sees it."""
    ids = list(tok(text, add_special_tokens=False)["input_ids"])
    bos = getattr(tok, "bos_token_id", None)
    if adds_bos(tok) and bos is not None and ids[:1] != [bos]:
        ids = [bos, *ids]
    return ids


def verdict_ids(encode: Callable[[str], list[int]], prompt: str) -> dict[str, list[int]]:
    """Token ids of each verdict word as the model would write it right after ``prompt``.

    ``encode`` tokenizes without adding BOS.  After a prompt that ends in whitespace (every
    template's generation prompt) the word follows directly; otherwise it takes a leading
    space.  The ids are those of the word inside ``prompt + word``, so a tokenizer that
    spells a word differently at the start of a line is read the way it will be generated;
    where the boundary merges with the prompt's last token, the word alone is used.
    """
    lead = "" if not prompt or prompt[-1].isspace() else " "
    head = encode(prompt)
    out: dict[str, list[int]] = {}
    for word in VERDICTS:
        full = encode(prompt + lead + word)
        out[word] = full[len(head):] if full[: len(head)] == head and len(full) > len(head) else encode(lead + word)
    return out


def tokenizer_verdict_ids(tok: Any) -> dict[str, list[int]]:
    """:func:`verdict_ids` for an HF tokenizer after its own generation prompt.

    What the transformers backend scores, and what training should use for a verdict-level
    objective, so both read the same token ids.
    """
    return verdict_ids(lambda text: list(tok(text, add_special_tokens=False)["input_ids"]),
                       inference_prompt("int x;", "c", tok))


def first_verdict_ids(verdicts: dict[str, list[int]]) -> dict[str, int]:
    """The first token of each verdict word (what a pair-aware objective compares).

    Raises:
        ValueError: both words start with the same token, so a first-token score cannot
            tell them apart.
    """
    first = {w: ids[0] for w, ids in verdicts.items()}
    if len(set(first.values())) < len(first):
        raise ValueError(f"the verdict words share their first token {first}: score whole words instead")
    return first


def training_target(label: int, cwe: str | None = None, reason: str | None = None) -> str:
    """The model turn we train on: the verdict first, then CWE and a short reason.

    ``VULNERABLE — CWE-787 (Out-of-bounds Write): <reason>`` or ``SAFE: <reason>``.
    """
    if label == 1:
        head = VERDICT_VULNERABLE
        if cwe:
            name = cwe_name(cwe)
            head += f" — {cwe}" + (f" ({name})" if name else "")
        why = reason or (f"the code is exposed to {cwe_name(cwe) or cwe}." if cwe
                         else "the code mishandles untrusted data.")
        return f"{head}: {why}"
    why = reason or "inputs are validated and memory accesses stay within bounds."
    return f"{VERDICT_SAFE}: {why}"


def training_example(code: str, label: int, cwe: str | None = None, lang: str | None = "c",
                     reason: str | None = None, tokenizer: Any = None) -> tuple[str, str]:
    """(prompt, completion) for SFT with loss on the completion (model turn) only.

    The prompt is rendered by :func:`render_conversation` with the model's own format; the
    completion is the target followed by the format's end of turn (:func:`turn_end`), with a
    leading space only where the prompt does not end in whitespace (as :func:`verdict_ids`).
    """
    prompt = render_conversation(_messages(TRAIN_INSTRUCTION, code, lang), tokenizer)
    lead = "" if not prompt or prompt[-1].isspace() else " "
    return prompt, lead + training_target(label, cwe, reason) + turn_end(tokenizer)


# ---------------------------------------------------------------------------------------
# Verdict parsing
# ---------------------------------------------------------------------------------------
_NEG = r"(?:not|n't|never|no longer|isn't|is not|doesn't appear to be|does not appear to be)"
_VERDICT_RE = re.compile(
    r"\b(?P<neg>" + _NEG + r"\s+(?:be\s+|considered\s+|appear\s+(?:to\s+be\s+)?)?)?"
    r"(?P<word>vulnerable|vulnerability|vulnerabilities|unsafe|insecure|safe|secure|benign|exploitable)\b",
    re.IGNORECASE,
)
_NO_VULN_RE = re.compile(r"\bno\s+(?:known\s+|obvious\s+|apparent\s+)?"
                         r"(?:vulnerabilit(?:y|ies)|security\s+(?:issues?|flaws?|bugs?))\b", re.IGNORECASE)

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


TEMPLATE_TEXTS = (SYSTEM, TRAIN_INSTRUCTION, INFERENCE_QUESTION, REFERENCE_INTRO)


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
