"""The real TRIBE v2 adapter against the test double (tests/brain/fake_tribev2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from breachlab.brain.encode import EncodeConfig, run_encode
from breachlab.brain.predictions import N_VERTICES, load_store

ESPEAK = shutil.which("espeak-ng")
need_espeak = pytest.mark.skipif(not ESPEAK, reason="espeak-ng not installed (apt-get install espeak-ng)")


@pytest.fixture
def ckpt(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "config.yaml").write_text("data: {TR: 1.0}\n")
    (d / "best.ckpt").write_bytes(b"fake")
    return d




def _cfg(ckpt, **kw):
    base = dict(backend="tribev2", checkpoint=str(ckpt), device="cpu", allow_cpu=True)
    return EncodeConfig(**(base | kw))


def test_upstream_rejects_japanese_in_both_places(fake_tribe):
    import neuralset.utils
    from tribev2.eventstransforms import ExtractWordsFromAudio

    with pytest.raises(ValueError, match="japanese not supported"):
        ExtractWordsFromAudio._get_transcript_from_audio(Path("x.wav"), "japanese")
    with pytest.raises(ValueError, match="not available"):
        neuralset.utils.get_spacy_model(language="japanese")


def test_japanese_text_events_go_through_upstream_transforms(fake_tribe):
    import neuralset.utils

    from breachlab.brain import words
    from breachlab.brain.tribe import build_text_events

    text = "緊急：アカウントが侵害されました。今すぐ本人確認を行ってください。"
    ws = words.even_words(text, "ja", 0.2, 4.0)
    ev = build_text_events(ws, "ja", audio=None, transcript=text)
    w = ev[ev.type == "Word"]
    assert len(w) == len(ws) and set(w.language) == {"japanese"}
    assert (w.context != "").all() and " " not in "".join(w.context)  # natural, unspaced Japanese
    assert w.context.iloc[-1].endswith(ws[-1].text) and w.context.iloc[-1].startswith("緊急")
    assert ev[ev.type == "Text"].text.tolist() == [text]
    with pytest.raises(ValueError):  # the patch is gone after the call
        neuralset.utils.get_spacy_model(language="japanese")


def test_screenshot_and_reading_paths_en_ja(fake_tribe, ckpt, render_run, tmp_path):
    out = run_encode(render_run, _cfg(ckpt, paths=["screenshot", "text"], text_mode="reading"),
                     out=tmp_path / "enc", progress=False)
    store = load_store(out)
    assert store.meta.model == str(ckpt) and not store.meta.synthetic
    assert len(store.entries) == 8
    for e in store:
        arr = store.array(e)
        assert arr.shape[1] == N_VERTICES and arr.dtype == np.float32
        if e.path == "screenshot":
            assert arr.shape[0] == 2  # 16 frames at 8 fps = 2 s = 2 TRs
    rec = json.loads((out / "manifest.json").read_text())["stimuli"]
    shot = rec["seed-phishing-ja-v0/screenshot"] if "seed-phishing-ja-v0/screenshot" in rec else next(
        v for k, v in rec.items() if k.endswith("/screenshot"))
    assert shot["event_types"] == ["Video"] and shot["video"].endswith((".avi", ".mp4"))
    ja = [e for e in store if e.language == "ja" and e.path == "text"]
    en = [e for e in store if e.language == "en" and e.path == "text"]
    assert ja and en and not np.allclose(store.array(ja[0])[0], store.array(en[0])[0])
    # EN and JA screenshots of one type differ (different pixels)
    shots = {(e.type, e.language): store.array(e) for e in store if e.path == "screenshot"}
    assert not np.allclose(shots[("phishing", "en")], shots[("phishing", "ja")])


@need_espeak
def test_speech_text_and_audio_paths_with_espeak(fake_tribe, ckpt, render_run, tmp_path):
    cfg = _cfg(ckpt, paths=["text", "audio"], tts="espeak-ng", aligner="even")
    out = run_encode(render_run, cfg, out=tmp_path / "enc", progress=False)
    store = load_store(out)
    assert len(store.entries) == 8
    rec = json.loads((out / "manifest.json").read_text())["stimuli"]
    for key, r in rec.items():
        assert r["tts"] == "espeak-ng" and r["voice"] in ("ja", "en-us")
        if key.endswith("/text"):
            assert r["event_types"] == ["Audio", "Sentence", "Text", "Word"] or "Word" in r["event_types"]
            assert r["n_words"] > 2
        else:
            assert r["event_types"] == ["Audio"]
    ja = next(e for e in store if e.language == "ja" and e.path == "text")
    assert store.array(ja).shape[0] >= 2
    # words-only variant: same timings, no Audio event
    out2 = run_encode(render_run, _cfg(ckpt, paths=["text"], tts="espeak-ng", aligner="even", text_mode="words"),
                      out=tmp_path / "enc2", progress=False)
    rec2 = json.loads((out2 / "manifest.json").read_text())["stimuli"]
    assert all("Audio" not in r["event_types"] for r in rec2.values())


def test_resume_skips_finished_stimuli(fake_tribe, ckpt, render_run, tmp_path, monkeypatch):
    from breachlab.brain import tribe

    cfg = _cfg(ckpt, paths=["screenshot"])
    calls = []
    real = tribe.TribeBackend.predict
    monkeypatch.setattr(tribe.TribeBackend, "predict", lambda self, ev: calls.append(1) or real(self, ev))

    def boom_after(n):
        def f(self, ev):
            if len(calls) >= n:
                raise KeyboardInterrupt
            calls.append(1)
            return real(self, ev)
        return f

    monkeypatch.setattr(tribe.TribeBackend, "predict", boom_after(2))
    with pytest.raises(KeyboardInterrupt):
        run_encode(render_run, cfg, out=tmp_path / "enc", progress=False)
    assert len(json.loads((tmp_path / "enc" / "predictions" / "index.json").read_text())["entries"]) == 2
    calls.clear()
    monkeypatch.setattr(tribe.TribeBackend, "predict", lambda self, ev: calls.append(1) or real(self, ev))
    run_encode(render_run, cfg, out=tmp_path / "enc", progress=False)
    assert len(calls) == 2 and len(load_store(tmp_path / "enc").entries) == 4


def test_subcortical_head_is_applied_and_stored_beside(fake_tribe, ckpt, render_run, tmp_path):
    head = tmp_path / "head.npz"
    rng = np.random.default_rng(0)
    np.savez(head, weight=rng.standard_normal((64, 10)).astype(np.float32), bias=np.zeros(10, np.float32),
             labels=np.array([f"v{i}" for i in range(10)]))
    out = run_encode(render_run, _cfg(ckpt, paths=["screenshot"], subcortical_head=str(head)),
                     out=tmp_path / "enc", progress=False)
    store = load_store(out)
    for e in store:
        sub = np.load(out / "predictions" / f"{e.stimulus_id}.screenshot.subcortical.npy")
        assert sub.shape == (e.n_tr, 10)
    assert store.meta.has_subcortical is True  # a supplied head predicts subcortex
    assert "user-supplied head" in store.meta.notes["subcortical"]["status"]


def test_clear_errors(fake_tribe, ckpt, render_run, tmp_path):
    from breachlab.brain.tribe import TribeUnavailable

    with pytest.raises(TribeUnavailable, match="pinned to CUDA"):
        run_encode(render_run, _cfg(ckpt, paths=["screenshot"], allow_cpu=False), out=tmp_path / "a", progress=False)
    with pytest.raises(TribeUnavailable, match="could not fetch the TRIBE v2 weights"):
        run_encode(render_run, _cfg(tmp_path / "nowhere", paths=["screenshot"]), out=tmp_path / "b", progress=False)
    (ckpt / "config.yaml").write_text("simulate: gated_llama\n")
    with pytest.raises(TribeUnavailable, match="gated model"):
        run_encode(render_run, _cfg(ckpt, paths=["text"], text_mode="reading"), out=tmp_path / "c", progress=False)


def test_exca_pin_and_missing_install(tmp_path, monkeypatch, fake_tribe):
    from breachlab.brain.tribe import install_problems

    assert install_problems() == []
    bad = tmp_path / "site"
    (bad / "exca-0.5.26.dist-info").mkdir(parents=True)
    (bad / "exca-0.5.26.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: exca\nVersion: 0.5.26\n")
    monkeypatch.syspath_prepend(str(bad))
    assert any("exca 0.5.26 breaks neuralset" in p for p in install_problems())


def test_without_tribev2_installed_the_error_says_how(render_run, tmp_path):
    from breachlab.brain.tribe import TribeUnavailable

    with pytest.raises(TribeUnavailable, match="tribev2 is not installed"):
        run_encode(render_run, EncodeConfig(paths=["screenshot"]), out=tmp_path / "x", progress=False)
