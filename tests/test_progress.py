"""Progress lines for pipes and logs: one unwrapped line per report, the last always said."""

from __future__ import annotations

import io
import logging

from breachlab.progress import Heartbeat, status_line, step


def test_heartbeat_reports_done_total_and_always_the_end() -> None:
    buf = io.StringIO()
    beat = Heartbeat("eval tiny", every=3600, stream=buf)
    for i in range(1, 4):
        beat.step(i, 3)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eval tiny: 3/3 (")  # throttled, but the end is said
    buf = io.StringIO()
    beat = Heartbeat("eval tiny", every=0, stream=buf)
    beat.step(1, 4)
    assert buf.getvalue().startswith("eval tiny: 1/4 (") and "left)" in buf.getvalue()
    off = io.StringIO()
    Heartbeat("x", enabled=False, every=0, stream=off).step(1, 1)
    assert off.getvalue() == ""


def test_step_and_status_lines_are_single_lines(caplog) -> None:
    buf = io.StringIO()
    step("export: a\nb", buf)
    assert buf.getvalue() == "export: a b\n"
    with caplog.at_level(logging.INFO):
        status_line("data", logging.getLogger("breachlab.test"), enabled=False)("loading juliet")
    assert "loading juliet" in caplog.text
