"""The CVEfixes loader (function-name groups, whole pairs, errors with file:line, nothing written)
and the leave-one-source-out recipe (test and train from different sources, disjoint splits)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from breachlab.config import ConfigError
from breachlab.errors import UserError
from breachlab.vuln.data.build import DataConfig, build, load_split, run
from breachlab.vuln.data.sources.cvefixes import load_cvefixes, name_group
from tests.vuln.conftest import shared_data
from tests.vuln.test_data_pairvul import kernel_func, record, write_pairvul


def func(name: str, i: int, fixed: bool = False) -> str:
    check = f"\tif (n >= {16 + i})\n\t\treturn -1;\n" if fixed else ""
    return (f"static int {name}(char *dst, const char *src, size_t n)\n{{\n{check}"
            f"\tmemcpy(dst, src, n);\n\treturn helper_{i}(dst, {i});\n}}\n")


def rows(n_pairs: int = 6, n_single: int = 4, prefix: str = "f") -> list[dict]:
    out = []
    for i in range(n_pairs):
        name = f"{prefix}_pair_{i}"
        out += [{"id": f"cvefixes:{2 * i}", "code": func(name, i), "label": 1, "pair_id": f"p{i}", "func_name": name},
                {"id": f"cvefixes:{2 * i + 1}", "code": func(name, i, True), "label": 0, "pair_id": f"p{i}",
                 "func_name": name}]
    for k in range(n_single):
        # an unpaired version of pair 0's function: it must follow the pair into one split
        name = f"{prefix}_pair_0" if k == 0 else f"{prefix}_single_{k}"
        out.append({"id": f"cvefixes:s{k}", "code": func(name, 100 + k) + f"/* {k} */", "label": k % 2,
                    "pair_id": None, "func_name": ("*" + name) if k == 0 else name})
    return out


def write(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def test_groups_are_function_names_and_pairs_stay_whole(tmp_path: Path) -> None:
    pool = load_cvefixes(write(tmp_path / "c.jsonl", rows()))
    samples = pool.fetch(pool.groups())
    assert pool.stats["pairs"] == 6 and pool.stats["unpaired_rows"] == 4 and len(samples) == 16
    by_group = defaultdict(list)
    for s in samples:
        by_group[s.group].append(s)
    assert {s.id for s in by_group["fn:f_pair_0"]} == {"cvefixes:0", "cvefixes:1", "cvefixes:s0"}  # '*name' too
    assert all(s.source == "cvefixes" and s.pair_id in (None, *(f"cvefixes-p{i}" for i in range(6))) for s in samples)
    assert name_group("*cJSON_Duplicate") == name_group("cJSON_Duplicate") == "fn:cJSON_Duplicate"
    assert name_group(None) is None
    only_pairs = load_cvefixes(tmp_path / "c.jsonl", unpaired=False)
    assert len(only_pairs.fetch(only_pairs.groups())) == 12 and only_pairs.stats["unpaired_dropped"] == 4


def test_build_keeps_a_function_name_in_one_split(tmp_path: Path) -> None:
    file = write(tmp_path / "c.jsonl", rows(n_pairs=20, n_single=6))
    cfg = DataConfig(sources=["cvefixes"], cvefixes_path=str(file), n_train_per_class=6, n_val_per_class=3,
                     n_test_per_class=4, max_per_group=0, allow_short=True, cache_dir="none")
    stats = build(cfg, tmp_path / "d", progress=False)
    where = defaultdict(set)
    halves = defaultdict(set)
    for split in ("train", "val", "test"):
        for s in load_split(tmp_path / "d", split):
            where[s.group].add(split)
            if s.pair_id:
                halves[s.pair_id].add(split)
    assert all(len(v) == 1 for v in where.values()) and all(len(v) == 1 for v in halves.values())
    assert stats["leak_check"].startswith("passed") and "function name" in stats["leak_check"]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda recs: recs[:3] + ["{not json"] + recs[3:], r"c\.jsonl:4: malformed JSON"),
        (lambda recs: recs[:2] + [json.dumps({"id": "x", "label": 1})] + recs[2:],
         r"c\.jsonl:3: missing field\(s\) code"),
        (lambda recs: recs[:1] + [recs[1].replace('"label": 0', '"label": 7')] + recs[2:],
         r"c\.jsonl:2: label must be 0 or 1"),
        (lambda recs: recs + [recs[0]], r"c\.jsonl:17: id 'cvefixes:0' repeats line 1"),
        (lambda recs: recs[:1] + [recs[1].replace('"label": 0', '"label": 1')] + recs[2:],
         r"c\.jsonl:2: pair_id 'p0' must join one vulnerable and one safe function \(lines 1, 2\)"),
        (lambda recs: recs[:5] + [recs[5].replace('"code": "static', '"code": 3, "x": "')] + recs[6:],
         r"c\.jsonl:6: code must be a non-empty string"),
    ],
)
def test_malformed_line_names_file_and_line_and_writes_nothing(tmp_path: Path, mutate, match: str) -> None:
    lines = [json.dumps(r) for r in rows()]
    file = tmp_path / "c.jsonl"
    file.write_text("\n".join(mutate(lines)) + "\n", encoding="utf-8")
    cfg = DataConfig(sources=["cvefixes"], cvefixes_path=str(file), n_train_per_class=0, n_val_per_class=0,
                     n_test_per_class=2, cache_dir="none")
    with pytest.raises(UserError, match=match) as err:
        run(cfg, out=tmp_path / "out", root=tmp_path / "runs")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_dedup_against_other_sources(tmp_path: Path) -> None:
    """A CVEfixes function that PairVul holds too is kept once, in one split."""
    pv = write_pairvul(tmp_path / "pv", [record(i, f"CVE-2019-{100 + i}") for i in range(8)], [])
    recs = rows(n_pairs=8)
    recs += [{"id": "cvefixes:dup", "code": kernel_func(3), "label": 1, "pair_id": None, "func_name": "drv_ioctl_3"}]
    cfg = DataConfig(sources=["pairvul", "cvefixes"], pairvul_path=str(pv),
                     cvefixes_path=str(write(tmp_path / "c.jsonl", recs)),
                     n_train_per_class=6, n_val_per_class=2, n_test_per_class=3, allow_short=True, cache_dir="none")
    stats = build(cfg, tmp_path / "d", progress=False)
    assert stats["dropped"].get("duplicate", 0) >= 1
    hashes = [s.hash for sp in ("train", "val", "test") for s in load_split(tmp_path / "d", sp)]
    assert len(hashes) == len(set(hashes))


def _loso_data(tmp_path: Path) -> dict:
    pv = write_pairvul(tmp_path / "pv", [record(i, f"CVE-2019-{100 + i}") for i in range(12)], [])
    cf = write(tmp_path / "c.jsonl", rows(n_pairs=12, n_single=0))
    return {"pairvul_path": str(pv), "cvefixes_path": str(cf), "cache_dir": "none", "max_per_group": 0}


def test_leave_one_source_out_builds_disjoint_splits(tmp_path: Path) -> None:
    cfg = DataConfig(sources=["pairvul", "cvefixes"], train_sources=["pairvul"], test_sources=["cvefixes"],
                     n_train_per_class=8, n_val_per_class=2, n_test_per_class=6, **_loso_data(tmp_path))
    stats = build(cfg, tmp_path / "d", progress=False)
    splits = {sp: load_split(tmp_path / "d", sp) for sp in ("train", "val", "test")}
    assert {s.source for s in splits["test"]} == {"cvefixes"} and len(splits["test"]) == 12
    assert {s.source for s in splits["train"] + splits["val"]} == {"pairvul"}
    assert stats["split_sources"] == {"test": ["cvefixes"], "val": ["pairvul"], "train": ["pairvul"]}
    ids = [s.id for ss in splits.values() for s in ss]
    assert len(ids) == len(set(ids))
    # the same seed without leaving anything out puts both sources in the test split
    both = DataConfig(sources=["pairvul", "cvefixes"], n_train_per_class=4, n_val_per_class=2, n_test_per_class=6,
                      **_loso_data(tmp_path))
    build(both, tmp_path / "e", progress=False)
    assert {s.source for s in load_split(tmp_path / "e", "test")} == {"pairvul", "cvefixes"}


def test_split_sources_must_be_among_the_sources() -> None:
    with pytest.raises(ConfigError, match=r"data.test_sources: sven not in data.sources"):
        DataConfig(sources=["pairvul", "juliet"], test_sources=["sven"])
    with pytest.raises(ConfigError, match="no weight"):
        DataConfig(sources=["pairvul", "juliet"], test_sources=["juliet"], source_mix="pairvul=1")


@pytest.mark.parametrize("held_out", ["pairvul", "sven", "cvefixes"])
def test_shipped_loso_configs_hold_one_source_out(held_out: str) -> None:
    from breachlab.config import load

    cfg = load(DataConfig, Path(__file__).resolve().parents[2] / "configs" / "vuln" / f"data-loso-{held_out}.yaml")
    assert held_out in cfg.test_sources and held_out not in cfg.split_sources("train")
    assert "juliet" in cfg.split_sources("train") and "juliet" in cfg.test_sources
    assert set(cfg.split_sources("train")) | {held_out} == {"pairvul", "sven", "cvefixes", "juliet"}


def test_real_cvefixes_loads() -> None:
    path = shared_data() / "cvefixes" / "cvefixes_vulllm_test512.jsonl"
    if not path.is_file():
        pytest.skip("CVEfixes not in ../shared/data")
    pool = load_cvefixes(path)
    assert pool.stats["rows"] == 3429 and pool.stats["pairs"] == 783
    samples = pool.fetch(pool.groups())
    pairs = defaultdict(list)
    for s in samples:
        if s.pair_id:
            pairs[s.pair_id].append(s)
    assert len(pairs) == 783 and all(len({s.group for s in h}) == 1 and len({s.lang for s in h}) == 1
                                     for h in pairs.values())


def test_token_dedup_sees_a_fix_copied_with_other_comments(tmp_path: Path) -> None:
    """One kernel fix in PairVul and, with a comment added, in CVEfixes: whitespace dedup keeps
    both copies (in different splits, a near-leak), ``dedup: tokens`` keeps one."""
    from breachlab.vuln.data.splits import token_hash

    pv = write_pairvul(tmp_path / "pv", [record(i, f"CVE-2019-{100 + i}") for i in range(8)], [])
    recs = rows(n_pairs=8)
    recs += [{"id": f"cvefixes:copy{lab}", "code": "/* upstream fix */\n" + kernel_func(3, fixed=not lab), "label": lab,
              "pair_id": "copy", "func_name": "drv_ioctl_3"} for lab in (1, 0)]
    assert token_hash(recs[-1]["code"]) == token_hash(kernel_func(3, fixed=True))
    assert token_hash('f("a");') != token_hash('f("b");')           # string literals still count
    common = dict(sources=["pairvul", "cvefixes"], pairvul_path=str(pv),
                  cvefixes_path=str(write(tmp_path / "c.jsonl", recs)), n_train_per_class=20, n_val_per_class=0,
                  n_test_per_class=3, allow_short=True, cache_dir="none", max_per_group=0)
    loose = build(DataConfig(**common), tmp_path / "loose", progress=False)
    strict = build(DataConfig(dedup="tokens", **common), tmp_path / "strict", progress=False)
    assert strict["dropped"].get("duplicate", 0) == loose["dropped"].get("duplicate", 0) + 2
    ids = {s.id for sp in ("train", "test") for s in load_split(tmp_path / "strict", sp)}
    assert not {"cvefixes:copy1", "cvefixes:copy0"} & ids
    with pytest.raises(ConfigError, match="dedup"):
        DataConfig(dedup="fuzzy")
