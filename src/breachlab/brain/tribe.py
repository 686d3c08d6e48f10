"""The real TRIBE v2 backend (``breachlab brain encode RUN --backend tribev2``).

Everything heavy is imported lazily, inside :meth:`TribeBackend.load`, so the rest of
breachlab works without TRIBE v2 installed, and every missing piece fails with one line that
says what to do (CUDA, weights, the gated Llama 3.2, ``exca``, WhisperX, TTS).

Paths (what the model sees):

* ``text``       — TTS speech (:mod:`breachlab.brain.tts`) + word timings (WhisperX or even)
                   → Audio + Word events → Llama-3.2-3B and w2v-bert-2.0.  ``text_mode``
                   ``words`` drops the Audio event (words at speech timings, no sound) and
                   ``reading`` uses a silent-reading pace with no TTS at all: the "reading"
                   variants that separate what post 4 called "text" from speech.
* ``audio``      — the same speech, Audio event only (upstream's ``audio_only=True``).
* ``screenshot`` — the rendered PNG as a still video (N frames at fps) through
                   ``get_events_dataframe(video_path=…)`` → V-JEPA2.

Japanese (upstream rejects it twice; we change nothing inside tribev2/neuralset):

1. Word timings: we do not use ``ExtractWordsFromAudio`` (whitelist en/fr/es/nl/zh, default
   ``english`` even for Japanese speech).  :func:`breachlab.brain.words.whisperx_words`
   passes ``--language ja`` and regroups WhisperX's per-character alignment into words; the
   Word events carry ``language="japanese"``.
2. Text event: upstream's ``AddText`` joins words with spaces and re-punctuates through
   spaCy; for Japanese we add the Text event ourselves (the transcript, unspaced), so
   ``AddText`` skips and Llama sees natural Japanese context strings.
3. Sentences: ``AddSentenceToWords`` parses the Text with
   ``neuralset.utils.get_spacy_model(language=…)``, which raises for Japanese; for the
   duration of our call only, :func:`japanese_spacy` wraps that function so that
   ``japanese``/``ja`` get :func:`breachlab.brain.words.make_nlp` and every other language
   the original.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from breachlab.brain.subcortical import HeadCapture, SubcorticalHead
from breachlab.errors import UserError

log = logging.getLogger("breachlab.brain")

MODEL_ID = "facebook/tribev2"
GIT_URL = "git+https://github.com/facebookresearch/tribev2"
#: the upstream commit the contract test runs (tests/brain/test_tribe_contract.py), and the
#: sha256 of the files of it that this wrapper calls into or works around
UPSTREAM_COMMIT = "7239908"
UPSTREAM_FILES = {
    "tribev2/demo_utils.py": "37d09f93dfc50a398f3325c290c6c092ba539579d16fd1a54571690afa7c9178",
    "tribev2/main.py": "1b0bcd708236e58048b798e45038ac4ea8042a519e09e4ab8a09f934c8e0fa2d",
    "tribev2/eventstransforms.py": "cda08ef225ea6aadebe1e856e4012a3fb258c2d444880d95f0a40d94dba0be05",
    "tribev2/model.py": "8127bd2d47370c45fca26c2db60d89a9f9af15bdac575b259bea0bca4a31b909",
}
LLAMA_ID = "meta-llama/Llama-3.2-3B"
#: the hub models TRIBE v2's config loads, by the event type that needs them
EXTRACTOR_IDS = {"Word": LLAMA_ID, "Audio": "facebook/w2v-bert-2.0", "Video": "facebook/vjepa2-vitg-fpc64-256"}
EXCA_MAX = (0, 5, 25)


class TribeUnavailable(UserError):
    """TRIBE v2 cannot run here; the message names the missing piece and the fix."""


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def install_problems() -> list[str]:
    """What is missing for the TRIBE v2 backend, one actionable line each (empty = fine)."""
    problems = []
    for dist, fix in (("tribev2", f"pip install --no-deps 'tribev2 @ {GIT_URL}@{UPSTREAM_COMMIT}'"),
                      ("neuralset", "pip install 'breachlab[brain-tribe]'"),
                      ("exca", "pip install 'exca<=0.5.25'")):
        try:
            v = metadata.version(dist)
        except metadata.PackageNotFoundError:
            problems.append(f"{dist} is not installed: {fix}")
            continue
        if dist == "exca" and _version_tuple(v) > EXCA_MAX:
            problems.append(f"exca {v} breaks neuralset 0.0.2 (TRIBE v2's pin); pip install 'exca<=0.5.25'")
    return problems


@contextlib.contextmanager
def japanese_spacy():
    """Let neuralset's sentence splitting accept Japanese, only while the block runs."""
    import neuralset.utils as ns_utils

    from breachlab.brain.words import make_nlp

    original = ns_utils.get_spacy_model

    def get_spacy_model(*, model: str = "", language: str = ""):
        if language in ("ja", "japanese") and not model:
            return make_nlp("ja")
        return original(model=model, language=language)

    ns_utils.get_spacy_model = get_spacy_model
    try:
        yield
    finally:
        ns_utils.get_spacy_model = original


def build_text_events(words, language: str, *, audio: Path | None, transcript: str, known_text: bool = False):
    """Upstream's text pipeline on our Word (and optional Audio) events → a standardised DataFrame.

    The Text event (the string Llama's contexts are cut from) is ours — the transcript as it
    is, punctuation and casing kept — for Japanese always, and for every language when
    ``known_text`` (the words are the message's own, spread by ``--aligner even`` or the
    reading pace).  Only English words transcribed by WhisperX go through upstream's
    ``AddText`` (words joined, sentences re-split and capitalised by spaCy), as upstream does.
    """
    import pandas as pd
    from neuralset.events.transforms import AddContextToWords, AddSentenceToWords, AddText, ChunkEvents, RemoveMissing
    from neuralset.events.utils import standardize_events

    from breachlab.brain.tts import language_codes

    ns_lang = language_codes(language)[3]
    rows: list[dict[str, Any]] = []
    if audio is not None:
        rows.append({"type": "Audio", "filepath": str(audio), "start": 0.0, "timeline": "default",
                     "subject": "default"})
    for w in words:
        rows.append({"type": "Word", "text": w.text, "start": w.start, "duration": w.duration, "timeline": "default",
                     "subject": "default", "language": ns_lang, "sequence_id": w.sequence_id, "sentence": transcript})
    if not words:
        raise TribeUnavailable("no words were recognised in the speech; check the TTS audio and the aligner")
    if language == "ja" or known_text:  # our own Text event; AddText then skips
        stop = max(w.start + w.duration for w in words)
        rows.append({"type": "Text", "text": transcript, "start": words[0].start, "duration": stop - words[0].start,
                     "timeline": "default", "subject": "default", "language": ns_lang})
    events = standardize_events(pd.DataFrame(rows))
    transforms = ([ChunkEvents(event_type_to_chunk="Audio", max_duration=60, min_duration=30)] if audio else []) + [
        AddText(), AddSentenceToWords(max_unmatched_ratio=0.05),
        AddContextToWords(sentence_only=False, max_context_len=1024, split_field=""), RemoveMissing()]
    with japanese_spacy():
        for t in transforms:
            events = t(events)
    return standardize_events(events)


@dataclass
class TribeOptions:
    checkpoint: str = MODEL_ID
    device: str = "cuda"
    cache: str = "cache/tribev2"
    allow_cpu: bool = False
    subcortical_head: str | None = None
    keep_extractors: bool = True
    loader_workers: int | None = None


class TribeBackend:
    """Loads TRIBE v2 once and predicts one (stimulus, path) at a time."""

    name = "tribev2"

    def __init__(self, opts: TribeOptions):
        self.opts = opts
        self.model = None
        self._kept: dict[str, Any] = {}  # models kept between predict calls (keep_extractors)
        self.head = SubcorticalHead.load(opts.subcortical_head) if opts.subcortical_head else None

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> None:
        if self.model is not None:
            return
        problems = install_problems()
        if problems:
            raise TribeUnavailable("TRIBE v2 is not usable here:\n  - " + "\n  - ".join(problems)
                                   + "\n(see docs/brain-gpu-recipe.md; `breachlab brain doctor` checks everything)")
        import torch

        device = self.opts.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise TribeUnavailable("--device cuda but no CUDA device is visible (torch.cuda.is_available() is False); "
                                   "TRIBE v2's feature extractors are pinned to CUDA — run on a GPU (see the recipe)")
        config_update: dict[str, Any] = {}
        if not device.startswith("cuda"):
            if not self.opts.allow_cpu:
                raise TribeUnavailable(f"--device {device}: TRIBE v2's extractors (Llama-3.2-3B, w2v-bert-2.0, "
                                       "V-JEPA2) are pinned to CUDA in its config; pass --allow-cpu to override "
                                       "(untested, hours per stimulus)")
            config_update.update({f"data.{m}_feature.device": "cpu" for m in ("text", "audio")})
            config_update["data.video_feature.image.device"] = "cpu"
        if self.opts.loader_workers is not None:
            config_update["data.num_workers"] = self.opts.loader_workers
        from tribev2.demo_utils import TribeModel

        ckpt = Path(self.opts.checkpoint)
        if ckpt.exists() and not ((ckpt / "config.yaml").is_file() and (ckpt / "best.ckpt").is_file()):
            raise TribeUnavailable(f"{ckpt}: a local TRIBE v2 checkpoint folder needs config.yaml and best.ckpt")
        Path(self.opts.cache).mkdir(parents=True, exist_ok=True)
        try:
            self.model = TribeModel.from_pretrained(self.opts.checkpoint, cache_folder=self.opts.cache,
                                                    device=device, config_update=config_update or None)
        except (OSError, ValueError) as exc:
            if ckpt.exists():
                raise
            raise TribeUnavailable(f"could not fetch the TRIBE v2 weights {self.opts.checkpoint!r} "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                   "download config.yaml + best.ckpt from the hub on a connected machine and "
                                   "pass --checkpoint DIR") from None

    def describe(self) -> dict[str, Any]:
        versions = {}
        for dist in ("tribev2", "neuralset", "neuraltrain", "exca", "torch", "transformers", "spacy", "whisperx",
                     "gtts"):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
        return {"backend": self.name, "checkpoint": self.opts.checkpoint, "device": self.opts.device,
                "cache": str(self.opts.cache), "versions": versions,
                "subcortical_head": {"file": self.head.source, "sha256": self.head.sha256,
                                     "n_voxels": int(self.head.weight.shape[1])} if self.head else None}

    # -- events -----------------------------------------------------------------------------
    def video_events(self, video: Path):
        self.load()
        return self.model.get_events_dataframe(video_path=str(video))

    def audio_events(self, audio: Path):
        import pandas as pd
        from tribev2.demo_utils import get_audio_and_text_events

        event = {"type": "Audio", "filepath": str(audio), "start": 0, "timeline": "default", "subject": "default"}
        return get_audio_and_text_events(pd.DataFrame([event]), audio_only=True)

    def text_events(self, words, language: str, *, audio: Path | None, transcript: str, known_text: bool = False):
        return build_text_events(words, language, audio=audio, transcript=transcript, known_text=known_text)

    # -- prediction -------------------------------------------------------------------------
    def predict(self, events) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """(cortical (n_TR, 20484), subcortical (n_TR, V) or None, info)."""
        self.load()
        capture = HeadCapture(self.model, self.head) if self.head is not None else None
        try:
            with keep_extractors(self.opts.keep_extractors, self._kept), capture or contextlib.nullcontext():
                preds, segments = self.model.predict(events, verbose=False)
        except Exception as exc:  # noqa: BLE001 - translate the known failure modes
            raise _explain(exc, set(map(str, events.type))) from exc
        info = {"n_events": int(len(events)), "event_types": sorted(map(str, set(events.type))),
                "n_segments": len(segments)}
        if "Text" in set(events.type):  # the string the text extractor's contexts are cut from
            info["text_event"] = [str(t) for t in events[events.type == "Text"].text]
        sub = None
        if capture is not None:
            hidden, n_empty = capture.rows()
            if hidden.shape[0] != preds.shape[0]:
                raise TribeUnavailable(f"subcortical head: captured {hidden.shape[0]} rows for {preds.shape[0]} TRs")
            sub = self.head.apply(hidden).astype(np.float32)
            info["n_empty_removed"] = n_empty
        return np.asarray(preds, dtype=np.float32), sub, info


@contextlib.contextmanager
def keep_extractors(enabled: bool = True, built: dict[str, Any] | None = None):
    """Keep the feature extractors loaded between ``predict`` calls, only while the block runs.

    Upstream loads them again for every ``predict``: ``tribev2.main.get_loaders`` frees each
    extractor's model after preparing it (``_free_extractor_model``: Llama-3.2-3B, w2v-bert-2.0),
    and neuralset's ``HuggingFaceVideo`` builds a new ``_HFVideoModel`` (V-JEPA2) inside every
    feature call.  With ``enabled``, for the block only, the first is a no-op and the second
    returns the model it built before for the same arguments (kept in ``built``, which the
    caller holds across calls): one load per corpus, at the cost of holding all three in GPU
    memory together.
    """
    if not enabled:
        yield
        return
    import importlib

    tmain = importlib.import_module("tribev2.main")
    try:
        ns_video = importlib.import_module("neuralset.extractors.video")
    except ImportError:  # another neuralset layout: only the free step is worked around
        ns_video = None
    free = getattr(tmain, "_free_extractor_model", None)
    video_model = getattr(ns_video, "_HFVideoModel", None)
    if free is not None:
        tmain._free_extractor_model = lambda extractor: None
    if isinstance(video_model, type):
        ns_video._HFVideoModel = _built_once(video_model, {} if built is None else built)
    try:
        yield
    finally:
        if free is not None:
            tmain._free_extractor_model = free
        if video_model is not None:
            ns_video._HFVideoModel = video_model


def _built_once(cls: type, built: dict[str, Any]) -> type:
    """A subclass of ``cls`` whose construction returns the instance already in ``built`` for the same arguments."""

    class BuiltOnce(cls):  # type: ignore[misc, valid-type]
        def __new__(sub, *args, **kwargs):
            key = repr((cls.__module__, cls.__qualname__, args, sorted(kwargs.items())))
            if key not in built:
                obj = cls.__new__(cls)
                obj.__init__(*args, **kwargs)
                built[key] = obj
            return built[key]  # an instance of cls, not of sub: Python does not run __init__ again

    BuiltOnce.__name__ = BuiltOnce.__qualname__ = cls.__name__
    return BuiltOnce


def _explain(exc: Exception, event_types: set[str] = frozenset()) -> Exception:
    msg = str(exc)
    low = msg.lower()
    first = msg.splitlines()[0] if msg else ""
    if any(s in low for s in ("gated", "401", "403", "restricted", "awaiting a review")) or (
            "llama" in low and ("access" in low or "token" in low)):
        return TribeUnavailable(f"the text extractor {LLAMA_ID} is a gated model: accept its licence on the "
                                "Hugging Face hub, then `huggingface-cli login` (or set HF_TOKEN), or pre-download "
                                f"it and set HF_HUB_OFFLINE=1 "
                                f"({type(exc).__name__}: {msg.splitlines()[0] if msg else ''})")
    if isinstance(exc, OSError) and ("couldn't connect" in low or "cached files" in low or "offline" in low):
        repos = [EXTRACTOR_IDS[t] for t in ("Word", "Audio", "Video") if t in event_types]
        return TribeUnavailable(f"the weights of {' / '.join(repos) or 'a feature extractor'} are not on this machine "
                                f"and the hub cannot be reached ({type(exc).__name__}: {first}); on a connected "
                                f"machine: huggingface-cli download {' '.join(repos) or 'REPO'}, then set "
                                "HF_HUB_OFFLINE=1 (`breachlab brain doctor` lists what is cached)")
    if "out of memory" in low:
        return TribeUnavailable(f"CUDA out of memory: TRIBE v2's extractors need ~25 GB; use an A100/H100 "
                                f"({msg.splitlines()[0]})")
    if "cuda" in low and ("not available" in low or "no cuda" in low or "driver" in low):
        return TribeUnavailable(f"CUDA problem in a feature extractor: {msg.splitlines()[0]}")
    return exc
