"""The PairVul loader: CVE-grouped splits, whole pairs, windows around the change, errors
that name file and line, and the cross-source dedup/leak check it joins."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from breachlab.errors import UserError
from breachlab.vuln.data.build import DataConfig, build, load_split, run
from breachlab.vuln.data.sources.pairvul import load_pairvul
from tests.vuln.conftest import shared_data


def kernel_func(i: int, fixed: bool = False, pad: int = 0) -> str:
    """A kernel-like function; the fix adds a bounds check near the end, after ``pad`` filler lines."""
    filler = "".join(f"\tstate->field_{k} = compute_{k}(state, {i});\n" for k in range(pad))
    check = "\tif (len > sizeof(buf))\n\t\treturn -EINVAL;\n" if fixed else ""
    return (f"static int drv_ioctl_{i}(struct drv_state *state, char __user *arg, size_t len)\n{{\n"
            f"\tchar buf[64];\n{filler}{check}\tif (copy_from_user(buf, arg, len))\n\t\treturn -EFAULT;\n"
            f"\treturn handle_{i}(state, buf);\n}}\n")


def record(i: int, cve: str, pad: int = 0, **kw) -> dict:
    rec = {"cve_id": cve, "code_before_change": kernel_func(i, pad=pad), "code_after_change": kernel_func(i, True, pad),
           "patch": "--- a\n+++ b\n", "function_modified_lines": {"added": ["\tif (len > sizeof(buf))"], "deleted": []},
           "cwe": ["CWE-787"], "cve_description": "overflow", "id": i}
    rec.update(kw)
    return rec


def write_pairvul(root: Path, train: list[dict], test: list[dict]) -> Path:
    for split, recs, name in (("train", train, "linux_kernel_CWE-787_data.json"),
                              ("test", test, "Linux_kernel_CWE-787_testset.json")):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / split / name).write_text(json.dumps(recs, indent=4), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def real_pairvul() -> Path:
    path = shared_data() / "pairvul"
    if not (path / "train").is_dir():
        pytest.skip("PairVul not in ../shared/data")
    return path


def assert_cve_grouped(out: Path) -> dict[str, list]:
    splits = {s: load_split(out, s) for s in ("train", "val", "test") if (out / f"{s}.jsonl").exists()}
    where: dict[str, set[str]] = defaultdict(set)
    halves: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for split, samples in splits.items():
        for s in samples:
            if s.source == "pairvul":
                where[s.group].add(split)
                halves[s.pair_id].append((split, s.label))
    assert where and all(len(v) == 1 for v in where.values()), "a CVE sits in two splits"
    for pid, hs in halves.items():
        assert len(hs) == 2 and len({sp for sp, _ in hs}) == 1 and sorted(lab for _, lab in hs) == [0, 1], pid
    return splits


def test_real_pairvul_loads_every_pair(real_pairvul: Path) -> None:
    pool = load_pairvul(real_pairvul)
    assert pool.stats["pairs_read"] == 2317 + 586
    assert pool.stats["upstream_pairs"] == {"train": 2317, "test": 586}
    assert pool.stats["cves_in_several_upstream_splits"] == 249
    s = pool.fetch(pool.groups()[:1])[0]
    assert s.group.startswith("CVE-") and s.pair_id and s.lang == "c" and s.cwe.startswith("CWE-")
    assert s.meta["upstream_split"] in ("train", "test") and s.meta["cve"] == s.group


def test_real_pairvul_build_is_cve_disjoint_and_keeps_pairs(real_pairvul: Path, tmp_path: Path) -> None:
    cfg = DataConfig(sources=["pairvul"], pairvul_path=str(real_pairvul), n_train_per_class=300, n_val_per_class=100,
                     n_test_per_class=100, max_per_group=0, cache_dir="none")
    stats = build(cfg, tmp_path / "d", progress=False)
    splits = assert_cve_grouped(tmp_path / "d")
    # CVEs that upstream put in both splits now sit in one of ours
    both = {s.group for ss in splits.values() for s in ss if s.meta["upstream_split"] == "test"} & \
        {s.group for ss in splits.values() for s in ss if s.meta["upstream_split"] == "train"}
    assert both
    assert stats["splits"]["test"]["pairs"] == 100 and stats["splits"]["test"]["pairs_by_source"] == {"pairvul": 100}
    assert stats["loaders"]["pairvul"]["pairs_windowed"] > 0       # long kernel functions are cut, not dropped
    assert "too long" not in stats["dropped"]
    assert stats["leak_check"].startswith("passed")


def test_long_pair_is_cut_around_the_change(tmp_path: Path) -> None:
    root = write_pairvul(tmp_path / "pv", [record(i, f"CVE-2020-{1000 + i}", pad=60 if i == 0 else 0)
                                           for i in range(6)], [record(9, "CVE-2020-1000")])
    cfg = DataConfig(sources=["pairvul"], pairvul_path=str(root), n_train_per_class=0, n_val_per_class=0,
                     n_test_per_class=7, max_per_group=0, max_chars=1000, cache_dir="none")
    stats = build(cfg, tmp_path / "d", progress=False)
    test = load_split(tmp_path / "d", "test")
    cut = [s for s in test if s.meta.get("window_chars")]
    assert len(cut) == 2 and stats["loaders"]["pairvul"]["pairs_windowed"] == 1
    vul, fix = sorted(cut, key=lambda s: -s.label)
    assert len(vul.code) < 1000 and len(fix.code) < 1000 and vul.meta["original_chars"] > 2000
    assert "return -EINVAL" in fix.code and "return -EINVAL" not in vul.code   # the fix survived the cut
    # CVE-2020-1000 is in both upstream splits and both of its pairs land in one split
    cve = [s for s in test if s.group == "CVE-2020-1000"]
    assert {s.meta["upstream_split"] for s in cve} == {"train", "test"}


def test_identical_halves_are_dropped_and_counted(tmp_path: Path) -> None:
    same = record(1, "CVE-2021-0001")
    same["code_after_change"] = same["code_before_change"].replace("\t", "    ")
    pool = load_pairvul(write_pairvul(tmp_path / "pv", [same, record(2, "CVE-2021-0002")], []))
    assert pool.stats["identical_pairs"] == 1 and len(pool.groups()) == 1


def test_dedup_and_leak_check_across_sources(tmp_path: Path) -> None:
    root = write_pairvul(tmp_path / "pv", [record(i, f"CVE-2019-{100 + i}") for i in range(8)], [])
    dup = [{"code": kernel_func(3), "label": "vulnerable", "commit": "elsewhere"},
           {"code": kernel_func(3, True), "label": "safe", "commit": "elsewhere"}]
    dup += [{"code": f"int g_{k}(int *p) {{ return p[{k}] + {k} * 3; }}\n", "label": "safe" if k % 2 else "vulnerable",
             "commit": f"c{k}"} for k in range(12)]
    gen = tmp_path / "g.jsonl"
    gen.write_text("".join(json.dumps(r) + "\n" for r in dup), encoding="utf-8")
    cfg = DataConfig(sources=["pairvul", "generic"], pairvul_path=str(root), generic_path=str(gen),
                     generic_group_column="commit", generic_vulnerable_values=["vulnerable"], n_train_per_class=5,
                     n_val_per_class=2, n_test_per_class=3, allow_short=True, cache_dir="none")
    stats = build(cfg, tmp_path / "d", progress=False)
    assert stats["dropped"].get("duplicate", 0) >= 1     # PairVul's function repeated in the other source
    hashes = [s.hash for sp in ("train", "val", "test") for s in load_split(tmp_path / "d", sp)]
    assert len(hashes) == len(set(hashes))
    assert_cve_grouped(tmp_path / "d")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda text: text[: len(text) // 2], r"CWE-787_data\.json:\d+: malformed JSON in item \d"),
        (lambda text: text.replace('"cve_id": "CVE-2022-0003",', "", 1),
         r"CWE-787_data\.json:\d+ \(record 3\): missing field\(s\) cve_id"),
        (lambda text: text.replace('"CVE-2022-0002"', '"2022-2"', 1),
         r"CWE-787_data\.json:\d+ \(record 2\): cve_id must look like CVE"),
        (lambda text: text.replace('"code_after_change": "static int drv_ioctl_1(', '"code_after_change": 7, "x": "(',
                                   1), r"CWE-787_data\.json:\d+ \(record 1\): code_after_change must be a non-empty"),
        (lambda text: text.rstrip()[:-1] + ", 5]", r"CWE-787_data\.json:\d+: item 5 is not a JSON object"),
    ],
)
def test_malformed_file_names_file_and_line_and_writes_nothing(tmp_path: Path, mutate, match: str) -> None:
    root = write_pairvul(tmp_path / "pv", [record(i, f"CVE-2022-{i:04d}") for i in range(5)], [])
    file = root / "train" / "linux_kernel_CWE-787_data.json"
    file.write_text(mutate(file.read_text()), encoding="utf-8")
    cfg = DataConfig(sources=["pairvul"], pairvul_path=str(root), n_train_per_class=0, n_val_per_class=0,
                     n_test_per_class=2, cache_dir="none")
    with pytest.raises(UserError, match=match) as err:
        run(cfg, out=tmp_path / "out", root=tmp_path / "runs")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_line_number_points_at_the_record(tmp_path: Path) -> None:
    root = write_pairvul(tmp_path / "pv", [record(i, f"CVE-2022-{i:04d}") for i in range(4)], [])
    file = root / "train" / "linux_kernel_CWE-787_data.json"
    text = file.read_text().replace('"CVE-2022-0002"', '"nope"')
    file.write_text(text, encoding="utf-8")
    line = text[: text.index('"nope"')].count("\n") + 1
    with pytest.raises(UserError) as err:
        load_pairvul(root)
    reported = int(str(err.value).split(".json:")[1].split(" ")[0])
    assert reported <= line and text.splitlines()[reported - 1].strip() == "{"
    assert line - reported < 12


def test_no_files_says_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no PairVul files"):
        load_pairvul(tmp_path / "empty")


def test_fix_overlap_sees_the_same_edit_in_two_splits() -> None:
    from breachlab.vuln.data.splits import fix_fingerprint, fix_overlap
    from breachlab.vuln.sample import Sample

    def pair(pid: str, i: int, source: str) -> list[Sample]:
        return [Sample(id=f"{pid}:v", code=kernel_func(i), label=1, cwe=None, source=source, group=pid, pair_id=pid),
                Sample(id=f"{pid}:f", code=kernel_func(i, True), label=0, cwe=None, source=source, group=pid,
                       pair_id=pid)]

    # the same bounds check added to two different functions: same edit, different code
    assert fix_fingerprint(kernel_func(1), kernel_func(1, True)) == fix_fingerprint(kernel_func(1, pad=3),
                                                                                    kernel_func(1, True, pad=3))
    assert fix_fingerprint(kernel_func(1), kernel_func(1, True)) != fix_fingerprint(kernel_func(1, True),
                                                                                    kernel_func(1))
    o = fix_overlap({"train": pair("a", 1, "sven") + pair("b", 2, "pairvul"), "test": pair("c", 1, "pairvul")})
    assert o["fixes_in_two_splits"] == 1 and o["cross_source"] == 1 and "train/sven" in o["examples"][0]
    other = [Sample(id="d:v", code=kernel_func(2), label=1, cwe=None, source="pairvul", group="d", pair_id="d"),
             Sample(id="d:f", code=kernel_func(2).replace("-EFAULT", "-EIO"), label=0, cwe=None, source="pairvul",
                    group="d", pair_id="d")]
    assert fix_overlap({"train": pair("a", 1, "sven"), "test": other})["fixes_in_two_splits"] == 0


def test_cli_malformed_pairvul_is_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = write_pairvul(tmp_path / "pv", [record(i, f"CVE-2022-{i:04d}") for i in range(3)], [])
    file = root / "train" / "linux_kernel_CWE-787_data.json"
    file.write_text(file.read_text()[:-40], encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "breachlab.cli", "vuln", "data", "build", "--sources", "pairvul",
                          "--set", f"pairvul_path={root}", "--n-train", "0", "--n-val", "0", "--n-test", "2",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "COLUMNS": "1000"})  # rich wraps at the terminal width
    assert res.returncode == 2, res.stderr
    # progress lines ("data: loading pairvul from …") may come first; the error is one line, the last
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and res.stderr.strip().splitlines()[-1] == errors[0] and "Traceback" not in res.stderr
    assert "linux_kernel_CWE-787_data.json:" in errors[0] and "malformed JSON" in errors[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
