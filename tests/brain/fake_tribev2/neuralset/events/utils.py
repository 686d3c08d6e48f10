"""standardize_events: required columns, durations of media files read from the files."""
import struct
import wave
from pathlib import Path

import numpy as np
import pandas as pd


def _media_duration(path: str) -> float:
    p = Path(path)
    if p.suffix == ".wav":
        with wave.open(str(p), "rb") as w:
            return w.getnframes() / w.getframerate()
    if p.suffix == ".avi":
        data = p.read_bytes()[:4096]
        at = data.find(b"avih")
        usec, _, _, _, frames = struct.unpack("<5I", data[at + 8: at + 28])
        return frames * usec / 1e6
    if p.suffix == ".mp4":
        import av  # the real one reads through moviepy/ffmpeg

        with av.open(str(p)) as c:
            s = c.streams.video[0]
            return float(s.frames / s.average_rate)
    raise ValueError(f"fake neuralset cannot read the duration of {p.suffix} files")


def standardize_events(events: pd.DataFrame) -> pd.DataFrame:
    events = events.copy().reset_index(drop=True)
    for col in ("type", "start", "timeline"):
        if col not in events.columns:
            raise ValueError(f"events need a {col!r} column")
    if "subject" not in events.columns:
        events["subject"] = "default"
    if "duration" not in events.columns:
        events["duration"] = np.nan
    for i, row in events.iterrows():
        if row["type"] in ("Audio", "Video") and not np.isfinite(float(row["duration"])):
            if not Path(row["filepath"]).is_file():
                raise FileNotFoundError(row["filepath"])
            events.loc[i, "duration"] = _media_duration(row["filepath"])
    if events["duration"].isna().any():
        raise ValueError(f"events without duration: {events[events.duration.isna()].type.tolist()}")
    events["start"] = events["start"].astype(float)
    events["duration"] = events["duration"].astype(float)
    events["stop"] = events["start"] + events["duration"]
    return events.sort_values(["timeline", "start"], kind="stable").reset_index(drop=True)
