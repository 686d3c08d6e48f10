"""Where the shared, read-only data lives (atlases, SMS Spam Collection).

The project never copies ``../shared/data`` into the repository: it reads it from
``$BREACHLAB_DATA`` when set, else from ``../shared/data`` relative to the current directory
(the repository root in tests and CI).  A user's machine points ``BREACHLAB_DATA`` at its own
copy of the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

from breachlab.errors import UserError


def data_dir() -> Path:
    """The shared data folder; raises a one-line :class:`UserError` when it is missing."""
    env = os.environ.get("BREACHLAB_DATA")
    path = Path(env) if env else Path.cwd() / ".." / "shared" / "data"
    if not path.is_dir():
        where = f"BREACHLAB_DATA={env}" if env else f"{path.resolve()} (../shared/data from the current directory)"
        raise UserError(f"shared data folder not found: {where}; set BREACHLAB_DATA to the folder that "
                        "holds atlases/ and sms_spam/")
    return path


def data_file(*parts: str) -> Path:
    """A file under the shared data folder, with an error that names the missing path."""
    path = data_dir().joinpath(*parts)
    if not path.exists():
        raise UserError(f"missing shared data file {path}; set BREACHLAB_DATA to a complete copy")
    return path
