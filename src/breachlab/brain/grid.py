"""The corpus grid: every rendered stimulus as a thumbnail, one row per (type, language).

A figure of its own (``render`` writes ``grid.png``, ``analyze`` embeds it in the report) so a
reader sees at a glance what the model was shown.  Screens fitted to their content differ in
height, so each thumbnail keeps its own aspect and a row is as tall as its tallest screen.
"""

from __future__ import annotations

from typing import Any

from breachlab.brain import textlayout as tl
from breachlab.brain.corpus import TYPES, Corpus, Message
from breachlab.brain.render import GREY, INK


def corpus_grid(images: dict[str, Any], corpus: Corpus, *, thumb_width: int = 180, title: str = "",
                max_per_row: int = 8):
    """A grid image: one row per (type, language), variants across; labels drawn on top."""
    from PIL import Image, ImageDraw

    rows: dict[tuple[str, str], list[Message]] = {}
    order = {t: i for i, t in enumerate(TYPES)}
    for m in sorted(corpus.messages, key=lambda m: (order.get(m.type, 99), m.language, m.variant, m.id)):
        if m.id in images:
            rows.setdefault((m.type, m.language), []).append(m)
    if not rows:
        raise ValueError("no rendered images for the grid")
    th = max(int(im.height * thumb_width / im.width) for im in images.values())  # fitted screens differ in height
    label_w, pad, head = 150, 8, 44 if title else 8
    ncol = min(max_per_row, max(len(v) for v in rows.values()))
    W = label_w + ncol * (thumb_width + pad) + pad
    H = head + len(rows) * (th + pad + 18) + pad
    grid = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    if title:
        tl.draw_text(draw, (pad, 8), title, 20, (180, 0, 0) if "SYNTHETIC" in title else INK, bold=True)
    y = head
    for (typ, lang), msgs in rows.items():
        tl.draw_text(draw, (pad, y + th / 2 - 10), f"{typ} · {lang}", 15, INK, bold=True)
        for k, m in enumerate(msgs[:ncol]):
            x = label_w + k * (thumb_width + pad)
            im = images[m.id]
            grid.paste(im.resize((thumb_width, max(1, int(im.height * thumb_width / im.width))), Image.LANCZOS),
                       (x, y + 16))
            tl.draw_text(draw, (x, y), f"v{m.variant}", 12, GREY)
        y += th + pad + 18
    return grid
