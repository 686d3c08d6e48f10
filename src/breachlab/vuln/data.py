"""``breachlab vuln data build`` — balanced, grouped, leak-checked train/val/test sets.

Sources: Juliet C/C++ 1.3 (neutralised: see :mod:`breachlab.vuln.datasets.juliet`), SVEN
vulnerable/fixed pairs, DiverseVul, or any labelled table.  Steps: load → length/language
filter → exact dedup (whitespace-normalised; same code with both labels = conflict, dropped)
→ grouped split (families/commits never straddle splits) → seeded balanced sampling → leak
check → atomic write of ``{train,val,test}.jsonl`` and ``stats.json``.  See
:mod:`breachlab.vuln.splits` for how the splits are filled and why.

``breachlab vuln data stats RUN_DIR_OR_JSONL`` shows class balance, sources, CWEs, lengths
and what was dropped.
"""

from __future__ import annotations

import difflib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from breachlab.config import ConfigError, field
from breachlab.errors import UserError
from breachlab.vuln.sample import Sample, normalise_ws, read_samples
from breachlab.vuln.splits import SPLIT_ORDER, Allocator, LeakError, check_leaks, order_key

__all__ = ["DataConfig", "LeakError", "build", "run", "load_split", "compute_stats", "render_stats",
           "check_leaks", "truncate_pair", "truncate_pairs", "PairWindow"]

log = logging.getLogger("breachlab.vuln.data")

SOURCES = ("juliet", "sven", "diversevul", "generic")
WHERE_TO_GET = {
    "juliet": "Juliet C/C++ 1.3 from https://samate.nist.gov/SARD/test-suites/112 "
              "(juliet-c-cpp-1.3.tar.xz or the unpacked folder)",
    "sven": "SVEN from https://github.com/eth-sri/sven (data_train_val/{train,val}/cwe-*.jsonl)",
    "diversevul": "diversevul_20230702.json from https://github.com/wagner-group/diversevul",
    "generic": "your own JSONL/CSV file",
}
LENGTH_BINS = (0, 200, 400, 800, 1600, 3200, 6400)


@dataclass
class DataConfig:
    """What ``breachlab vuln data build`` builds; every field can be set in YAML or with --set."""

    sources: list[str] = field(default_factory=lambda: ["juliet", "sven"],
                               help="datasets to draw from: juliet, sven, diversevul, generic")
    data_root: str | None = field(None, help="folder with juliet/, sven/, diversevul/ (default: $BREACHLAB_DATA, "
                                             "else ../shared/data, else ./data)")
    juliet_path: str | None = field(None, help="Juliet .tar.xz or unpacked folder (default: <data_root>/juliet/"
                                               "juliet-c-cpp-1.3.tar.xz)")
    sven_path: str | None = field(None, help="SVEN folder with train/ and val/ (default: <data_root>/sven)")
    sven_splits: list[str] = field(default_factory=lambda: ["train", "val"],
                                   help="SVEN sub-folders to read (we re-split them by commit ourselves)")
    diversevul_path: str | None = field(None, help="DiverseVul JSON/JSONL file or the hub id bstee615/diversevul "
                                                   "(default: <data_root>/diversevul/diversevul_20230702.json)")
    generic_path: str | None = field(None, help="a JSONL/JSON/CSV/TSV file for the 'generic' source")
    generic_code_column: str = field("code", help="generic: column with the function source")
    generic_label_column: str = field("label", help="generic: column with the label")
    generic_vulnerable_values: list[str] = field(default_factory=lambda: ["1", "true", "vulnerable", "yes"],
                                                 help="generic: label values that mean vulnerable (case-insensitive)")
    generic_cwe_column: str | None = field(None, help="generic: optional CWE column")
    generic_group_column: str | None = field(None, help="generic: optional split-group column (e.g. commit)")
    generic_id_column: str | None = field(None, help="generic: optional unique id column")
    languages: list[str] = field(default_factory=lambda: ["c", "cpp"], help="languages to keep")
    min_chars: int = field(30, help="keep functions longer than this many characters")
    max_chars: int = field(3200, help="keep functions shorter than this many characters")
    n_train_per_class: int = field(3000, help="training samples per class (0 = no train split)")
    n_val_per_class: int = field(500, help="validation samples per class (0 = no val split)")
    n_test_per_class: int = field(100, help="test samples per class (0 = no test split)")
    source_mix: str = field("equal", help="how each split is shared across sources: 'equal' or weights such as "
                                          "'juliet=0.7,sven=0.3'; a source that runs short is topped up by the others")
    max_per_group: int = field(2, help="at most this many samples per class from one group "
                                       "(Juliet family, commit); 0 = no limit")
    allow_short: bool = field(False, help="write smaller splits instead of failing when the data runs out")
    seed: int = field(42, help="seed for group order, split assignment and sampling")
    cache_dir: str | None = field(None, help="cache for parsed Juliet families (default: $BREACHLAB_CACHE, "
                                             "else ~/.cache/breachlab); 'none' disables it")

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("data.sources: name at least one of " + ", ".join(SOURCES))
        bad = [s for s in self.sources if s not in SOURCES]
        if bad:
            raise ConfigError(f"data.sources: unknown source(s) {', '.join(bad)}; choose from {', '.join(SOURCES)}")
        if len(set(self.sources)) != len(self.sources):
            raise ConfigError("data.sources: a source is listed twice")
        if "generic" in self.sources and not self.generic_path:
            raise ConfigError("data.generic_path is required when sources include 'generic'")
        if not self.languages:
            raise ConfigError("data.languages: keep at least one language")
        self.languages = [lang.lower() for lang in self.languages]
        if self.min_chars < 0 or self.max_chars <= self.min_chars + 1:
            raise ConfigError(f"data: need 0 <= min_chars < max_chars - 1, got {self.min_chars}, {self.max_chars}")
        for name in ("n_train_per_class", "n_val_per_class", "n_test_per_class", "max_per_group"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.{name} must be >= 0, got {getattr(self, name)}")
        if not (self.n_train_per_class or self.n_val_per_class or self.n_test_per_class):
            raise ConfigError("data: all split sizes are 0; ask for at least one split")
        self.mix_weights()

    def targets(self) -> dict[str, int]:
        """Per-class size of each requested split, in fill order (test first)."""
        sizes = {"train": self.n_train_per_class, "val": self.n_val_per_class, "test": self.n_test_per_class}
        return {s: sizes[s] for s in SPLIT_ORDER if sizes[s] > 0}

    def mix_weights(self) -> dict[str, float]:
        if self.source_mix.strip().lower() == "equal":
            return {s: 1.0 / len(self.sources) for s in self.sources}
        weights: dict[str, float] = {}
        for part in self.source_mix.split(","):
            name, _, value = part.partition("=")
            name = name.strip()
            try:
                weights[name] = float(value)
            except ValueError:
                raise ConfigError(f"data.source_mix: {part!r} must look like source=weight") from None
            if name not in self.sources or weights[name] < 0:
                raise ConfigError(f"data.source_mix: {name!r} is not one of the sources or has a negative weight")
        total = sum(weights.values())
        if total <= 0:
            raise ConfigError("data.source_mix: weights must add up to more than 0")
        return {s: weights.get(s, 0.0) / total for s in self.sources}


# -- where the data is ---------------------------------------------------------------------------
def data_root(cfg: DataConfig) -> Path:
    if cfg.data_root:
        return Path(cfg.data_root)
    if os.environ.get("BREACHLAB_DATA"):
        return Path(os.environ["BREACHLAB_DATA"])
    shared = Path("..") / "shared" / "data"
    return shared if shared.is_dir() else Path("data")


def source_path(cfg: DataConfig, source: str) -> Path | str:
    """The file/folder (or hub id) each source reads; a missing one says where to get it."""
    root = data_root(cfg)
    explicit = {"juliet": cfg.juliet_path, "sven": cfg.sven_path, "diversevul": cfg.diversevul_path,
                "generic": cfg.generic_path}[source]
    if source == "diversevul" and explicit and not Path(explicit).exists() and "/" in explicit \
            and not explicit.startswith((".", "/")) and explicit.count("/") == 1:
        return explicit  # a hub id
    if explicit:
        path = Path(explicit)
    elif source == "juliet":
        path = root / "juliet" / "juliet-c-cpp-1.3.tar.xz"
        if not path.exists() and (root / "juliet" / "testcases").is_dir():
            path = root / "juliet"
    elif source == "sven":
        path = root / "sven"
    else:
        path = root / "diversevul" / "diversevul_20230702.json"
    if not path.exists():
        raise UserError(f"{source} data not found at {path}: get {WHERE_TO_GET[source]}, then set "
                        f"data.{source}_path or BREACHLAB_DATA (the folder holding {source}/)")
    return path


def _cache_dir(cfg: DataConfig) -> Path | None:
    if cfg.cache_dir and cfg.cache_dir.lower() == "none":
        return None
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    from breachlab.vuln.datasets.juliet import default_cache_dir

    return default_cache_dir()


def open_pools(cfg: DataConfig, status: Callable[[str], Any] | None = None) -> list[Any]:
    """One pool per configured source."""
    pools = []
    for source in cfg.sources:
        path = source_path(cfg, source)
        if status:
            status(f"loading {source} from {path}")
        if source == "juliet":
            from breachlab.vuln.datasets.juliet import JulietPool

            pools.append(JulietPool(path, order_key=lambda g: order_key(cfg.seed, "juliet", g),
                                    cache_dir=_cache_dir(cfg), progress=status))
        elif source == "sven":
            from breachlab.vuln.datasets.sven import load_sven

            pools.append(load_sven(path, cfg.sven_splits, cfg.languages))
        elif source == "diversevul":
            from breachlab.vuln.datasets.diversevul import load_diversevul

            pools.append(load_diversevul(path, cfg.languages))
        else:
            from breachlab.vuln.datasets.generic import ColumnMap, load_generic

            cols = ColumnMap(code=cfg.generic_code_column, label=cfg.generic_label_column,
                             vulnerable_values=list(cfg.generic_vulnerable_values), cwe=cfg.generic_cwe_column,
                             group=cfg.generic_group_column, id=cfg.generic_id_column)
            pools.append(load_generic(path, cols, cfg.languages))
    return pools


# -- the pipeline --------------------------------------------------------------------------------
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
                      progress=(lambda n: progress.advance(task, n)) if progress else None)
    weights = cfg.mix_weights()
    by_name = {p.name: p for p in pools}
    for pool in pools:
        if not getattr(pool, "lazy", False):
            alloc.prescan(pool)
    splits: dict[str, list[Sample]] = {}
    short: dict[str, dict[str, int]] = {}
    for split, n in cfg.targets().items():
        share = {src: [v, v] for src, v in _shares(n, weights).items()}  # [safe, vulnerable]
        for _round in range(len(pools) + 1):
            for src, (n0, n1) in share.items():
                if n0 or n1:
                    alloc.fill(by_name[src], split, (n0, n1))
            moved = False
            for src in list(share):
                have = alloc.counts(split, src)
                for c in (0, 1):
                    deficit = share[src][c] - have[c]
                    if deficit <= 0:
                        continue
                    share[src][c] = have[c]
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
        "dropped": dict(sorted(alloc.dropped.items())),
        "shortfall": short,
        "loaders": {p.name: dict(p.stats) for p in pools},
        "groups_examined": {p.name: alloc._cursor.get(p.name, 0) for p in pools},
    }
    return splits, report


def build(cfg: DataConfig, out_dir: Path, progress: bool = True) -> dict:
    """Build the splits and write them to ``out_dir`` (only once everything succeeded)."""
    from breachlab.progress import status_line
    from breachlab.rundir import atomic_write_json, write_jsonl

    start = time.perf_counter()
    out_dir = Path(out_dir)
    with _progress(progress) as bar:
        pools = open_pools(cfg, status=status_line("data", log, progress))
        splits, report = select(cfg, pools, bar)
    check_leaks(splits)
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
    rd = RunDir.create("vuln-data", cfg, root=root, out=out, seed=cfg.seed, inputs=inputs)
    with rd.running():
        stats = build(cfg, rd.path, progress=True)  # a bar on a terminal, step lines elsewhere
        rd.update_manifest(splits={k: v["n"] for k, v in stats["splits"].items()})
    return rd.path


def load_split(path_or_run_dir: str | Path, split: str = "test") -> list[Sample]:
    """The samples of one split from a run directory, or of a JSONL file."""
    path = Path(path_or_run_dir)
    if path.is_dir():
        file = path / f"{split}.jsonl"
        if not file.is_file():
            have = sorted(p.stem for p in path.glob("*.jsonl"))
            raise UserError(f"{path} has no {split} split (has: {', '.join(have) or 'none'})")
        path = file
    elif not path.is_file():
        raise UserError(f"{path}: no such run directory or JSONL file")
    try:
        return read_samples(path)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None


# -- stats ---------------------------------------------------------------------------------------
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
            "pairs": len({s.pair_id for s in samples if s.pair_id}),
            "by_source": dict(sorted(by_source.items())),
            "cwe": dict(sorted(cwe.items(), key=lambda kv: -sum(kv[1].values()))),
            "length": {b: lengths[b] for b in sorted(lengths, key=lambda b: int(b.split("-")[0].rstrip("+")))},
            "chars_mean": round(sum(len(s.code) for s in samples) / len(samples), 1) if samples else 0,
        }
    return out


def stats_for(path: str | Path) -> dict:
    """``stats.json`` of a run directory, or stats computed from a JSONL file."""
    import json

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
    if dropped:
        t = Table(title="dropped", show_edge=False)
        t.add_column("reason")
        t.add_column("samples", justify="right")
        for k, v in dropped.items():
            t.add_row(k, str(v))
        parts.append(t)
    return Group(*parts)


# -- windows around the change (for training on pairs) ------------------------------------------
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
    import dataclasses

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
