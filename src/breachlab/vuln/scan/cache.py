"""Incremental scans: a score/explanation cache keyed by (function hash, model id, config).

Why: a CI re-scan after a one-file change should only pay the model for functions whose
text changed.  The key is the SHA-256 of the exact function text, the static evidence shown
to the model, the model id and the scan settings that change a score (prompt version,
token budget) — so a new model, adapter or prompt never reuses a stale answer.

Storage is one SQLite file under ``$BREACHLAB_CACHE/scan/`` (WAL mode, one writer: the scan's
main thread).  A corrupt or unwritable cache is dropped with a warning, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

log = logging.getLogger("breachlab.scan.cache")

SCHEMA = 1


def cache_key(code: str, evidence: str, model_id: str, config_digest: str) -> str:
    h = hashlib.sha256()
    for part in (code, evidence, model_id, config_digest):
        h.update(part.encode("utf-8", "replace"))
        h.update(b"\0")
    return h.hexdigest()


def config_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def default_path() -> Path:
    from breachlab.models import cache_dir

    return cache_dir() / "scan" / f"cache-v{SCHEMA}.sqlite"


class ScoreCache:
    """``get``/``put`` of JSON values by key; a no-op when ``path`` is None or unusable."""

    def __init__(self, path: Path | None):
        self.path = path
        self.hits = 0
        self.misses = 0
        self._db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.commit()
        except sqlite3.Error as exc:
            log.warning("scan cache %s unusable (%s); continuing without it", path, exc)
            self._db = None

    def get(self, key: str) -> dict[str, Any] | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT value FROM scores WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            row = None
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self._db is None:
            return
        try:
            self._db.execute("INSERT OR REPLACE INTO scores (key, value) VALUES (?, ?)", (key, json.dumps(value)))
        except sqlite3.Error as exc:
            log.warning("scan cache write failed: %s", exc)

    def commit(self) -> None:
        if self._db is not None:
            try:
                self._db.commit()
            except sqlite3.Error as exc:
                log.warning("scan cache commit failed: %s", exc)

    def close(self) -> None:
        if self._db is not None:
            self.commit()
            self._db.close()
            self._db = None
