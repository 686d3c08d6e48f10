"""Shared fixtures: where the shared data lives, and an isolated cache per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BREACHLAB_DATA") or ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$BREACHLAB_DATA``); tests that need it skip loudly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch the network: make any hub access fail fast."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")


class NetworkBlocked(AssertionError):
    """Raised by the :func:`no_network` fixture when code tries to open a connection."""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch):
    """Block every socket connection and name lookup in this process; fail the test on any try.

    Patches ``socket.socket.connect``/``connect_ex``, ``socket.create_connection`` and
    ``getaddrinfo`` (in ``socket`` and ``_socket``) to raise :class:`NetworkBlocked`, and fails
    at teardown if anything tried — even when the code under test caught the error and went on
    (hub clients retry and fall back quietly).  Yields the list of attempts.  Subprocesses are
    not covered: run commands in-process (``breachlab.errors.run_cli``).
    """
    import _socket
    import socket

    attempts: list[str] = []

    def refuse(what: str):
        def blocked(*args, **kwargs):
            target = args[1:] if what.startswith("socket.") else args
            attempts.append(f"{what}{target!r}")
            raise NetworkBlocked(f"network access in a test: {what}{target!r}")
        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(_socket, "getaddrinfo", refuse("getaddrinfo"))
    yield attempts
    assert not attempts, f"code tried to reach the network: {attempts[:5]}"
