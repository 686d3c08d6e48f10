"""Phone-realistic screenshots of corpus messages: ``breachlab brain render CORPUS --out DIR``.

Three frames (WhatsApp-style chat, SMS lock-screen notification, social-media post) plus
plain and e-mail fallbacks, drawn with Pillow only.  Everything that varies (clock, avatar
colour, reaction counts) is derived from the message id or sender, never from the clock or a
random state, so the same message and options give a byte-identical PNG on every run.
``fidelity="high"`` adds the details post 4 asked for next: sender avatar, timestamps, read
receipts, earlier messages in the thread, input bar, reaction counts.  The English and
Japanese versions of one message (same type and variant) show the same clock and counts.
The screen's height fits its content (``fit``; ``height`` is the maximum), so screenshots of
short messages are not two-thirds empty; the height then varies with the text, as the text
itself does (set ``fit_height: false`` in the render config for one fixed canvas).

Video for a video encoder (TRIBE v2 has no image entry point; post 3 repeated the still 16
times): we write a *still-video manifest* ``video/<id>.json`` — frame file, sha256, n_frames,
fps, duration — and optionally the N frame files themselves.  Why not MP4: writing H.264
needs an ffmpeg build (PyAV / imageio-ffmpeg wheels), which is an extra binary dependency
for a lossless, trivially reconstructible input; the encoder stage (next issue) turns the
manifest into whatever its video reader wants on the GPU machine, and the frames stay
lossless and byte-reproducible here.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from breachlab.brain import textlayout as tl
from breachlab.brain.corpus import Message

WA_GREEN = (7, 94, 84)
WA_BG = (236, 229, 221)
WA_OUT = (220, 248, 198)
INK = (17, 27, 33)
GREY = (102, 119, 129)
TICK_BLUE = (83, 189, 235)

_UI = {
    "en": {"online": "online", "today": "TODAY", "message": "Message", "messages": "MESSAGES", "now": "now",
           "sponsored": "Sponsored", "like": "Like", "comment": "Comment", "share": "Share",
           "learn": "Learn more", "hello": "Hello 👋", "who": "Hi, who is this?", "earlier": "Earlier message",
           "date": "Tuesday, 10 June", "feed": "Feed", "from": "From", "subject": "Subject", "notice": "Notice",
           "slide": "swipe up to open", "hours": "2h"},
    "ja": {"online": "オンライン", "today": "今日", "message": "メッセージ", "messages": "メッセージ", "now": "今",
           "sponsored": "広告", "like": "いいね！", "comment": "コメント", "share": "シェア",
           "learn": "詳しくはこちら", "hello": "こんにちは👋", "who": "こんにちは、どちら様ですか？",
           "earlier": "以前のメッセージ", "date": "6月10日 火曜日", "feed": "フィード", "from": "差出人",
           "subject": "件名", "notice": "お知らせ", "slide": "上にスワイプして開く", "hours": "2時間"},
}


@dataclass(frozen=True)
class RenderOptions:
    """How a screenshot looks; part of the render config and of every manifest."""

    width: int = 540
    height: int = 960
    scale: float = 1.0
    fidelity: str = "basic"  # basic | high
    presentation: str | None = None  # override every message's presentation
    fit: bool = True  # crop the screen's height to its content (``height`` is then the maximum)
    canvas_height: int | None = None  # points actually drawn (set by the fit); None = height

    @property
    def canvas_h(self) -> float:
        """Pixel height of the canvas: bottom-anchored elements sit relative to it."""
        return (self.canvas_height or self.height) * self.scale

    @property
    def max_h(self) -> float:
        """Pixel height of the full screen: text is clipped against it, so a fit never clips more."""
        return self.height * self.scale

    def px(self, v: float) -> int:
        return int(round(v * self.scale))


def _h(s: str) -> int:
    return int.from_bytes(hashlib.sha256(s.encode("utf-8")).digest()[:4], "big")


def pair_key(msg: Message) -> str:
    """What the EN and JA versions of one message share (type and variant), so both show the same
    clock and reaction counts: the languages then differ only in their words."""
    return f"{msg.type}|{msg.variant}"


def _clock(msg: Message) -> str:
    n = _h(pair_key(msg))
    return f"{9 + n % 9}:{(n // 9) % 60:02d}"


def _avatar_color(name: str) -> tuple[int, int, int]:
    palette = [(0, 150, 136), (63, 81, 181), (233, 30, 99), (255, 152, 0), (121, 85, 72), (96, 125, 139),
               (156, 39, 176)]
    return palette[_h(name) % len(palette)]


def _initials(name: str) -> str:
    parts = [p for p in name.replace("+", " ").split() if p[:1].isalpha()]
    return ("".join(p[0] for p in parts[:2]) or "?").upper()


def _avatar(draw, cx: float, cy: float, r: float, name: str) -> None:
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_avatar_color(name or "?"))
    ini = _initials(name)
    size = int(r * 0.9)
    w = tl.text_width(ini, size)
    tl.draw_text(draw, (cx - w / 2, cy - size * 0.68), ini, size, (255, 255, 255))


def _status_bar(draw, o: RenderOptions, bg, fg, clock: str) -> int:
    h = o.px(26)
    draw.rectangle([0, 0, o.width * o.scale, h], fill=bg)
    tl.draw_text(draw, (o.px(14), o.px(3)), clock, o.px(14), fg)
    if o.fidelity == "high":  # signal bars + battery
        x = o.width * o.scale - o.px(70)
        for i in range(4):
            draw.rectangle([x + o.px(5 * i), o.px(17 - 3 * i), x + o.px(5 * i + 3), o.px(20)], fill=fg)
    bx = o.width * o.scale - o.px(40)
    draw.rectangle([bx, o.px(8), bx + o.px(24), o.px(19)], outline=fg, width=max(1, o.px(1.5)))
    draw.rectangle([bx + o.px(2), o.px(10), bx + o.px(18), o.px(17)], fill=fg)
    return h


def _bubble(draw, o: RenderOptions, text: str, y: float, *, outgoing: bool, time: str, lang: str,
            tail: bool = True, bottom: float | None = None) -> float:
    """A chat bubble; returns the y below it.  Text that would pass ``bottom`` ends in an ellipsis."""
    size = o.px(16)
    W = o.width * o.scale
    max_w = W * 0.72
    lines = tl.wrap(text, size, max_w - o.px(24))
    line_h = size * 1.38
    if bottom is not None:
        room = bottom - y - o.px(14) - line_h * 0.8 - o.px(11) * 0.6 - o.px(10)
        lines = tl.clip_lines(lines, int(room // line_h), size, max_w - o.px(24))
    meta_size = o.px(11)
    meta = time + ("  ✓✓" if outgoing else "")
    meta_w = tl.text_width(meta, meta_size) + o.px(8)
    text_w = max(tl.text_width(line, size) for line in lines)
    last_w = tl.text_width(lines[-1], size)
    bw = min(max_w, max(text_w, last_w + meta_w) + o.px(22))
    extra = 0 if last_w + meta_w + o.px(22) <= bw else line_h * 0.8
    bh = len(lines) * line_h + o.px(14) + extra + meta_size * 0.6
    x0 = W - bw - o.px(12) if outgoing else o.px(12)
    fill = WA_OUT if outgoing else (255, 255, 255)
    draw.rounded_rectangle([x0, y, x0 + bw, y + bh], radius=o.px(9), fill=fill)
    if tail:
        if outgoing:
            draw.polygon([(x0 + bw - o.px(4), y), (x0 + bw + o.px(9), y), (x0 + bw - o.px(4), y + o.px(12))], fill=fill)
        else:
            draw.polygon([(x0 + o.px(4), y), (x0 - o.px(9), y), (x0 + o.px(4), y + o.px(12))], fill=fill)
    ty = y + o.px(7)
    for line in lines:
        tl.draw_text(draw, (x0 + o.px(11), ty), line, size, INK)
        ty += line_h
    mx = x0 + bw - meta_w
    my = y + bh - meta_size * 1.5
    tl.draw_text(draw, (mx, my), time, meta_size, GREY)
    if outgoing:
        tx = mx + tl.text_width(time + "  ", meta_size)
        for dx in (0, o.px(4)):  # read receipts, drawn as two ticks
            draw.line([(tx + dx, my + meta_size * 0.6), (tx + dx + o.px(3), my + meta_size * 0.95),
                       (tx + dx + o.px(9), my + meta_size * 0.2)], fill=TICK_BLUE, width=max(1, o.px(1.5)))
    return y + bh + o.px(10)


def _whatsapp(img, draw, msg: Message, o: RenderOptions) -> float:
    ui = _UI[msg.language]
    W, H = o.width * o.scale, o.canvas_h
    draw.rectangle([0, 0, W, H], fill=WA_BG)
    if o.fidelity == "high":  # faint wallpaper doodles, positions from a hash (deterministic)
        for k in range(60):
            n = _h(f"wall{k}")
            cx, cy, r = n % int(W), (n // 977) % int(H), o.px(3 + n % 5)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(224, 216, 206), width=max(1, o.px(1)))
    top = _status_bar(draw, o, (5, 77, 68), (255, 255, 255), _clock(msg))
    hh = o.px(60)
    draw.rectangle([0, top, W, top + hh], fill=WA_GREEN)
    tl.draw_text(draw, (o.px(8), top + o.px(12)), "‹", o.px(28), (255, 255, 255))
    x = o.px(30)
    if o.fidelity == "high":
        _avatar(draw, x + o.px(20), top + hh / 2, o.px(19), msg.sender)
        x += o.px(48)
    name = msg.sender or "+81 90-0000-0000"
    tl.draw_text(draw, (x, top + o.px(9 if o.fidelity == "high" else 16)), name, o.px(18), (255, 255, 255), bold=True)
    if o.fidelity == "high":
        tl.draw_text(draw, (x, top + o.px(33)), ui["online"], o.px(12), (210, 235, 230))
    y = top + hh + o.px(14)
    chip = ui["today"]
    cw = tl.text_width(chip, o.px(12)) + o.px(20)
    draw.rounded_rectangle([(W - cw) / 2, y, (W + cw) / 2, y + o.px(24)], radius=o.px(7), fill=(225, 245, 254))
    tl.draw_text(draw, ((W - cw) / 2 + o.px(10), y + o.px(3)), chip, o.px(12), GREY)
    y += o.px(38)
    t = _clock(msg)
    if o.fidelity == "high":
        y = _bubble(draw, o, ui["hello"], y, outgoing=False, time=t, lang=msg.language)
        y = _bubble(draw, o, ui["who"], y, outgoing=True, time=t, lang=msg.language)
    chrome = o.px(70) if o.fidelity == "high" else o.px(12)  # the input bar below the thread
    y = _bubble(draw, o, msg.text, y, outgoing=False, time=t, lang=msg.language, tail=o.fidelity != "high",
                bottom=o.max_h - chrome)
    if o.fidelity == "high":  # input bar
        by = H - o.px(58)
        draw.rounded_rectangle([o.px(8), by, W - o.px(62), by + o.px(46)], radius=o.px(23), fill=(255, 255, 255))
        tl.draw_text(draw, (o.px(26), by + o.px(11)), ui["message"], o.px(16), (150, 150, 150))
        draw.ellipse([W - o.px(54), by, W - o.px(8), by + o.px(46)], fill=(0, 168, 132))
    return y + chrome


def _gradient(img, top_rgb, bottom_rgb) -> None:
    from PIL import Image

    W, H = img.size
    col = Image.new("RGB", (1, H))
    for y in range(H):
        t = y / max(1, H - 1)
        col.putpixel((0, y), tuple(int(a + (b - a) * t) for a, b in zip(top_rgb, bottom_rgb)))
    img.paste(col.resize((W, H)), (0, 0))


def _sms(img, draw, msg: Message, o: RenderOptions) -> float:
    ui = _UI[msg.language]
    W, H = o.width * o.scale, o.canvas_h
    _gradient(img, (32, 45, 92), (112, 62, 120))
    _status_bar(draw, o, (32, 45, 92), (255, 255, 255), "")
    clock = _clock(msg)
    cs = o.px(84)
    tl.draw_text(draw, ((W - tl.text_width(clock, cs)) / 2, o.px(70)), clock, cs, (255, 255, 255))
    ds = o.px(18)
    tl.draw_text(draw, ((W - tl.text_width(ui["date"], ds)) / 2, o.px(50)), ui["date"], ds, (235, 235, 245))
    x0, x1 = o.px(14), W - o.px(14)
    size = o.px(16)
    lines = tl.wrap(msg.text, size, x1 - x0 - o.px(28))
    line_h = size * 1.36
    y0 = o.px(230)
    below = o.px(62 + 110) if o.fidelity == "high" else o.px(30)  # older notification, buttons, home bar
    lines = tl.clip_lines(lines, int((o.max_h - below - y0 - o.px(68)) // line_h), size, x1 - x0 - o.px(28))
    ch = o.px(68) + len(lines) * line_h
    draw.rounded_rectangle([x0, y0, x1, y0 + ch], radius=o.px(18), fill=(238, 238, 244))
    draw.rounded_rectangle([x0 + o.px(14), y0 + o.px(12), x0 + o.px(36), y0 + o.px(34)], radius=o.px(6),
                           fill=(52, 199, 89))
    draw.ellipse([x0 + o.px(18), y0 + o.px(16), x0 + o.px(32), y0 + o.px(28)], fill=(255, 255, 255))
    tl.draw_text(draw, (x0 + o.px(44), y0 + o.px(13)), ui["messages"], o.px(13), GREY)
    tl.draw_text(draw, (x1 - o.px(16) - tl.text_width(ui["now"], o.px(13)), y0 + o.px(13)), ui["now"], o.px(13), GREY)
    tl.draw_text(draw, (x0 + o.px(14), y0 + o.px(38)), msg.sender or "+81 90-0000-0000", o.px(16), INK, bold=True)
    ty = y0 + o.px(62)
    for line in lines:
        tl.draw_text(draw, (x0 + o.px(14), ty), line, size, INK)
        ty += line_h
    if o.fidelity == "high":
        y1 = y0 + ch + o.px(10)  # a collapsed, older notification underneath
        draw.rounded_rectangle([x0 + o.px(10), y1, x1 - o.px(10), y1 + o.px(52)], radius=o.px(16), fill=(214, 212, 228))
        tl.draw_text(draw, (x0 + o.px(26), y1 + o.px(15)), ui["earlier"], o.px(14), GREY)
        for cx in (o.px(60), W - o.px(60)):  # flashlight / camera buttons
            draw.ellipse([cx - o.px(24), H - o.px(90), cx + o.px(24), H - o.px(42)], fill=(60, 60, 80))
        sw = tl.text_width(ui["slide"], o.px(13))
        tl.draw_text(draw, ((W - sw) / 2, H - o.px(34)), ui["slide"], o.px(13), (230, 230, 240))
    draw.rounded_rectangle([(W - o.px(130)) / 2, H - o.px(14), (W + o.px(130)) / 2, H - o.px(9)], radius=o.px(3),
                           fill=(255, 255, 255))
    return y0 + ch + below


def _social(img, draw, msg: Message, o: RenderOptions) -> float:
    ui = _UI[msg.language]
    W, H = o.width * o.scale, o.canvas_h
    draw.rectangle([0, 0, W, H], fill=(240, 242, 245))
    top = _status_bar(draw, o, (255, 255, 255), INK, _clock(msg))
    draw.rectangle([0, top, W, top + o.px(50)], fill=(255, 255, 255))
    tl.draw_text(draw, (o.px(14), top + o.px(10)), ui["feed"], o.px(24), (24, 119, 242), bold=True)
    y = top + o.px(60)
    size = o.px(16)
    lines = tl.wrap(msg.text, size, W - o.px(32))
    line_h = size * 1.38
    img_h = o.px(250)
    # a long post is cut with an ellipsis so that the like/comment bar stays on the screen
    after_text = o.px(10) + img_h + (o.px(58) if o.fidelity == "high" else 0) + o.px(44)
    lines = tl.clip_lines(lines, int((o.max_h - after_text - (y + o.px(66))) // line_h), size, W - o.px(32))
    card_h = o.px(70) + len(lines) * line_h + o.px(12) + img_h + o.px(60 if o.fidelity == "high" else 44)
    draw.rectangle([0, y, W, y + card_h], fill=(255, 255, 255))
    _avatar(draw, o.px(36), y + o.px(34), o.px(20), msg.sender)
    tl.draw_text(draw, (o.px(66), y + o.px(12)), msg.sender or "Page", o.px(16), INK, bold=True)
    sub = f"{ui['sponsored']} · {ui['hours']}" if o.fidelity == "high" else ui["sponsored"]
    tl.draw_text(draw, (o.px(66), y + o.px(34)), sub, o.px(12), GREY)
    ty = y + o.px(66)
    for line in lines:
        tl.draw_text(draw, (o.px(16), ty), line, size, INK)
        ty += line_h
    iy = ty + o.px(10)  # the post's image: abstract shapes from the sender (no extra words in it)
    c1, c2 = _avatar_color(msg.sender), _avatar_color(msg.sender + "#2")
    from PIL import ImageDraw

    band = img.crop((0, int(iy), int(W), int(iy + img_h)))
    _gradient(band, c1, c2)
    bdraw = ImageDraw.Draw(band)
    for k in range(5):
        n = _h(f"{msg.sender}{k}")
        cx, cy, r = n % int(W), (n // 131) % img_h, o.px(20 + n % 50)
        bdraw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(min(255, v + 60) for v in c1))
    img.paste(band, (0, int(iy)))
    y2 = iy + img_h
    if o.fidelity == "high":
        draw.rectangle([0, y2, W, y2 + o.px(40)], fill=(242, 243, 245))
        tl.draw_text(draw, (o.px(16), y2 + o.px(10)), (msg.sender or "")[:24], o.px(13), GREY)
        bw = tl.text_width(ui["learn"], o.px(13), bold=True) + o.px(20)
        draw.rounded_rectangle([W - bw - o.px(12), y2 + o.px(6), W - o.px(12), y2 + o.px(34)], radius=o.px(5),
                               fill=(228, 230, 235))
        tl.draw_text(draw, (W - bw - o.px(2), y2 + o.px(10)), ui["learn"], o.px(13), INK, bold=True)
        y2 += o.px(40)
        likes = f"👍❤ {1 + _h(pair_key(msg)) % 9}.{_h(pair_key(msg) + '#likes') % 10}K"
        tl.draw_text(draw, (o.px(16), y2 + o.px(4)), likes, o.px(12), GREY)
        y2 += o.px(18)
    draw.line([(o.px(12), y2 + o.px(4)), (W - o.px(12), y2 + o.px(4))], fill=(220, 222, 226))
    for k, key in enumerate(("like", "comment", "share")):
        label = ui[key]
        cx = W * (k + 0.5) / 3
        tl.draw_text(draw, (cx - tl.text_width(label, o.px(14), bold=True) / 2, y2 + o.px(12)), label, o.px(14), GREY,
                     bold=True)
    return y2 + o.px(44)


def _plain(img, draw, msg: Message, o: RenderOptions, email: bool = False) -> float:
    ui = _UI[msg.language]
    W, H = o.width * o.scale, o.canvas_h
    draw.rectangle([0, 0, W, H], fill=(255, 255, 255))
    y = _status_bar(draw, o, (255, 255, 255), INK, _clock(msg)) + o.px(16)
    if email:
        for key, val in (("from", msg.sender or "noreply"), ("subject", ui["notice"])):
            tl.draw_text(draw, (o.px(16), y), f"{ui[key]}: {val}", o.px(14), GREY)
            y += o.px(24)
        draw.line([(o.px(16), y + o.px(4)), (W - o.px(16), y + o.px(4))], fill=(220, 220, 220))
        y += o.px(16)
    size = o.px(17)
    lines = tl.wrap(msg.text, size, W - o.px(32))
    for line in tl.clip_lines(lines, int((o.max_h - y - o.px(16)) // (size * 1.4)), size, W - o.px(32)):
        tl.draw_text(draw, (o.px(16), y), line, size, INK)
        y += size * 1.4
    return y + o.px(16)


_LAYOUTS = {"whatsapp": _whatsapp, "sms": _sms, "social_post": _social, "plain": _plain,
            "email": lambda img, d, m, o: _plain(img, d, m, o, email=True)}


def render_layout(msg: Message, options: RenderOptions | None = None):
    """(image, content bottom in pixels): the screenshot and where its content ends.

    With ``fit`` (the default) the screen is first laid out at the full ``height`` to measure its
    content, then drawn again at the height the content needs, so a short message is not a small
    bubble on a mostly empty screen; elements anchored to the bottom (input bar, lock-screen
    buttons, like/comment bar) move up with it.  Text too long
    for the full height is cut with an ellipsis, never pushed off the screen.
    """
    import dataclasses
    import math

    from PIL import Image, ImageDraw

    o = options or RenderOptions()
    if o.fidelity not in ("basic", "high"):
        raise ValueError(f"fidelity must be basic or high, got {o.fidelity!r}")
    pres = o.presentation or msg.presentation
    if pres not in _LAYOUTS:
        raise ValueError(f"unknown presentation {pres!r}")

    def draw_at(opts: RenderOptions):
        img = Image.new("RGB", (opts.px(opts.width), round(opts.canvas_h)), (255, 255, 255))
        bottom = _LAYOUTS[pres](img, ImageDraw.Draw(img), msg, opts)
        return img, bottom

    img, bottom = draw_at(o)
    if o.fit:
        height = min(o.height, math.ceil(bottom / o.scale))
        if height != o.height:
            img, bottom = draw_at(dataclasses.replace(o, canvas_height=height))
    return img, bottom


def render_message(msg: Message, options: RenderOptions | None = None):
    """The screenshot of one message as an RGB ``PIL.Image`` (see :func:`render_layout`)."""
    return render_layout(msg, options)[0]


def png_bytes(img) -> bytes:
    """PNG bytes with no metadata (no time stamps), so equal pixels give equal bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def write_still_video(png_path: Path, out_dir: Path, stem: str, *, n_frames: int = 16, fps: float = 8.0,
                      materialize: bool = False) -> Path:
    """Write ``<stem>.json`` (the still-video manifest) and, if asked, ``<stem>/frame_NNNN.png``."""
    from breachlab.rundir import atomic_write_json, sha256_file

    if n_frames < 1 or fps <= 0:
        raise ValueError("n_frames must be >= 1 and fps > 0")
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = [str(png_path.name)] * n_frames
    if materialize:
        fdir = out_dir / stem
        fdir.mkdir(parents=True, exist_ok=True)
        data = png_path.read_bytes()
        frames = []
        for i in range(n_frames):
            (fdir / f"frame_{i:04d}.png").write_bytes(data)
            frames.append(f"{stem}/frame_{i:04d}.png")
    manifest = {"format": "breachlab.brain.still-video/1", "source_png": str(png_path),
                "sha256": sha256_file(png_path), "n_frames": n_frames, "fps": fps,
                "duration_s": round(n_frames / fps, 6), "frames": frames, "materialized": materialize}
    return atomic_write_json(out_dir / f"{stem}.json", manifest)
