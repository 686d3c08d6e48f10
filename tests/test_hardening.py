"""Bad input and hostile environments end in one clear line, fast: hub ids offline, …"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from breachlab import hub, models
from breachlab.errors import UserError


def _cached_snapshot(cache: Path, hub_id: str, commit: str = "a" * 40) -> Path:
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snap / "config.json").write_text("{}")
    return snap


def test_a_cached_hub_model_resolves_to_its_snapshot_without_a_socket(no_network, tmp_path: Path,
                                                                      monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    snap = _cached_snapshot(tmp_path / "hub", "org/name")
    src = models.resolve("hf:org/name")
    assert (src.kind, src.path, src.model_id) == ("hf_dir", snap, "org/name@" + "a" * 12)


def test_an_uncached_hub_model_offline_fails_at_once_with_a_local_path_hint(no_network, tmp_path: Path,
                                                                             monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError) as err:  # HF_HUB_OFFLINE=1 (tests/conftest.py): no probe either
        models.resolve("hf:org/name")
    assert "HF_HUB_OFFLINE" in str(err.value) and "--model DIR" in str(err.value) and "\n" not in str(err.value)


def test_an_unreachable_hub_fails_in_seconds(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    tried: list[tuple] = []

    def unreachable(address, timeout=None, *a, **k):
        tried.append((address, timeout))
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=r"hf:org/name: the hub \(huggingface.co\) is unreachable .* --model DIR"):
        models.resolve("hf:org/name")
    assert time.perf_counter() - t0 < 2 and tried == [(("huggingface.co", 443), hub.PROBE_SECONDS)]


def test_a_hanging_name_lookup_is_cut_at_the_probe_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: time.sleep(3))
    t0 = time.perf_counter()
    assert hub.reachable("https://hub.example:8443", seconds=0.2) is False
    assert time.perf_counter() - t0 < 1.5
