"""Offline by construction: ``brain encode``'s default paths open no socket and run no network helper.

The machine here has ``uvx`` and ``espeak-ng`` stand-ins on PATH and a stand-in ``gtts``
module, so a default that still reached for gTTS or ``uvx whisperx`` would be seen: sockets
are blocked (any attempt is recorded and fails the test) and ``subprocess.run`` records every
command instead of running it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import types
import wave

import numpy as np
import pytest

from breachlab.brain import tts
from breachlab.brain.encode import EncodeConfig, resolve_aligner, run_encode
from breachlab.config import ConfigError


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Blocked sockets, recorded subprocesses, stand-in espeak-ng/uvx binaries and gtts module."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("espeak-ng", "uvx", "whisperx"):
        exe = bin_dir / name
        exe.write_text("#!/bin/sh\nexit 3\n")  # never meant to run: subprocess.run is recorded below
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    calls: list[list[str]] = []

    def record(cmd, *args, **kwargs):
        cmd = [str(c) for c in cmd]
        calls.append(cmd)
        if cmd[0].endswith("espeak-ng") and "-w" in cmd:  # behave like espeak-ng: write a short WAV
            with wave.open(cmd[cmd.index("-w") + 1], "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(16000)
                t = np.arange(16000) / 16000
                w.writeframes((8000 * np.sin(2 * np.pi * 220 * t) * (t > 0.2)).astype(np.int16).tobytes())
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return subprocess.CompletedProcess(cmd, 1, "", "not run in this test")

    monkeypatch.setattr(subprocess, "run", record)
    gtts_used: list[str] = []
    fake_gtts = types.ModuleType("gtts")
    fake_gtts.gTTS = lambda text, lang: gtts_used.append(text) or (_ for _ in ()).throw(OSError("no network"))
    monkeypatch.setitem(sys.modules, "gtts", fake_gtts)
    return types.SimpleNamespace(attempts=attempts, calls=calls, gtts=gtts_used)


def test_fake_backend_default_speech_path_runs_no_network_helper(offline, render_run, tmp_path):
    out = run_encode(render_run, EncodeConfig(backend="fake", paths=["text", "audio"]), out=tmp_path / "e",
                     progress=False)
    assert offline.attempts == [] and offline.gtts == []
    helpers = [c for c in offline.calls if c[0] != "git"]  # the run directory asks git for the commit (local)
    assert helpers and all(c[0].endswith("espeak-ng") for c in helpers), helpers
    assert not any("uvx" in " ".join(c) or "whisperx" in " ".join(c) for c in offline.calls)
    import json

    rec = json.loads((out / "manifest.json").read_text())["stimuli"]
    assert {r["tts"] for r in rec.values()} == {"espeak-ng"}
    assert {r["aligner"] for r in rec.values() if "aligner" in r} == {"even"}


def test_defaults_stay_offline_even_with_uvx_and_gtts_installed(offline):
    cfg = EncodeConfig()  # the tribev2 defaults
    assert cfg.tts == "espeak-ng" and cfg.allow_network is False
    assert resolve_aligner(cfg) == "even"
    assert isinstance(tts.get_engine("auto"), tts.EspeakEngine)
    assert tts.GTTSEngine().available() is not None  # refuses without allow_network
    with pytest.raises(tts.TTSUnavailable, match="--allow-network"):
        tts.get_engine("gtts").synthesize("hello", "en", "/nonexistent")
    assert offline.gtts == [] and not any(c[0] != "git" for c in offline.calls)
    # --allow-network is what unlocks them (for the real backend only)
    assert resolve_aligner(EncodeConfig(allow_network=True)) == "whisperx"
    assert resolve_aligner(EncodeConfig(backend="fake", allow_network=True)) == "even"


@pytest.mark.parametrize("kwargs,match", [
    ({"tts": "gtts"}, "--allow-network"),
    ({"aligner": "whisperx"}, "--allow-network"),
    ({"backend": "fake", "tts": "gtts", "allow_network": True}, "fake runs no network helper"),
])
def test_network_helpers_need_the_flag(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        EncodeConfig(**kwargs)
    EncodeConfig(**{**kwargs, "allow_network": True}) if kwargs.get("backend") != "fake" else None


def test_cli_refuses_gtts_without_the_flag_in_one_line(render_run, tmp_path, monkeypatch, capsys):
    from breachlab.cli import app
    from breachlab.errors import run_cli

    monkeypatch.setattr("sys.argv", ["breachlab", "brain", "encode", str(render_run), "--backend", "fake",
                                     "--tts", "gtts", "--out", str(tmp_path / "e")])
    assert run_cli(app) == 2
    err = capsys.readouterr().err
    assert "network" in err and "Traceback" not in err


def test_missing_espeak_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tts.TTSUnavailable) as exc:
        tts.EspeakEngine().synthesize("hello", "en", tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and "apt-get install espeak-ng" in msg


def test_every_brain_stage_runs_with_sockets_blocked(offline, tmp_path, monkeypatch, need_data):
    """corpus → render → synth → encode (fake, speech) → analyze: no connection attempt anywhere."""
    from breachlab.brain.corpus import dump_corpus, filter_corpus, seed_corpus
    from breachlab.cli import app
    from breachlab.errors import run_cli

    def cli(*args):
        monkeypatch.setattr("sys.argv", ["breachlab", *map(str, args)])
        return run_cli(app)

    small = tmp_path / "small.yaml"
    dump_corpus(filter_corpus(seed_corpus(), types=["legitimate", "phishing"], max_variant=1), small)
    assert cli("brain", "corpus", "seed", "--out", tmp_path / "seed.yaml") == 0
    assert cli("brain", "render", small, "--out", tmp_path / "r", "--set", "scale=0.5") == 0
    assert cli("brain", "synth", tmp_path / "r", "--out", tmp_path / "s") == 0
    assert cli("brain", "encode", tmp_path / "r", "--backend", "fake", "--paths", "text,screenshot",
               "--out", tmp_path / "e", "--no-progress") == 0
    assert cli("brain", "analyze", tmp_path / "e", "--out", tmp_path / "a", "--set", "figures=minimal",
               "--set", "n_spin=10", "--set", "n_boot=100", "--set", "n_perm=100") == 0
    assert offline.attempts == [] and offline.gtts == []
    assert not any("uvx" in " ".join(c) or "whisperx" in " ".join(c) for c in offline.calls)
