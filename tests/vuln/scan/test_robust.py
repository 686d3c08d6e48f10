"""Robust on any tree: explicit paths, symlinks leaving the root, long lines, deep trees,
scoring failures and a cache shared by concurrent scans."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from breachlab.vuln.scan.cache import ScoreCache
from breachlab.vuln.scan.extract import extract_functions
from breachlab.vuln.scan.files import SourceFile, walk
from breachlab.vuln.scan.finding import Skipped
from breachlab.vuln.scan.scanner import ScanConfig, scan
from breachlab.vuln.scan.scorers import BackendScorer


def llm_only(path: Path, **kw) -> ScanConfig:
    """The model judges every function, one function per view (the fake judges by the calls it sees)."""
    return ScanConfig(paths=[str(path)], **{"tools": [], "deep": True, "whole_file_chars": 0, **kw})


def test_symlink_leaving_the_root_is_never_opened(tmp_path: Path, fake, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    canary = outside / "canary.c"
    canary.write_text("void canary(char *d, const char *s) { strcpy(d, s); }\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.c").write_text("int ok(void) { return 0; }\n")
    (root / "inside.c").write_text("void in(char *d) { gets(d); }\n")
    (root / "alias.c").symlink_to("inside.c")  # stays inside: followed, deduplicated
    (root / "leak.c").symlink_to(canary)
    (root / "rel_leak.c").symlink_to("../outside/canary.c")
    opened: list[str] = []
    real_open = os.open

    def spy(path, *a, **k):
        opened.append(os.path.realpath(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", spy)
    report = scan(llm_only(root, tools=["flawfinder"]), fake)
    assert str(canary.resolve()) not in opened
    assert not any("canary" in c for c in fake.scored)
    reasons = {s.path: s.reason for s in report.skipped}
    assert reasons["leak.c"] == reasons["rel_leak.c"] == "symlink leaves the scanned root: not followed"
    assert [f.function for f in report.findings] == ["in"]
    # a symlink named on the command line must stay inside its own folder too
    items = list(walk([root / "leak.c"]))
    assert items == [Skipped("leak.c", "symlink leaves the scanned root: not followed")]


def test_explicit_ignored_folder_and_file_are_scanned(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / ".git").mkdir()
    (project / ".gitignore").write_text("generated/\nsrc/*.tmp.c\n")
    monkeypatch.chdir(project)
    got = lambda *roots: [x.display for x in walk([Path(r) for r in roots]) if isinstance(x, SourceFile)]  # noqa: E731
    assert got(".") == ["cpp/parser.cpp", "include/util.h", "src/copy.c"]
    assert got("generated") == ["generated/out.c"]
    assert got("src/scratch.tmp.c") == ["src/scratch.tmp.c"]
    assert got("build") == ["build/gen.c"]


def test_deep_tree_and_deep_code_need_no_recursion(tmp_path: Path) -> None:
    deep = str(tmp_path)
    for _ in range(1500):  # os.makedirs would itself recurse 1500 times
        deep += "/d"
        os.mkdir(deep)
    with open(deep + "/x.c", "w") as fh:
        fh.write("int x(void) { return 1; }\n")
    try:
        files = [x for x in walk([tmp_path]) if isinstance(x, SourceFile)]
    finally:  # remove it here: pytest's own clean-up (shutil.rmtree) recurses once per level
        os.remove(deep + "/x.c")
        while deep != str(tmp_path):
            os.rmdir(deep)
            deep = deep.rsplit("/", 1)[0]
    assert len(files) == 1 and files[0].display.endswith("d/x.c")
    code = ("namespace a { " * 3000 + "int f() { return 0; }" + " }" * 3000).encode()
    fns = extract_functions(code, "cpp")
    assert len(fns) == 1 and fns[0].name.endswith("::f")


def test_long_line_is_cut_for_the_model_with_a_note(tmp_path: Path, fake) -> None:
    (tmp_path / "min.c").write_text("void m(char *d) { strcpy(d, \"" + "A" * 20000 + "\"); }\n")
    (tmp_path / "ok.c").write_text("void g(char *d) { gets(d); }\n")
    report = scan(llm_only(tmp_path), fake)
    assert {f.function for f in report.findings} == {"m", "g"}
    assert report.stats["lines_cut"] == 1
    assert max(len(c) for c in fake.scored) < 600


class _TinyBackend:
    """Tokens = characters / 4, like a real tokenizer on minified code; n_ctx 4096."""

    model_id = "tiny"
    n_ctx = 4096
    chat_tokenizer = None

    def __init__(self) -> None:
        self.longest = 0

    def tokenize(self, text: str) -> list[int]:
        return [0] * (len(text) // 4)

    def score(self, prompt: str):
        n = len(self.tokenize(prompt))
        if n > self.n_ctx:
            raise ValueError(f"prompt of {n} tokens does not fit n_ctx={self.n_ctx}")
        self.longest = max(self.longest, n)

        class S:
            p_vulnerable = 0.5
        return S()


def test_backend_scorer_cuts_a_single_overlong_line() -> None:
    be = _TinyBackend()
    scorer = BackendScorer(be)
    p = scorer.score("void f(void) { x = \"" + "A" * 60000 + "\"; }", "c")
    assert p == 0.5 and scorer.truncated == 1 and 3000 < be.longest <= 4096 - 80


def test_a_function_the_model_cannot_take_is_skipped_not_fatal(tmp_path: Path, fake) -> None:
    (tmp_path / "a.c").write_text("void boom(char *d) { strcpy(d, \"x\"); }\nvoid g(char *d) { gets(d); }\n")

    def score(code: str, lang: str, evidence: str = "") -> float:
        if "boom" in code:
            raise ValueError("prompt of 15064 tokens does not fit n_ctx=4096")
        return 0.9

    fake.score = score
    report = scan(llm_only(tmp_path), fake)
    assert [f.function for f in report.findings] == ["g"]
    assert any("model could not score it" in s.reason and "15064" in s.reason for s in report.skipped)


def test_concurrent_writers_share_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    caches = [ScoreCache(path), ScoreCache(path)]
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for chunk in range(20):
                for j in range(50):
                    caches[i].put(f"{i}-{chunk}-{j}", {"p": j / 50})
                caches[i].commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(c.lost == 0 for c in caches)
    for c in caches:
        c.close()
    fresh = ScoreCache(path)
    assert all(fresh.get(f"{i}-19-49") == {"p": 0.98} for i in range(2))
    n = fresh._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    assert n == 2 * 20 * 50
    assert fresh._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
