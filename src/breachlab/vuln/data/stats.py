"""Dataset statistics: class balance, sources, CWEs, lengths, groups, pairs and what was dropped.

``breachlab vuln data stats RUN_DIR_OR_JSONL`` prints :func:`render_stats` of :func:`stats_for`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from breachlab.vuln.sample import Sample, load_split

LENGTH_BINS = (0, 200, 400, 800, 1600, 3200, 6400)


def _length_bin(n: int) -> str:
    for lo, hi in zip(LENGTH_BINS, LENGTH_BINS[1:]):
        if n < hi:
            return f"{lo}-{hi}"
    return f"{LENGTH_BINS[-1]}+"


def compute_stats(samples_by_split: dict[str, list[Sample]]) -> dict:
    """Class balance, sources, CWEs, lengths, groups and pairs of each split."""
    out: dict[str, Any] = {"splits": {}}
    for split, samples in samples_by_split.items():
        labels = Counter(s.label for s in samples)
        by_source: dict[str, dict[str, int]] = {}
        cwe: dict[str, dict[str, int]] = {}
        lengths: dict[str, dict[str, int]] = {}
        for s in samples:
            key = "vulnerable" if s.label else "safe"
            for table, k in ((by_source, s.source), (cwe, s.cwe or "unknown"), (lengths, _length_bin(len(s.code)))):
                table.setdefault(k, {"safe": 0, "vulnerable": 0})[key] += 1
        out["splits"][split] = {
            "n": len(samples), "safe": labels[0], "vulnerable": labels[1],
            "groups": len({(s.source, s.group) for s in samples}),
            "groups_by_source": dict(sorted(Counter(src for src, _ in {(s.source, s.group) for s in samples}).items())),
            "pairs_by_source": dict(sorted(Counter(src for src, _ in {(s.source, s.pair_id) for s in samples
                                                                       if s.pair_id}).items())),
            "pairs": len({s.pair_id for s in samples if s.pair_id}),
            "by_source": dict(sorted(by_source.items())),
            "cwe": dict(sorted(cwe.items(), key=lambda kv: -sum(kv[1].values()))),
            "length": {b: lengths[b] for b in sorted(lengths, key=lambda b: int(b.split("-")[0].rstrip("+")))},
            "chars_mean": round(sum(len(s.code) for s in samples) / len(samples), 1) if samples else 0,
        }
    return out


def stats_for(path: str | Path) -> dict:
    """``stats.json`` of a run directory, or stats computed from a JSONL file."""
    path = Path(path)
    if path.is_dir() and (path / "stats.json").is_file():
        return json.loads((path / "stats.json").read_text(encoding="utf-8"))
    if path.is_dir():
        return compute_stats({p.stem: load_split(p) for p in sorted(path.glob("*.jsonl"))})
    return compute_stats({path.stem: load_split(path)})


def render_stats(stats: dict) -> Any:
    """A rich renderable of :func:`compute_stats` output (plus dropped counts if present)."""
    from rich.console import Group
    from rich.table import Table

    parts: list[Any] = []
    overview = Table(title="splits", show_edge=False)
    for col in ("split", "n", "safe", "vulnerable", "groups", "pairs", "mean chars", "sources"):
        overview.add_column(col, justify="left" if col in ("split", "sources") else "right")
    for split, st in stats.get("splits", {}).items():
        srcs = ", ".join(f"{k} {v['safe']}/{v['vulnerable']}" for k, v in st["by_source"].items())
        overview.add_row(split, str(st["n"]), str(st["safe"]), str(st["vulnerable"]), str(st["groups"]),
                         str(st["pairs"]), str(st["chars_mean"]), srcs)
    parts.append(overview)
    for split, st in stats.get("splits", {}).items():
        cwe = Table(title=f"{split}: CWE (safe / vulnerable)", show_edge=False)
        cwe.add_column("CWE")
        cwe.add_column("safe", justify="right")
        cwe.add_column("vulnerable", justify="right")
        for name, c in list(st["cwe"].items())[:15]:
            cwe.add_row(name, str(c["safe"]), str(c["vulnerable"]))
        if len(st["cwe"]) > 15:
            cwe.add_row(f"… {len(st['cwe']) - 15} more", "", "")
        length = Table(title=f"{split}: length in characters", show_edge=False)
        for col in ("chars", "safe", "vulnerable"):
            length.add_column(col, justify="right")
        for b, c in st["length"].items():
            length.add_row(b, str(c["safe"]), str(c["vulnerable"]))
        parts.extend([cwe, length])
    dropped = dict(stats.get("dropped", {}))
    for name, ls in stats.get("loaders", {}).items():
        for k, v in ls.items():
            if isinstance(v, int) and ("identical" in k or "other" in k):
                dropped[f"{name}: {k.replace('_', ' ')}"] = v
    checks = [(k, str(stats[k])) for k in ("leak_check",) if k in stats]
    if "pair_fix_overlap" in stats:
        o = stats["pair_fix_overlap"]
        checks.append(("same fix in two splits", f"{o['fixes_in_two_splits']} ({o['cross_source']} across sources)"))
    if checks:
        t = Table(title="checks", show_edge=False)
        t.add_column("check")
        t.add_column("result")
        for k, v in checks:
            t.add_row(k.replace("_", " "), v)
        parts.append(t)
    if dropped:
        t = Table(title="dropped", show_edge=False)
        t.add_column("reason")
        t.add_column("samples", justify="right")
        for k, v in dropped.items():
            t.add_row(k, str(v))
        parts.append(t)
    return Group(*parts)
