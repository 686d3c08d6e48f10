"""A hostile checkout: scanning it (``--changed-since`` included) runs nothing of it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from breachlab.vuln.scan import gitdiff

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false", "-c",
       "core.hooksPath=/dev/null"]


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


# --- file names are data: every format shows them, none obeys them -----------------------------
NAMES = {"nonutf8": b"bad\xff.c", "escape": b"x\x1b[2Jred\x1b]8;;http:evil\x07.c",
         "markup": b"t`<img src=x onerror=alert(1)>`.c", "rich": b"[bold red]rich[-bold].c",
         "bidi": "rev\u202eelif.c".encode()}


@pytest.fixture
def hostile_names(tmp_path: Path) -> Path:
    root = tmp_path / "names"
    root.mkdir()
    for i, name in enumerate(NAMES.values()):
        (root / os.fsdecode(name)).write_text(f"int f{i}(char *s)\n{{\n    char b[8];\n"
                                              f"    strcpy(b, s);\n    return 0;\n}}\n")
    return root


def _scan_cli(monkeypatch, fake, *args: str) -> int:
    import typer

    from breachlab.errors import run_cli
    from breachlab.vuln.scan import cli

    monkeypatch.setattr(cli, "make_scorer", lambda *a, **k: fake)
    app = typer.Typer()
    app.command("scan")(cli.scan)
    app.command("noop")(lambda: None)
    monkeypatch.setattr("sys.argv", ["breachlab", "scan", *args])
    return run_cli(app)


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "markdown", "html"])
def test_hostile_file_names_are_escaped_in_every_format(hostile_names: Path, fake, monkeypatch, tmp_path: Path,
                                                        fmt: str) -> None:
    out = tmp_path / f"report.{fmt}"
    monkeypatch.chdir(hostile_names)
    rc = _scan_cli(monkeypatch, fake, ".", "--tools", "", "--deep", "--no-cache", "-f", fmt, "-o", str(out))
    assert rc == 1  # five findings, one per file: no crash (exit 3), no file lost
    text = out.read_bytes().decode("utf-8")  # strict: the report is valid UTF-8
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    if fmt == "json":
        paths = {f["path"] for f in json.loads(text)["findings"]}
        assert paths == {os.fsdecode(n) for n in NAMES.values()}  # exact, for --baseline
    elif fmt == "sarif":
        uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                for r in json.loads(text)["runs"][0]["results"]}
        assert "bad%FF.c" in uris and len(uris) == 5
    else:
        assert "bad\\xff.c" in text and "x\\x1b[2Jred" in text and "rev\\u202eelif.c" in text
    if fmt == "markdown":  # rendered as a Markdown viewer would (raw HTML on): no tag comes out
        from markdown_it import MarkdownIt

        html = MarkdownIt("commonmark").enable("table").render(text)
        assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html and "<strong>" not in html
        assert "<code>t`&lt;img src=x onerror=alert(1)&gt;`.c:1-6</code>" in html  # one code span, whole
    if fmt == "html":
        assert "<img" not in text and "&lt;img" in text
    if fmt == "text":
        assert "[bold red]rich[-bold].c" in text  # printed, not taken as rich markup


def test_hostile_file_name_on_stdout_and_in_error_lines(hostile_names: Path, fake, monkeypatch, capsys) -> None:
    monkeypatch.chdir(hostile_names)
    assert _scan_cli(monkeypatch, fake, ".", "--tools", "", "--deep", "--no-cache") == 1
    assert "\x1b" not in capsys.readouterr().out
    (hostile_names / os.fsdecode(b"x\x1b[2J.txt")).write_text("")
    assert _scan_cli(monkeypatch, fake, os.fsdecode(b"nothing\x1b[2J\xff")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no such file or folder: nothing\\x1b[2J\\xff") and "\x1b" not in err
