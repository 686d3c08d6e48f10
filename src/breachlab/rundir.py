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

The manifest tells the truth about how a run ended, whatever killed it:

* ``finished`` / ``failed``: the run's own code got to say so;
* ``interrupted``: SIGINT (Ctrl-C) or SIGTERM reached it (both become :class:`Interrupted`);
* ``incomplete``: the process died without a word (SIGKILL, OOM killer, power cut).  A dead
  process cannot write, so ``running`` stays behind; the manifest holds ``pid``, ``host`` and
  the process start time, and the next start that meets the folder (:meth:`RunDir.open`,
  :meth:`RunDir.create` in the same root, ``--resume``) sees that the process is gone and
  rewrites ``running`` to ``incomplete``.  So does a small watcher process
  (:mod:`breachlab.run_watch`) that :meth:`RunDir.running` starts, within a second of the
  death, so that the file itself tells the truth without anyone reopening it (unless the
  whole machine or container went down with it).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from breachlab.config import dump_yaml, to_dict
from breachlab.errors import Interrupted, UserError, raise_interrupted

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


def _first_file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` that is not a folder (so nothing can be made below it)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_output_file(path: str | Path, flag: str = "--output") -> None:
    """Refuse (UserError, before any work) an output file that names a folder or lies below a file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name (--out DIR makes a run directory)")
    blocker = _first_file_above(path)
    if blocker is not None:
        raise UserError(f"{flag} {path}: {blocker} is a file, not a folder")


def check_run_dir(path: str | Path, flag: str = "--out") -> None:
    """Refuse (UserError, before any work) a run directory that is a file or lies below a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; a run directory is a folder: name a new folder")
    blocker = _first_file_above(path)
    if blocker is not None:
        raise UserError(f"{flag} {path}: {blocker} is a file, not a folder")


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


# ---------------------------------------------------------------------------------------
# Who is running a run directory, and is that process still alive?
# ---------------------------------------------------------------------------------------
def _proc_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot, plus the boot id), or None.

    A pid alone can be reused after the process dies; pid + start time + boot cannot.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and ')'
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


def owner() -> dict[str, Any]:
    """``pid``, ``host`` and ``proc_start`` of this process, as the manifest records them."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _proc_start(os.getpid())}


def owner_alive(manifest: dict[str, Any]) -> bool | None:
    """Whether the process a manifest names is still alive: True, False, or None (another host)."""
    pid, host = manifest.get("pid"), manifest.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    if _proc_state(pid) in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    recorded, now = manifest.get("proc_start"), _proc_start(pid)
    if recorded and now and recorded != now:
        return False  # the pid was reused by a new process
    return True


def reconcile(path: str | Path) -> str | None:
    """Rewrite ``running`` to ``incomplete`` when the run's process is gone; return the status.

    Called on every start that meets a run directory, so that a SIGKILLed run is seen for what
    it is.  Runs of another host are left as they are (their process cannot be checked here).
    """
    mpath = Path(path) / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    status = manifest.get("status")
    if status == "running" and owner_alive(manifest) is False:
        manifest.update(status="incomplete", incomplete_detected=_now(),
                        error=f"process {manifest.get('pid')} on {manifest.get('host')} ended without "
                              "recording an end (killed?)")
        atomic_write_json(mpath, manifest)
        status = "incomplete"
    return status


def reconcile_root(root: str | Path) -> list[Path]:
    """:func:`reconcile` every run directory directly under ``root``; returns those marked now."""
    marked: list[Path] = []
    root = Path(root)
    if not root.is_dir():
        return marked
    for child in root.iterdir():
        if (child / "manifest.json").is_file():
            before = _status(child)
            if before == "running" and reconcile(child) == "incomplete":
                marked.append(child)
    return marked


def _status(path: Path) -> str | None:
    try:
        return json.loads((path / "manifest.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError):
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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
            check_run_dir(path)
            if path.exists() and any(path.iterdir()):
                status = reconcile(path) or ""
                hint = {"failed": " (it holds a failed run: read its logs/, then remove it)",
                        "incomplete": " (it holds a run whose process died: `--resume` it where the command has "
                                      "that flag, or remove it)",
                        "interrupted": " (it holds an interrupted run: `--resume` it where the command has that "
                                       "flag, or remove it)",
                        "running": " (a run is still writing there)"}.get(status, "")
                raise FileExistsError(f"output directory {path} exists and is not empty{hint}; choose another --out")
            reconcile_root(path.parent)
        else:
            reconcile_root(root)
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
            **owner(),
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
        reconcile(path)
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
    def running(self, logger_name: str = "breachlab", resume_hint: str | None = None) -> Iterator["RunDir"]:
        """Log to ``logs/run.log`` and record status, owner, end time and any error in the manifest.

        Entering claims the run for this process (``pid``/``host``/``proc_start``, status
        ``running``); a run another live process holds is refused.  SIGTERM is turned into
        :class:`~breachlab.errors.Interrupted` while inside, so that it, like Ctrl-C, ends as
        ``interrupted`` with a note saying where the run is (and ``resume_hint``, the command
        that continues it).
        """
        reconcile(self.path)
        held = self.manifest
        if held.get("status") == "running" and held.get("pid") != os.getpid() and owner_alive(held):
            raise FileExistsError(f"{self.path} is in use by process {held.get('pid')} on {held.get('host')}")
        handler = logging.FileHandler(self.path / "logs" / "run.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger(logger_name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        start = _dt.datetime.now(_dt.timezone.utc)
        starts = [*held.get("starts", []), start.isoformat(timespec="seconds")]
        if held.get("status") in ("interrupted", "incomplete", "failed"):  # a resume: keep how the last try ended
            data = self.manifest
            ends = [*data.get("previous_ends", []),
                    {k: data.pop(k) for k in ("status", "error", "finished", "incomplete_detected") if k in data}]
            atomic_write_json(self.path / "manifest.json", {**data, "previous_ends": ends})
        self.update_manifest(status="running", **owner(), starts=starts)
        watcher = _start_watcher(self.path)
        previous = _catch_sigterm()
        try:
            yield self
        except (KeyboardInterrupt, Interrupted) as exc:
            self.update_manifest(status="interrupted", error=_interrupt_reason(exc), finished=_now(),
                                 **({"resume": resume_hint} if resume_hint else {}))
            exc.add_note(f"run directory {self.path} marked interrupted"
                         + (f"; continue it with: {resume_hint}" if resume_hint else ""))
            raise
        except BaseException as exc:
            self.update_manifest(status="failed", error=f"{type(exc).__name__}: {exc}", finished=_now())
            raise
        else:
            end = _dt.datetime.now(_dt.timezone.utc)
            self.update_manifest(status="finished", finished=end.isoformat(timespec="seconds"),
                                 wall_seconds=round((end - start).total_seconds(), 2))
        finally:
            _restore_sigterm(previous)
            _stop_watcher(watcher)
            logger.removeHandler(handler)
            handler.close()


def _start_watcher(path: Path) -> subprocess.Popen | None:
    """Start :mod:`breachlab.run_watch` for this process's run (its own session; no stdio)."""
    if os.environ.get("BREACHLAB_RUN_WATCH", "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    try:
        return subprocess.Popen([sys.executable, "-m", "breachlab.run_watch", str(path.resolve()), str(os.getpid())],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                    p for p in (str(Path(__file__).resolve().parents[1]),
                                                os.environ.get("PYTHONPATH", "")) if p)})
    except OSError as exc:  # the run goes on; only the early "incomplete" is lost
        logging.getLogger("breachlab").debug("no run watcher: %s", exc)
        return None


def _stop_watcher(watcher: subprocess.Popen | None) -> None:
    """The run recorded its own end: the watcher has nothing left to do."""
    if watcher is None:
        return
    watcher.terminate()
    try:
        watcher.wait(timeout=5)
    except subprocess.TimeoutExpired:
        watcher.kill()


def _interrupt_reason(exc: BaseException) -> str:
    if isinstance(exc, Interrupted):
        return f"interrupted by {exc.signal_name}"
    return "interrupted by SIGINT (Ctrl-C)"


def _catch_sigterm() -> Any:
    """Turn SIGTERM into :class:`Interrupted` unless someone handles it already (the CLI does);
    main thread only, where signals are delivered."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return None
    return signal.signal(signal.SIGTERM, raise_interrupted)


def _restore_sigterm(previous: Any) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)
