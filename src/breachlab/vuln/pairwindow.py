"""Cut a vulnerable/fixed pair to a budget around the lines that differ.

Cutting a function from the start hides the fix in many pairs (PRODUCT.md: 169 of 418 SVEN
C/C++ pairs became identical at 384 tokens). Here both halves keep the same window of lines
around the change, and a pair whose halves still end up identical is dropped and counted.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Callable

from breachlab.vuln.sample import Sample, normalise_ws

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


def truncate_pairs(samples: list[Sample], budget: int,
                   length: Callable[[str], int] = len) -> tuple[list[Sample], dict[str, int]]:
    """Window every pair (:func:`truncate_pair`), keep the head of single functions,
    and drop pairs that end up identical; returns the samples and the counts."""
    pairs: dict[str, list[Sample]] = {}
    for s in samples:
        if s.pair_id:
            pairs.setdefault(s.pair_id, []).append(s)
    out: list[Sample] = []
    report = {"pairs": 0, "pairs_truncated": 0, "pairs_identical_dropped": 0, "singles_truncated": 0}
    done: set[str] = set()
    for s in samples:
        if s.pair_id and len(pairs[s.pair_id]) == 2:
            if s.pair_id in done:
                continue
            done.add(s.pair_id)
            vul, fix = sorted(pairs[s.pair_id], key=lambda x: -x.label)
            w = truncate_pair(vul.code, fix.code, budget, length)
            report["pairs"] += 1
            report["pairs_truncated"] += w.truncated
            if w.identical:
                report["pairs_identical_dropped"] += 1
                continue
            out += [dataclasses.replace(vul, code=w.before), dataclasses.replace(fix, code=w.after)]
        else:
            code = s.code
            while length(code) > budget and "\n" in code.rstrip("\n"):
                code = code.rstrip("\n").rsplit("\n", 1)[0] + "\n"
            report["singles_truncated"] += code != s.code
            out.append(dataclasses.replace(s, code=code) if code != s.code else s)
    return out, report
