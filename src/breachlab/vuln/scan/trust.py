"""Per-check trust: which (tool, check) pairs are precise enough to report without the model.

Why: a combiner fitted over all tools together learns averages — on one data set the number
of agreeing tools even got a *negative* weight — and silences reports of checks that are
almost always right (a double free found by GCC's analyzer, cppcheck's ``arrayIndexOutOfBounds``).
So ``breachlab vuln calibrate`` measures each check's precision on labelled functions
(:func:`measure`: of the functions the check fired in, how many are vulnerable), and a check
whose smoothed precision ``(tp + 1) / (n + 2)`` (so 2 of 2 reads 0.75, not 1.0) is at least
``min_precision`` on at least ``min_n`` functions is *precise*: its report becomes a finding whatever
the model says (the model may rank and
explain it, never drop it).  A check seen fewer than ``min_n`` times is judged by its tool's
pooled precision at the same report level (``tool@level``), which is measured the same way.
Every other report is *noisy* and goes to the model and the combiner.

The scan's decision is therefore never below the union of its precise checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from breachlab.vuln.scan.hybrid import StaticHit

MIN_PRECISION = 0.6  # default; `vuln calibrate` picks the shipped value by leave-one-source-out
MIN_N = 2


def pool_key(h: StaticHit) -> str:
    """The pooled unit a rarely seen check falls back to: ``tool@level``."""
    return f"{h.tool}@{h.level}"


def smoothed(c: dict[str, int]) -> float:
    """Laplace-smoothed precision ``(tp + 1) / (n + 2)`` of a check's counts."""
    return (c["tp"] + 1) / (c["n"] + 2)


def measure(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts per check and per ``tool@level`` pool: ``{key: {"n": fired, "tp": fired on vulnerable}}``.

    ``rows`` are labelled functions with ``checks`` (the ``tool:rule`` ids that fired in the
    function) and ``pools`` (their ``tool@level`` keys); each key counts once per function.
    """
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        for key in {*r.get("checks", ()), *r.get("pools", ())}:
            c = out.setdefault(key, {"n": 0, "tp": 0})
            c["n"] += 1
            c["tp"] += int(bool(r["label"]))
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class Trust:
    """Measured counts and the rule that turns them into precise / noisy."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    min_precision: float = MIN_PRECISION
    min_n: int = MIN_N

    def precision(self, h: StaticHit) -> float | None:
        """Measured precision of ``h``'s check (its pool's when the check was seen < ``min_n`` times)."""
        for key in (h.check, pool_key(h)):
            c = self.counts.get(key)
            if c and c["n"] >= self.min_n:
                return smoothed(c)
        return None

    def is_precise(self, h: StaticHit) -> bool:
        p = self.precision(h)
        return p is not None and p >= self.min_precision

    def split(self, hits: Sequence[StaticHit]) -> tuple[list[StaticHit], list[StaticHit]]:
        """(precise hits, noisy hits)."""
        precise = [h for h in hits if self.is_precise(h)]
        return precise, [h for h in hits if not self.is_precise(h)]

    def precise_checks(self) -> list[str]:
        return [k for k, c in self.counts.items() if c["n"] >= self.min_n and smoothed(c) >= self.min_precision]

    def to_dict(self) -> dict[str, Any]:
        return {"min_precision": self.min_precision, "min_n": self.min_n, "counts": self.counts,
                "precise": self.precise_checks()}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Trust | None":
        if not d:
            return None
        return cls({k: {"n": int(v["n"]), "tp": int(v["tp"])} for k, v in d["counts"].items()},
                   float(d["min_precision"]), int(d["min_n"]))
