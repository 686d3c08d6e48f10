"""A stand-in speech engine for tests on machines without espeak-ng: a WAV of tone bursts.

Not speech: one 180 Hz burst per word-sized chunk of the text, with short pauses, so the
energy-trimmed bounds (:func:`breachlab.brain.words.speech_bounds`) and the durations the
models see are real properties of a real PCM file.  Used by the unit tests and the contract
test in place of :class:`breachlab.brain.tts.EspeakEngine` when ``espeak-ng`` is missing.
"""

from __future__ import annotations

import hashlib
import math
import struct
import wave
from pathlib import Path

from breachlab.brain.tts import Speech
from breachlab.brain.words import tokenize

RATE = 16000


def synth_wav(text: str, language: str, path: Path) -> float:
    n = max(1, len(tokenize(text, language)))
    word, gap, lead = 0.28, 0.07, 0.25
    frames = []
    total = int(RATE * (2 * lead + n * (word + gap)))
    for i in range(total):
        t = i / RATE - lead
        k = int(t // (word + gap)) if t >= 0 else -1
        on = 0 <= k < n and (t - k * (word + gap)) < word
        frames.append(int(9000 * math.sin(2 * math.pi * 180 * t)) if on else 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(struct.pack(f"<{len(frames)}h", *frames))
    return total / RATE


class ToneEngine:
    """``synthesize(text, language, out_dir) -> Speech`` like the real engines."""

    name = "standin-tone"

    def available(self) -> str | None:
        return None

    def synthesize(self, text: str, language: str, out_dir) -> Speech:
        key = hashlib.sha256(f"{language}|{text}".encode()).hexdigest()[:16]
        path = Path(out_dir) / f"tone-{language}-{key}.wav"
        dur = synth_wav(text, language, path)
        return Speech(path=path, engine=self.name, voice=f"tone-{language}", language=language, duration_s=dur)
