"""One pool per configured source, with long vulnerable/fixed pairs cut around their change.

Loaders live in :mod:`breachlab.vuln.data.sources` (imported here only for the sources a build
names, so Juliet's parser is not loaded for a SVEN-only build). A pair with a half longer
than ``max_chars`` would be dropped by the length filter; with ``data.pair_window`` on it is
cut instead, both halves to the same window of lines around the change
(:mod:`breachlab.vuln.data.pairwindow`), and a pair whose halves become identical is dropped and
counted (``pairs_identical_after_window`` in the loader stats).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from breachlab.vuln.data.config import PAIRED_SOURCES, DataConfig, source_path
from breachlab.vuln.data.pairwindow import truncate_pair
from breachlab.vuln.data.sources import ListPool
from breachlab.vuln.data.splits import order_key
from breachlab.vuln.sample import Sample


def _cache_dir(cfg: DataConfig) -> Path | None:
    if cfg.cache_dir and cfg.cache_dir.lower() == "none":
        return None
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    from breachlab.vuln.data.sources.juliet import default_cache_dir

    return default_cache_dir()


def window_pairs(pool: ListPool, budget: int) -> ListPool:
    """The pool with every pair whose halves exceed ``budget`` characters cut around the change.

    Both halves keep the same lines around the first-to-last changed line; a pair that ends
    up identical goes. Counts land in the pool's stats (``pairs_windowed``,
    ``pairs_identical_after_window``); single functions pass unchanged (the length filter
    decides about them).
    """
    samples = pool.fetch(pool.groups())
    halves: dict[str, list[Sample]] = {}
    for s in samples:
        if s.pair_id:
            halves.setdefault(s.pair_id, []).append(s)
    stats = dict(pool.stats, pairs_windowed=0, pairs_identical_after_window=0)
    out: list[Sample] = []
    for s in samples:
        unit = halves.get(s.pair_id or "", [])
        if len(unit) != 2 or {u.label for u in unit} != {0, 1}:
            out.append(s)
            continue
        if s is not unit[0]:
            continue
        vul, fix = sorted(unit, key=lambda u: -u.label)
        if len(vul.code) <= budget and len(fix.code) <= budget:
            out += [vul, fix]
            continue
        w = truncate_pair(vul.code, fix.code, budget)
        if w.identical:
            stats["pairs_identical_after_window"] += 1
            continue
        stats["pairs_windowed"] += 1
        for half, code in ((vul, w.before), (fix, w.after)):
            meta = dict(half.meta, window_chars=budget, original_chars=len(half.code))
            out.append(dataclasses.replace(half, code=code, meta=meta))
    return ListPool(pool.name, out, stats)


def open_pools(cfg: DataConfig, status: Callable[[str], Any] | None = None) -> list[Any]:
    """One pool per configured source; reads and validates every in-memory source whole."""
    pools = []
    for source in cfg.sources:
        path = source_path(cfg, source)
        if status:
            status(f"loading {source} from {path}")
        if source == "juliet":
            from breachlab.vuln.data.sources.juliet import JulietPool

            pools.append(JulietPool(path, order_key=lambda g: order_key(cfg.seed, "juliet", g),
                                    cache_dir=_cache_dir(cfg), progress=status))
            continue
        if source == "sven":
            from breachlab.vuln.data.sources.sven import load_sven

            pool = load_sven(path, cfg.sven_splits, cfg.languages)
        elif source == "pairvul":
            from breachlab.vuln.data.sources.pairvul import load_pairvul

            pool = load_pairvul(path, cfg.pairvul_splits, cfg.languages)
        elif source == "cvefixes":
            from breachlab.vuln.data.sources.cvefixes import load_cvefixes

            pool = load_cvefixes(path, cfg.languages, unpaired=cfg.cvefixes_unpaired)
        elif source == "diversevul":
            from breachlab.vuln.data.sources.diversevul import load_diversevul

            pool = load_diversevul(path, cfg.languages)
        else:
            from breachlab.vuln.data.sources.generic import ColumnMap, load_generic

            cols = ColumnMap(code=cfg.generic_code_column, label=cfg.generic_label_column,
                             vulnerable_values=list(cfg.generic_vulnerable_values), cwe=cfg.generic_cwe_column,
                             group=cfg.generic_group_column, id=cfg.generic_id_column)
            pool = load_generic(path, cols, cfg.languages)
        if cfg.pair_window and source in PAIRED_SOURCES:
            pool = window_pairs(pool, cfg.max_chars - 1)
        pools.append(pool)
    return pools
