"""TribeModel test double: upstream's signatures, validation and output shapes."""
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from neuralset.events.transforms import (AddContextToWords, AddSentenceToWords, AddText, ChunkEvents,
                                         ExtractAudioFromVideo, RemoveMissing)
from neuralset.events.utils import standardize_events
from tribev2.eventstransforms import ExtractWordsFromAudio

VALID_SUFFIXES = {"text_path": {".txt"}, "audio_path": {".wav", ".mp3", ".flac", ".ogg"},
                  "video_path": {".mp4", ".avi", ".mkv", ".mov", ".webm"}}
N_VERTICES, HIDDEN = 20484, 64  # the real hidden size is 2048


def get_audio_and_text_events(events: pd.DataFrame, audio_only: bool = False) -> pd.DataFrame:
    transforms = [ExtractAudioFromVideo(), ChunkEvents(event_type_to_chunk="Audio", max_duration=60, min_duration=30),
                  ChunkEvents(event_type_to_chunk="Video", max_duration=60, min_duration=30)]
    if not audio_only:
        transforms += [ExtractWordsFromAudio(), AddText(), AddSentenceToWords(max_unmatched_ratio=0.05),
                       AddContextToWords(sentence_only=False, max_context_len=1024, split_field=""), RemoveMissing()]
    events = standardize_events(events)
    for t in transforms:
        events = t(events)
    return standardize_events(events)


class Segment:
    def __init__(self, start, duration, ns_events):
        self.start, self.duration, self.ns_events = start, duration, ns_events


def _vec(key: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return np.random.default_rng(seed).standard_normal(HIDDEN).astype(np.float32)


class _Brain:
    """The network: features per TR → hidden (b, HIDDEN, t) → predictor → (b, 20484, t)."""

    def __init__(self, device):
        import torch

        self.device = device
        g = torch.Generator().manual_seed(0)
        self.predictor = torch.nn.Linear(HIDDEN, N_VERTICES)
        with torch.no_grad():
            self.predictor.weight.copy_(torch.randn(N_VERTICES, HIDDEN, generator=g) * 0.05)
            self.predictor.bias.zero_()

    def __call__(self, hidden):  # hidden: torch (b, HIDDEN, t)
        return self.predictor(hidden.transpose(1, 2)).transpose(1, 2)


class TribeModel:
    cache_folder = "./cache"
    remove_empty_segments = True

    @classmethod
    def from_pretrained(cls, checkpoint_dir, checkpoint_name="best.ckpt", cache_folder=None, cluster=None,
                        device="auto", config_update=None):
        ckpt = Path(checkpoint_dir)
        if not ckpt.exists():  # upstream fetches from the hub here; offline that raises an OSError
            raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files of {checkpoint_dir}")
        config = yaml.safe_load((ckpt / "config.yaml").read_text()) or {}
        if not (ckpt / checkpoint_name).is_file():
            raise FileNotFoundError(ckpt / checkpoint_name)
        xp = cls()
        xp.config = dict(config, **(config_update or {}))
        xp.cache_folder = str(cache_folder or "./cache")
        xp.device = "cpu" if device == "auto" else device
        xp._model = _Brain(xp.device)
        return xp

    def get_events_dataframe(self, text_path=None, audio_path=None, video_path=None):
        provided = {k: v for k, v in (("text_path", text_path), ("audio_path", audio_path),
                                      ("video_path", video_path)) if v is not None}
        if len(provided) != 1:
            raise ValueError(f"Exactly one of text_path, audio_path, video_path must be provided, got: {list(provided) or 'none'}")
        name, value = next(iter(provided.items()))
        path = Path(value)
        if path.suffix.lower() not in VALID_SUFFIXES[name]:
            raise ValueError(f"{name} must end with one of {sorted(VALID_SUFFIXES[name])}, got '{path.suffix}'")
        if not path.is_file():
            raise FileNotFoundError(f"{name} does not exist: {path}")
        if text_path is not None:
            raise RuntimeError("test double: upstream's text path needs gTTS (online) and `uvx whisperx`")
        event = {"type": "Audio" if audio_path else "Video", "filepath": str(path), "start": 0,
                 "timeline": "default", "subject": "default"}
        return get_audio_and_text_events(pd.DataFrame([event]))

    def _features(self, events: pd.DataFrame, t0: float) -> np.ndarray:
        h = np.zeros(HIDDEN, np.float32)
        live = events[(events.start < t0 + 1.0) & (events.stop > t0)]
        for row in live.itertuples():
            if row.type == "Word":
                if self.config.get("simulate") == "gated_llama":
                    raise OSError("You are trying to access a gated repo. Access to model meta-llama/Llama-3.2-3B "
                                  "is restricted. You must have access to it and be authenticated. 401 Client Error")
                ctx = getattr(row, "context", None)
                if not isinstance(ctx, str) or not ctx:
                    raise KeyError("text extractor needs a non-empty 'context' for every Word")
                h += _vec(f"word|{row.language}|{ctx}")
            elif row.type in ("Audio", "Video"):
                digest = hashlib.sha256(Path(row.filepath).read_bytes()).hexdigest()
                h += _vec(f"{row.type}|{digest}|{int(t0 - row.start)}")
        return h

    def predict(self, events: pd.DataFrame, verbose: bool = True):
        import torch

        if getattr(self, "_model", None) is None:
            raise RuntimeError("TribeModel must be instantiated via the .from_pretrained method")
        events = standardize_events(events)
        media = events[events.type.isin(["Audio", "Video", "Word"])]
        if media.empty:
            raise ValueError("no Audio, Video or Word events to predict from")
        n = int(np.ceil(media.stop.max() - 1e-2))
        segments, hidden = [], []
        for k in range(n):
            live = media[(media.start < k + 1.0) & (media.stop > k)]
            segments.append(Segment(float(k), 1.0, list(live.index)))
            hidden.append(self._features(media, float(k)))
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(hidden).T[None])  # (b=1, HIDDEN, t)
            y = self._model(x).numpy()  # (1, 20484, t)
        preds = y[0].T.astype(np.float32)
        keep = np.array([len(s.ns_events) > 0 for s in segments]) if self.remove_empty_segments else np.ones(n, bool)
        return preds[keep], [s for s, k in zip(segments, keep) if k]
