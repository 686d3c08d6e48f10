"""Fonts, font fallback and line wrapping for Latin + Japanese text (Pillow).

Why a module of its own: Pillow draws one font at a time and has no line breaking.  We pick
one primary font that covers Latin *and* Japanese (Noto Sans CJK JP, from the PyPI package
``noto-cjk-sans-jp-regular`` or Debian's ``fonts-noto-cjk``) so English and Japanese stimuli
share typography, fall back per character to DejaVu Sans (bundled with matplotlib), and draw
anything no font covers (colour emoji, mostly) as a neutral round placeholder of the right
width instead of tofu boxes.  Layout uses Pillow's BASIC engine, not raqm, so that the same
input gives the same pixels on every machine.

Bold is a real bold face (Noto Sans CJK JP Bold, DejaVu Sans Bold) where one is installed and
regular weight otherwise; never a stroke drawn around regular glyphs (that smears kanji).

Line breaking: Latin breaks at spaces (over-long words are split by character); Japanese may
break between any two characters, except that closing punctuation and small kana never start
a line (they hang at the end of the previous one) and opening brackets never end one.
"""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

from breachlab.errors import UserError

NO_LINE_START = set("、。，．,.:;!?！？：；・ー〜)]}）」』】〕〉》〙〗ゝゞ々"
                    "ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ%％")
NO_LINE_END = set("([{（「『【〔〈《〘〖$＄")
_DROP = {"\ufe0f", "\ufe0e", "\u200d", "\u200b"}
_DEBIAN_CJK = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKjp-Regular.otf",
)


def is_cjk(ch: str) -> bool:
    """Characters that may break anywhere (kana, kanji, full-width forms, CJK punctuation)."""
    cp = ord(ch)
    return (0x3000 <= cp <= 0x30FF or 0x3400 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF
            or 0xFF00 <= cp <= 0xFFEF or 0x31F0 <= cp <= 0x31FF)


_DEBIAN_CJK_BOLD = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKjp-Bold.otf",
)


def _packaged(module: str) -> list[Path]:
    try:
        mod = __import__(module)
    except ImportError:
        return []
    return [Path(str(mod.FONT_PATH))]


@functools.lru_cache(maxsize=2)
def font_paths(bold: bool = False) -> tuple[Path, ...]:
    """Fonts to try in order: primary CJK-capable face first, then the Latin fallback.

    ``bold=True`` puts real bold faces first (Noto Sans CJK JP Bold from the PyPI package
    ``noto-cjk-sans-jp-bold`` or Debian, then DejaVu Sans Bold) and the regular chain after
    them, so a character no bold face has is drawn in regular weight — never thickened by
    drawing it with a stroke, which smears Japanese strokes into blobs.
    """
    paths: list[Path] = []
    if bold:
        paths.extend(_packaged("noto_cjk_sans_jp_bold") or [Path(p) for p in _DEBIAN_CJK_BOLD if Path(p).is_file()])
        try:
            import matplotlib

            paths.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf")
        except ImportError:
            pass
        return tuple(dict.fromkeys([p for p in paths if p.is_file()] + list(font_paths(False))))
    paths.extend(_packaged("noto_cjk_sans_jp_regular") or [Path(p) for p in _DEBIAN_CJK if Path(p).is_file()])
    try:
        import matplotlib

        paths.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")
    except ImportError:
        pass
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise UserError("no usable font: pip install 'breachlab[brain]' (installs noto-cjk-sans-jp-regular)")
    return tuple(paths)


def has_cjk_font() -> bool:
    return any("CJK" in p.name for p in font_paths())


@functools.lru_cache(maxsize=8)
def _coverage(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True, fontNumber=0) as tt:
        return frozenset(tt.getBestCmap().keys())


@functools.lru_cache(maxsize=128)
def get_font(index: int, size: int, bold: bool = False):
    from PIL import ImageFont

    return ImageFont.truetype(str(font_paths(bold)[index]), size=size, layout_engine=ImageFont.Layout.BASIC)


def font_for(ch: str, bold: bool = False) -> int:
    """Index into :func:`font_paths` of the first font that has ``ch``; -1 for the placeholder."""
    cp = ord(ch)
    for i, p in enumerate(font_paths(bold)):
        if cp in _coverage(p):
            return i
    return -1


def clean(text: str) -> str:
    """NFC-normalise, drop variation selectors / zero-width joiners, turn newlines into spaces."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if ch in "\r\n\t" else ch for ch in text if ch not in _DROP)
    if not has_cjk_font() and any(is_cjk(c) for c in text):
        raise UserError("Japanese text needs a CJK font: pip install noto-cjk-sans-jp-regular")
    return text


def runs(text: str, bold: bool = False) -> list[tuple[int, str]]:
    """Split text into (font index, substring) runs; index -1 = placeholder (one char per run)."""
    out: list[tuple[int, str]] = []
    for ch in text:
        idx = font_for(ch, bold)
        if out and idx == out[-1][0] and idx != -1:
            out[-1] = (idx, out[-1][1] + ch)
        else:
            out.append((idx, ch))
    return out


def text_width(text: str, size: int, bold: bool = False) -> float:
    total = 0.0
    for idx, s in runs(text, bold):
        total += size * 1.1 if idx == -1 else get_font(idx, size, bold).getlength(s)
    return total


def draw_text(draw, xy: tuple[float, float], text: str, size: int, fill, *, bold: bool = False) -> float:
    """Draw one line of mixed-font text; returns its width.  ``bold`` = the bold faces, no stroke."""
    x, y = xy
    for idx, s in runs(text, bold):
        if idx == -1:  # emoji-safe placeholder: a soft round glyph, same advance on every machine
            w = size * 1.1
            pad = size * 0.12
            top = y + size * 0.22
            draw.ellipse([x + pad, top, x + w - pad, top + w - 2 * pad], fill=(246, 190, 40), outline=(214, 150, 20))
            x += w
            continue
        font = get_font(idx, size, bold)
        draw.text((x, y), s, font=font, fill=fill)
        x += font.getlength(s)
    return x - xy[0]


def has_bold_cjk_font() -> bool:
    """True when a real bold Japanese face is installed (else bold Japanese is drawn in regular weight)."""
    return "Bold" in font_paths(True)[0].name and "CJK" in font_paths(True)[0].name


def clip_lines(lines: list[str], max_lines: int, size: int, max_width: float) -> list[str]:
    """At most ``max_lines`` lines; when text is cut, the last kept line ends with an ellipsis."""
    if len(lines) <= max(1, max_lines):
        return lines
    keep = lines[:max(1, max_lines)]
    last = keep[-1].rstrip()
    while last and text_width(last + "…", size) > max_width:
        last = last[:-1].rstrip()
    keep[-1] = last + "…"
    return keep


def _atoms(text: str) -> list[str]:
    atoms: list[str] = []
    buf = ""
    for ch in text:
        if ch == " " or is_cjk(ch):
            if buf:
                atoms.append(buf)
                buf = ""
            atoms.append(ch)
        else:
            buf += ch
    if buf:
        atoms.append(buf)
    return atoms


def _split_long(atom: str, size: int, max_width: float) -> list[str]:
    parts, cur = [], ""
    for ch in atom:
        if cur and text_width(cur + ch, size) > max_width:
            parts.append(cur)
            cur = ch
        else:
            cur += ch
    return parts + ([cur] if cur else [])


def wrap(text: str, size: int, max_width: float) -> list[str]:
    """Greedy line breaking for Latin and Japanese with simple kinsoku rules (see module doc)."""
    text = clean(text)
    lines: list[list[str]] = [[]]
    for atom in _atoms(text):
        line = lines[-1]
        if atom == " ":
            if line:
                line.append(atom)
            continue
        if text_width("".join(line) + atom, size) <= max_width or not line:
            if not line and text_width(atom, size) > max_width:
                pieces = _split_long(atom, size, max_width)
                line.append(pieces[0])
                for piece in pieces[1:]:
                    lines.append([piece])
            else:
                line.append(atom)
            continue
        if atom[0] in NO_LINE_START:  # hang closing punctuation instead of starting a line with it
            line.append(atom)
            continue
        new: list[str] = []
        while line and line[-1] == " ":
            line.pop()
        if len(line) > 1 and line[-1][-1] in NO_LINE_END:
            new.append(line.pop())
        if text_width("".join(new) + atom, size) > max_width and not new:
            pieces = _split_long(atom, size, max_width)
            lines.append([pieces[0]])
            for piece in pieces[1:]:
                lines.append([piece])
            continue
        new.append(atom)
        lines.append(new)
    return _kinsoku(["".join(line).strip() for line in lines if "".join(line).strip()])


def _kinsoku(lines: list[str]) -> list[str]:
    """Guarantee the rule on the result: closing punctuation that still starts a line (after a
    forced split of an over-long run, say) moves to the end of the previous line."""
    out: list[str] = []
    for line in lines:
        k = 0
        while out and k < len(line) and line[k] in NO_LINE_START:
            k += 1
        if k:
            out[-1] += line[:k]
            line = line[k:].lstrip()
        if line:
            out.append(line)
    return out
