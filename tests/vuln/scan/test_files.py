"""File selection: .gitignore, vendored/build folders, headers, and hostile inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from breachlab.vuln.scan.files import SourceFile, read_source, walk
from breachlab.vuln.scan.finding import Skipped


def chosen(roots: list[Path], **kw) -> list[str]:
    return [x.display for x in walk(roots, **kw) if isinstance(x, SourceFile)]


def test_developer_expectations(project: Path) -> None:
    assert chosen([project]) == ["cpp/parser.cpp", "include/util.h", "src/copy.c"]


def test_vendored_and_gitignored_can_be_included(project: Path) -> None:
    assert chosen([project], include_vendored=True) == [
        "build/gen.c", "cpp/parser.cpp", "include/util.h", "src/copy.c", "third_party/zlib/inflate.c"]
    got = chosen([project], respect_gitignore=False)
    assert "generated/out.c" in got and "src/scratch.tmp.c" in got
    assert chosen([project], exclude=("cpp",)) == ["include/util.h", "src/copy.c"]


def test_named_root_is_scanned_even_if_vendored(project: Path) -> None:
    assert chosen([project / "third_party"]) == ["zlib/inflate.c"]


def test_hostile_inputs_are_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "bin.c").write_bytes(b"int x;\0\0\x01\x02")
    (tmp_path / "latin1.c").write_bytes(b"int a;\n/* caf\xe9 */\n")
    (tmp_path / "big.c").write_text("int v;\n" * 1000)
    (tmp_path / "ok.c").write_text("int f(void) { return 0; }\n")
    os.symlink("loop_b.c", tmp_path / "loop_a.c")
    os.symlink("loop_a.c", tmp_path / "loop_b.c")
    os.symlink("missing.c", tmp_path / "dangling.c")
    os.symlink(".", tmp_path / "self")  # a directory loop: never followed
    os.mkfifo(tmp_path / "pipe.c")  # reading it would block forever
    items = list(walk([tmp_path]))
    skipped = {s.path: s.reason for s in items if isinstance(s, Skipped)}
    assert skipped["loop_a.c"] == skipped["loop_b.c"] == "symlink loop"
    assert skipped["dangling.c"] == "broken symlink or missing file"
    assert skipped["pipe.c"].startswith("not a regular file")
    files = {s.display: s for s in items if isinstance(s, SourceFile)}
    assert sorted(files) == ["big.c", "bin.c", "latin1.c", "ok.c"]
    reasons = {name: read_source(sf, max_bytes=4000)[1] for name, sf in files.items()}
    assert reasons["ok.c"] is None
    assert reasons["bin.c"].reason == "binary file (NUL bytes)"
    assert reasons["latin1.c"].reason == "not UTF-8 (invalid byte at line 2)"
    assert reasons["big.c"].reason.startswith("file too large")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_file(tmp_path: Path) -> None:
    f = tmp_path / "secret.c"
    f.write_text("int x;\n")
    f.chmod(0)
    sf = next(x for x in walk([tmp_path]) if isinstance(x, SourceFile))
    assert read_source(sf, 10_000)[1].reason == "unreadable: permission denied"


def test_unreadable_file_via_oserror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "secret.c"
    f.write_text("int x;\n")
    sf = next(x for x in walk([tmp_path]) if isinstance(x, SourceFile))

    def deny(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("os.open", deny)
    assert read_source(sf, 10_000)[1].reason == "unreadable: permission denied"


def test_paths_relative_to_cwd_and_parent_gitignore(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / ".git").mkdir()
    (project / ".gitignore").write_text("src/*.tmp.c\nskip_me.c\n")
    (project / "src" / "skip_me.c").write_text("int x;\n")
    monkeypatch.chdir(project.parent)
    # `scan project/src` from above: paths as the user sees them, the repo's .gitignore applies
    assert chosen([Path("project/src")]) == ["project/src/copy.c"]
    monkeypatch.chdir(project / "src")
    assert chosen([Path(".")]) == ["copy.c"]
