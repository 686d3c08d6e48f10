"""Weight-free stand-ins for TRIBE v2's feature extractors, for the contract test's own venv.

Imported (and :func:`install` called) inside the contract venv only, before
``TribeModel.from_pretrained``.  Upstream's config and neuralset's extractor classes stay as
they are — ``HuggingFaceText`` (Llama-3.2-3B), ``Wav2VecBert`` (w2v-bert-2.0) and
``HuggingFaceVideo`` with V-JEPA2 — and only the step that would fetch weights from the hub is
replaced by a small deterministic network with the real hidden sizes:

* text:  the tokenizer and causal LM behind ``HuggingFaceText.model``: bytes as tokens, each
  layer's state a running mean of byte embeddings (left context only, like a causal LM);
* audio: ``Wav2VecBert``'s feature extractor (log-energy frames at 50 Hz) and model;
* video: ``neuralset.extractors.video._HFVideoModel`` (what loads V-JEPA2): pooled pixels of
  the 64 frames of each clip through fixed random projections;
* spaCy's ``en_core_web_lg`` (neuralset downloads it): a blank English pipeline with the
  rule-based sentencizer.

Everything else — events, transforms, WhisperX-free word timing, segmenting, the extractors'
own timing, layer and token aggregation, caching, the data loader, the FmriEncoder and
``predict`` — is upstream's code.  ``LOADS`` counts model loads per extractor, so the test can
see upstream's free-and-reload and the wrapper's one load per corpus.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

#: hidden sizes of the real extractors (Llama-3.2-3B, w2v-bert-2.0, V-JEPA2 giant); the layer
#: counts are smaller than theirs (28, 24, 40) to keep the CPU test quick: upstream selects
#: layers by fraction ([0.5, 0.75, 1.0] → two group means), so the output shapes are the same
TEXT_DIM, TEXT_LAYERS = 3072, 4
AUDIO_DIM, AUDIO_LAYERS = 1024, 4
VIDEO_DIM, VIDEO_LAYERS = 1408, 4
LOADS: dict[str, int] = {}


def _proj(key: str, n_in: int, n_out: int) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 2**63
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_in, n_out, generator=g) / np.sqrt(n_in)


class _Outputs(dict):
    """transformers' ModelOutput in miniature: ``"hidden_states" in out`` and ``out.hidden_states``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _count(name: str) -> None:
    LOADS[name] = LOADS.get(name, 0) + 1


# -- text -------------------------------------------------------------------------------
class _Encoding(dict):
    def to(self, device):
        return _Encoding({k: v.to(device) for k, v in self.items()})


class ByteTokenizer:
    """UTF-8 bytes as token ids (0 = pad, ids 1..256), left truncation like upstream's."""

    pad_token = eos_token = "<pad>"
    eos_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [b + 1 for b in text.encode("utf-8")][-512:]

    def __call__(self, texts, add_special_tokens=False, return_tensors="pt", padding=True, truncation=True):
        ids = [self.encode(t) for t in texts]
        n = max(len(i) for i in ids)
        return _Encoding(input_ids=torch.tensor([i + [0] * (n - len(i)) for i in ids]))  # right padding


class ByteLM(torch.nn.Module):
    """(b, n) ids → ``hidden_states``: L+1 tensors (b, n, D); deeper layers mix in more left context."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Parameter(_proj("text-emb", 257, TEXT_DIM) * 4, requires_grad=False)

    def forward(self, input_ids, output_hidden_states=True, **kw):
        x = self.emb[input_ids]  # b, n, D
        causal = x.cumsum(1) / torch.arange(1, x.shape[1] + 1, device=x.device)[None, :, None]
        states, h = [x], x
        for k in range(TEXT_LAYERS):
            h = torch.tanh(0.6 * h + 0.4 * causal)
            states.append(h)
        return _Outputs(hidden_states=tuple(states))


def _text_model(self):
    if not hasattr(self, "_model"):
        _count("text")
        self._tokenizer = ByteTokenizer()
        self._pad_id = 0
        self._model = ByteLM().to(self.device if self.device != "accelerate" else "cpu").eval()
    return self._model


# -- audio ------------------------------------------------------------------------------
class FrameFeatures:
    """Waveform at 16 kHz → (1, frames at 50 Hz, 80) log-energy bands."""

    sampling_rate = 16000

    def __call__(self, wav, return_tensors="pt", sampling_rate=16000, do_normalize=True):
        x = torch.as_tensor(np.asarray(wav), dtype=torch.float32).reshape(-1)
        hop = sampling_rate // 50
        n = max(1, x.shape[0] // hop)
        frames = torch.nn.functional.pad(x, (0, n * hop - x.shape[0] if n * hop > x.shape[0] else 0))[: n * hop]
        spec = torch.fft.rfft(frames.reshape(n, hop), dim=-1).abs()[:, :160].reshape(n, 80, 2).mean(-1)
        return {"input_features": torch.log1p(spec)[None]}


class FrameEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(_proj("audio", 80, AUDIO_DIM), requires_grad=False)

    def forward(self, features, output_hidden_states=True, **kw):
        h = features @ self.w  # 1, t, D
        states = [h]
        for k in range(AUDIO_LAYERS):
            h = torch.tanh(h + 0.1 * torch.roll(h, 1, dims=1))
            states.append(h)
        return _Outputs(hidden_states=tuple(states))


def _audio_feature_extractor(self, model_name):
    return FrameFeatures()


def _audio_model(self, model_name):
    _count("audio")
    return FrameEncoder().to(self.device).eval()


# -- video ------------------------------------------------------------------------------
class _Device(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    @property
    def device(self):
        return self.anchor.device


class PooledFramesVideoModel:
    """In place of ``_HFVideoModel`` for V-JEPA2: same constructor, ``num_frames``, ``model``, outputs."""

    MODELS = ("vjepa2",)

    def __init__(self, model_name: str, pretrained: bool = True, layer_type: str = "", num_frames: int | None = None):
        if "vjepa2" not in model_name:
            raise ValueError(f"stand-in video model serves V-JEPA2 only, got {model_name!r}")
        _count("video")
        self.model_name, self.layer_type = model_name, layer_type
        self.num_frames = num_frames or 64
        self.model = _Device()
        self.w = _proj("video", 3 * 16, VIDEO_DIM)

    def predict_hidden_states(self, images: np.ndarray, audio=None) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(images), dtype=torch.float32) / 255.0  # f, H, W, 3
        f, h, w, _ = x.shape
        pooled = torch.nn.functional.adaptive_avg_pool2d(x.permute(0, 3, 1, 2), (4, 4))  # f, 3, 4, 4
        tokens = pooled.reshape(f, 3, 16).permute(0, 2, 1).reshape(f, 48) @ self.w  # f tokens, D
        states, hdn = [tokens], tokens
        for k in range(VIDEO_LAYERS):
            hdn = torch.tanh(hdn + 0.05 * hdn.mean(0, keepdim=True))
            states.append(hdn)
        return torch.stack(states)[None]  # B=1, L+1, tokens, D


# -- spaCy ------------------------------------------------------------------------------
def _spacy_model(original):
    def get(model: str):
        import spacy

        if model == "en_core_web_lg" and not spacy.util.is_package(model):
            nlp = spacy.blank("en")
            nlp.add_pipe("sentencizer")
            return nlp
        return original(model)

    return get


def install(video: bool = True) -> None:
    """Replace the weight-loading steps (process-wide; the contract venv's process only).

    ``video=False`` leaves V-JEPA2's loader as upstream has it (the test of how far the
    screenshot path goes without its weights).
    """
    import neuralset.extractors.audio as ns_audio
    import neuralset.extractors.text as ns_text
    import neuralset.extractors.video as ns_video
    import neuralset.utils as ns_utils

    ns_text.HuggingFaceText.model = property(_text_model)
    ns_audio.Wav2VecBert._get_feature_extractor = _audio_feature_extractor
    ns_audio.Wav2VecBert._get_sound_model = _audio_model
    if video and ns_video._HFVideoModel is not PooledFramesVideoModel:
        PooledFramesVideoModel.check_layer_type = staticmethod(ns_video._HFVideoModel.check_layer_type)
        ns_video._HFVideoModel = PooledFramesVideoModel
    ns_utils._get_model = _spacy_model(ns_utils._get_model)
