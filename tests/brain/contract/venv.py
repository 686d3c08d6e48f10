"""The contract test's own venv: upstream TRIBE v2 (vendored) with the PyPI packages it needs.

    python tests/brain/contract/venv.py            # build (or find) it; prints its python
    BREACHLAB_TRIBE_VENV=DIR                       # use/build it at DIR instead of the cache

Its own venv because upstream pins versions that clash with breachlab's ``[cpu]`` extra
(``torch<2.7``, ``numpy==2.2.6``): torch is the CPU build 2.13.0 instead, everything else comes
from ``requirements.txt`` (pinned, complete, installed with ``--no-deps`` so no resolver can
pull a CUDA torch), then ``neuralset==0.0.2``, ``neuraltrain==0.0.2``, ``exca==0.5.25`` and the
vendored ``tribev2`` tarball with ``--no-deps`` (as upstream's own pins cannot be met), and the
torchvision stub of ``torchvision_stub/`` (PyPI's torchvision is a CUDA build).

Cached under ``$XDG_CACHE_HOME/breachlab/tribe-contract/`` (default ``~/.cache``), keyed by
the tarball's and these files' hashes and the Python version: a changed pin builds a new venv.
A build goes to a temporary folder that is renamed only when the import check passed, so a
killed build is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
TARBALL = Path(os.environ.get("BREACHLAB_TRIBE_TARBALL",
                              REPO.parent / "shared" / "vendor" / "tribev2-7239908.tar.gz"))
TORCH = "torch==2.13.0"
NO_DEPS = ["neuralset==0.0.2", "neuraltrain==0.0.2", "exca==0.5.25"]
INPUTS = [HERE / "requirements.txt", *sorted((HERE / "torchvision_stub").rglob("*.py"))]  # what the venv holds


def key() -> str:
    h = hashlib.sha256()
    h.update(sys.version.split()[0].encode())
    h.update(TORCH.encode() + repr(NO_DEPS).encode())
    h.update(hashlib.sha256(TARBALL.read_bytes()).digest())
    for p in INPUTS:
        h.update(p.relative_to(HERE).as_posix().encode() + p.read_bytes())
    return h.hexdigest()[:16]


def location() -> Path:
    if os.environ.get("BREACHLAB_TRIBE_VENV"):
        return Path(os.environ["BREACHLAB_TRIBE_VENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "breachlab" / "tribe-contract" / f"venv-{key()}"


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def _run(cmd: list, log) -> None:
    log.write(f"$ {' '.join(map(str, cmd))}\n")
    log.flush()
    res = subprocess.run([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT)
    if res.returncode:
        raise RuntimeError(f"contract venv: {' '.join(map(str, cmd[:4]))} ... failed (exit {res.returncode}); "
                           f"see {log.name}")


def build(venv: Path) -> dict:
    tmp = venv.with_name(venv.name + f".building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(venv.with_name(venv.name + ".log"), "w") as log:
        _run([sys.executable, "-m", "venv", tmp], log)
        py = python_of(tmp)
        pip = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"]
        _run([*pip, TORCH], log)
        _run([*pip, "--no-deps", "-r", HERE / "requirements.txt"], log)
        _run([*pip, "--no-deps", *NO_DEPS, TARBALL], log)
        site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        shutil.copytree(HERE / "torchvision_stub" / "torchvision", Path(site) / "torchvision", dirs_exist_ok=True)
        _run([py, "-c", "import tribev2.demo_utils, neuralset, neuraltrain, exca"], log)
    info = {"key": key(), "seconds": round(time.perf_counter() - t0, 1), "python": sys.version.split()[0],
            "tarball": TARBALL.name}
    (tmp / "contract-venv.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(venv, ignore_errors=True)
    # venv scripts hard-code the folder they were made in; ours are run as `python -m`, and
    # bin/python is a symlink to the base interpreter, so the rename is safe
    tmp.rename(venv)
    for old in venv.parent.glob("venv-*"):  # finished venvs of other keys (pins changed): not needed again
        if old != venv and (old / "contract-venv.json").is_file():
            shutil.rmtree(old, ignore_errors=True)
            old.with_name(old.name + ".log").unlink(missing_ok=True)
    return info


def ensure() -> tuple[Path, dict]:
    """(python of the contract venv, its info incl. ``built_now`` and build seconds)."""
    venv = location()
    marker = venv / "contract-venv.json"
    if marker.is_file() and python_of(venv).exists():
        info = json.loads(marker.read_text())
        return python_of(venv), info | {"built_now": False}
    info = build(venv)
    return python_of(venv), info | {"built_now": True}


if __name__ == "__main__":
    py, info = ensure()
    print(py)
    print(json.dumps(info), file=sys.stderr)
