"""Loaders: each on a tiny same-schema fixture, plus the real SVEN files; bad input → UserError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from breachlab.errors import UserError
from breachlab.vuln.data.sources.diversevul import load_diversevul
from breachlab.vuln.data.sources.generic import ColumnMap, load_generic
from breachlab.vuln.data.sources.sven import load_sven


def test_sven_fixture_pairs_share_id_and_group(sven_dir: Path) -> None:
    pool = load_sven(sven_dir)
    samples = pool.fetch(pool.groups())
    assert len(samples) == 12  # 6 C pairs; the identical pair and the Python pair are gone
    assert pool.stats["identical_pairs"] == 1
    assert pool.stats["other_language_pairs"] == 1
    by_pair: dict[str, list] = {}
    for s in samples:
        by_pair.setdefault(s.pair_id, []).append(s)
    for halves in by_pair.values():
        assert sorted(h.label for h in halves) == [0, 1]
        assert halves[0].group == halves[1].group  # same commit
        assert halves[0].cwe == "CWE-787"
    assert len(pool.groups()) == 3  # pairs 0-1, 2-3, 4-5 share commits


def test_real_sven_c_cpp_only(real_sven: Path) -> None:
    pool = load_sven(real_sven)
    samples = pool.fetch(pool.groups())
    assert pool.stats["pairs_read"] == 803
    n_pairs = len(samples) // 2
    assert 400 <= n_pairs + pool.stats["identical_pairs"] <= 430  # ~423 C/C++ pairs
    assert {s.lang for s in samples} <= {"c", "cpp"}
    assert {s.cwe for s in samples} <= {"CWE-22", "CWE-78", "CWE-79", "CWE-89", "CWE-125", "CWE-190",
                                        "CWE-416", "CWE-476", "CWE-787"}
    assert len({s.id for s in samples}) == len(samples)


def test_diversevul_jsonl_and_json_array(diversevul_file: Path, tmp_path: Path) -> None:
    pool = load_diversevul(diversevul_file)
    samples = pool.fetch(pool.groups())
    assert len(samples) == 32 and sum(s.label for s in samples) == 8
    assert len(pool.groups()) == 8
    assert {s.cwe for s in samples if s.label} == {"CWE-787"}
    as_array = tmp_path / "dv.json"
    as_array.write_text(json.dumps([json.loads(line) for line in diversevul_file.read_text().splitlines()]))
    assert len(load_diversevul(as_array).fetch(pool.groups())) == 32


def test_diversevul_missing_names_the_source(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="wagner-group/diversevul"):
        load_diversevul(tmp_path / "nope.json")


def test_generic_csv_and_jsonl_with_mapping(tmp_path: Path) -> None:
    csv_file = tmp_path / "data.csv"
    csv_file.write_text('src,verdict,kind,commit\n"int f(int a) { return a / 0; } /* x */",BAD,CWE-369,c1\n'
                        '"int g(int a) { return a ? 1 / a : 0; }",ok,,c1\n', encoding="utf-8")
    cols = ColumnMap(code="src", label="verdict", vulnerable_values=["bad"], cwe="kind", group="commit")
    samples = load_generic(csv_file, cols).fetch(["c1"])
    assert [s.label for s in samples] == [1, 0]
    assert samples[0].cwe == "CWE-369" and samples[1].cwe is None
    jl = tmp_path / "data.jsonl"
    jl.write_text(json.dumps({"code": "void h(void) { gets(buf); }", "label": 1, "id": "a"}) + "\n")
    pool = load_generic(jl, ColumnMap(id="id"))
    assert pool.fetch(pool.groups())[0].id == "generic:a"


@pytest.mark.parametrize(
    "content, match",
    [
        (b'{"func": "int f(){}", "target": 1, "commit_id": "a"}\n{"func": oops}\n', r"dv\.jsonl:2: malformed JSON"),
        (b'{"func": "int f(){}", "target": 1, "commit_id": "a"}\n{"target": 0, "commit_id": "b"}\n',
         r"dv\.jsonl:2: missing field\(s\) func"),
        (b'{"func": "int f(){}", "target": 1, "commit_id": "a"}\n{"func": "\xff\xfe", "target": 0}\n',
         r"dv\.jsonl:2: not UTF-8"),
        (b"\n  \n", r"dv\.jsonl: the file is empty"),
        (b'{"func": "int f(){}", "target": "maybe", "commit_id": "a"}\n', r"dv\.jsonl:1: target must be 0 or 1"),
        (b'[1, 2]', r"dv\.jsonl:1: item 0 is not a JSON object"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "dv.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        load_diversevul(path)


def test_bad_sven_and_generic_input(tmp_path: Path) -> None:
    bad = tmp_path / "sven" / "train"
    bad.mkdir(parents=True)
    (bad / "cwe-787.jsonl").write_text('{"func_src_before": "x", "vul_type": "cwe-787"}\n')
    with pytest.raises(UserError, match=r"cwe-787\.jsonl:1: missing field\(s\) func_src_after, file_name"):
        load_sven(tmp_path / "sven")
    with pytest.raises(UserError, match="no SVEN files"):
        load_sven(tmp_path)
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("code,label\nint f(){return 0;},1\n,0\n")
    with pytest.raises(UserError, match=r"t\.csv:3: column 'code' must hold non-empty code"):
        load_generic(csv_file, ColumnMap())
    csv_file.write_text("code,label\nint f(){return 0;},1\n")
    with pytest.raises(UserError, match=r"t\.csv:2: missing field\(s\) kind"):
        load_generic(csv_file, ColumnMap(cwe="kind"))
