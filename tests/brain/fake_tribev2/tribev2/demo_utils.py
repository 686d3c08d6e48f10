"""TribeModel test double: upstream's signatures, validation and output shapes."""
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from neuralset.events.transforms import (
    AddContextToWords,
    AddSentenceToWords,
    AddText,
    ChunkEvents,
    ExtractAudioFromVideo,
    RemoveMissing,
)
from neuralset.events.utils import standardize_events

from tribev2 import main as _main
from tribev2.eventstransforms import ExtractWordsFromAudio

VALID_SUFFIXES = {"text_path": {".txt"}, "audio_path": {".wav", ".mp3", ".flac", ".ogg"},
                  "video_path": {".mp4", ".avi", ".mkv", ".mov", ".webm"}}
N_VERTICES, HIDDEN = 20484, 64  # the real hidden size is 2048
FEATURE_HZ = 2  # upstream's extractors run at 2 Hz, the model pools to 1 row per TR


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


class _EventStore:
    """Events visible to segments only while predict() runs (upstream: the DataLoader's store)."""

    def __init__(self, events):
        self.events, self.open = events, True


class Segment:
    def __init__(self, start, duration, store, timeline="default"):
        self.start, self.duration, self.timeline, self._store = start, duration, timeline, store

    @property
    def ns_events(self):
        if not self._store.open:
            raise RuntimeError("_EventStore not found in this process. This segment was likely unpickled "
                               "outside of a SegmentDataset/DataLoader.")
        ev = self._store.events
        return list(ev.index[(ev.start < self.start + self.duration) & (ev.stop > self.start)])

    def copy(self, offset=0.0, duration=None):
        return Segment(self.start + offset, self.duration if duration is None else duration, self._store, self.timeline)


class _Batch:
    def __init__(self, segments, data):
        self.segments, self.data = segments, data

    def to(self, device):
        return self


def _vec(key: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return np.random.default_rng(seed).standard_normal(HIDDEN).astype(np.float32)


def _brain(n_output_timesteps):
    import torch

    class Predictor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.weights = torch.nn.Parameter(torch.randn(1, HIDDEN, N_VERTICES, generator=g) * 0.05)

        def forward(self, x, subject_id=None):  # (B, C, T) → (B, O, T)
            return torch.einsum("bct,cd->bdt", x, self.weights[0])

    class Brain(torch.nn.Module):
        """features at FEATURE_HZ over a segment → predictor → pooler to one row per TR (upstream's layout)."""

        def __init__(self):
            super().__init__()
            self.predictor = Predictor()
            self.pooler = torch.nn.AdaptiveAvgPool1d(n_output_timesteps)

        @property
        def device(self):
            return self.predictor.weights.device

        def forward(self, batch, pool_outputs=True):
            x = batch.data["features"]  # (B, HIDDEN, T·FEATURE_HZ)
            x = self.predictor(x, batch.data.get("subject_id"))
            return self.pooler(x) if pool_outputs else x

    return Brain()


class _Data(_main.Data):
    def __init__(self, config):
        super().__init__()
        data = config.get("data") or {}
        self.TR = float(data.get("TR", 1.0))
        self.duration_trs = int(data.get("duration_trs", 4))
        self.batch_size = int(data.get("batch_size", 2))


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
        xp.data = _Data(xp.config)
        xp._model = _brain(xp.data.duration_trs)
        return xp

    def get_events_dataframe(self, text_path=None, audio_path=None, video_path=None):
        provided = {k: v for k, v in (("text_path", text_path), ("audio_path", audio_path),
                                      ("video_path", video_path)) if v is not None}
        if len(provided) != 1:
            raise ValueError(f"Exactly one of text_path, audio_path, video_path must be provided, "
                             f"got: {list(provided) or 'none'}")
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
        live = events[(events.start < t0 + 1.0 / FEATURE_HZ) & (events.stop > t0)]
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
                h += _vec(f"{row.type}|{digest}|{int(round((t0 - row.start) * FEATURE_HZ))}")
        return h

    def predict(self, events: pd.DataFrame, verbose: bool = True):
        """Upstream's loop: segments of duration_trs TRs, batched; ns_events readable inside the loop only."""
        import torch

        if getattr(self, "_model", None) is None:
            raise RuntimeError("TribeModel must be instantiated via the .from_pretrained method")
        events = standardize_events(events)
        media = events[events.type.isin(["Audio", "Video", "Word"])]
        if media.empty:
            raise ValueError("no Audio, Video or Word events to predict from")
        self.data.get_loaders(media)  # prepares the extractors (and frees them, as upstream does)
        tr, n_seg_tr = self.data.TR, self.data.duration_trs
        n = int(np.ceil((media.stop.max() - 1e-2) / (tr * n_seg_tr)))
        store = _EventStore(media)
        segs = [Segment(k * n_seg_tr * tr, n_seg_tr * tr, store) for k in range(n)]
        preds, all_segments = [], []
        try:
            with torch.inference_mode():
                for b in range(0, n, self.data.batch_size):
                    chunk = segs[b: b + self.data.batch_size]
                    feats = [[self._features(media, s.start + j / FEATURE_HZ) for j in range(n_seg_tr * FEATURE_HZ)]
                             for s in chunk]
                    batch = _Batch(chunk, {"features": torch.from_numpy(np.stack(feats)).transpose(1, 2).contiguous()})
                    sub = [s.copy(offset=t, duration=tr) for s in chunk for t in np.arange(0, s.duration - 1e-2, tr)]
                    keep = (np.array([len(s.ns_events) > 0 for s in sub]) if self.remove_empty_segments
                            else np.ones(len(sub), bool))
                    y = self._model(batch).numpy()  # (B, 20484, duration_trs)
                    preds.append(y.transpose(0, 2, 1).reshape(-1, N_VERTICES)[keep])
                    all_segments.extend(s for s, k in zip(sub, keep) if k)
        finally:
            store.open = False  # upstream's DataLoader store is gone once predict returns
        return np.concatenate(preds).astype(np.float32), all_segments
