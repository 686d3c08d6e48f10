"""What the real upstream showed and the old test double hid (issue 31), against the fast double.

Each test fails with the wrapper as it was: the subcortical head read the segments' events after
``predict`` returned (upstream's event store is gone then), its input rows were the extractors'
2 Hz rows, not TRs; every ``predict`` reloaded the extractors; and with ``--aligner even`` English
reached the model re-punctuated and lower-cased while Japanese kept its text.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from breachlab.brain.encode import EncodeConfig, run_encode
from breachlab.brain.predictions import load_store


@pytest.fixture
def ckpt(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "config.yaml").write_text("data: {TR: 1.0, duration_trs: 4, batch_size: 2}\n")
    (d / "best.ckpt").write_bytes(b"fake")
    return d


@pytest.fixture
def tone_tts(monkeypatch):
    """Speech without espeak-ng: the stand-in tone engine."""
    from breachlab.brain import tts
    from tests.brain.contract.standin_tts import ToneEngine

    monkeypatch.setattr(tts, "get_engine", lambda name, **kw: ToneEngine())


def _cfg(ckpt, **kw):
    return EncodeConfig(**({"backend": "tribev2", "checkpoint": str(ckpt), "device": "cpu", "allow_cpu": True} | kw))


def _predictor_head(tmp_path):
    """A 'subcortical' head equal to the double's cortical predictor: its output must equal the cortex, TR for TR."""
    from tribev2.demo_utils import _brain

    w = _brain(4).predictor.weights.detach().numpy()[0]  # (64, 20484)
    head = tmp_path / "head.npz"
    np.savez(head, weight=w, bias=np.zeros(w.shape[1], np.float32))
    return head


def test_subcortical_head_rows_are_the_cortical_trs(fake_tribe, ckpt, render_run, tmp_path):
    head = _predictor_head(tmp_path)
    out = run_encode(render_run, _cfg(ckpt, paths=["screenshot"], subcortical_head=str(head)),
                     out=tmp_path / "enc", progress=False)
    store = load_store(out)
    rec = json.loads((out / "manifest.json").read_text())["stimuli"]
    for e in store:
        cortex = store.array(e)
        sub = np.load(out / "predictions" / f"{e.stimulus_id}.screenshot.subcortical.npy")
        assert sub.shape == cortex.shape == (2, 20484)  # 16 frames at 8 fps: 2 TRs kept of the 4-TR segment
        np.testing.assert_allclose(sub, cortex, rtol=1e-4, atol=1e-5)
        assert rec[f"{e.stimulus_id}/screenshot"]["n_empty_removed"] == 2  # read inside predict's loop


def test_subcortical_head_on_the_text_path(fake_tribe, ckpt, render_run, tmp_path):
    head = _predictor_head(tmp_path)
    out = run_encode(render_run, _cfg(ckpt, paths=["text"], text_mode="reading", subcortical_head=str(head)),
                     out=tmp_path / "enc", progress=False)
    store = load_store(out)
    for e in store:
        sub = np.load(out / "predictions" / f"{e.stimulus_id}.text.subcortical.npy")
        np.testing.assert_allclose(sub, store.array(e), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("keep, loads", [(True, 1), (False, 4)])
def test_extractors_load_once_per_corpus(fake_tribe, ckpt, render_run, tmp_path, keep, loads):
    from tribev2 import main

    run_encode(render_run, _cfg(ckpt, paths=["screenshot"], keep_extractors=keep), out=tmp_path / "enc", progress=False)
    assert main.LOADS == {"video": loads}  # 4 stimuli
    assert main._free_extractor_model.__name__ == "_free_extractor_model"  # upstream's function is back


def test_even_aligner_english_and_japanese_reach_the_model_alike(fake_tribe, ckpt, render_run, tmp_path, tone_tts):
    from breachlab.brain.corpus import load_corpus
    from breachlab.brain.encode import load_stimuli, prepare_events
    from breachlab.brain.tribe import TribeBackend, TribeOptions

    backend = TribeBackend(TribeOptions(checkpoint=str(ckpt), device="cpu", allow_cpu=True))
    cfg = _cfg(ckpt, paths=["text"], aligner="even")
    _, stimuli, _ = load_stimuli(render_run, tmp_path)
    seen = set()
    for stim in stimuli:
        events, info = prepare_events(backend, stim, "text", cfg, tmp_path / "work")
        assert info["aligner"] == "even"
        text = events[events.type == "Text"].text.tolist()
        assert text == [" ".join(stim.message.text.split())], stim.message.id  # punctuation and casing kept
        last = "".join(events[events.type == "Word"].context.iloc[-1].split())
        whole = "".join(text[0].split())  # upstream joins sentences without a space
        assert whole.startswith(last) and len(last) > 0.8 * len(whole)  # contexts are cut from it, as written
        seen.add(stim.message.language)
    assert seen == {"en", "ja"} and len(load_corpus(render_run)) == len(stimuli)


def test_whisperx_english_still_goes_through_upstream_addtext(fake_tribe):
    from breachlab.brain.tribe import build_text_events
    from breachlab.brain.words import Word

    ws = [Word("URGENT:", 0.1, 0.4), Word("Verify", 0.6, 0.4), Word("now.", 1.1, 0.3)]
    ev = build_text_events(ws, "en", audio=None, transcript="URGENT: Verify now.")
    assert ev[ev.type == "Text"].text.tolist() != ["URGENT: Verify now."]  # upstream's AddText re-punctuates


def test_whisperx_defaults_are_upstreams(monkeypatch):
    from breachlab.brain import words

    monkeypatch.setattr(words.shutil, "which", lambda name: None)  # → uvx whisperx, as upstream
    cmd = words.whisperx_command(Path("a.wav"), "en", Path("out"), device="cuda")
    opt = {cmd[i]: cmd[i + 1] for i in range(3, len(cmd) - 1, 2)}
    assert cmd[:3] == ["uvx", "whisperx", "a.wav"]
    assert opt == {"--model": "large-v3", "--language": "en", "--device": "cuda", "--compute_type": "float16",
                   "--batch_size": "16", "--output_dir": "out", "--output_format": "json",
                   "--align_model": "WAV2VEC2_ASR_LARGE_LV60K_960H"}
    cpu = words.whisperx_command(Path("a.wav"), "ja", Path("out"), device="cpu")
    assert "int8" in cpu and "--align_model" not in cpu  # CTranslate2 has no float16 on the CPU
    assert EncodeConfig().whisper_model == "large-v3"
