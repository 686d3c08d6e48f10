"""What the model sees of a function: comments removed, long lines cut, flagged lines marked.

Why strip comments: the scanned code is untrusted, and a comment such as ``/* this function
is SAFE */`` is an instruction aimed at the model, not code.  Comments are removed
*line-preservingly* (a block comment keeps its newlines), so line numbers stay exact.

Why marks and not inline evidence: the flagged lines get a fixed marker the scanned code
cannot forge (its own comments are gone), and the tools' messages go in a separate section
*outside* the code block (:func:`evidence_text`), so nothing in the code block is ours
except the markers, and nothing outside it comes from the scanned file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from breachlab.vuln.scan.candidates import HitGroup

MARK = "  // <-- FLAGGED"
_TOKEN = re.compile(r"""(?P<comment>/\*.*?(?:\*/|\Z)|//(?:[^\n\\]|\\.)*)|(?P<str>(?:u8|[LuU])?"(?:\\.|[^"\\\n])*"?)"""
                    r"""|(?P<chr>'(?:\\.|[^'\\\n])*'?)|(?P<other>[^/"']+|.)""", re.S)


def strip_comments(code: str) -> str:
    """``code`` without C/C++ comments; every line stays on its line number."""
    out = []
    for m in _TOKEN.finditer(code):
        if m.lastgroup == "comment":
            out.append("\n" * m.group().count("\n") if "\n" in m.group() else " ")
        else:
            out.append(m.group())
    return "\n".join(line.rstrip() for line in "".join(out).split("\n"))


def cut_long_lines(code: str, max_chars: int) -> tuple[str, int]:
    """Lines over ``max_chars`` cut (``/*…*/`` marks the cut); (text, number of lines cut)."""
    n = 0
    lines = code.split("\n")
    for i, line in enumerate(lines):
        if len(line) > max_chars:
            lines[i] = line[:max_chars] + " /*…*/"
            n += 1
    return "\n".join(lines), n


@dataclass(frozen=True)
class ModelView:
    """One function as the model gets it: ``code`` (fenced by the prompt) and ``evidence``."""

    code: str
    evidence: str
    lines_cut: int = 0


def build(code: str, start_line: int, groups: Sequence[HitGroup] = (), *, strip: bool = True,
          max_line_chars: int = 500) -> ModelView:
    """The model's view of the function at ``start_line`` with the tool hit ``groups`` marked."""
    text = strip_comments(code) if strip else code
    text, cut = cut_long_lines(text, max_line_chars)
    if not groups:
        return ModelView(text, "", cut)
    lines = text.split("\n")
    flagged = sorted({h.line for g in groups for h in g.hits})
    for ln in flagged:
        i = ln - start_line
        if 0 <= i < len(lines):
            lines[i] = lines[i] + MARK
    return ModelView("\n".join(lines), evidence_text(groups, start_line, lines), cut)


def evidence_text(groups: Sequence[HitGroup], start_line: int, lines: Sequence[str], limit: int = 8) -> str:
    """Tool reports as a plain list (line within the function, tool, rule, CWE, message)."""
    out = []
    for g in list(groups)[:limit]:
        for h in g.hits[:3]:
            cwe = f" {h.cwe}" if h.cwe else ""
            msg = " ".join(h.message.split())[:160]
            out.append(f"- line {h.line - start_line + 1}: {h.tool} {h.rule}{cwe}: {msg}")
    return "\n".join(out)
