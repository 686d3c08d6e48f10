"""Where the shared, read-only data lives (atlases, SMS Spam Collection, Juliet, SVEN, PairVul).

One resolver for both parts, in the order the README promises:

1. an explicit folder (a config key such as ``data_root``), when given;
2. ``$BREACHLAB_DATA``;
3. ``../shared/data`` relative to the current directory (the repository root in a checkout
   that sits beside the shared data, as in tests and CI);
4. ``./data``.

The project never copies the data into the repository; a user's machine points
``BREACHLAB_DATA`` at its own copy of the same files.  Nothing here imports ``vuln`` or
``brain``, so both may import it.
"""

from __future__ import annotations

import os
from pathlib import Path

from breachlab.errors import UserError


def data_root(explicit: str | Path | None = None) -> Path:
    """The data folder by the rule above (not checked for existence: callers name the file they need)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("BREACHLAB_DATA")
    if env:
        return Path(env)
    shared = Path("..") / "shared" / "data"
    return shared if shared.is_dir() else Path("data")


def _where(explicit: str | Path | None) -> str:
    if explicit:
        return f"{explicit} (given explicitly)"
    if os.environ.get("BREACHLAB_DATA"):
        return f"BREACHLAB_DATA={os.environ['BREACHLAB_DATA']}"
    return f"{Path('data').resolve()} (neither BREACHLAB_DATA nor ../shared/data exists)"


def data_file(*parts: str, explicit: str | Path | None = None) -> Path:
    """A file or folder under the data root, with a one-line error that names what is missing."""
    root = data_root(explicit)
    path = root.joinpath(*parts)
    if not path.exists():
        raise UserError(f"missing shared data {'/'.join(parts)} under {_where(explicit)}; set BREACHLAB_DATA "
                        "to the folder that holds it (see the README's data section)")
    return path
