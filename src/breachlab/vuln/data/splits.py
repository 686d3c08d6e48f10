"""Grouped, seeded, balanced splits without leaks.

How a split is filled (per source, deterministic from the seed):

1. Groups (Juliet family, SVEN commit, PairVul CVE, DiverseVul commit) are ordered by
   ``sha256(seed:source:group)`` — an order that does not depend on which other groups exist,
   so adding data does not reshuffle the test set.
2. Splits are filled in the order test → val → train: each takes the next groups until it
   holds enough samples of each class.  Changing ``n_train`` therefore never changes the test
   set.  A group goes to exactly one split.
3. Each sample passes the length and language filters and the exact dedup (whitespace-
   normalised hash; with ``data.dedup: tokens`` also blind to comments): a repeat with the
   same label is dropped; the same code with both labels
   is a *conflict* and every copy is dropped.  Pairs (SVEN, PairVul) are units: if one half goes, both go.
4. At most ``max_per_group`` samples per class come from one group, so that a 100-sample test
   set spans many test-case families instead of 40 flow variants of one.
5. Within a split, units are drawn in seeded order without exceeding either class's target,
   which keeps pairs whole and the classes balanced.

:func:`check_leaks` then proves no group and no code hash sits in two splits, across all
sources; :func:`fix_overlap` reports pairs whose *edit* recurs in another split.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
from collections import Counter, defaultdict
from typing import Any, Callable

from breachlab.vuln.data.tokens import code_tokens
from breachlab.vuln.sample import Sample, normalise_ws

SPLIT_ORDER = ("test", "val", "train")
DEDUP_KEYS = ("whitespace", "tokens")


@functools.lru_cache(maxsize=1 << 17)
def token_hash(code: str) -> str:
    """Hash of the code's tokens with comments dropped and string literals kept: two copies of a
    function that differ only in comments or layout (one CVE fix in two datasets) share it."""
    return hashlib.sha256(" ".join(code_tokens(code, keep_strings=True)).encode("utf-8")).hexdigest()[:16]


def dedup_key(kind: str) -> Callable[[Sample], str]:
    """The sample key exact dedup and the leak check compare: ``whitespace`` (the
    whitespace-normalised code hash) or ``tokens`` (also blind to comments: :func:`token_hash`)."""
    if kind not in DEDUP_KEYS:
        raise ValueError(f"dedup must be one of {', '.join(DEDUP_KEYS)}, got {kind!r}")
    return (lambda s: s.hash) if kind == "whitespace" else (lambda s: token_hash(s.code))


class LeakError(RuntimeError):
    """A group or a function sits in two splits: a bug, never silently ignored."""


def order_key(seed: int, *parts: str) -> str:
    """The seeded sort key of a group or unit."""
    return hashlib.sha256(":".join([str(seed), *parts]).encode("utf-8")).hexdigest()


def check_leaks(splits: dict[str, list[Sample]], dedup: str = "whitespace") -> None:
    """Raise :class:`LeakError` if a group, a code hash or an id is shared by two splits
    (with ``dedup="tokens"`` also a comment-blind token hash)."""
    problems: list[str] = []
    keys = [("group", lambda s: f"{s.source}:{s.group}"), ("code hash", lambda s: s.hash), ("id", lambda s: s.id)]
    if dedup == "tokens":
        keys.append(("token hash", dedup_key("tokens")))
    for what, key in keys:
        where: dict[str, set[str]] = defaultdict(set)
        for name, samples in splits.items():
            for s in samples:
                where[key(s)].add(name)
        shared = sorted(k for k, v in where.items() if len(v) > 1)
        if shared:
            examples = ", ".join(f"{k} ({'/'.join(sorted(where[k]))})" for k in shared[:3])
            problems.append(f"{len(shared)} {what}(s) in more than one split, e.g. {examples}")
    if problems:
        raise LeakError("data leak between splits: " + "; ".join(problems))


def fix_fingerprint(vulnerable: str, fixed: str) -> str:
    """Hash of the edit alone: the whitespace-normalised lines a fix removes and adds.

    Two pairs with the same fingerprint carry the same fix, even when their functions
    differ elsewhere or come from different sources (a SVEN commit and a PairVul CVE).
    """
    a = [normalise_ws(x) for x in vulnerable.splitlines() if x.strip()]
    b = [normalise_ws(x) for x in fixed.splitlines() if x.strip()]
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    edit = [(a[i1:i2], b[j1:j2]) for op, i1, i2, j1, j2 in ops if op != "equal"]
    return hashlib.sha256(repr(edit).encode("utf-8")).hexdigest()[:16]


def fix_overlap(splits: dict[str, list[Sample]]) -> dict[str, Any]:
    """Same fix in two splits (near-duplicate pairs the exact-hash check cannot see).

    Reported, not fatal: a one-line fix such as adding ``kfree(p);`` can recur in unrelated
    functions. ``cross_source`` counts the fixes seen in two sources as well as two splits.
    """
    where: dict[str, set[tuple[str, str]]] = defaultdict(set)
    example: dict[str, str] = {}
    for name, samples in splits.items():
        halves: dict[str, dict[int, Sample]] = defaultdict(dict)
        for s in samples:
            if s.pair_id:
                halves[s.pair_id][s.label] = s
        for pid, h in halves.items():
            if len(h) == 2:
                key = fix_fingerprint(h[1].code, h[0].code)
                where[key].add((name, h[1].source))
                example.setdefault(key, pid)
    shared = [k for k, v in where.items() if len({sp for sp, _ in v}) > 1]
    return {"fixes_in_two_splits": len(shared),
            "cross_source": sum(len({src for _, src in where[k]}) > 1 for k in shared),
            "examples": [f"{example[k]} ({', '.join(sorted(f'{sp}/{src}' for sp, src in where[k]))})"
                         for k in sorted(shared)[:5]]}


class Allocator:
    """Fills splits from pools, one source at a time; see the module docstring.

    Args:
        seed: the split seed.
        keep: the per-sample filter (length, language); returns a reason to drop or None.
        max_per_group: per class and group; 0 = no limit.
        progress: called with the number of groups examined (for a progress bar).
        key: what exact dedup compares (:func:`dedup_key`; default the whitespace-normalised hash).
    """

    def __init__(self, seed: int, keep: Callable[[Sample], str | None], max_per_group: int = 0,
                 progress: Callable[[int], Any] | None = None, key: Callable[[Sample], str] | None = None):
        self.seed = seed
        self.key = key or (lambda s: s.hash)
        self.keep = keep
        self.max_per_group = max_per_group
        self.progress = progress
        self.dropped: Counter[str] = Counter()
        self.hash_owner: dict[str, tuple[int, str]] = {}  # code hash -> (label, unit key)
        self.conflicts: set[str] = set()
        self.units: dict[str, dict[str, list[list[Sample]]]] = defaultdict(lambda: defaultdict(list))
        self.unit_split: dict[str, tuple[str, str]] = {}  # unit key -> (split, source)
        self._cursor: dict[str, int] = {}
        self._order: dict[str, list[str]] = {}
        self._buffer: dict[str, dict[str, list[Sample]]] = defaultdict(dict)
        self.prepared: dict[str, dict[str, list[tuple[str, list[Sample]]]]] = defaultdict(dict)
        self.prepared_at: dict[str, tuple[str, str]] = {}  # unit key -> (source, group), not yet in a split

    # -- per-source state ------------------------------------------------------------------
    def ordered_groups(self, pool: Any) -> list[str]:
        if pool.name not in self._order:
            self._order[pool.name] = sorted(pool.groups(), key=lambda g: order_key(self.seed, pool.name, g))
            self._cursor[pool.name] = 0
        return self._order[pool.name]

    def counts(self, split: str, source: str) -> dict[int, int]:
        c = {0: 0, 1: 0}
        for unit in self.units[split][source]:
            for s in unit:
                c[s.label] += 1
        return c

    def exhausted(self, pool: Any) -> bool:
        return self._cursor.get(pool.name, 0) >= len(self.ordered_groups(pool))

    # -- filling ---------------------------------------------------------------------------
    def fill(self, pool: Any, split: str, target: tuple[int, int], batch: int = 32) -> None:
        """Add groups of ``pool`` to ``split`` until it holds ``target`` = (safe, vulnerable)."""
        order = self.ordered_groups(pool)
        buf = self._buffer[pool.name]
        while True:
            have = self.counts(split, pool.name)
            if have[0] >= target[0] and have[1] >= target[1]:
                return
            i = self._cursor[pool.name]
            if i >= len(order):
                return
            if order[i] not in buf and order[i] not in self.prepared[pool.name]:
                wanted = [g for g in order[i:i + batch] if g not in buf]
                got: dict[str, list[Sample]] = {g: [] for g in wanted}
                for s in pool.fetch(wanted):
                    got.setdefault(s.group, []).append(s)
                buf.update(got)
                batch = min(batch * 2, 1024)
            self._cursor[pool.name] = i + 1
            self._add_group(pool.name, split, order[i], buf.pop(order[i], []))
            if self.progress:
                self.progress(1)

    def prescan(self, pool: Any) -> None:
        """Filter and dedup every group of an in-memory pool up front, in seeded order.

        Then dedup and conflict counts cover the whole source, and a function repeated in a
        group that no split reaches still removes its conflicting twin.  (Juliet is lazy: its
        dedup covers the families the build reads.)
        """
        for group in self.ordered_groups(pool):
            self.prepared[pool.name][group] = self._prepare(pool.name, group, pool.fetch([group]))

    def _add_group(self, source: str, split: str, group: str, samples: list[Sample]) -> None:
        prepared = self.prepared[source]
        kept = prepared.pop(group) if group in prepared else self._prepare(source, group, samples)
        for key, unit in kept:
            self.units[split][source].append(unit)
            self.unit_split[key] = (split, source)
            self.prepared_at.pop(key, None)

    def _prepare(self, source: str, group: str, samples: list[Sample]) -> list[tuple[str, list[Sample]]]:
        units: dict[str, list[Sample]] = {}
        for s in sorted(samples, key=lambda s: s.id):
            units.setdefault(s.pair_id or s.id, []).append(s)
        kept: list[tuple[str, list[Sample]]] = []
        for key, unit in units.items():
            reasons = [r for r in (self.keep(s) for s in unit) if r]
            if reasons:
                self.dropped[reasons[0]] += len(unit)
                continue
            if self._dedup(key, unit):
                kept.append((key, unit))
        # a conflict found later in this same group also removes the copy kept earlier in it
        lost = [(k, u) for k, u in kept if any(self.key(s) in self.conflicts for s in u)]
        for key, unit in lost:
            self.dropped["conflicting label"] += len(unit)
        kept = [(k, u) for k, u in kept if not any(self.key(s) in self.conflicts for s in u)]
        if self.max_per_group:
            kept.sort(key=lambda ku: order_key(self.seed, source, ku[0]))
            per_class: Counter[int] = Counter()
            capped = []
            for key, unit in kept:
                labels = Counter(s.label for s in unit)
                if all(per_class[lab] + n <= max(self.max_per_group, n) for lab, n in labels.items()):
                    per_class.update(labels)
                    capped.append((key, unit))
                else:
                    self.dropped["over group cap"] += len(unit)
            kept = capped
        for key, _unit in kept:
            self.prepared_at[key] = (source, group)
        return kept

    def _dedup(self, key: str, unit: list[Sample]) -> bool:
        """Register the unit's hashes; False if it must go (duplicate or conflict)."""
        for s in unit:
            h = self.key(s)
            if h in self.conflicts:
                self.dropped["conflicting label"] += len(unit)
                return False
            owner = self.hash_owner.get(h)
            if owner is None:
                continue
            if owner[0] == s.label:
                self.dropped["duplicate"] += len(unit)
                return False
            # the same function with both labels: drop every copy
            self.conflicts.add(h)
            self._remove_unit(owner[1])
            self.dropped["conflicting label"] += len(unit)
            return False
        seen_here: set[str] = set()
        for s in unit:
            if self.key(s) in seen_here:  # both halves equal (after filters): not a pair
                self.dropped["identical pair"] += len(unit)
                return False
            seen_here.add(self.key(s))
        for s in unit:
            self.hash_owner[self.key(s)] = (s.label, key)
        return True

    def _remove_unit(self, key: str) -> None:
        at = self.prepared_at.pop(key, None)
        if at is not None:
            source, group = at
            units = self.prepared[source].get(group, [])
            for i, (k, unit) in enumerate(units):
                if k == key:
                    self.dropped["conflicting label"] += len(unit)
                    for s in unit:
                        self.hash_owner.pop(self.key(s), None)
                    del units[i]
                    return
        where = self.unit_split.pop(key, None)
        if where is None:
            return
        split, source = where
        units = self.units[split][source]
        for i, unit in enumerate(units):
            if (unit[0].pair_id or unit[0].id) == key:
                self.dropped["conflicting label"] += len(unit)
                for s in unit:
                    self.hash_owner.pop(self.key(s), None)
                del units[i]
                return

    # -- sampling ----------------------------------------------------------------------------
    def sample(self, split: str, targets: dict[str, tuple[int, int]]) -> list[Sample]:
        """Draw units in seeded order up to each source's (safe, vulnerable) target."""
        out: list[Sample] = []
        for source, (n_safe, n_vuln) in targets.items():
            units = sorted(self.units[split][source],
                           key=lambda u: order_key(self.seed, source, u[0].pair_id or u[0].id))
            have = {0: 0, 1: 0}
            want = {0: n_safe, 1: n_vuln}
            for unit in units:
                labels = Counter(s.label for s in unit)
                if all(have[lab] + n <= want[lab] for lab, n in labels.items()):
                    out.extend(unit)
                    for lab, n in labels.items():
                        have[lab] += n
                if have == want:
                    break
        return sorted(out, key=lambda s: order_key(self.seed, "row", s.id))
