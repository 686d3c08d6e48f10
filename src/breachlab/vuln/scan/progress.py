"""Progress of a scan on stderr: files and functions done, elapsed time and ETA.

Why plain lines and not only a spinner: a scan runs in CI logs and under ``2>file`` as often
as in a terminal, and a silent 14-minute run gets killed.  Nothing is printed for a scan that
ends within ``quiet_s`` seconds; after that a terminal gets one line rewritten in place every
``every_s`` seconds, any other stream (a pipe, a file, CI) gets one full line every
``every_s`` seconds (terminal: 0.5 s, other: 10 s by default) and a last line at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class ScanProgress:
    """A callable ``(files done, functions done, files in total)`` that writes progress lines."""

    def __init__(self, stream: TextIO | None = None, *, quiet_s: float = 3.0, every_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.quiet_s = quiet_s
        self.every_s = every_s if every_s is not None else (0.5 if self.tty else 10.0)
        self.clock = clock
        self.t0 = clock()
        self.last = -1e9
        self.printed = False
        self.state = (0, 0, 0)

    def line(self) -> str:
        files, functions, total = self.state
        elapsed = self.clock() - self.t0
        of = f"/{total}" if total else ""
        eta = ""
        if total and 0 < files < total:
            eta = f", ETA {_clock(elapsed / files * (total - files))}"
        return f"scan: {files}{of} files, {functions} functions, {_clock(elapsed)}{eta}"

    def __call__(self, files: int, functions: int, total: int = 0) -> None:
        self.state = (files, functions, total)
        now = self.clock()
        if now - self.t0 < self.quiet_s or now - self.last < self.every_s:
            return
        self.last = now
        self._write()

    def _write(self) -> None:
        text = self.line()
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.printed = True

    def close(self) -> None:
        """The last line (only when a line was printed before); a terminal's line is ended."""
        if self.printed:
            self._write()
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
