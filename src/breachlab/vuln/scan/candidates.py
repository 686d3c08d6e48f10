"""Candidates: static-tool hits merged across tools and turned into combiner features.

Why merge: cppcheck, flawfinder and the Clang Static Analyzer often report the same defect
(a double free is ``doubleFree`` to cppcheck and ``unix.Malloc`` to clang).  Hits in the same
file within :data:`NEAR` lines whose CWEs fall in the same *family* become one
:class:`HitGroup` carrying every tool's evidence, so a reviewer sees one finding, and
agreement between tools becomes a feature instead of a duplicate.

Features (:func:`features`) are what the calibrated combiner weighs; they are all in
``[0, 1]`` except the model's logit, so fitted weights are comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from breachlab.vuln.scan.hybrid import StaticHit

NEAR = 2  # lines: hits this close with the same CWE family are one defect

# CWE → family.  Families are coarse on purpose: tools disagree on the exact CWE of one bug
# (cppcheck says CWE-788 where flawfinder says CWE-120 for the same overflow).
_FAMILIES = {
    "bounds": {118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 129, 131, 170, 193, 786, 787, 788, 805, 806, 823},
    "null": {476, 690},
    "memory": {401, 404, 415, 416, 590, 761, 762, 763, 772, 775, 825},
    "integer": {128, 189, 190, 191, 192, 194, 195, 196, 197, 680, 681, 682, 758},
    "divzero": {369},
    "uninit": {456, 457, 665, 824, 908, 909},
    "format": {134},
    "command": {77, 78, 88},
    "path": {22, 23, 36, 73},
    "race": {362, 367, 377},
}
_FAMILY_OF = {n: fam for fam, ns in _FAMILIES.items() for n in ns}

FEATURES = ("cppcheck", "flawfinder_level", "flawfinder_count", "clang", "gcc", "n_tools", "llm_logit")


def cwe_family(cwe: str | None) -> str:
    """The family of ``CWE-n`` (``other`` when unknown, ``?`` when the tool named none)."""
    if not cwe:
        return "?"
    try:
        n = int(cwe.split("-")[1])
    except (IndexError, ValueError):
        return "?"
    return _FAMILY_OF.get(n, f"cwe{n}")


@dataclass(frozen=True)
class HitGroup:
    """One defect location: merged hits of one or more tools, lines ``first``…``last``."""

    hits: tuple[StaticHit, ...]
    family: str

    @property
    def first(self) -> int:
        return min(h.line for h in self.hits)

    @property
    def last(self) -> int:
        return max(h.line for h in self.hits)

    @property
    def tools(self) -> tuple[str, ...]:
        return tuple(sorted({h.tool for h in self.hits}))


def _same_family(a: str, b: str) -> bool:
    return a == b or "?" in (a, b)


def merge(hits: Sequence[StaticHit], near: int = NEAR) -> list[HitGroup]:
    """Merge hits (one file) that are within ``near`` lines and of the same CWE family.

    A hit without a CWE joins a nearby group of any family (it cannot contradict it).
    Groups are returned in line order; the result does not depend on the input order.
    """
    groups: list[list[StaticHit]] = []
    fams: list[str] = []
    for h in sorted(hits, key=lambda h: (h.line, h.tool, h.rule, h.message)):
        fam = cwe_family(h.cwe)
        for i in range(len(groups) - 1, -1, -1):
            g = groups[i]
            if h.line - max(x.line for x in g) > near:
                continue
            if _same_family(fams[i], fam):
                g.append(h)
                if fams[i] == "?":
                    fams[i] = fam
                break
        else:
            groups.append([h])
            fams.append(fam)
    return [HitGroup(tuple(g), f) for g, f in zip(groups, fams)]


def llm_logit(p: float | None) -> float:
    if p is None:
        return 0.0
    p = min(max(p, 1e-6), 1 - 1e-6)
    return max(-10.0, min(10.0, math.log(p / (1 - p))))


def features(hits: Sequence[StaticHit], p_llm: float | None) -> dict[str, float]:
    """Combiner inputs for one function: tool evidence and (if scored) the model's logit."""
    ff = [h.level for h in hits if h.tool == "flawfinder"]
    cc = [h.level for h in hits if h.tool == "cppcheck"]
    return {
        "cppcheck": max(cc) / 4.0 if cc else 0.0,
        "flawfinder_level": max(ff) / 5.0 if ff else 0.0,
        "flawfinder_count": min(len(ff), 5) / 5.0,
        "clang": 1.0 if any(h.tool == "clang-tidy" for h in hits) else 0.0,
        "gcc": 1.0 if any(h.tool == "gcc" for h in hits) else 0.0,
        "n_tools": len({h.tool for h in hits}) / 4.0,
        "llm_logit": llm_logit(p_llm),
    }
