"""``--model hf:org/name``: the local hub cache first, and a fast, clear failure when the hub is out of reach.

Why: transformers and huggingface_hub retry an unreachable hub for most of a minute before
they fail, with a traceback that does not say what to do.  So a hub id is looked up in the
local hub cache first (no socket at all: a cached model loads from its snapshot folder);
with ``HF_HUB_OFFLINE=1`` a model not in the cache is refused at once; otherwise one TCP
connect to the hub (``$HF_ENDPOINT``, default huggingface.co, at most
:data:`PROBE_SECONDS`) decides, before any download starts.  Reaching the hub is only ever
something the user wrote (``hf:`` in ``--model``).
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from breachlab.errors import UserError

PROBE_SECONDS = 5.0
_TRUE = {"1", "true", "yes", "on"}


def hub_cache() -> Path:
    """``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub`` (read at each call)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def local_snapshot(hub_id: str) -> tuple[Path, str] | None:
    """(snapshot folder, commit) of ``hub_id``'s ``main`` in the local hub cache, or None; opens no socket."""
    repo = hub_cache() / ("models--" + hub_id.replace("/", "--"))
    try:
        commit = (repo / "refs" / "main").read_text().strip()
    except OSError:
        return None
    snap = repo / "snapshots" / commit
    return (snap, commit) if commit and (snap / "config.json").is_file() else None


def _how_to(hub_id: str) -> str:
    return (f"download it where the hub is reachable (`hf download {hub_id} --local-dir DIR`) "
            f"and pass the folder: --model DIR")


def reachable(endpoint: str | None = None, seconds: float = PROBE_SECONDS) -> bool:
    """Whether one TCP connect to the hub endpoint succeeds within ``seconds`` (DNS included)."""
    url = urlparse(endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=seconds).close()
            ok.append(True)
        except Exception:  # noqa: BLE001 - any failure to connect means "unreachable"
            ok.append(False)

    worker = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    worker.start()
    worker.join(seconds)
    return bool(ok and ok[0])


def require(hub_id: str) -> tuple[str, str, str]:
    """(kind, location, model_id) for ``hf:hub_id``; UserError at once when it cannot be had.

    A cached snapshot is a local directory (``hf_dir``, id ``org/name@commit12``); otherwise
    the hub must answer the probe, and the id stays for transformers to download (``hub``).
    """
    snap = local_snapshot(hub_id)
    if snap is not None:
        return "hf_dir", str(snap[0]), f"{hub_id}@{snap[1][:12]}"
    if offline():
        raise UserError(f"hf:{hub_id} is not in the local hub cache ({hub_cache()}) and HF_HUB_OFFLINE is set: "
                        + _how_to(hub_id))
    if not reachable():
        host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname
        raise UserError(f"hf:{hub_id}: the hub ({host}) is unreachable and the model is not in the local hub cache "
                        f"({hub_cache()}): " + _how_to(hub_id))
    return "hub", hub_id, hub_id
