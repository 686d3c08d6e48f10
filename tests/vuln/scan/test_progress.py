"""Progress lines on stderr: quiet for short scans, plain lines on a non-terminal stream."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from breachlab.vuln.scan.progress import ScanProgress


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_non_terminal_stream_gets_plain_lines_with_eta() -> None:
    out, clock = io.StringIO(), Clock()
    p = ScanProgress(out, quiet_s=3.0, every_s=10.0, clock=clock)
    clock.t = 1.0
    p(10, 30, 100)
    assert out.getvalue() == ""  # a scan that is still short says nothing
    clock.t = 20.0
    p(40, 120, 100)
    clock.t = 25.0
    p(50, 150, 100)  # within every_s of the last line: nothing
    clock.t = 40.0
    p(80, 240, 100)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "scan: 40/100 files, 120 functions, 20s, ETA 30s"
    assert lines[1] == "scan: 80/100 files, 240 functions, 40s, ETA 10s"
    assert lines[-1] == "scan: 80/100 files, 240 functions, 40s, ETA 10s"
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_a_quick_scan_prints_nothing_at_all() -> None:
    out, clock = io.StringIO(), Clock()
    p = ScanProgress(out, clock=clock)
    clock.t = 0.5
    p(3, 4, 3)
    p.close()
    assert out.getvalue() == ""


def test_cli_scan_writes_progress_to_a_piped_stderr(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"f{i}.c").write_text(f"int f{i}(int a) {{ return a + {i}; }}\n")
    code = ("import sys; from breachlab.vuln.scan import progress as p\n"
            "orig = p.ScanProgress.__init__\n"
            "def init(self, stream=None, **kw): orig(self, stream, quiet_s=0.0, every_s=0.0)\n"
            "p.ScanProgress.__init__ = init\n"
            "from breachlab.cli import app\n"
            f"sys.argv = ['breachlab', 'vuln', 'scan', '--no-model', '--tools', '', '--no-cache', {str(tmp_path)!r}]\n"
            "app()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ,
                              "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src")})
    assert "scan: 3/3 files, 3 functions" in res.stderr, res.stderr
