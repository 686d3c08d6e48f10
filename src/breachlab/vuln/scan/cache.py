"""Incremental scans: a score/explanation cache keyed by (function hash, model id, config).

Why: a CI re-scan after a one-file change should only pay the model for functions whose
text changed.  The key is the SHA-256 of the exact function text, the static evidence shown
to the model, the model id and the scan settings that change a score (prompt version,
token budget) — so a new model, adapter or prompt never reuses a stale answer.  The model id
names content, not a file name: a model file or directory the user names is
``name@sha12`` of its bytes (:func:`breachlab.models.content_id`), an adapter ``name@sha12``
of its own (:func:`breachlab.vuln.backends.adapters.adapter_tag`), so a re-exported ``model.gguf`` at
any path gets fresh scores.

Storage is one SQLite file under ``$BREACHLAB_CACHE/scan/``, shared by concurrent scans: WAL
mode (readers never wait for a writer), writes buffered in memory and flushed in one short
``BEGIN IMMEDIATE`` transaction per chunk, a busy timeout and a few retries — so two scans
never hold the write lock for long and neither stalls nor loses its entries.  A corrupt or
unwritable cache is dropped with a warning, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
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

    BUSY_MS = 10_000
    RETRIES = 5

    def __init__(self, path: Path | None):
        self.path = path
        self.hits = 0
        self.misses = 0
        self.lost = 0  # entries dropped after every retry failed (reported, never fatal)
        self._pending: dict[str, str] = {}
        self._lock = threading.RLock()  # the chunk-preparing thread and the main thread share it
        self._db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit (isolation_level=None): no implicit transaction holds the lock between writes
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=self.BUSY_MS / 1000,
                                       isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout={self.BUSY_MS}")
            self._retry(lambda db: db.execute("PRAGMA journal_mode=WAL"))
            self._retry(lambda db: db.execute(
                "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value TEXT NOT NULL)"))
        except sqlite3.Error as exc:
            log.warning("scan cache %s unusable (%s); continuing without it", path, exc)
            self._db = None

    def _retry(self, op: Any) -> Any:
        delay = 0.05
        for attempt in range(self.RETRIES):
            try:
                return op(self._db)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == self.RETRIES - 1:
                    raise
                time.sleep(delay)
                delay *= 2
        return None

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._get(key)

    def _get(self, key: str) -> dict[str, Any] | None:
        if key in self._pending:
            self.hits += 1
            return json.loads(self._pending[key])
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
        if self._db is not None:
            with self._lock:
                self._pending[key] = json.dumps(value)

    def commit(self) -> None:
        """Write the buffered entries in one short transaction (retried when another scan writes)."""
        with self._lock:
            self._commit()

    def _commit(self) -> None:
        if self._db is None or not self._pending:
            return
        rows = list(self._pending.items())

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO scores (key, value) VALUES (?, ?)", rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        try:
            self._retry(write)
        except sqlite3.Error as exc:
            self.lost += len(rows)
            log.warning("scan cache: %d entr%s not written (%s)", len(rows), "y" if len(rows) == 1 else "ies", exc)
        self._pending.clear()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._commit()
                self._db.close()
                self._db = None
