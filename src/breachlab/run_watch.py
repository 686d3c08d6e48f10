"""``python -m breachlab.run_watch RUN_DIR PID`` — mark a run ``incomplete`` the moment its process dies.

Why: a SIGKILLed (or OOM-killed) process cannot write its own end, so its manifest would
say ``running`` until the next breachlab start met the folder.  :meth:`RunDir.running`
starts this small watcher in its own session (a kill of the run's process group leaves it
alive); once a second it reads the manifest and checks the process the manifest names
(pid, host and kernel start time, :func:`~breachlab.rundir.owner_alive`).  It exits when
the run ends any other way (status no longer ``running``, or another process took the run
over) and, when the process is gone while the manifest still says ``running``, rewrites it
to ``incomplete`` (:func:`~breachlab.rundir.reconcile`).  It never touches anything else.
``BREACHLAB_RUN_WATCH=0`` turns it off.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

POLL_SECONDS = 1.0


def watch(run_dir: Path, pid: int, poll: float = POLL_SECONDS) -> str:
    """Block until the run with process ``pid`` ends; returns how it ended as seen from here."""
    from breachlab.rundir import owner_alive, reconcile

    manifest_path = run_dir / "manifest.json"
    while True:
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            if not run_dir.exists():
                return "gone"
            time.sleep(poll)  # mid-rename, or briefly unreadable
            continue
        if manifest.get("status") != "running" or manifest.get("pid") != pid:
            return str(manifest.get("status"))
        if owner_alive(manifest) is False:
            return str(reconcile(run_dir))
        time.sleep(poll)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m breachlab.run_watch RUN_DIR PID\n")
        return 2
    watch(Path(argv[0]), int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
