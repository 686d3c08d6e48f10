"""The build pipeline: balance, grouping, determinism, dedup, leak check, errors, run dirs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from breachlab.config import ConfigError, from_dict
from breachlab.errors import UserError
from breachlab.vuln.data.build import (
    DataConfig,
    build,
    check_leaks,
    compute_stats,
    load_split,
    render_stats,
    run,
    stats_for,
    truncate_pair,
)
from breachlab.vuln.data.splits import LeakError
from breachlab.vuln.sample import Sample


def func(i: int, fixed: bool = False) -> str:
    check = "    if (n > 16) return -1;\n" if fixed else ""
    return (f"int gen_{i}(char *dst, const char *src, int n)\n{{\n{check}    memcpy(dst, src, n);\n"
            f"    return n + {i};\n}}\n")


def write_generic(path: Path, n_groups: int = 30) -> Path:
    rows = []
    for g in range(n_groups):
        rows.append({"code": func(g), "label": "vulnerable", "commit": f"c{g}", "cwe": "CWE-787"})
        rows.append({"code": func(g, fixed=True), "label": "safe", "commit": f"c{g}"})
    rows.append({"code": func(0), "label": "vulnerable", "commit": "dup"})  # exact duplicate
    rows.append({"code": func(1).replace("    ", "  "), "label": "safe", "commit": "clash"})  # conflict
    rows.append({"code": "int f();", "label": "safe", "commit": "short"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def generic_cfg(path: Path, **kw) -> DataConfig:
    base = dict(sources=["generic"], generic_path=str(path), generic_group_column="commit", generic_cwe_column="cwe",
                generic_vulnerable_values=["vulnerable"], n_train_per_class=10, n_val_per_class=4,
                n_test_per_class=5, cache_dir="none")
    base.update(kw)
    return DataConfig(**base)


def ids(out: Path, split: str) -> list[str]:
    return [s.id for s in load_split(out, split)]


def test_generic_build_balanced_grouped_deduped(tmp_path: Path) -> None:
    src = write_generic(tmp_path / "g.jsonl")
    stats = build(generic_cfg(src), tmp_path / "out", progress=False)
    for split, n in (("train", 10), ("val", 4), ("test", 5)):
        st = stats["splits"][split]
        assert (st["safe"], st["vulnerable"]) == (n, n)
    splits = {s: load_split(tmp_path / "out", s) for s in ("train", "val", "test")}
    check_leaks(splits)
    groups = [{x.group for x in v} for v in splits.values()]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert stats["dropped"]["duplicate"] == 1
    assert stats["dropped"]["conflicting label"] == 2  # both copies of the clashing function
    assert stats["dropped"]["too short"] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["stats.json", "test.jsonl", "train.jsonl",
                                                                     "val.jsonl"]


def test_same_seed_same_ids_and_test_stable_across_train_size(tmp_path: Path) -> None:
    src = write_generic(tmp_path / "g.jsonl")
    build(generic_cfg(src), tmp_path / "a", progress=False)
    build(generic_cfg(src), tmp_path / "b", progress=False)
    build(generic_cfg(src, seed=7), tmp_path / "c", progress=False)
    build(generic_cfg(src, n_train_per_class=3, n_val_per_class=0), tmp_path / "d", progress=False)
    assert ids(tmp_path / "a", "test") == ids(tmp_path / "b", "test")
    assert ids(tmp_path / "a", "train") == ids(tmp_path / "b", "train")
    assert set(ids(tmp_path / "a", "test")) != set(ids(tmp_path / "c", "test"))
    assert ids(tmp_path / "a", "test") == ids(tmp_path / "d", "test")
    assert not (tmp_path / "d" / "val.jsonl").exists()


def test_all_sources_together(tmp_path: Path, fx) -> None:
    fx.write_mini_juliet(tmp_path / "data" / "juliet")
    fx.write_sven(tmp_path / "data" / "sven", n_pairs=12)
    dv = tmp_path / "data" / "diversevul" / "diversevul_20230702.json"
    dv.parent.mkdir(parents=True)
    dv.write_text("".join(json.dumps(r) + "\n" for r in fx.diversevul_rows(12)))
    cfg = DataConfig(sources=["juliet", "sven", "diversevul"], data_root=str(tmp_path / "data"),
                     n_train_per_class=6, n_val_per_class=0, n_test_per_class=3, cache_dir="none")
    stats = build(cfg, tmp_path / "out", progress=False)
    test = load_split(tmp_path / "out")
    assert Counter(s.label for s in test) == {0: 3, 1: 3}
    assert {s.source for s in test} == {"juliet", "sven", "diversevul"}
    assert stats["loaders"]["sven"]["identical_pairs"] == 1
    # SVEN pairs stay whole: both halves of every pair are in the same split
    for split in ("train", "test"):
        pairs = Counter(s.pair_id for s in load_split(tmp_path / "out", split) if s.source == "sven")
        assert set(pairs.values()) == {2}


def test_source_mix_weights_and_top_up(tmp_path: Path, sven_dir: Path) -> None:
    src = write_generic(tmp_path / "g.jsonl")
    cfg = generic_cfg(src, sources=["generic", "sven"], sven_path=str(sven_dir), source_mix="generic=1,sven=3",
                      n_train_per_class=0, n_val_per_class=0, n_test_per_class=8)
    stats = build(cfg, tmp_path / "out", progress=False)
    by_source = stats["splits"]["test"]["by_source"]
    # sven would get 6 per class but has 6 pairs in 3 commits: it gives what it has, generic tops up
    assert by_source["sven"]["safe"] == by_source["sven"]["vulnerable"] == 6
    assert by_source["generic"]["safe"] == by_source["generic"]["vulnerable"] == 2


def test_shortfall_is_a_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    src = write_generic(tmp_path / "g.jsonl")
    with pytest.raises(UserError, match=r"not enough data .*test: \d+ safe \+ \d+ vulnerable of 500 \+ 500 asked"):
        build(generic_cfg(src, n_test_per_class=500), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    stats = build(generic_cfg(src, n_test_per_class=500, allow_short=True), tmp_path / "out2", progress=False)
    assert stats["shortfall"]["test"]["safe"] > 0


def test_leak_check_fires_on_planted_leaks(tmp_path: Path) -> None:
    src = write_generic(tmp_path / "g.jsonl")
    build(generic_cfg(src), tmp_path / "out", progress=False)
    splits = {s: load_split(tmp_path / "out", s) for s in ("train", "val", "test")}
    check_leaks(splits)
    planted = dict(splits, test=splits["test"] + [splits["train"][0]])
    with pytest.raises(LeakError, match="group"):
        check_leaks(planted)
    t = splits["train"][0]
    same_code = Sample(id="x", code=t.code + "  \n", label=t.label, cwe=None, source="generic", group="fresh")
    with pytest.raises(LeakError, match="code hash"):
        check_leaks(dict(splits, test=splits["test"] + [same_code]))


def test_missing_data_says_where_to_get_it(tmp_path: Path) -> None:
    cfg = DataConfig(data_root=str(tmp_path), n_train_per_class=0, n_val_per_class=0, n_test_per_class=5)
    with pytest.raises(UserError, match=r"juliet data not found at .*samate\.nist\.gov.*BREACHLAB_DATA"):
        build(cfg, tmp_path / "out", progress=False)


@pytest.mark.parametrize("bad, match", [
    ({"sources": ["nope"]}, "unknown source"),
    ({"sources": []}, "at least one"),
    ({"min_chars": 100, "max_chars": 50}, "min_chars"),
    ({"n_test_per_class": -1}, "n_test_per_class"),
    ({"n_train_per_class": 0, "n_val_per_class": 0, "n_test_per_class": 0}, "all split sizes are 0"),
    ({"source_mix": "juliet=x"}, "source=weight"),
    ({"source_mix": "diversevul=1"}, "not one of the sources"),
    ({"sources": ["generic"]}, "generic_path"),
])
def test_config_validation(bad: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_dict(DataConfig, bad, where="data")


def test_run_dir_load_split_and_stats(tmp_path: Path) -> None:
    src = write_generic(tmp_path / "g.jsonl")
    path = run(generic_cfg(src), out=tmp_path / "run")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "vuln-data" and manifest["status"] == "finished"
    assert manifest["splits"] == {"test": 10, "val": 8, "train": 20}
    assert (path / "config.yaml").is_file()
    assert len(load_split(path, "train")) == 20
    assert len(load_split(path / "val.jsonl")) == 8
    with pytest.raises(UserError, match="has no nope split"):
        load_split(path, "nope")
    (tmp_path / "broken.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(UserError, match=r"broken\.jsonl:1"):
        load_split(tmp_path / "broken.jsonl")
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(render_stats(stats_for(path)))
    text = console.export_text()
    assert "CWE-787" in text and "duplicate" in text and "conflicting label" in text
    assert compute_stats({"test": load_split(path)})["splits"]["test"]["n"] == 10
    assert stats_for(path / "test.jsonl")["splits"]["test"]["vulnerable"] == 5


# -- windows around the change -------------------------------------------------------------------
def test_truncate_pair_keeps_the_change() -> None:
    head = "".join(f"    int v{i} = {i};\n" for i in range(40))
    before = "int f(char *d, int n)\n{\n" + head + "    memcpy(d, s, n);\n    return 0;\n}\n"
    after = "int f(char *d, int n)\n{\n" + head + "    if (n > 8) return -1;\n    memcpy(d, s, n);\n    return 0;\n}\n"
    w = truncate_pair(before, after, budget=200)
    assert w.truncated and not w.identical
    assert "if (n > 8)" in w.after and "memcpy" in w.before
    assert len(w.before) <= 200 and len(w.after) <= 200
    naive = (before[:200], after[:200])
    assert naive[0] == naive[1]  # cutting from the start would hide the fix
    short = truncate_pair("int f() { return 1; }", "int f() { return 2; }", budget=1000)
    assert not short.truncated and not short.identical


def test_window_pairs_on_real_sven_counts_identical(real_sven: Path) -> None:
    """The pool-level windowing a build runs (``data.pair_window``), on the real SVEN pairs."""
    from breachlab.vuln.data.pools import window_pairs
    from breachlab.vuln.data.sources.sven import load_sven

    pool = load_sven(real_sven)
    samples = pool.fetch(pool.groups())
    windowed = window_pairs(pool, budget=1200)
    out = windowed.fetch(windowed.groups())
    cut, dropped = windowed.stats["pairs_windowed"], windowed.stats["pairs_identical_after_window"]
    assert cut + dropped > 100
    assert len(out) == len(samples) - 2 * dropped
    for s in out:
        if s.meta.get("window_chars"):
            assert len(s.code) <= 1200 or "\n" not in s.code.strip()


# -- the real quickstart set ---------------------------------------------------------------------
def quickstart_cfg(real_juliet: Path, real_sven: Path, cache: Path) -> DataConfig:
    return DataConfig(juliet_path=str(real_juliet), sven_path=str(real_sven), n_train_per_class=0,
                      n_val_per_class=0, n_test_per_class=100, cache_dir=str(cache))


def test_real_quickstart_test_set(real_juliet: Path, real_sven: Path, juliet_cache: Path, tmp_path: Path,
                                  real_juliet_run: Path) -> None:
    """After the Juliet-only session build the 50 + 50 Juliet families are cached: warm."""
    cfg = quickstart_cfg(real_juliet, real_sven, juliet_cache)
    stats = build(cfg, tmp_path / "a", progress=False)
    build(cfg, tmp_path / "b", progress=False)
    test = load_split(tmp_path / "a")
    assert Counter(s.label for s in test) == {0: 100, 1: 100}
    assert stats["splits"]["test"]["by_source"] == {"juliet": {"safe": 50, "vulnerable": 50},
                                                    "sven": {"safe": 50, "vulnerable": 50}}
    assert ids(tmp_path / "a", "test") == ids(tmp_path / "b", "test")
    assert all(30 < len(s.code) < 3200 for s in test)
    assert stats["splits"]["test"]["groups"] >= 40  # many families and commits, not a few
    assert len({s.cwe for s in test}) >= 8


@pytest.mark.slow
def test_quickstart_cold_and_warm_builds_agree(real_juliet: Path, real_sven: Path, tmp_path: Path) -> None:
    """The warm build reads the index the cold one cached and writes the same splits (how long
    each takes is measured in benchmarks/, not asserted here)."""
    cfg = quickstart_cfg(real_juliet, real_sven, tmp_path / "fresh-cache")
    build(cfg, tmp_path / "cold", progress=False)
    assert any((tmp_path / "fresh-cache").rglob("*"))
    build(cfg, tmp_path / "warm", progress=False)
    for split in ("train", "val", "test"):
        assert (tmp_path / "cold" / f"{split}.jsonl").read_bytes() == \
            (tmp_path / "warm" / f"{split}.jsonl").read_bytes()


def test_top_up_reaches_the_last_source_when_two_run_short(tmp_path: Path, sven_dir: Path,
                                                            diversevul_file: Path) -> None:
    # sven (6 pairs) and diversevul (8 vulnerable) both run short; generic must absorb both
    # shortfalls in the same round instead of losing its own new share
    src = write_generic(tmp_path / "g.jsonl")
    cfg = generic_cfg(src, sources=["sven", "diversevul", "generic"], sven_path=str(sven_dir),
                      diversevul_path=str(diversevul_file), source_mix="sven=0.4,diversevul=0.5,generic=0.1",
                      n_train_per_class=0, n_val_per_class=0, n_test_per_class=20)
    stats = build(cfg, tmp_path / "out", progress=False)
    test = stats["splits"]["test"]
    assert (test["safe"], test["vulnerable"]) == (20, 20) and not stats["shortfall"]
    assert test["by_source"]["generic"]["vulnerable"] >= 4
