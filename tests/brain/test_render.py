import hashlib
import json

import pytest

from breachlab.brain import textlayout as tl
from breachlab.brain.corpus import Message, seed_corpus
from breachlab.brain.render import RenderOptions, corpus_grid, png_bytes, render_message, write_still_video


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.mark.parametrize("pres", ["whatsapp", "sms", "social_post", "email", "plain"])
@pytest.mark.parametrize("fidelity", ["basic", "high"])
def test_byte_identical_png(pres, fidelity):
    msg = seed_corpus().by_id()["phishing-ja-v0"]
    opts = RenderOptions(fidelity=fidelity, presentation=pres)
    a, b = png_bytes(render_message(msg, opts)), png_bytes(render_message(msg, opts))
    assert a == b and a[:8] == b"\x89PNG\r\n\x1a\n"


def test_different_text_different_png_and_en_ja_differ():
    by = seed_corpus().by_id()
    imgs = {k: _sha(png_bytes(render_message(by[k]))) for k in ("phishing-en-v0", "phishing-ja-v0", "phishing-en-v1")}
    assert len(set(imgs.values())) == 3


def test_japanese_uses_cjk_font_and_wraps_within_width():
    assert tl.has_cjk_font(), "noto-cjk-sans-jp-regular should be installed with the brain extra"
    text = seed_corpus().by_id()["pyramid-ja-v0"].text
    lines = tl.wrap(text, 16, 300)
    assert len(lines) >= 3 and "".join(lines) == text.replace(" ", "")
    for line in lines:
        assert tl.text_width(line, 16) <= 300 + 16  # a hanging closing mark may exceed by one glyph
    for line in lines[1:]:
        assert line[0] not in tl.NO_LINE_START  # kinsoku: no line starts with 、。」 etc.
    assert all(tl.font_for(ch) == 0 for ch in "緊急アカウント")


def test_latin_wraps_at_spaces_and_splits_long_words():
    lines = tl.wrap("hello world " + "x" * 80, 16, 200)
    assert lines[0] == "hello world"
    assert all(tl.text_width(l, 16) <= 200 for l in lines)


def test_emoji_fallback_is_a_placeholder_not_a_crash():
    assert tl.font_for("🚀") == -1
    msg = Message(id="e1", type="phishing", language="en", text="Act now 🚀🔥 👍🏽 ❤️ !", presentation="whatsapp")
    a = png_bytes(render_message(msg))
    assert a == png_bytes(render_message(msg))


def test_still_video_manifest(tmp_path):
    msg = seed_corpus().by_id()["legitimate-en-v0"]
    png = tmp_path / "s.png"
    png.write_bytes(png_bytes(render_message(msg)))
    man = json.loads(write_still_video(png, tmp_path / "video", "s", n_frames=16, fps=8).read_text())
    assert man["n_frames"] == 16 and len(man["frames"]) == 16 and man["duration_s"] == 2.0
    man2 = json.loads(write_still_video(png, tmp_path / "v2", "s", n_frames=4, fps=2, materialize=True).read_text())
    files = sorted((tmp_path / "v2" / "s").iterdir())
    assert len(files) == 4 and all(f.read_bytes() == png.read_bytes() for f in files) and man2["materialized"]


def test_grid_has_one_row_per_type_language():
    c = seed_corpus()
    imgs = {m.id: render_message(m, RenderOptions(width=270, height=480)) for m in c if m.variant < 2}
    g = corpus_grid(imgs, c, thumb_width=60, title="SYNTHETIC test")
    assert g.height > 10 * 100 and g.width > 2 * 60
