"""Progress lines for logs and pipes, where a live progress bar cannot draw.

``rich``'s bars redraw in place on a terminal; written into a file or a CI log they show
nothing until the step ends, so a long eval or export looks hung.  :class:`Heartbeat` prints
one plain line to stderr at most every ``every`` seconds (done/total, elapsed, time left),
and :func:`step` one line per pipeline step.  Neither hard-wraps.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable, TextIO


def step(message: str, stream: TextIO | None = None) -> None:
    """One unwrapped line on stderr naming the step that starts now."""
    stream = stream or sys.stderr
    stream.write(message.replace("\n", " ") + "\n")
    stream.flush()


def status_line(prefix: str, logger: logging.Logger, enabled: bool = True) -> Callable[[str], None]:
    """A callback that logs each message and, when ``enabled``, also says it on stderr."""
    def status(message: str) -> None:
        logger.info(message)
        if enabled:
            step(f"{prefix}: {message}")
    return status


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class Heartbeat:
    """Say how far a long loop is, every ``every`` seconds, when no live bar is shown."""

    def __init__(self, what: str, *, enabled: bool = True, every: float = 10.0, stream: TextIO | None = None):
        self.what, self.enabled, self.every = what, enabled, every
        self.stream = stream or sys.stderr
        self.start = self.last = time.monotonic()

    def step(self, done: int, total: int | None = None) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < self.every and (total is None or done < total)):
            return
        self.last = now
        elapsed = now - self.start
        where = f"{done}/{total}" if total else str(done)
        left = f", ~{_clock(elapsed / done * (total - done))} left" if total and 0 < done < total else ""
        step(f"{self.what}: {where} ({_clock(elapsed)}{left})", self.stream)

    def __enter__(self) -> "Heartbeat":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None
