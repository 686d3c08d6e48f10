"""Word timings and sentence splitting for the text path, English and Japanese.

Upstream TRIBE v2 gets word timings by shelling out to WhisperX (``uvx whisperx … --language
en``) inside ``tribev2.eventstransforms.ExtractWordsFromAudio``, whose language whitelist is
english/french/spanish/dutch/chinese, and then splits sentences with
``neuralset.utils.get_spacy_model(language=…)``, which only knows english/french/spanish/
chinese (``*_core_*_lg`` models).  Japanese fails at both steps.  This module holds the
pieces we use instead (see ``docs/brain-gpu-recipe.md`` § "Japanese"):

* :func:`whisperx_words` — (only with ``allow_network``) the same WhisperX call with the corpus' ISO code
  (``ja``), WhisperX's own Japanese alignment model, and, because WhisperX aligns Japanese per *character*, the
  characters regrouped into words with :func:`segment_ja`.
* :func:`even_words` — an offline fallback with no ASR: the known text's words spread over
  the speech (energy-trimmed WAV) in proportion to their length.  Approximate; recorded.
* :func:`segment_ja` — SudachiPy (mode C) when installed (the ``brain-tribe`` extra), else a
  deterministic script-run splitter (kanji / hiragana / katakana / Latin / digits).
* :func:`make_nlp` — a spaCy-compatible pipeline for Japanese (tokens = :func:`segment_ja`,
  sentences end at 。！？!?), which :mod:`breachlab.brain.tribe` hands to neuralset in place
  of the model it cannot load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breachlab.errors import UserError

JA_SENTENCE_END = "。！？!?．"
_PUNCT = re.compile(r"^[\W_]+$", re.UNICODE)


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    duration: float
    sequence_id: int = 0


# -- Japanese segmentation ---------------------------------------------------------------
def _script(ch: str) -> str:
    o = ord(ch)
    if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or ch in "々〆ヶ":
        return "kanji"
    if 0x3040 <= o <= 0x309F:
        return "hira"
    if 0x30A0 <= o <= 0x30FF or 0xFF66 <= o <= 0xFF9F or ch == "ー":
        return "kata"
    if ch.isdigit():
        return "digit"
    if ch.isalpha():
        return "latin"
    if ch.isspace():
        return "space"
    return "punct"


def _segment_fallback(text: str) -> list[str]:
    """Runs of one script; kanji keep their trailing okurigana (≤ 2 kana); punctuation alone."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        kind = _script(text[i])
        if kind == "space":
            i += 1
            continue
        j = i + 1
        if kind != "punct":
            while j < n and _script(text[j]) == kind:
                j += 1
            if kind == "kanji":
                k = j
                while k < n and k - j < 2 and _script(text[k]) == "hira":
                    k += 1
                j = k
        out.append(text[i:j])
        i = j
    return out


def segment_ja(text: str) -> list[str]:
    """Japanese words (surfaces, whitespace dropped); SudachiPy if installed, else the fallback."""
    try:
        from sudachipy import dictionary, tokenizer
    except ImportError:
        return _segment_fallback(text)
    tok = _sudachi_tokenizer(dictionary)
    return [m.surface() for m in tok.tokenize(text, tokenizer.Tokenizer.SplitMode.C) if m.surface().strip()]


_SUDACHI: list[Any] = []


def _sudachi_tokenizer(dictionary):
    if not _SUDACHI:
        _SUDACHI.append(dictionary.Dictionary().create())
    return _SUDACHI[0]


def segmenter_name() -> str:
    try:
        import sudachipy  # noqa: F401
        return "sudachipy"
    except ImportError:
        return "script-runs (fallback; install sudachipy + sudachidict_core for real word segmentation)"


def is_punct(token: str) -> bool:
    return bool(_PUNCT.match(token))


def tokenize(text: str, language: str) -> list[str]:
    """Words of ``text`` without punctuation-only tokens (``en``: whitespace, ``ja``: segmenter)."""
    if language == "ja":
        toks = segment_ja(text)
    else:
        toks = [re.sub(r"^[\"'“”(]+|[\"'“”),.;:!?]+$", "", t) for t in text.split()]
    return [t for t in toks if t and not is_punct(t)]


def split_sentences_ja(text: str) -> list[str]:
    parts = re.split(f"(?<=[{JA_SENTENCE_END}])", text)
    return [p for p in (s.strip() for s in parts) if p]


# -- a spaCy-compatible Japanese pipeline -----------------------------------------------
class _Tok:
    def __init__(self, text: str, idx: int):
        self.text, self.idx = text, idx

    def __len__(self) -> int:
        return len(self.text)


class _Span(list):
    @property
    def text(self) -> str:
        return self._text


class _Doc:
    def __init__(self, text: str, sents: list[_Span]):
        self.text, self.sents = text, sents

    def __iter__(self):
        return (t for s in self.sents for t in s)


def _ja_tokens(text: str) -> list[tuple[str, int]]:
    """Every non-space token of ``text`` with its character offset (offsets index ``text``)."""
    toks: list[tuple[str, int]] = []
    pos = 0
    for surface in segment_ja(text):
        at = text.find(surface, pos)
        if at < 0:  # the segmenter normalised something: give up on offsets for this token
            continue
        toks.append((surface, at))
        pos = at + len(surface)
    return toks


def make_nlp(language: str):
    """A callable ``nlp(text) -> doc`` with ``doc.sents`` of tokens (``.text``, ``.idx``, ``len``).

    A real :class:`spacy.tokens.Doc` when spaCy is installed (as it is wherever TRIBE v2 is),
    so neuralset's ``TextWordMatcher`` and anything else that expects spaCy keeps working.
    """
    if language not in ("ja", "japanese"):
        raise ValueError(f"make_nlp only serves Japanese, got {language!r}")

    def nlp(text: str):
        toks = _ja_tokens(text)
        starts = [i == 0 or toks[i - 1][0][-1] in JA_SENTENCE_END for i in range(len(toks))]
        try:
            from spacy.tokens import Doc
            from spacy.vocab import Vocab
        except ImportError:
            sents: list[_Span] = []
            for (surface, at), first in zip(toks, starts):
                if first:
                    sents.append(_Span())
                sents[-1].append(_Tok(surface, at))
            for s in sents:
                s._text = text[s[0].idx: s[-1].idx + len(s[-1])]
            return _Doc(text, sents)
        spaces = [(at + len(s) < len(text) and text[at + len(s)].isspace()) for s, at in toks]
        doc = Doc(Vocab(), words=[s for s, _ in toks], spaces=spaces, sent_starts=starts)
        return doc

    return nlp


# -- WhisperX ---------------------------------------------------------------------------
WHISPERX_ALIGN_MODEL = {"en": "WAV2VEC2_ASR_LARGE_LV60K_960H"}  # upstream's choice for English


WHISPERX_MODEL = "large-v3"  # upstream's ASR model
WHISPERX_BATCH = 16  # upstream's batch size


def whisperx_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu`` (upstream's rule)."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def whisperx_command(audio: Path, language: str, out_dir: Path, *, model: str = WHISPERX_MODEL,
                     device: str = "auto") -> list[str]:
    """The WhisperX CLI call upstream makes, with the language code actually passed through.

    Upstream's settings: ``large-v3``, CUDA when available, ``float16``, batch 16, and the
    English alignment model ``WAV2VEC2_ASR_LARGE_LV60K_960H`` (WhisperX's default for other
    languages).  One difference: on the CPU the compute type is ``int8``, because CTranslate2
    has no float16 on the CPU (upstream's call fails there).
    """
    exe = shutil.which("whisperx")
    prefix = [exe] if exe else ["uvx", "whisperx"]
    device = whisperx_device(device)
    cmd = [*prefix, str(audio), "--model", model, "--language", language, "--device", device,
           "--compute_type", "int8" if device == "cpu" else "float16", "--batch_size", str(WHISPERX_BATCH),
           "--output_dir", str(out_dir), "--output_format", "json"]
    if language in WHISPERX_ALIGN_MODEL:
        cmd += ["--align_model", WHISPERX_ALIGN_MODEL[language]]
    return cmd


def words_from_whisperx_json(transcript: dict[str, Any], language: str) -> tuple[list[Word], str]:
    """Word events (and the transcript text) from WhisperX's JSON output.

    English: WhisperX's words as they are (quotes removed, as upstream does).  Japanese:
    WhisperX aligns per character; we rebuild each segment's string, segment it into words and
    give each word the span of its timed characters (untimed ones, e.g. digits, are covered by
    their neighbours).
    """
    words: list[Word] = []
    texts: list[str] = []
    for sid, seg in enumerate(transcript.get("segments", [])):
        texts.append(seg.get("text", "").strip().replace('"', ""))
        items = seg.get("words", [])
        if language != "ja":
            for w in items:
                if "start" in w and "end" in w:
                    words.append(Word(w["word"].replace('"', ""), float(w["start"]),
                                      float(w["end"]) - float(w["start"]), sid))
            continue
        chars: list[tuple[str, float | None, float | None]] = []
        for w in items:
            for ch in w.get("word", ""):
                chars.append((ch, w.get("start"), w.get("end")))
        s = "".join(c for c, _, _ in chars)
        pos = 0
        for surface in segment_ja(s):
            at = s.find(surface, pos)
            if at < 0:
                continue
            pos = at + len(surface)
            span = [c for c in chars[at:pos] if c[1] is not None]
            if is_punct(surface) or not span:
                continue
            start, end = float(span[0][1]), float(span[-1][2])
            words.append(Word(surface, start, max(end - start, 1e-3), sid))
    sep = "" if language == "ja" else " "
    return words, sep.join(texts)


def whisperx_words(audio: str | Path, language: str, *, model: str = WHISPERX_MODEL, device: str = "auto",
                   cache_tsv: Path | None = None, allow_network: bool = False) -> tuple[list[Word], str]:
    """Run WhisperX on ``audio`` (cached next to it as JSON); returns (words, transcript text).

    WhisperX downloads its ASR and alignment models, and ``uvx whisperx`` also fetches unpinned
    code, so the call runs only with ``allow_network`` (``--allow-network``); a cached result is
    read either way.
    """
    audio = Path(audio)
    cache = cache_tsv or audio.with_suffix(f".whisperx-{language}.json")
    if cache.is_file():
        return words_from_whisperx_json(json.loads(cache.read_text(encoding="utf-8")), language)
    if not allow_network:
        raise UserError("WhisperX downloads models (and uvx fetches unpinned code): add --allow-network, "
                        "or use --aligner even for offline timings")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = whisperx_command(audio, language, Path(tmp), model=model, device=device)
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        except FileNotFoundError:
            raise RuntimeError("WhisperX is not installed and `uvx` is not on PATH: `pip install whisperx` "
                               "(or install uv), or use --aligner even for offline approximate timings") from None
        if res.returncode != 0:
            raise RuntimeError(f"whisperx failed ({' '.join(cmd[:2])}):\n{res.stderr[-2000:]}")
        data = json.loads((Path(tmp) / f"{audio.stem}.json").read_text(encoding="utf-8"))
    cache.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return words_from_whisperx_json(data, language)


# -- offline: even timings over the speech ----------------------------------------------
def speech_bounds(wav: str | Path, threshold: float = 0.02, frame_s: float = 0.02) -> tuple[float, float]:
    """(start, end) of the speech in a PCM WAV: first/last frame whose RMS exceeds ``threshold`` × max."""
    import wave

    import numpy as np

    with wave.open(str(wav), "rb") as w:
        sr, width, nch = w.getframerate(), w.getsampwidth(), w.getnchannels()
        raw = w.readframes(w.getnframes())
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    x = np.frombuffer(raw, dtype=dtype).astype(np.float64)
    if width == 1:
        x -= 128
    x = x.reshape(-1, nch).mean(axis=1) if nch > 1 else x
    hop = max(1, int(sr * frame_s))
    n = len(x) // hop
    if n == 0:
        return 0.0, len(x) / sr
    rms = np.sqrt((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1))
    on = np.flatnonzero(rms > threshold * (rms.max() or 1.0))
    if not len(on):
        return 0.0, len(x) / sr
    return on[0] * hop / sr, (on[-1] + 1) * hop / sr


def even_words(text: str, language: str, start: float, end: float) -> list[Word]:
    """The known text's words spread over [start, end] in proportion to their character count."""
    toks = tokenize(text, language)
    if not toks:
        return []
    weights = [max(1, len(t)) for t in toks]
    total, span = sum(weights), max(end - start, 1e-3)
    out, t = [], start
    for tok, w in zip(toks, weights):
        d = span * w / total
        out.append(Word(tok, round(t, 4), round(d, 4), 0))
        t += d
    return out


def reading_words(text: str, language: str, *, chars_per_s: float | None = None) -> list[Word]:
    """Words at a silent-reading pace (no speech): ~15 chars/s English, ~8 chars/s Japanese."""
    rate = chars_per_s or (8.0 if language == "ja" else 15.0)
    n = sum(len(t) + (0 if language == "ja" else 1) for t in tokenize(text, language))
    return even_words(text, language, 0.0, max(n / rate, 0.5))
