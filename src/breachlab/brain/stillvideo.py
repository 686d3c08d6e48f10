"""A still image as a video file: TRIBE v2 has no image entry point (post 3 repeated it 16×).

:func:`write_still_video` writes N identical frames at ``fps``:

* MP4 (H.264, yuv420p — what upstream's ``CreateVideosFromImages`` writes through moviepy)
  when PyAV (``av``) or imageio-ffmpeg is installed (both are in the ``brain-tribe`` extra);
* otherwise a Motion-JPEG AVI written in pure Python (Pillow only, quality 95), which
  FFmpeg — and therefore moviepy and TRIBE v2's V-JEPA2 extractor — reads.

:func:`avi_info` reads back the frame count and rate of our AVI files (tests, doctor).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path


def _even(img):
    w, h = img.size
    return img if (w % 2 == 0 and h % 2 == 0) else img.crop((0, 0, w - w % 2, h - h % 2))


def write_still_video(png: str | Path, out_stem: str | Path, *, n_frames: int = 16, fps: float = 8.0,
                      prefer: str = "auto") -> Path:
    """Write ``out_stem`` + ``.mp4`` or ``.avi``; returns the file written."""
    from PIL import Image

    if n_frames < 1 or fps <= 0:
        raise ValueError("n_frames must be >= 1 and fps > 0")
    img = _even(Image.open(png).convert("RGB"))
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    if prefer in ("auto", "mp4"):
        try:
            return _write_mp4_av(img, out_stem.with_suffix(".mp4"), n_frames, fps)
        except ImportError:
            pass
        try:
            return _write_mp4_imageio(img, out_stem.with_suffix(".mp4"), n_frames, fps)
        except ImportError:
            if prefer == "mp4":
                raise
    return write_mjpeg_avi(img, out_stem.with_suffix(".avi"), n_frames, fps)


def _write_mp4_av(img, out: Path, n_frames: int, fps: float) -> Path:
    from fractions import Fraction

    import av

    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = img.size[0], img.size[1], "yuv420p"
        frame = av.VideoFrame.from_image(img)
        for _ in range(n_frames):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def _write_mp4_imageio(img, out: Path, n_frames: int, fps: float) -> Path:
    import imageio_ffmpeg
    import numpy as np

    writer = imageio_ffmpeg.write_frames(str(out), img.size, fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         macro_block_size=2)
    writer.send(None)
    data = np.asarray(img, dtype=np.uint8)
    for _ in range(n_frames):
        writer.send(data)
    writer.close()
    return out


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _list(kind: bytes, data: bytes) -> bytes:
    return b"LIST" + struct.pack("<I", len(data) + 4) + kind + data


def write_mjpeg_avi(img, out: str | Path, n_frames: int, fps: float, quality: int = 95) -> Path:
    """A Motion-JPEG AVI of ``n_frames`` copies of ``img`` (RIFF AVI 1.0 with an idx1 index)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    jpeg = buf.getvalue()
    w, h = img.size
    scale, rate = 1000, int(round(fps * 1000))
    usec = int(round(1e6 / fps))
    avih = struct.pack("<10I4I", usec, len(jpeg) * int(fps + 1), 0, 0x10, n_frames, 0, 1, len(jpeg) + 8, w, h,
                       0, 0, 0, 0)
    strh = struct.pack("<4s4sIHHIIIIIIII4h", b"vids", b"MJPG", 0, 0, 0, 0, scale, rate, 0, n_frames,
                       len(jpeg) + 8, 10000, 0, 0, 0, w, h)
    strf = struct.pack("<IiiHH4sIiiII", 40, w, h, 1, 24, b"MJPG", w * h * 3, 0, 0, 0, 0)
    hdrl = _list(b"hdrl", _chunk(b"avih", avih) + _list(b"strl", _chunk(b"strh", strh) + _chunk(b"strf", strf)))
    frames, index, offset = [], [], 4  # offsets relative to the 'movi' fourcc
    for _ in range(n_frames):
        c = _chunk(b"00dc", jpeg)
        index.append(struct.pack("<4sIII", b"00dc", 0x10, offset, len(jpeg)))
        frames.append(c)
        offset += len(c)
    body = b"AVI " + hdrl + _list(b"movi", b"".join(frames)) + _chunk(b"idx1", b"".join(index))
    out = Path(out)
    out.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return out


def avi_info(path: str | Path) -> dict[str, float]:
    """{'n_frames', 'fps', 'duration_s', 'width', 'height'} from an AVI's main header."""
    data = Path(path).read_bytes()[:4096]
    if data[:4] != b"RIFF" or data[8:12] != b"AVI ":
        raise ValueError(f"{path}: not an AVI file")
    at = data.find(b"avih")
    usec, _, _, _, frames, _, _, _, w, h = struct.unpack("<10I", data[at + 8: at + 48])
    fps = 1e6 / usec
    return {"n_frames": frames, "fps": fps, "duration_s": frames / fps, "width": w, "height": h}
