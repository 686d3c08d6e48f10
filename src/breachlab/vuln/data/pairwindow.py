"""Cut a vulnerable/fixed pair to a budget around the lines that differ.

Cutting a function from the start hides the fix in many pairs (PRODUCT.md: 169 of 418 SVEN
C/C++ pairs became identical at 384 tokens). Here both halves keep the same window of lines
around the change, and a pair whose halves still end up identical is dropped and counted.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from breachlab.vuln.sample import normalise_ws


@dataclass(frozen=True)
class PairWindow:
    """A vulnerable/fixed pair cut to a budget around the lines that differ."""

    before: str
    after: str
    truncated: bool
    identical: bool


def truncate_pair(before: str, after: str, budget: int, length: Callable[[str], int] = len) -> PairWindow:
    """Keep the same window of lines around the changed lines in both halves.

    Cutting a function from the start hides the fix in many pairs (PRODUCT.md: 169 of 418
    SVEN C/C++ pairs became identical at 384 tokens).  ``length`` measures text in the
    budget's unit (characters by default; pass a tokenizer's count for tokens).  ``identical``
    tells the caller to drop the pair.
    """
    if length(before) <= budget and length(after) <= budget:
        return PairWindow(before, after, False, normalise_ws(before) == normalise_ws(after))
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    ops = [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
    if not ops:
        lo_a = lo_b = 0
        hi_a, hi_b = 1, 1
    else:
        lo_a, hi_a = ops[0][1], max(ops[-1][2], ops[0][1] + 1)
        lo_b, hi_b = ops[0][3], max(ops[-1][4], ops[0][3] + 1)

    def fits(la: int, ha: int, lb: int, hb: int) -> bool:
        return length("".join(a[la:ha])) <= budget and length("".join(b[lb:hb])) <= budget

    # if the changed region alone is too long, keep its start
    while (hi_a - lo_a > 1 or hi_b - lo_b > 1) and not fits(lo_a, hi_a, lo_b, hi_b):
        hi_a, hi_b = max(lo_a + 1, hi_a - 1), max(lo_b + 1, hi_b - 1)
    grew = True
    while grew:
        grew = False
        if lo_a > 0 and lo_b > 0 and fits(lo_a - 1, hi_a, lo_b - 1, hi_b):
            lo_a, lo_b, grew = lo_a - 1, lo_b - 1, True
        if hi_a < len(a) and hi_b < len(b) and fits(lo_a, hi_a + 1, lo_b, hi_b + 1):
            hi_a, hi_b, grew = hi_a + 1, hi_b + 1, True
    wa, wb = "".join(a[lo_a:hi_a]), "".join(b[lo_b:hi_b])
    return PairWindow(wa, wb, True, normalise_ws(wa) == normalise_ws(wb))
