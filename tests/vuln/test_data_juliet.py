"""Juliet: which functions we take, and proof that no label leaks through names or artefacts.

The surface-feature test (see :func:`artefact_features`) gives a logistic regression what the
Juliet *generator* adds independently of program behaviour — the function's own name parts,
``static`` in the header, how many renamed helpers/variables/types appear, every string
literal's words, comment markers — and requires family-grouped
cross-validated ROC-AUC < 0.6 on a few hundred real, pipeline-built Juliet samples.  It does
not include library calls or data-flow variable names (``recv``, ``connectSocket``, ``free``):
those are what the program does, the signal a model should learn, and a bag of them separates
the classes (~0.7; see the juliet module docstring).  Length is left out for the same reason
(a bad source reads a socket, a good source is a constant); alone it gives ~0.58, and the
test below keeps it under 0.65 so that it is watched.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from breachlab.vuln.data.build import load_split
from breachlab.vuln.data.sources.juliet import (
    JulietPool,
    name_parts,
    neutralise,
    parse_member,
    strip_comments,
)

LEAK = re.compile(r"bad|good|g2b|b2g|sink|source|cwe|benign|flaw|fix", re.I)


def leaky_tokens(code: str) -> list[str]:
    """Leak words as whole words or as name parts of identifiers (camelCase / snake_case)."""
    hits = []
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code):
        for part in name_parts(word):
            if re.fullmatch(r"(?i)(bad|good|g2b|b2g|sink|source|cwe\d*|benign|flaw|fix|fixed)\d*[a-z]?", part):
                hits.append(word)
    return hits


def test_parse_member_families() -> None:
    fam = "CWE121_Stack_Based_Buffer_Overflow__CWE129_connect_socket"
    for stem in ("_01.c", "_51a.c", "_51b.c", "_81_bad.cpp", "_81_goodG2B.cpp", "_81a.cpp"):
        member = f"testcases/CWE121_Stack_Based_Buffer_Overflow/s01/{fam}{stem}"
        assert parse_member(member) == ("CWE121_Stack_Based_Buffer_Overflow", fam)
    assert parse_member("testcases/CWE121_X/s01/CWE121_X__a_81.h") is None
    assert parse_member("testcasesupport/io.c") is None


def test_strip_comments_keeps_strings() -> None:
    code = 'int f() { /* a */ char *s = "/* not */ // kept"; // tail\n return \'/\'; }'
    assert strip_comments(code) == 'int f() {  char *s = "/* not */ // kept"; \n return \'/\'; }'


def test_neutralise_renames_consistently() -> None:
    bad = ("void CWE1_x_01_bad()\n{\n    char dataBadBuffer[5];\n    char dataGoodBuffer[9];\n"
           "    data = dataBadBuffer;\n}\n")
    good = ("static void goodG2B()\n{\n    char dataBadBuffer[5];\n    char dataGoodBuffer[9];\n"
            "    data = dataGoodBuffer;\n}\n")
    nb, ng = neutralise(bad), neutralise(good)
    assert nb.splitlines()[0] == ng.splitlines()[0] == "void func_1()"
    assert "data = var_1;" in nb and "data = var_2;" in ng
    assert not leaky_tokens(nb + ng)


def test_mini_juliet_takes_the_right_functions(mini_juliet: Path) -> None:
    pool = JulietPool(mini_juliet, cache_dir=None)
    assert sorted(pool.groups()) == [
        "CWE121_Stack_Based_Buffer_Overflow/CWE121_Stack_Based_Buffer_Overflow__char_declare_cpy",
        "CWE190_Integer_Overflow/CWE190_Integer_Overflow__int_rand_add",
        "CWE476_NULL_Pointer_Dereference/CWE476_NULL_Pointer_Dereference__int",
    ]
    samples = pool.fetch(pool.groups())
    taken = sorted((s.meta["function"].split("_")[-1], s.label, s.cwe) for s in samples)
    # single file: bad + goodG2B (not the good() wrapper, not main); two files: the sinks whose
    # code differs (badSink, goodB2GSink), not goodG2BSink (same code as badSink) nor the
    # delegating entry functions of 51a; C++: bad and goodG2B, not good1 (dead "Benign" branch)
    assert taken == [
        ("bad", 1, "CWE-121"), ("bad", 1, "CWE-476"), ("badSink", 1, "CWE-190"),
        ("goodB2GSink", 0, "CWE-190"), ("goodG2B", 0, "CWE-121"), ("goodG2B", 0, "CWE-476"),
    ]
    for s in samples:
        assert not leaky_tokens(s.code), s.code
        assert "/*" not in s.code and "//" not in s.code.replace('"', "")
        assert not s.code.lstrip().startswith("static")
        assert s.group.count("/") == 1 and "_01" not in s.group and "_51" not in s.group
    single = {s.label: s.code for s in samples if s.cwe == "CWE-121"}
    assert 'printLine("text");' in single[0]  # the intent message is gone
    assert "strcpy(data, var_3)" in single[1] or "strcpy(data, source)" not in single[1]


def test_tar_and_directory_give_the_same_samples(mini_juliet: Path, mini_juliet_tar: Path, tmp_path: Path) -> None:
    from_dir = JulietPool(mini_juliet, cache_dir=None)
    a = sorted((s.id, s.code) for s in from_dir.fetch(from_dir.groups()))
    cold = JulietPool(mini_juliet_tar, order_key=lambda g: "0" * 64, cache_dir=tmp_path / "c")
    b = sorted((s.id, s.code) for s in cold.fetch(cold.groups()))
    warm = JulietPool(mini_juliet_tar, cache_dir=tmp_path / "c")
    c = sorted((s.id, s.code) for s in warm.fetch(warm.groups()))
    assert a == b == c
    assert cold.stats["archive_passes"] == 1 and cold.stats["families_parsed"] == 3
    assert warm.stats["archive_passes"] == 0 and warm.stats["families_from_cache"] == 3


def test_corrupt_archive_is_a_user_error(tmp_path: Path) -> None:
    from breachlab.errors import UserError

    bad = tmp_path / "j.tar.xz"
    bad.write_bytes(b"\xfd7zXZ\x00garbage")
    with pytest.raises(UserError, match=r"j\.tar\.xz: cannot read the archive"):
        JulietPool(bad, cache_dir=None)


# -- the real archive ----------------------------------------------------------------------------
def test_real_juliet_no_label_token_survives(real_juliet_run: Path) -> None:
    samples = load_split(real_juliet_run)
    assert len(samples) == 300
    for s in samples:
        assert not leaky_tokens(s.code), (s.id, leaky_tokens(s.code))
        assert not LEAK.search(" ".join(re.findall(r'"(?:\\.|[^"\\\n])*"', s.code))), s.id
        assert "/*" not in s.code and "FLAW" not in s.code and "static" not in s.code.split("{")[0]


def artefact_features(code: str) -> str:
    header = code.split("{", 1)[0]
    called = re.findall(r"([A-Za-z_]\w*)\s*\(", header)
    toks = ["own_" + p.lower() for p in name_parts(called[-1])] if called else []
    toks.append("static" if re.search(r"\bstatic\b", header) else "no_static")
    for kind in ("func", "var", "Type"):
        n = len(set(re.findall(r"\b" + kind + r"_\d+\b", code)))
        toks.append(f"{kind}_count_{n}")
    for lit in re.findall(r'"(?:\\.|[^"\\\n])*"', code):
        toks += ["lit_" + w.lower() for w in re.findall(r"[A-Za-z]+", lit)] or ["lit_empty"]
    toks += ["comment"] * (code.count("/*") + code.count("//"))
    return " ".join(toks)


def test_real_juliet_surface_features_do_not_separate_classes(real_juliet_run: Path) -> None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    samples = load_split(real_juliet_run)
    y = np.array([s.label for s in samples])
    x = CountVectorizer(token_pattern=r"\S+", binary=True).fit_transform([artefact_features(s.code) for s in samples])
    proba = cross_val_predict(LogisticRegression(max_iter=2000), x, y, cv=GroupKFold(5),
                              groups=[s.group for s in samples], method="predict_proba")[:, 1]
    auc = roc_auc_score(y, proba)
    assert auc < 0.6, f"surface features separate Juliet classes: ROC-AUC {auc:.3f}"
    lines = np.array([[s.code.count("\n")] for s in samples])
    proba = cross_val_predict(LogisticRegression(), lines, y, cv=GroupKFold(5), groups=[s.group for s in samples],
                              method="predict_proba")[:, 1]
    assert roc_auc_score(y, proba) < 0.65


def test_real_juliet_two_file_case(real_juliet: Path, juliet_cache: Path, real_juliet_run: Path) -> None:
    """Real two-file cases read by the build: 51b sinks are taken, 51a entry functions are not."""
    pool = JulietPool(real_juliet, cache_dir=juliet_cache)
    cached = [g for g in pool.groups() if pool._cache_file(g).is_file()]
    samples = pool.fetch(cached)
    assert pool.stats["archive_passes"] == 0  # all from the session cache
    by_file: dict[str, list] = {}
    for s in samples:
        by_file.setdefault(Path(s.meta["file"]).stem, []).append(s)
    two_file = [stem for stem in by_file if stem.endswith("_51b")]
    assert two_file, "no sources-sinks family with a 51b file among the cached families"
    for stem in two_file:
        names = sorted(s.meta["function"].rsplit("_", 1)[-1] for s in by_file[stem])
        assert len(names) == 2 and re.fullmatch(r"bad\w*Sink", names[0]) and names[1].startswith("goodB2G"), names
        assert stem[:-1] + "a" not in by_file  # 51a only delegates to the sinks
    assert not any("G2BSink" in s.meta["function"] or "Source" in s.meta["function"] for s in samples)
    assert not any(s.meta["function"].endswith("_good") for s in samples)
    labels = {s.meta["function"].rsplit("_", 1)[-1]: s.label for s in samples}
    assert labels.get("bad") == 1 and labels.get("goodG2B", 0) == 0
