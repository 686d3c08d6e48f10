"""Fixtures for the vuln data layer: tiny same-schema files written in tmp_path, and the real
Juliet/SVEN data from ``../shared/data`` (skipped where it is absent)."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_data() -> Path:
    env = os.environ.get("BREACHLAB_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def real_sven() -> Path:
    path = shared_data() / "sven"
    if not (path / "train").is_dir():
        pytest.skip("SVEN not in ../shared/data")
    return path


@pytest.fixture(scope="session")
def real_juliet() -> Path:
    path = shared_data() / "juliet" / "juliet-c-cpp-1.3.tar.xz"
    if not path.is_file():
        pytest.skip("Juliet not in ../shared/data")
    return path


@pytest.fixture(scope="session")
def juliet_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session: the real archive is read once (cold), then reused."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def real_juliet_run(real_juliet: Path, juliet_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~300 real Juliet samples built by the pipeline (150 + 150 test, Juliet only).

    Cold: one pass over the real archive (index + the families the seed puts first); every
    later real-Juliet test reads the session cache.
    """
    from breachlab.vuln.data.build import DataConfig, build

    out = tmp_path_factory.mktemp("juliet_run")
    cfg = DataConfig(sources=["juliet"], juliet_path=str(real_juliet), n_train_per_class=0, n_val_per_class=0,
                     n_test_per_class=150, cache_dir=str(juliet_cache))
    build(cfg, out, progress=False)
    return out


# -- a mini Juliet tree -------------------------------------------------------------------------
SINGLE = """\
/* TEMPLATE GENERATED TESTCASE FILE
Filename: CWE121_Stack_Based_Buffer_Overflow__char_declare_cpy_01.c
 * @description
 * CWE: 121 Stack Based Buffer Overflow
 * BadSource:  Set data pointer to the bad buffer
 * Flow Variant: 01 Baseline
 * */
#include "std_testcase.h"
#include <wchar.h>

#ifndef OMITBAD

void CWE121_Stack_Based_Buffer_Overflow__char_declare_cpy_01_bad()
{
    char * data;
    char dataBadBuffer[50];
    char dataGoodBuffer[100];
    /* FLAW: Set a pointer to a "small" buffer. */
    data = dataBadBuffer;
    data[0] = '\\0'; /* null terminate */
    {
        char source[100];
        memset(source, 'C', 100-1); // fill with 'C's
        source[100-1] = '\\0';
        strcpy(data, source); /* POTENTIAL FLAW: possible overflow */
        printLine(data);
    }
}

#endif /* OMITBAD */

#ifndef OMITGOOD

/* goodG2B uses the GoodSource with the BadSink */
static void goodG2B()
{
    char * data;
    char dataBadBuffer[50];
    char dataGoodBuffer[100];
    /* FIX: Set a pointer to a "large" buffer */
    data = dataGoodBuffer;
    data[0] = '\\0'; /* null terminate */
    {
        char source[100];
        memset(source, 'C', 100-1); // fill with 'C's
        source[100-1] = '\\0';
        strcpy(data, source); /* POTENTIAL FLAW: possible overflow */
        printLine("Good: data is copied // not a comment");
    }
}

void CWE121_Stack_Based_Buffer_Overflow__char_declare_cpy_01_good()
{
    goodG2B();
}

#endif /* OMITGOOD */

#ifdef INCLUDEMAIN
int main(int argc, char * argv[])
{
    printLine("Calling good()...");
    CWE121_Stack_Based_Buffer_Overflow__char_declare_cpy_01_good();
    return 0;
}
#endif
"""

MULTI_A = """\
#include "std_testcase.h"
#ifndef OMITBAD
void CWE190_Integer_Overflow__int_rand_add_51b_badSink(int data);
void CWE190_Integer_Overflow__int_rand_add_51_bad()
{
    int data;
    data = 0;
    /* POTENTIAL FLAW: Set data to a random value */
    data = RAND32();
    CWE190_Integer_Overflow__int_rand_add_51b_badSink(data);
}
#endif
#ifndef OMITGOOD
void CWE190_Integer_Overflow__int_rand_add_51b_goodG2BSink(int data);
static void goodG2B()
{
    int data;
    data = 0;
    /* FIX: Use a small, non-zero value that will not cause an overflow in the sinks */
    data = 2;
    CWE190_Integer_Overflow__int_rand_add_51b_goodG2BSink(data);
}
void CWE190_Integer_Overflow__int_rand_add_51b_goodB2GSink(int data);
static void goodB2G()
{
    int data;
    data = 0;
    data = RAND32();
    CWE190_Integer_Overflow__int_rand_add_51b_goodB2GSink(data);
}
void CWE190_Integer_Overflow__int_rand_add_51_good()
{
    goodG2B();
    goodB2G();
}
#endif
"""

MULTI_B = """\
#include "std_testcase.h"
#ifndef OMITBAD
void CWE190_Integer_Overflow__int_rand_add_51b_badSink(int data)
{
    {
        /* POTENTIAL FLAW: Adding 1 to data could cause an overflow */
        int result = data + 1;
        printIntLine(result);
    }
}
#endif /* OMITBAD */
#ifndef OMITGOOD
/* goodG2B uses the GoodSource with the BadSink */
void CWE190_Integer_Overflow__int_rand_add_51b_goodG2BSink(int data)
{
    {
        /* POTENTIAL FLAW: Adding 1 to data could cause an overflow */
        int result = data + 1;
        printIntLine(result);
    }
}
/* goodB2G uses the BadSource with the GoodSink */
void CWE190_Integer_Overflow__int_rand_add_51b_goodB2GSink(int data)
{
    /* FIX: Add a check to prevent an overflow from occurring */
    if (data < INT_MAX)
    {
        int result = data + 1;
        printIntLine(result);
    }
    else
    {
        printLine("data value is too large to perform arithmetic safely.");
    }
}
#endif /* OMITGOOD */
"""

CPP = """\
#include "std_testcase.h"
namespace CWE476_NULL_Pointer_Dereference__int_01
{
#ifndef OMITBAD
void bad()
{
    int * data;
    data = NULL; /* FLAW: null */
    printIntLine(*data);
}
#endif
#ifndef OMITGOOD
static void goodG2B()
{
    int * data;
    int tmpData = 5;
    data = &tmpData;
    printIntLine(*data);
}
static void good1()
{
    int * data;
    data = NULL;
    if (0)
    {
        printLine("Benign, fixed string");
    }
    else
    {
        if (data != NULL) { printIntLine(*data); }
    }
}
void good()
{
    goodG2B();
    good1();
}
#endif
} /* close namespace */
"""


def write_mini_juliet(root: Path) -> Path:
    """A tiny Juliet tree: one single-file C case, one two-file case, one C++ namespace case."""
    files = {
        "testcases/CWE121_Stack_Based_Buffer_Overflow/s01/"
        "CWE121_Stack_Based_Buffer_Overflow__char_declare_cpy_01.c": SINGLE,
        "testcases/CWE190_Integer_Overflow/s01/CWE190_Integer_Overflow__int_rand_add_51a.c": MULTI_A,
        "testcases/CWE190_Integer_Overflow/s01/CWE190_Integer_Overflow__int_rand_add_51b.c": MULTI_B,
        "testcases/CWE476_NULL_Pointer_Dereference/CWE476_NULL_Pointer_Dereference__int_01.cpp": CPP,
        "testcases/CWE476_NULL_Pointer_Dereference/CWE476_NULL_Pointer_Dereference__int_01.h": "int x;\n",
        "testcasesupport/io.c": "void printLine(const char * line) { }\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def mini_juliet(tmp_path: Path) -> Path:
    return write_mini_juliet(tmp_path / "juliet")


@pytest.fixture
def mini_juliet_tar(mini_juliet: Path, tmp_path: Path) -> Path:
    out = tmp_path / "mini.tar.xz"
    with tarfile.open(out, "w:xz") as tf:
        for name in ("testcases", "testcasesupport"):
            tf.add(mini_juliet / name, arcname=name)
    return out


# -- tiny SVEN / DiverseVul / generic files -----------------------------------------------------
def func(i: int, fixed: bool = False, body: str = "") -> str:
    check = "    if (n > 16) return -1;\n" if fixed else ""
    return (f"int copy_{i}(char *dst, const char *src, int n)\n{{\n{check}    memcpy(dst, src, n);{body}\n"
            f"    return n + {i};\n}}\n")


def write_sven(root: Path, n_pairs: int = 6, identical: int = 1, python: int = 1) -> Path:
    """``root/train/cwe-787.jsonl`` with C pairs, identical pairs and a Python pair."""
    rows = []
    for i in range(n_pairs):
        rows.append({"func_name": f"copy_{i}", "func_src_before": func(i), "func_src_after": func(i, True),
                     "commit_link": f"https://github.com/x/y/commit/{i // 2:040d}", "file_name": f"src/f{i}.c",
                     "vul_type": "cwe-787", "line_changes": {}, "char_changes": {}})
    for i in range(identical):
        code = func(100 + i)
        rows.append({"func_name": "same", "func_src_before": code, "func_src_after": code.replace("    ", "\t"),
                     "commit_link": f"https://github.com/x/y/commit/{900 + i:040d}", "file_name": "a.c",
                     "vul_type": "cwe-787"})
    for i in range(python):
        rows.append({"func_name": "p", "func_src_before": "def f(x):\n    return eval(x)\n",
                     "func_src_after": "def f(x):\n    return int(x)\n", "commit_link": "py",
                     "file_name": "a.py", "vul_type": "cwe-078"})
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "train" / "cwe-787.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def diversevul_rows(n_commits: int = 8) -> list[dict]:
    rows = []
    for c in range(n_commits):
        for j, target in enumerate((1, 0, 0, 0)):
            rows.append({"func": func(c * 10 + j, fixed=not target), "target": target,
                         "cwe": ["CWE-787"] if target else [], "project": "proj", "commit_id": f"{c:040x}",
                         "hash": 1000 * c + j, "size": 5, "message": "fix overflow"})
    return rows


@pytest.fixture
def sven_dir(tmp_path: Path) -> Path:
    return write_sven(tmp_path / "sven")


@pytest.fixture
def diversevul_file(tmp_path: Path) -> Path:
    path = tmp_path / "diversevul_20230702.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in diversevul_rows()), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def fx():
    """The fixture writers, for tests that need them with their own arguments."""
    import types

    return types.SimpleNamespace(func=func, write_sven=write_sven, write_mini_juliet=write_mini_juliet,
                                 diversevul_rows=diversevul_rows)
