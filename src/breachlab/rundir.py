"""One run directory per command: config, manifest, logs and outputs in one place.

Layout::

    runs/<kind>-<YYYYmmdd-HHMMSS>[-N]/
      config.yaml      the resolved config (defaults ← YAML ← CLI)
      manifest.json    command, git sha, package versions, seed, input hashes, timings, status
      logs/run.log     everything the run logged
      ...              the stage's outputs

Later stages take a run directory and read ``config.yaml`` / ``manifest.json`` instead of
asking the user again.  Files are written atomically (temp file + rename) so an interrupted
run never leaves a half-written output behind.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from breachlab.config import dump_yaml, to_dict

TRACKED_PACKAGES = (
    "breachlab", "torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes",
    "llama_cpp_python", "gguf", "numpy", "scikit-learn", "nilearn", "nibabel", "pillow",
    "matplotlib", "tree-sitter", "liger-kernel", "unsloth", "unsloth_zoo",
)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # mkstemp alone would leave 0600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: str | Path, rows: Any) -> Path:
    """Write an iterable of dicts as JSON Lines, atomically."""
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hash_inputs(paths: list[str | Path]) -> dict[str, str]:
    """sha256 of each input file; folders are hashed over their sorted file list + sizes."""
    out: dict[str, str] = {}
    for p in paths:
        p = Path(p)
        if p.is_file():
            out[str(p)] = sha256_file(p)
        elif p.is_dir():
            digest = hashlib.sha256()
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                digest.update(f"{f.relative_to(p)}:{f.stat().st_size}\n".encode())
            out[str(p)] = "tree:" + digest.hexdigest()
    return out


def git_sha(cwd: str | Path | None = None) -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


class RunDir:
    """A run directory; create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- creation -------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        kind: str,
        config: Any = None,
        *,
        root: str | Path = "runs",
        out: str | Path | None = None,
        seed: int | None = None,
        inputs: list[str | Path] | None = None,
    ) -> "RunDir":
        """Make a fresh run directory (never reuses a non-empty one) and write its metadata."""
        if out is not None:
            path = Path(out)
            if path.exists() and any(path.iterdir()):
                status = ""
                try:
                    status = json.loads((path / "manifest.json").read_text(encoding="utf-8")).get("status", "")
                except (OSError, ValueError):
                    pass
                hint = " (it holds a failed run: read its logs/, then remove it)" if status == "failed" else ""
                raise FileExistsError(f"output directory {path} exists and is not empty{hint}; choose another --out")
        else:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            path = Path(root) / f"{kind.replace(' ', '-')}-{stamp}"
            n = 1
            while path.exists():
                n += 1
                path = Path(root) / f"{kind.replace(' ', '-')}-{stamp}-{n}"
        (path / "logs").mkdir(parents=True, exist_ok=True)
        run = cls(path)
        if config is not None:
            atomic_write_text(path / "config.yaml", dump_yaml(config))
        manifest = {
            "kind": kind,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "status": "running",
            "git_sha": git_sha(),
            "versions": package_versions(),
            "platform": platform.platform(),
            "seed": seed,
            "inputs": hash_inputs(inputs or []),
        }
        atomic_write_json(path / "manifest.json", manifest)
        return run

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        path = Path(path)
        if not (path / "manifest.json").is_file():
            raise FileNotFoundError(f"{path} is not a breachlab run directory (no manifest.json)")
        return cls(path)

    # -- metadata -------------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / "manifest.json").read_text(encoding="utf-8"))

    def update_manifest(self, **fields: Any) -> None:
        data = self.manifest
        data.update(to_dict(fields))
        atomic_write_json(self.path / "manifest.json", data)

    def config_dict(self) -> dict[str, Any]:
        import yaml

        cfg = self.path / "config.yaml"
        return yaml.safe_load(cfg.read_text(encoding="utf-8")) if cfg.is_file() else {}

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    # -- lifecycle ------------------------------------------------------------------------
    @contextmanager
    def running(self, logger_name: str = "breachlab") -> Iterator["RunDir"]:
        """Log to ``logs/run.log`` and record status, end time and any error in the manifest."""
        handler = logging.FileHandler(self.path / "logs" / "run.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger(logger_name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        start = _dt.datetime.now(_dt.timezone.utc)
        try:
            yield self
        except BaseException as exc:
            self.update_manifest(status="failed", error=f"{type(exc).__name__}: {exc}",
                                 finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
            raise
        else:
            end = _dt.datetime.now(_dt.timezone.utc)
            self.update_manifest(status="finished", finished=end.isoformat(timespec="seconds"),
                                 wall_seconds=round((end - start).total_seconds(), 2))
        finally:
            logger.removeHandler(handler)
            handler.close()
