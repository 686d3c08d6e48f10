"""Label-leak neutralisation of Juliet functions: what a model must not read the label from.

PRODUCT.md's lessons: Juliet leaks its labels beyond comments and names. So all comments
go; every identifier with a name part ``bad``, ``good``, ``G2B``, ``B2G``, ``Sink``,
``Source``, ``CWE…``, ``FLAW``, ``FIX``, ``Benign`` or a flow-variant suffix is renamed by order
of appearance (``func_1``, ``Type_1``, ``var_1``) so the bad and the fixed copy of a function
get the same names; ``static`` is dropped from the header; literals that name the intent or
are passed to Juliet's print helpers become ``"text"``. The why of each rule is in
:mod:`breachlab.vuln.data.sources.juliet`; this module is the pure text transform.
"""

from __future__ import annotations

import re

TOKEN = re.compile(
    r"""(?P<comment>/\*.*?\*/|//[^\n]*)
      |(?P<str>(?:u8|[LuU])?"(?:\\.|[^"\\\n])*")
      |(?P<chr>[LuU]?'(?:\\.|[^'\\\n])*')
      |(?P<id>[A-Za-z_]\w*)
      |(?P<ws>\s+)
      |(?P<other>.)""",
    re.S | re.X,
)
_PART_SPLIT = re.compile(r"_+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
LEAK_PART = re.compile(r"^(?:bad|good|g2b|b2g|sink|source|cwe\d*|flaw|fix|fixed|benign)\d*[a-z]?$", re.I)
_VARIANT_SUFFIX = re.compile(r"_\d{2}[a-z]?(?:_|$)")
LEAK_TEXT = re.compile(r"(?i)benign|fixed|flaw|\bfix|good|bad|sink|source|cwe")
NEUTRAL_STRING = '"text"'
# Juliet's output helpers (testcasesupport/io.c): their literal messages say what a check is
# for ("ERROR: Array index is out-of-bounds", "data value is too large to perform arithmetic
# safely."); printing is not the flaw, so every literal passed to them becomes "text".
PRINT_HELPERS = {"printLine", "printWLine", "printStructLine", "puts", "printf", "wprintf"}
# ``if(0) { printLine("Benign, fixed string"); } else {…}``: a dead branch Juliet puts almost
# only in good variants (2,010 good vs 123 bad functions in a 77-family sample); renaming the
# string would leave the dead-branch shape as a shortcut, so such functions are not taken.
DEAD_BRANCH_MARKER = '"Benign, fixed string"'


def name_parts(identifier: str) -> list[str]:
    """``goodG2BSink`` → ``[good, G2B, Sink]``; ``CWE121_foo_01_bad`` → ``[CWE121, foo, 01, bad]``."""
    return [p for p in _PART_SPLIT.split(identifier) if p]


def is_leaky_name(identifier: str) -> bool:
    """True if a name part of ``identifier`` tells the label or the test case."""
    return bool(_VARIANT_SUFFIX.search(identifier)) or any(LEAK_PART.match(p) for p in name_parts(identifier))


def strip_comments(code: str) -> str:
    """Remove ``/* */`` and ``//`` comments (not inside string or character literals)."""
    return "".join(m.group() for m in TOKEN.finditer(code) if m.lastgroup != "comment")


def neutralise(code: str) -> str:
    """Remove comments, leaky names, ``static`` in the header and tell-tale strings.

    The function must start at its header (as tree-sitter gives it).  Renaming is by order of
    appearance inside this one function, so the vulnerable and the fixed copy of a function
    come out with identical names.
    """
    tokens = [(m.lastgroup, m.group()) for m in TOKEN.finditer(code)]
    tokens = [t for t in tokens if t[0] != "comment"]
    body_start = next((i for i, (k, v) in enumerate(tokens) if v == "{"), len(tokens))
    names: dict[str, str] = {}
    counters = {"func": 0, "Type": 0, "var": 0}
    out: list[str] = []
    for i, (kind, text) in enumerate(tokens):
        if kind == "id":
            if i < body_start and text == "static":
                # drop it and the space after it
                if i + 1 < len(tokens) and tokens[i + 1][0] == "ws":
                    tokens[i + 1] = ("ws", "")
                continue
            if is_leaky_name(text):
                if text not in names:
                    nxt = _next_significant(tokens, i)
                    prv = _prev_significant(tokens, i)
                    if nxt == "::" or prv == "~" and not names:
                        cat = "Type"
                    elif nxt == "(" or not names:
                        cat = "func"
                    else:
                        cat = "var"
                    counters[cat] += 1
                    names[text] = f"{cat}_{counters[cat]}"
                text = names[text]
        elif kind == "str" and (LEAK_TEXT.search(text) or _is_print_argument(tokens, i)):
            text = ("L" if text.startswith("L") else "") + NEUTRAL_STRING
        out.append(text)
    return _tidy("".join(out))


def _is_print_argument(tokens: list[tuple[str, str]], i: int) -> bool:
    """Is token ``i`` the literal in ``printLine("…")`` (a Juliet message that tells intent)?"""
    j = i - 1
    while j >= 0 and tokens[j][0] == "ws":
        j -= 1
    if j < 0 or tokens[j][1] != "(":
        return False
    j -= 1
    while j >= 0 and tokens[j][0] == "ws":
        j -= 1
    return j >= 0 and tokens[j][1] in PRINT_HELPERS


def _next_significant(tokens: list[tuple[str, str]], i: int) -> str:
    """The next non-space token, with ``::`` joined."""
    j = i + 1
    while j < len(tokens) and tokens[j][0] == "ws":
        j += 1
    if j >= len(tokens):
        return ""
    if tokens[j][1] == ":" and j + 1 < len(tokens) and tokens[j + 1][1] == ":":
        return "::"
    return tokens[j][1]


def _prev_significant(tokens: list[tuple[str, str]], i: int) -> str:
    j = i - 1
    while j >= 0 and tokens[j][0] == "ws":
        j -= 1
    return tokens[j][1] if j >= 0 else ""


def _tidy(code: str) -> str:
    """Drop trailing spaces and blank lines (many are left where comments were)."""
    return "\n".join(ln.rstrip() for ln in code.splitlines() if ln.strip()) + "\n"
