"""A hostile checkout: scanning it (``--changed-since`` included) runs nothing of it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from breachlab.vuln.scan import gitdiff

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null"]


def _hostile_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A committed C project whose .git/config, included configs, hooks and .gitattributes name commands."""
    repo, marks = tmp_path / "repo", tmp_path / "marks"
    repo.mkdir()
    marks.mkdir()
    (repo / "a.c").write_text("int f(void)\n{\n    return 1;\n}\n\nint g(void)\n{\n    return 2;\n}\n")
    (repo / "b.h").write_text("int h(void);\n")
    (repo / ".gitattributes").write_text("* filter=evil diff=evil\n*.h filter=evilp\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(GIT + cmd, cwd=repo, check=True, capture_output=True)

    def touch(name: str) -> str:
        return f"touch {marks / name}"

    hooks = repo / "evilhooks"
    hooks.mkdir()
    for hook in ("pre-commit", "post-checkout", "post-index-change", "reference-transaction", "fsmonitor-watchman"):
        (hooks / hook).write_text(f"#!/bin/sh\n{touch('hook-' + hook)}\n")
        (hooks / hook).chmod(stat.S_IRWXU)
        shutil.copy2(hooks / hook, repo / ".git" / "hooks" / hook)
    git_dir = repo / ".git"
    (git_dir / "extra.cfg").write_text(f"[filter \"evil\"]\n\tclean = {touch('include-clean')}; cat\n")
    (git_dir / "extra2.cfg").write_text(f"[core]\n\tfsmonitor = {touch('includeif-fsmonitor')}\n")
    with (git_dir / "config").open("a") as fh:
        fh.write(f"""[core]
\tfsmonitor = {touch('fsmonitor')}
\tpager = {touch('pager')}; cat
\thooksPath = {hooks}
\tsshCommand = {touch('ssh')}
\taskPass = {touch('askpass')}
\teditor = {touch('editor')}
\tgitProxy = {touch('proxy')}
\talternateRefsCommand = {touch('altrefs')}
[filter "evil"]
\tclean = {touch('clean')}; cat
\tsmudge = {touch('smudge')}; cat
\trequired = true
[filter "evilp"]
\tprocess = {touch('process')}
[diff "evil"]
\ttextconv = {touch('textconv')}; cat
\tcommand = {touch('diffcommand')}
[diff]
\texternal = {touch('external')}
[credential]
\thelper = !{touch('credential')}
[gpg]
\tprogram = {touch('gpg')}
[log]
\tshowSignature = true
[pager]
\tdiff = {touch('pager-diff')}
[include]
\tpath = extra.cfg
[includeIf "gitdir:/"]
\tpath = extra2.cfg
""")
    return repo, marks


@needs_git
def test_changed_since_runs_nothing_of_a_hostile_checkout(tmp_path: Path) -> None:
    repo, marks = _hostile_repo(tmp_path)
    (repo / "a.c").write_text("int f(void)\n{\n    return 1;\n}\n\nint g(void)\n{\n    return 3;\n}\n")
    (repo / "b.h").write_text("int h(void);\nint k(void);\n")
    try:
        changed = gitdiff.changed_lines("HEAD", [str(repo)])
    finally:
        assert sorted(os.listdir(marks)) == []
    assert changed == {os.path.realpath(repo / "a.c"): [[8, 8]], os.path.realpath(repo / "b.h"): [[2, 2]]}


@needs_git
def test_changed_since_reads_blobs_raw_and_marks_new_and_deleted_lines(tmp_path: Path) -> None:
    repo, marks = _hostile_repo(tmp_path)
    (repo / "a.c").write_text("int f(void)\n{\n}\n\nint g(void)\n{\n    return 2;\n}\n")  # line 3 deleted
    (repo / "new.c").write_text("int n(void) { return 0; }\n")
    subprocess.run(GIT + ["-c", "filter.evil.clean=cat", "-c", "filter.evilp.process=", "add", "new.c"], cwd=repo,
                   check=True, capture_output=True, env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"})
    for leftover in os.listdir(marks):  # what our own `git add` above ran
        os.remove(marks / leftover)
    changed = gitdiff.changed_lines("HEAD", [str(repo / "a.c"), str(repo / "new.c")])
    assert sorted(os.listdir(marks)) == []
    assert changed[os.path.realpath(repo / "a.c")] == [[2, 3]]
    assert changed[os.path.realpath(repo / "new.c")] == [[1, 1]]
    assert os.path.realpath(repo / "b.h") not in changed  # not under the given paths


def test_line_ranges_match_git_hunks() -> None:
    old = ["a", "b", "c", "d", "e"]
    assert gitdiff.line_ranges(old, old) == []
    assert gitdiff.line_ranges(old, ["a", "b", "X", "d", "e"]) == [[3, 3]]
    assert gitdiff.line_ranges(old, ["a", "b", "c", "n1", "n2", "d", "e"]) == [[4, 5]]
    assert gitdiff.line_ranges(old, ["a", "b", "d", "e"]) == [[2, 3]]  # a deletion marks both neighbours
    assert gitdiff.line_ranges([], ["x", "y"]) == [[1, 2]]
