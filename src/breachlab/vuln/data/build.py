"""``breachlab vuln data build`` — balanced, grouped, leak-checked train/val/test sets.

Sources: Juliet C/C++ 1.3 (neutralised: see :mod:`breachlab.vuln.data.sources.juliet`), SVEN,
PairVul and CVEfixes vulnerable/fixed pairs, DiverseVul, or any labelled table. The test split
may draw from other sources than train and val (``test_sources``/``train_sources``:
leave-one-source-out).  Steps: load and validate
every source (a malformed file stops here, before anything is written) → long pairs cut
around their change (:mod:`breachlab.vuln.data.pools`) → length/language filter → exact dedup
across all sources (whitespace-normalised; same code with both labels = conflict, dropped)
→ grouped split (families, commits, CVEs never straddle splits) → seeded balanced sampling
→ leak check → atomic write of ``{train,val,test}.jsonl`` and ``stats.json``.  See
:mod:`breachlab.vuln.data.splits` for how the splits are filled and why.

``breachlab vuln data stats RUN_DIR_OR_JSONL`` shows class balance, sources, CWEs, lengths
and what was dropped (:mod:`breachlab.vuln.data.stats`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from breachlab.errors import UserError
from breachlab.vuln.data.config import SOURCES, DataConfig, data_root, source_path
from breachlab.vuln.data.pairwindow import PairWindow, truncate_pair
from breachlab.vuln.data.pools import open_pools
from breachlab.vuln.data.splits import SPLIT_ORDER, Allocator, LeakError, check_leaks, dedup_key, fix_overlap
from breachlab.vuln.data.stats import compute_stats, render_stats, stats_for
from breachlab.vuln.sample import Sample, load_split

__all__ = ["DataConfig", "SOURCES", "LeakError", "build", "run", "select", "open_pools", "load_split",
           "compute_stats", "render_stats", "stats_for", "check_leaks", "data_root", "source_path",
           "truncate_pair", "PairWindow"]

log = logging.getLogger("breachlab.vuln.data.build")


def _shares(total: int, weights: dict[str, float]) -> dict[str, int]:
    raw = {s: total * w for s, w in weights.items()}
    out = {s: int(v) for s, v in raw.items()}
    for s in sorted(raw, key=lambda s: (-(raw[s] - out[s]), list(raw).index(s)))[: total - sum(out.values())]:
        out[s] += 1
    return out


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not (enabled and console.is_terminal), transient=True)


def select(cfg: DataConfig, pools: list[Any], progress: Any = None) -> tuple[dict[str, list[Sample]], dict[str, Any]]:
    """Fill, top up and sample every requested split; returns splits and the selection report."""
    min_c, max_c, langs = cfg.min_chars, cfg.max_chars, set(cfg.languages)

    def keep(s: Sample) -> str | None:
        if s.lang not in langs:
            return "language"
        if len(s.code) <= min_c:
            return "too short"
        if len(s.code) >= max_c:
            return "too long"
        return None

    task = progress.add_task("examining groups", total=None) if progress else None
    alloc = Allocator(cfg.seed, keep, cfg.max_per_group,
                      progress=(lambda n: progress.advance(task, n)) if progress else None, key=dedup_key(cfg.dedup))
    by_name = {p.name: p for p in pools}
    for pool in pools:
        if not getattr(pool, "lazy", False):
            alloc.prescan(pool)
    splits: dict[str, list[Sample]] = {}
    short: dict[str, dict[str, int]] = {}
    for split, n in cfg.targets().items():
        # [safe, vulnerable] per source; leave-one-source-out gives test and train other sources
        share = {src: [v, v] for src, v in _shares(n, cfg.split_weights(split)).items()}
        for _round in range(len(pools) + 1):
            for src, (n0, n1) in share.items():
                if n0 or n1:
                    alloc.fill(by_name[src], split, (n0, n1))
            # every shortfall first, then hand it on: a source topped up in this pass has not
            # been filled yet, so it must not count its new share as its own shortfall
            deficits: dict[tuple[str, int], int] = {}
            for src in share:
                have = alloc.counts(split, src)
                for c in (0, 1):
                    if share[src][c] > have[c]:
                        deficits[(src, c)] = share[src][c] - have[c]
                        share[src][c] = have[c]
            moved = False
            for (src, c), deficit in deficits.items():
                donors = [o for o in share if o != src and not alloc.exhausted(by_name[o])]
                donors += [o for o in share if o != src and o not in donors
                           and alloc.counts(split, o)[c] > share[o][c]]
                if donors:
                    share[donors[0]][c] += deficit
                    moved = True
            if not moved:
                break
        splits[split] = alloc.sample(split, {src: (v[0], v[1]) for src, v in share.items()})
        got = Counter(s.label for s in splits[split])
        missing = {"safe": n - got[0], "vulnerable": n - got[1]}
        if any(v > 0 for v in missing.values()):
            short[split] = missing
    if short and not cfg.allow_short:
        detail = "; ".join(f"{sp}: {n - m['safe']} safe + {n - m['vulnerable']} vulnerable of {n} + {n} asked"
                           for sp, m in short.items() for n in [cfg.targets()[sp]])
        raise UserError(f"not enough data in {', '.join(cfg.sources)} after filters and dedup ({detail}); "
                        "ask for fewer samples, add a source, or set data.allow_short=true")
    report = {
        "split_sources": {split: cfg.split_sources(split) for split in cfg.targets()},
        "dropped": dict(sorted(alloc.dropped.items())),
        "shortfall": short,
        "loaders": {p.name: dict(p.stats) for p in pools},
        "groups_examined": {p.name: alloc._cursor.get(p.name, 0) for p in pools},
    }
    return splits, report


def build(cfg: DataConfig, out_dir: Path, progress: bool = True, pools: list[Any] | None = None) -> dict:
    """Build the splits and write them to ``out_dir`` (only once everything succeeded).

    ``pools``: sources already opened by :func:`~breachlab.vuln.data.pools.open_pools` (so that a
    caller can validate them before it creates anything); opened here by default.
    """
    from breachlab.progress import status_line
    from breachlab.rundir import atomic_write_json, write_jsonl

    start = time.perf_counter()
    out_dir = Path(out_dir)
    with _progress(progress) as bar:
        pools = open_pools(cfg, status=status_line("data", log, progress)) if pools is None else pools
        splits, report = select(cfg, pools, bar)
    check_leaks(splits, cfg.dedup)
    report["pair_fix_overlap"] = fix_overlap(splits)
    report["leak_check"] = ("passed: no group (Juliet family, commit, CVE, function name), whitespace-normalised "
                            "code hash" + (", comment-blind token hash" if cfg.dedup == "tokens" else "")
                            + " or id in two splits, across all sources")
    stats = compute_stats(splits)
    stats.update(report)
    stats["requested_per_class"] = cfg.targets()
    stats["seed"] = cfg.seed
    stats["build_seconds"] = round(time.perf_counter() - start, 2)
    for split in SPLIT_ORDER:
        if splits.get(split):
            write_jsonl(out_dir / f"{split}.jsonl", (s.to_dict() for s in splits[split]))
    atomic_write_json(out_dir / "stats.json", stats)
    log.info("built %s in %.1f s", ", ".join(f"{k}={len(v)}" for k, v in splits.items()), stats["build_seconds"])
    return stats


def run(cfg: DataConfig, out: Path | None = None, root: Path = Path("runs")) -> Path:
    """Build into a fresh ``vuln-data`` run directory; returns its path."""
    from breachlab.rundir import RunDir

    inputs = [p for p in (source_path(cfg, s) for s in cfg.sources) if isinstance(p, Path)]
    from breachlab.progress import status_line

    # a malformed source fails here, before the run directory exists; each loading step says so on stderr
    pools = open_pools(cfg, status=status_line("data", log, True))
    rd = RunDir.create("vuln-data", cfg, root=root, out=out, seed=cfg.seed, inputs=inputs)
    with rd.running():
        stats = build(cfg, rd.path, progress=True, pools=pools)  # a bar on a terminal, step lines elsewhere
        rd.update_manifest(splits={k: v["n"] for k, v in stats["splits"].items()})
    return rd.path
