"""Empty stub headers for the compiler-based analyzers (GCC's ``-fanalyzer``, clang-tidy).

A file is analysed alone, without its build: an ``#include`` of a header the tree does not
hold would stop the compiler before any check runs.  The analyzers therefore run with a
temporary folder of empty stubs on the include path and try again once per new missing
header.  Only relative names inside that folder are stubbed: nothing is written outside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


def add_missing(stubs: str | Path, missing: Iterable[str]) -> bool:
    """Write an empty stub in ``stubs`` for each missing header not stubbed yet; False when
    there was none (the caller stops retrying)."""
    root = Path(stubs)
    new = [m for m in missing if not (root / m).exists() and ".." not in Path(m).parts and not Path(m).is_absolute()]
    for m in new:
        (root / m).parent.mkdir(parents=True, exist_ok=True)
        (root / m).write_text("")
    return bool(new)
