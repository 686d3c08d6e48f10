"""encode stage with the fake backend: store format, resume, still videos, words, TTS, CLI."""

from __future__ import annotations

import json
import shutil
import wave

import numpy as np
import pytest

from breachlab.brain import stillvideo, words
from breachlab.brain.encode import EncodeConfig, run_encode
from breachlab.brain.predictions import load_store
from breachlab.config import ConfigError
from breachlab.errors import UserError

ESPEAK = shutil.which("espeak-ng")
need_espeak = pytest.mark.skipif(not ESPEAK, reason="espeak-ng not installed (apt-get install espeak-ng)")




def test_fake_encode_writes_a_valid_store_and_resumes(render_run, tmp_path):
    cfg = EncodeConfig(backend="fake", paths=["text", "screenshot"], text_mode="reading")
    out = run_encode(render_run, cfg, out=tmp_path / "enc", progress=False)
    store = load_store(out)
    assert store.meta.synthetic and "SYNTHETIC" in store.meta.model
    assert len(store.entries) == 8 and {e.path for e in store} == {"text", "screenshot"}
    assert {e.language for e in store} == {"en", "ja"}
    assert store.meta.has_subcortical is False and "not predicted" in store.meta.notes["subcortical"]
    man = json.loads((out / "manifest.json").read_text())
    rec = man["stimuli"]
    assert len(rec) == 8 and all("seconds" in r and "gpu_peak_mib" in r for r in rec.values())
    shot = next(v for k, v in rec.items() if k.endswith("/screenshot"))
    assert shot["n_frames"] == 16 and shot["fps"] == 8.0 and shot["duration_s"] == 2.0
    first = {e.key: store.array(e).copy() for e in store}
    # resume: delete one prediction from the index, run again: only that one is made
    idx = out / "predictions" / "index.json"
    data = json.loads(idx.read_text())
    dropped = data["entries"].pop(0)
    idx.write_text(json.dumps(data))
    run_encode(render_run, cfg, out=out, progress=False)
    summary = json.loads((out / "encode_summary.json").read_text())
    assert summary["made_now"] == 1 and summary["skipped_as_done"] == 7
    again = load_store(out)
    key = (dropped["stimulus_id"], dropped["path"])
    np.testing.assert_array_equal(again.arrays[key], first[key])  # deterministic
    assert json.loads((out / "manifest.json").read_text())["resumed"] is True


def test_resume_refuses_a_changed_config(render_run, tmp_path):
    cfg = EncodeConfig(backend="fake", paths=["screenshot"])
    out = run_encode(render_run, cfg, out=tmp_path / "enc", progress=False)
    with pytest.raises(UserError, match="n_frames was 16, now 8"):
        run_encode(render_run, EncodeConfig(backend="fake", paths=["screenshot"], n_frames=8), out=out, progress=False)


def test_config_validation():
    with pytest.raises(ConfigError):
        EncodeConfig(paths=["image"])
    with pytest.raises(ConfigError):
        EncodeConfig(text_mode="subtitles")
    with pytest.raises(ConfigError):
        EncodeConfig(backend="tribe")


def test_still_video_avi_has_n_frames_at_fps(render_run, tmp_path):
    png = next((render_run / "screenshots").glob("*.png"))
    avi = stillvideo.write_still_video(png, tmp_path / "v", n_frames=16, fps=8.0, prefer="avi")
    info = stillvideo.avi_info(avi)
    assert (info["n_frames"], info["fps"], info["duration_s"]) == (16, 8.0, 2.0)
    assert info["width"] % 2 == 0 and info["height"] % 2 == 0
    assert avi.read_bytes().count(b"00dc") >= 16


def test_japanese_segmentation_and_sentences():
    toks = words.tokenize("緊急：アカウントが侵害されました。今すぐ確認してください！", "ja")
    assert "緊急" in toks and "アカウント" in toks and "：" not in toks and "。" not in toks
    doc = words.make_nlp("ja")("緊急です。確認して！")
    sents = list(doc.sents)
    assert len(sents) == 2 and all(doc.text[t.idx: t.idx + len(t)] == t.text for s in sents for t in s)


def test_whisperx_json_japanese_characters_become_words():
    chars = "アカウントが侵害されました。"
    tr = {"segments": [{"text": chars, "words": [{"word": ch, "start": 0.1 * i, "end": 0.1 * i + 0.1}
                                                   for i, ch in enumerate(chars) if ch != "。"] + [{"word": "。"}]}]}
    ws, text = words.words_from_whisperx_json(tr, "ja")
    assert text == chars and ws[0].text == "アカウント"
    assert ws[0].start == 0.0 and abs(ws[0].duration - 0.5) < 1e-9
    en = {"segments": [{"text": " Your package", "words": [{"word": "Your", "start": 0.5, "end": 0.8},
                                                          {"word": "package", "start": 0.8, "end": 1.3}]}]}
    ws, text = words.words_from_whisperx_json(en, "en")
    assert [w.text for w in ws] == ["Your", "package"] and text == "Your package"


def test_whisperx_is_called_with_the_corpus_language(tmp_path, monkeypatch):
    """A stand-in `whisperx` executable records its argv: `--language ja`, no English aligner."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "whisperx"
    exe.write_text("#!/usr/bin/env python3\nimport json,sys,pathlib\na=sys.argv\n"
                   "pathlib.Path(a[a.index('--output_dir')+1],pathlib.Path(a[1]).stem+'.json').write_text(json.dumps("
                   "{'segments':[{'text':'確認','words':[{'word':'確','start':0.2,'end':0.4},{'word':'認','start':0.4,'end':0.6}]}]}))\n"
                   f"open({str(tmp_path / 'argv.json')!r},'w').write(json.dumps(a))\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"")
    with pytest.raises(UserError, match="--allow-network"):
        words.whisperx_words(audio, "ja")  # offline by default: the stand-in is never run
    assert not (tmp_path / "argv.json").exists()
    ws, text = words.whisperx_words(audio, "ja", allow_network=True)
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[argv.index("--language") + 1] == "ja" and "--align_model" not in argv
    assert [w.text for w in ws] == ["確認"] and text == "確認"


@need_espeak
def test_espeak_tts_japanese_and_english(tmp_path):
    from breachlab.brain.tts import get_engine

    eng = get_engine("espeak-ng")
    ja = eng.synthesize("緊急：アカウントが侵害されました。", "ja", tmp_path)
    en = eng.synthesize("Your package has been shipped.", "en", tmp_path)
    assert ja.voice == "ja" and en.voice == "en-us" and ja.duration_s > 0.5 and en.duration_s > 0.5
    again = eng.synthesize("Your package has been shipped.", "en", tmp_path)
    assert again.path == en.path  # cached
    start, end = words.speech_bounds(en.path)
    assert 0 <= start < end <= en.duration_s + 1e-6
    with wave.open(str(en.path)) as w:
        assert w.getnframes() > 0


def test_cli_encode_fake_and_doctor(render_run, tmp_path):
    import typer
    from typer.testing import CliRunner

    from breachlab.brain.encode_cli import doctor, encode

    app = typer.Typer()
    app.command("encode")(encode)
    app.command("doctor")(doctor)
    r = CliRunner().invoke(app, ["encode", str(render_run), "--backend", "fake", "--paths", "screenshot",
                                 "--frames", "4", "--out", str(tmp_path / "e"), "--no-progress"])
    assert r.exit_code == 0, r.output
    store = load_store(tmp_path / "e")
    assert len(store.entries) == 4 and all(e.n_tr == 1 for e in store)  # 4 frames at 8 fps = 0.5 s
    d = CliRunner().invoke(app, ["doctor"])
    assert d.exit_code in (0, 1) and "tribev2" in d.output and "GPU" in d.output
