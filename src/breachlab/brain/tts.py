"""Text-to-speech for the TRIBE v2 text path: pluggable engines, the right language code.

TRIBE v2 has no "reading" entry point: upstream's ``get_events_dataframe(text_path=…)`` turns
the text into speech with gTTS (Google's online service, language guessed by ``langdetect``),
transcribes it back with WhisperX for word timings, and feeds words *and* audio to the model.
So the post's "text path" is really synthetic speech.  We keep that design but make the
speech step explicit and replaceable:

* ``espeak-ng`` — the default: an offline formant synthesiser (``apt-get install espeak-ng``),
                  run as the system binary; WAV; voices ``en-us`` and ``ja``.  Robotic, and its
                  Japanese voice reads kana far better than kanji: a different stimulus from
                  gTTS, so the engine is recorded with every prediction and runs must not be mixed.
* ``gtts``      — upstream's engine: it sends the message text to Google, so it runs only when
                  the caller passes ``allow_network=True`` (``--allow-network``); MP3; the
                  language comes from the corpus (``en`` / ``ja``), never from a guess.
* ``auto``      — gTTS when the network is allowed, the package is installed and the service
                  answers, else espeak-ng.  Without ``allow_network`` it *is* espeak-ng.

Offline by construction: nothing in this module opens a socket unless ``allow_network`` was
given to :func:`get_engine`; the tests run it with sockets blocked.

Audio files are cached by (engine, voice, text) so a resumed run does not synthesise again.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

from breachlab.errors import UserError

log = logging.getLogger("breachlab.brain")

#: corpus language -> (gTTS lang, espeak-ng voice, WhisperX language code, neuralset language name)
LANGUAGES: dict[str, tuple[str, str, str, str]] = {
    "en": ("en", "en-us", "en", "english"),
    "ja": ("ja", "ja", "ja", "japanese"),
}
ENGINES = ("auto", "gtts", "espeak-ng")


class TTSUnavailable(UserError):
    """The requested speech engine cannot run here (not installed, offline, no voice)."""


@dataclass(frozen=True)
class Speech:
    """One synthesised utterance."""

    path: Path
    engine: str
    voice: str
    language: str
    duration_s: float | None  # None when the format cannot be measured without a decoder (MP3)


def language_codes(language: str) -> tuple[str, str, str, str]:
    """(gTTS code, espeak-ng voice, WhisperX code, neuralset name) for a corpus language."""
    try:
        return LANGUAGES[language]
    except KeyError:
        raise UserError(f"no speech settings for language {language!r}; known: {', '.join(LANGUAGES)}") from None


def wav_duration(path: str | Path) -> float:
    """Duration of a PCM WAV file in seconds (stdlib only)."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())


def _key(engine: str, voice: str, text: str, rate: int | None) -> str:
    return hashlib.sha256(f"{engine}\0{voice}\0{rate}\0{text}".encode("utf-8")).hexdigest()[:16]


class EspeakEngine:
    """espeak-ng through its command line (no Python binding needed)."""

    name = "espeak-ng"

    def __init__(self, rate_wpm: int = 150, binary: str | None = None):
        self.rate_wpm = rate_wpm
        self.binary = binary or shutil.which("espeak-ng") or shutil.which("espeak")

    def available(self) -> str | None:
        """None when usable, else the reason."""
        if not self.binary:
            return ("espeak-ng (the offline speech engine) is not installed: apt-get install espeak-ng, "
                    "or use --text-mode reading (no speech)")
        return None

    def has_voice(self, voice: str) -> bool:
        res = subprocess.run([self.binary, f"--voices={voice.split('-')[0]}"], capture_output=True, text=True)
        return any(line.split()[1:2] and line.split()[1].startswith(voice.split("-")[0])
                   for line in res.stdout.splitlines()[1:])

    def synthesize(self, text: str, language: str, out_dir: str | Path) -> Speech:
        why = self.available()
        if why:
            raise TTSUnavailable(why)
        _, voice, _, _ = language_codes(language)
        out = Path(out_dir) / f"tts-{self.name}-{_key(self.name, voice, text, self.rate_wpm)}.wav"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp.wav")
            res = subprocess.run([self.binary, "-v", voice, "-s", str(self.rate_wpm), "-w", str(tmp), "--", text],
                                 capture_output=True, text=True)
            if res.returncode != 0 or not tmp.is_file() or tmp.stat().st_size <= 44:
                tmp.unlink(missing_ok=True)
                raise TTSUnavailable(f"espeak-ng failed for voice {voice!r}: "
                                     f"{res.stderr.strip() or 'no audio written'}")
            tmp.replace(out)
        return Speech(out, self.name, voice, language, wav_duration(out))


class GTTSEngine:
    """Google TTS via the ``gtts`` package, as upstream TRIBE v2 does (needs the internet)."""

    name = "gtts"

    def __init__(self, allow_network: bool = False):
        self.allow_network = allow_network

    def available(self) -> str | None:
        if not self.allow_network:
            return "gTTS sends the text to Google: it runs only with --allow-network"
        try:
            import gtts  # noqa: F401
        except ImportError:
            return "the gtts package is not installed (pip install gtts)"
        return None

    def synthesize(self, text: str, language: str, out_dir: str | Path) -> Speech:
        why = self.available()
        if why:
            raise TTSUnavailable(why)
        from gtts import gTTS

        lang, _, _, _ = language_codes(language)
        out = Path(out_dir) / f"tts-{self.name}-{_key(self.name, lang, text, None)}.mp3"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp.mp3")
            try:
                gTTS(text, lang=lang).save(str(tmp))
            except Exception as exc:  # gTTSError, requests errors: all mean "no service"
                tmp.unlink(missing_ok=True)
                raise TTSUnavailable(f"gTTS could not reach Google's TTS service ({type(exc).__name__}: {exc}); "
                                     "offline machines use --tts espeak-ng") from None
            tmp.replace(out)
        return Speech(out, self.name, lang, language, None)


class AutoEngine:
    """gTTS if the network is allowed and it works, else espeak-ng (the choice is recorded per stimulus)."""

    name = "auto"

    def __init__(self, rate_wpm: int = 150, allow_network: bool = False):
        self.gtts, self.espeak = GTTSEngine(allow_network), EspeakEngine(rate_wpm)

    def available(self) -> str | None:
        a, b = self.gtts.available(), self.espeak.available()
        return None if (a is None or b is None) else f"{a}; {b}"

    def synthesize(self, text: str, language: str, out_dir: str | Path) -> Speech:
        if self.gtts.available() is None:
            try:
                return self.gtts.synthesize(text, language, out_dir)
            except TTSUnavailable as exc:
                log.warning("gTTS unavailable (%s); falling back to espeak-ng", exc)
        return self.espeak.synthesize(text, language, out_dir)


def get_engine(name: str, *, rate_wpm: int = 150, allow_network: bool = False):
    """An engine by name (``espeak-ng``, ``gtts``, ``auto``); only ``allow_network`` lets gTTS run."""
    if name == "auto":
        return AutoEngine(rate_wpm, allow_network) if allow_network else EspeakEngine(rate_wpm)
    if name == "gtts":
        return GTTSEngine(allow_network)
    if name in ("espeak-ng", "espeak"):
        return EspeakEngine(rate_wpm)
    raise UserError(f"unknown TTS engine {name!r}; choose one of {', '.join(ENGINES)}")
