import hashlib
import json

import pytest

from breachlab.brain import textlayout as tl
from breachlab.brain.corpus import Message, seed_corpus
from breachlab.brain.grid import corpus_grid
from breachlab.brain.render import RenderOptions, png_bytes, render_message, write_still_video


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
    assert all(tl.text_width(line, 16) <= 200 for line in lines)


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


# -- screenshots a reader would accept (issue 17) ------------------------------------------
def _ink_bbox(img, bg=(255, 255, 255)):
    import numpy as np

    a = np.asarray(img).astype(int)
    ys, xs = np.nonzero(np.abs(a - np.array(bg)).max(axis=2) > 0)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_bold_japanese_is_a_real_face_never_a_stroke():
    """Bold ink stays inside the glyphs' own box (a stroke would spill past it and smear kanji)."""
    from PIL import Image, ImageDraw

    label, size, at = "投資クラブ", 40, (20, 20)
    img = Image.new("RGB", (400, 100), (255, 255, 255))
    tl.draw_text(ImageDraw.Draw(img), at, label, size, (0, 0, 0), bold=True)
    idx = tl.font_for(label[0], bold=True)
    x0, y0, x1, y1 = tl.get_font(idx, size, True).getbbox(label)
    ix0, iy0, ix1, iy1 = _ink_bbox(img)
    assert ix0 >= at[0] + x0 and iy0 >= at[1] + y0 and ix1 <= at[0] + x1 and iy1 <= at[1] + y1  # a 1 px stroke fails
    regular = Image.new("RGB", (400, 100), (255, 255, 255))
    tl.draw_text(ImageDraw.Draw(regular), at, label, size, (0, 0, 0))
    if tl.has_bold_cjk_font():  # a real bold face: heavier than regular, from a Bold font file
        assert "Bold" in tl.font_paths(True)[idx].name and img.tobytes() != regular.tobytes()
    else:  # no bold face for Japanese: regular weight, pixel for pixel
        assert img.tobytes() == regular.tobytes()


def test_en_and_ja_versions_show_the_same_clock():
    from breachlab.brain.render import _clock

    c = seed_corpus()
    by = c.by_id()
    pairs = [(m, by[m.id.replace("-en-", "-ja-")]) for m in c if m.language == "en"]
    assert pairs and all(_clock(en) == _clock(ja) for en, ja in pairs)
    assert len({_clock(en) for en, _ in pairs}) > 1  # still varies between messages
    en, ja = pairs[0]
    status = (0, 0, 120, 26)  # the clock in the status bar, drawn identically for both languages
    a = render_message(en, RenderOptions(presentation="whatsapp")).crop(status)
    b = render_message(ja, RenderOptions(presentation="whatsapp")).crop(status)
    assert a.tobytes() == b.tobytes()


def _longest_empty_run(img) -> float:
    """Longest run of rows of one colour (the empty screen), as a fraction of the height."""
    import numpy as np

    a = np.asarray(img).astype(int)
    uniform = np.abs(a - a[:, :1, :]).max(axis=(1, 2)) <= 2
    best = run = 0
    for u in uniform:
        run = run + 1 if u else 0
        best = max(best, run)
    return best / len(uniform)


@pytest.mark.parametrize("pres", ["whatsapp", "sms", "social_post", "email", "plain"])
def test_screens_are_not_mostly_empty(pres):
    msgs = [m for m in seed_corpus() if m.variant == 0]
    for fidelity in ("basic", "high"):
        for m in msgs:
            img = render_message(m, RenderOptions(presentation=pres, fidelity=fidelity))
            assert img.width == 540 and img.height <= 960
            assert _longest_empty_run(img) < 0.4, (m.id, fidelity, _longest_empty_run(img))
    fixed = render_message(msgs[0], RenderOptions(presentation=pres, fit=False))
    assert fixed.size == (540, 960)  # the old fixed canvas is still there when asked for


def test_long_social_post_keeps_its_like_bar_on_screen():
    from breachlab.brain.render import GREY, render_layout

    base = seed_corpus().by_id()["investment-ja-v0"]
    long = Message(id="long", type="investment", language="ja", text=base.text * 30,
                   presentation="social_post", sender="投資クラブ")
    for fidelity in ("basic", "high"):
        img, bottom = render_layout(long, RenderOptions(fidelity=fidelity))
        assert img.height <= 960 and bottom <= img.height
        bar = img.crop((0, img.height - 50, img.width, img.height))  # like / comment / share labels
        assert any(abs(r - GREY[0]) < 30 and abs(g - GREY[1]) < 30 and abs(b - GREY[2]) < 30
                   for r, g, b in bar.getdata())
    lines = tl.clip_lines(tl.wrap(long.text, 16, 508), 5, 16, 508)
    assert len(lines) == 5 and lines[-1].endswith("…") and tl.text_width(lines[-1], 16) <= 508


def test_no_japanese_line_starts_with_closing_punctuation():
    texts = [m.text for m in seed_corpus() if m.language == "ja"]
    for text in texts:
        for size, width in [(16, w) for w in range(140, 560, 45)] + [(32, 60), (32, 67)]:
            lines = tl.wrap(text, size, width)
            assert "".join(lines).replace(" ", "") == text.replace(" ", ""), (size, width)  # nothing lost
            for line in lines[1:]:
                assert line[0] not in tl.NO_LINE_START, (size, width, lines)
