"""Speed paths: static-tool results cached per file content and tool version, batches run in
parallel processes, and ``--changed-since`` judging only the functions a diff touches."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from breachlab.vuln.scan import gitdiff, statictools
from breachlab.vuln.scan.cache import ScoreCache
from breachlab.vuln.scan.scanner import ScanConfig, scan


def test_static_results_are_cached_by_content(project: Path, fake, tmp_path: Path, monkeypatch) -> None:
    cache = ScoreCache(tmp_path / "c.sqlite")
    cfg = ScanConfig(paths=[str(project)], tools=["flawfinder"], explain=False)
    first = scan(cfg, fake, cache=cache)
    assert first.stats["static_cached"] == 0
    runs: list[list[Path]] = []
    real = statictools._run_batch
    monkeypatch.setattr(statictools, "_run_batch", lambda tool, paths, *a: runs.append(paths) or real(tool, paths, *a))
    second = scan(cfg, fake, cache=cache)
    assert runs == [] and second.stats["static_cached"] == 3 and second.findings == first.findings
    (project / "src" / "copy.c").write_text((project / "src" / "copy.c").read_text() + "\nint z(void) { return 1; }\n")
    third = scan(cfg, fake, cache=cache)
    assert [p.name for batch in runs for p in batch] == ["copy.c"] and third.stats["static_cached"] == 2
    # a new tool version is a new key: nothing stale is reused
    monkeypatch.setattr(statictools, "tool_version", lambda tool: "99.0")
    runs.clear()
    scan(cfg, fake, cache=cache)
    assert sorted(p.name for batch in runs for p in batch) == ["copy.c", "parser.cpp", "util.h"]


def test_batches_split_by_language_and_jobs() -> None:
    files = [(Path(f"f{i}.c"), "") for i in range(5)] + [(Path("a.cpp"), ""), (Path("b.h"), "")]
    batches = statictools._batches(files, jobs=2)
    assert [[p.name for p, _ in b] for b in batches] == [["f0.c", "f1.c", "f2.c"], ["f3.c", "f4.c", "b.h"], ["a.cpp"]]


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_changed_since_judges_only_touched_functions(project: Path, fake, monkeypatch) -> None:
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(git + cmd, cwd=project, check=True, capture_output=True)
    f = project / "src" / "copy.c"
    f.write_text(f.read_text().replace("    char line[64];\n    gets(line);",
                                       "    char line[64];\n    gets(line);\n    puts(line);"))
    monkeypatch.chdir(project)
    changed = gitdiff.changed_lines("HEAD", [str(project)])
    report = scan(ScanConfig(paths=[str(project)], tools=[], deep=True, explain=False, changed=changed), fake)
    assert [x.function for x in report.findings] == ["read_line"]
    assert report.stats["unchanged"] == report.stats["functions"] - 1
    with pytest.raises(Exception, match="changed-since"):
        gitdiff.changed_lines("no-such-ref", [str(project)])
    with pytest.raises(Exception, match="cannot start with"):
        gitdiff.changed_lines("--output=/tmp/x", [str(project)])
