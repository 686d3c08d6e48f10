"""Corpus → predictions store: ``breachlab brain encode CORPUS_RUN --backend tribev2|fake``.

    breachlab brain encode runs/render-seed --backend tribev2 --out runs/encode-seed
    breachlab brain encode runs/render-seed --backend tribev2 --out runs/encode-seed   # resumes
    breachlab brain encode runs/render-seed --backend fake --paths text,screenshot      # dry run, no GPU

One backend interface (``video_events`` / ``audio_events`` / ``text_events`` / ``predict``),
two backends: :class:`breachlab.brain.tribe.TribeBackend` (the real model) and
:class:`FakeBackend` (deterministic noise for dry runs, marked SYNTHETIC).  The stimulus-side
work — TTS, word timings, still videos — is shared, so the fake backend exercises the same
files a GPU run will use.

Resume: pointing ``--out`` at an existing encode run skips every (stimulus, path) already in
its ``predictions/index.json`` (the index is rewritten after each prediction, so a crash loses
at most the one in flight).  The run's manifest records, per prediction, wall seconds, peak
GPU memory, the TTS engine/voice, the aligner and the events the model saw.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breachlab.config import ConfigError, field
from breachlab.errors import UserError

log = logging.getLogger("breachlab.brain")

BACKENDS = ("tribev2", "fake")
TEXT_MODES = ("speech", "words", "reading")
ALIGNERS = ("auto", "whisperx", "even")
#: choices that reach the network (Google's TTS service; uvx fetching whisperx and its models)
NETWORK_HELPERS = ("gtts", "whisperx")
FAKE_MODEL = "SYNTHETIC (breachlab brain encode --backend fake: deterministic noise, not TRIBE v2)"
SUBCORTICAL_NOT_PREDICTED = ("not predicted: the released TRIBE v2 checkpoint has a cortical head only "
                             "(fsaverage5, 20484 vertices); amygdala / nucleus accumbens are missing, never 0")
#: config keys that must match when a run is resumed
RESUME_KEYS = ("backend", "checkpoint", "tts", "aligner", "text_mode", "n_frames", "fps", "subcortical_head",
               "whisper_model", "seed")


@dataclass
class EncodeConfig:
    backend: str = field("tribev2", help="tribev2 (the real model, GPU) | fake (deterministic noise, SYNTHETIC)")
    paths: list[str] = field(default_factory=lambda: ["text", "screenshot"],
                             help="paths to predict: text, screenshot, audio")
    device: str = field("cuda", help="torch device for TRIBE v2 (its extractors are pinned to CUDA)")
    allow_cpu: bool = field(False, help="let --device cpu through (untested upstream; very slow)")
    cache: str | None = field(None, help="TRIBE v2 feature cache (default: <run>/cache); "
                                         "reuse across runs to save GPU time")
    checkpoint: str = field("facebook/tribev2", help="hub id or local folder with config.yaml + best.ckpt")
    tts: str = field("espeak-ng", help="speech engine for text/audio paths: espeak-ng (offline, default) | "
                                        "gtts (online, upstream; needs allow_network) | "
                                        "auto (gTTS when allow_network, else espeak-ng)")
    tts_rate_wpm: int = field(150, help="espeak-ng speaking rate, words per minute")
    aligner: str = field("auto", help="word timings: even (offline, proportional) | "
                                      "whisperx (upstream; downloads models and, via uvx, unpinned code: "
                                      "needs allow_network) | auto (whisperx only with allow_network)")
    allow_network: bool = field(False, help="let network helpers run (gTTS, uvx whisperx); "
                                            "off: nothing leaves the machine")
    whisper_model: str = field("large-v3", help="WhisperX ASR model, as upstream (large-v3; e.g. base or small "
                                                "for a quicker, rougher alignment); runs on CUDA when available, "
                                                "float16 and batch 16 as upstream, int8 on the CPU (no float16 there)")
    text_mode: str = field("speech", help="text path: speech (audio+words, as upstream/post) | "
                                          "words (words at speech timings, no audio) | "
                                          "reading (reading pace, no TTS)")
    n_frames: int = field(16, help="frames of the still video for the screenshot path (post 3: 16)")
    fps: float | None = field(None, help="frame rate of the still video (default: the render run's, else 8)")
    subcortical_head: str | None = field(None, help="user-supplied subcortical head "
                                                    "(.pt/.npz: weight (2048, V), bias, labels)")
    keep_extractors: bool = field(True, help="keep TRIBE v2's feature extractors loaded between stimuli: one load per "
                                             "run, all three in GPU memory together (false: upstream's free and "
                                             "reload after every prediction)")
    loader_workers: int | None = field(None, help="DataLoader worker processes in TRIBE v2's predict (default: the "
                                                  "checkpoint's own, 20 in upstream's config; 0 = in the main process, "
                                                  "quickest for short stimuli on few CPU cores)")
    seed: int = field(0, help="seed of the fake backend")

    def __post_init__(self) -> None:
        from breachlab.brain.predictions import PATHS
        from breachlab.brain.tts import ENGINES

        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        bad = [p for p in self.paths if p not in PATHS]
        if bad or not self.paths or len(set(self.paths)) != len(self.paths):
            raise ConfigError(f"paths must be distinct values of {', '.join(PATHS)}; got {self.paths}")
        if self.tts not in ENGINES and self.tts != "espeak":
            raise ConfigError(f"tts must be one of {', '.join(ENGINES)}, got {self.tts!r}")
        if self.aligner not in ALIGNERS:
            raise ConfigError(f"aligner must be one of {', '.join(ALIGNERS)}, got {self.aligner!r}")
        online = [f"{k} {v}" for k, v in (("--tts", self.tts), ("--aligner", self.aligner)) if v in NETWORK_HELPERS]
        if online and self.backend == "fake":
            raise ConfigError(f"{' and '.join(online)} use the network; --backend fake runs no network helper "
                              "(use --tts espeak-ng --aligner even)")
        if online and not self.allow_network:
            raise ConfigError(f"{' and '.join(online)} use the network; add --allow-network, or stay offline with "
                              "--tts espeak-ng --aligner even")
        if self.text_mode not in TEXT_MODES:
            raise ConfigError(f"text_mode must be one of {', '.join(TEXT_MODES)}, got {self.text_mode!r}")
        if self.loader_workers is not None and self.loader_workers < 0:
            raise ConfigError(f"loader_workers must be >= 0, got {self.loader_workers}")
        if self.n_frames < 1 or (self.fps is not None and self.fps <= 0) or self.tts_rate_wpm < 40:
            raise ConfigError("n_frames >= 1, fps > 0 and tts_rate_wpm >= 40 are required")


@dataclass
class Stimulus:
    """One message with the files the paths need (from a render run, else made on the fly)."""

    message: Any
    png: Path | None
    fps: float | None


def load_stimuli(source: str | Path, work: Path) -> tuple[Any, list[Stimulus], Path | None]:
    """(corpus, stimuli, render run or None) for a render run directory or a corpus file."""
    from breachlab.brain.corpus import load_corpus

    source = Path(source)
    corpus = load_corpus(source)
    render_run = source if source.is_dir() and (source / "stimuli.json").is_file() else None
    rendered: dict[str, dict[str, Any]] = {}
    if render_run:
        for s in json.loads((render_run / "stimuli.json").read_text(encoding="utf-8"))["stimuli"]:
            rendered[s["id"]] = s
    out = []
    for m in corpus:
        s = rendered.get(m.id)
        png, fps = None, None
        if s:
            png = render_run / s["screenshot"]
            vid = render_run / s.get("video", "")
            if vid.is_file():
                fps = float(json.loads(vid.read_text(encoding="utf-8")).get("fps") or 0) or None
        out.append(Stimulus(m, png, fps))
    return corpus, out, render_run


def _screenshot(stim: Stimulus, work: Path) -> Path:
    if stim.png and stim.png.is_file():
        return stim.png
    from breachlab.brain import render

    png = work / "screenshots" / f"{stim.message.id}.png"
    if not png.is_file():
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(render.png_bytes(render.render_message(stim.message)))
    return png


def network_allowed(cfg: EncodeConfig) -> bool:
    """Network helpers may run only with ``allow_network`` and never for the fake backend."""
    return cfg.allow_network and cfg.backend != "fake"


def resolve_aligner(cfg: EncodeConfig) -> str:
    """``auto`` → WhisperX only where the network is allowed and WhisperX (or uvx) exists, else ``even``."""
    if cfg.aligner != "auto":
        return cfg.aligner
    import shutil

    if network_allowed(cfg) and (shutil.which("whisperx") or shutil.which("uvx")):
        return "whisperx"
    return "even"


def prepare_events(backend, stim: Stimulus, path: str, cfg: EncodeConfig, work: Path) -> tuple[Any, dict[str, Any]]:
    """The events the model sees for one (stimulus, path), and what was done to make them."""
    from breachlab.brain import stillvideo, tts, words

    m = stim.message
    info: dict[str, Any] = {"language": m.language}
    if path == "screenshot":
        fps = cfg.fps or stim.fps or 8.0
        png = _screenshot(stim, work)
        video = stillvideo.write_still_video(png, work / "video" / f"{m.id}-{cfg.n_frames}f-{fps:g}fps",
                                             n_frames=cfg.n_frames, fps=fps)
        info.update(video=str(video.relative_to(work.parent)), n_frames=cfg.n_frames, fps=fps,
                    duration_s=round(cfg.n_frames / fps, 4))
        return backend.video_events(video), info
    gtts_code, voice, wx_code, _ = tts.language_codes(m.language)
    if path == "text" and cfg.text_mode == "reading":
        ws = words.reading_words(m.text, m.language)
        transcript = " ".join(m.text.split())
        info.update(text_mode="reading", aligner="reading-pace", n_words=len(ws))
        return backend.text_events(ws, m.language, audio=None, transcript=transcript, known_text=True), info
    speech = tts.get_engine(cfg.tts, rate_wpm=cfg.tts_rate_wpm,
                            allow_network=network_allowed(cfg)).synthesize(m.text, m.language, work / "audio")
    info.update(tts=speech.engine, voice=speech.voice, audio=str(speech.path.relative_to(work.parent)),
                audio_s=speech.duration_s)
    if path == "audio":
        return backend.audio_events(speech.path), info
    aligner = resolve_aligner(cfg)
    if aligner == "whisperx":
        ws, transcript = words.whisperx_words(speech.path, wx_code, model=cfg.whisper_model,
                                              allow_network=network_allowed(cfg))
    else:
        if speech.path.suffix != ".wav":
            raise UserError("--aligner even needs WAV speech (espeak-ng); "
                            "with gTTS use --aligner whisperx --allow-network")
        start, end = words.speech_bounds(speech.path)
        ws = words.even_words(m.text, m.language, start, end)
        transcript = " ".join(m.text.split())
    info.update(text_mode=cfg.text_mode, aligner=aligner, whisperx_language=wx_code if aligner == "whisperx" else None,
                n_words=len(ws), transcript=transcript,
                segmenter=words.segmenter_name() if m.language == "ja" else "whitespace")
    audio = speech.path if cfg.text_mode == "speech" else None
    return backend.text_events(ws, m.language, audio=audio, transcript=transcript,
                               known_text=aligner != "whisperx"), info


# -- the fake backend -------------------------------------------------------------------
class FakeBackend:
    """Deterministic pseudo-predictions with TRIBE v2's shapes, for dry runs without a GPU.

    The values depend on the events (word texts and timings, file contents), so EN and JA,
    text and screenshot differ, and the same inputs always give the same arrays.  The store is
    marked SYNTHETIC: figures and reports say so.
    """

    name = "fake"
    model_id = FAKE_MODEL
    head = None

    def __init__(self, seed: int = 0, tr_s: float = 1.0):
        self.seed, self.tr_s = seed, tr_s

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "seed": self.seed}

    def video_events(self, video: Path):
        from breachlab.brain import stillvideo

        dur = stillvideo.avi_info(video)["duration_s"] if video.suffix == ".avi" else None
        return [{"type": "Video", "filepath": str(video), "start": 0.0, "duration": dur,
                 "sha": hashlib.sha256(video.read_bytes()).hexdigest()}]

    def audio_events(self, audio: Path):
        from breachlab.brain.tts import wav_duration

        dur = wav_duration(audio) if audio.suffix == ".wav" else None
        return [{"type": "Audio", "filepath": str(audio), "start": 0.0, "duration": dur,
                 "sha": hashlib.sha256(audio.read_bytes()).hexdigest()}]

    def text_events(self, words, language: str, *, audio: Path | None, transcript: str, known_text: bool = False):
        ev = self.audio_events(audio) if audio else []
        return ev + [{"type": "Word", "text": w.text, "start": w.start, "duration": w.duration, "language": language}
                     for w in words]

    def predict(self, events) -> tuple[np.ndarray, None, dict[str, Any]]:
        from breachlab.brain.predictions import N_VERTICES

        stop = max((e["start"] + (e["duration"] or 2.0)) for e in events)
        n = max(1, math.ceil(stop / self.tr_s))
        key = json.dumps([{k: v for k, v in e.items() if k != "filepath"} for e in events], sort_keys=True, default=str)
        seed = int.from_bytes(hashlib.sha256(f"{self.seed}|{key}".encode()).digest()[:8], "big")
        rng = np.random.default_rng(seed)
        base = np.repeat(rng.standard_normal(N_VERTICES // 4), 4)
        course = np.sin(np.linspace(0.3, 2.5, n))[:, None]
        preds = (0.1 * course * base[None, :] + 0.01 * rng.standard_normal((n, N_VERTICES))).astype(np.float32)
        return preds, None, {"n_events": len(events), "event_types": sorted({e["type"] for e in events})}


def make_backend(cfg: EncodeConfig, cache: Path):
    if cfg.backend == "fake":
        if cfg.subcortical_head:
            raise UserError("--subcortical-head needs --backend tribev2")
        return FakeBackend(cfg.seed)
    from breachlab.brain.tribe import TribeBackend, TribeOptions

    b = TribeBackend(TribeOptions(checkpoint=cfg.checkpoint, device=cfg.device, cache=str(cache),
                                  allow_cpu=cfg.allow_cpu, subcortical_head=cfg.subcortical_head,
                                  keep_extractors=cfg.keep_extractors, loader_workers=cfg.loader_workers))
    b.model_id = cfg.checkpoint
    return b


# -- the stage --------------------------------------------------------------------------
def _gpu_start() -> bool:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return False
    torch.cuda.reset_peak_memory_stats()
    return True


def _gpu_peak_mib() -> float | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def _open_or_create(cfg: EncodeConfig, source: Path, out: str | Path | None, root: str | Path):
    from breachlab.config import to_dict
    from breachlab.rundir import RunDir

    if out is not None and Path(out).is_dir() and (Path(out) / "manifest.json").is_file():
        run = RunDir.open(out)
        if run.manifest.get("kind") != "brain-encode":
            raise UserError(f"{out} is a {run.manifest.get('kind')} run, not an encode run; choose another --out")
        old, new = run.config_dict(), to_dict(cfg)
        diff = [k for k in RESUME_KEYS if old.get(k) != new.get(k)]
        if diff:
            raise UserError(f"cannot resume {out}: "
                            f"{', '.join(f'{k} was {old.get(k)!r}, now {new.get(k)!r}' for k in diff)}; "
                            "use a new --out")
        return run, True
    return RunDir.create("brain-encode", cfg, root=root, out=out, seed=cfg.seed, inputs=[source]), False


def run_encode(source: str | Path, cfg: EncodeConfig, *, out: str | Path | None = None, root: str | Path = "runs",
               progress: bool = True) -> Path:
    """Predict every (message, path) of a render run or corpus file into a predictions store."""
    from breachlab.brain.corpus import dump_corpus
    from breachlab.brain.predictions import Entry, StoreMeta, StoreWriter, validate_array
    from breachlab.rundir import atomic_write_json

    source = Path(source)
    run, resumed = _open_or_create(cfg, source, out, root)
    work = run.path / "work"
    work.mkdir(exist_ok=True)
    cache = Path(cfg.cache) if cfg.cache else run.path / "cache"
    with run.running("breachlab"):
        corpus, stimuli, render_run = load_stimuli(source, work)
        if not (run.path / "corpus.json").is_file():
            dump_corpus(corpus, run.path / "corpus.json")
        backend = make_backend(cfg, cache)
        if hasattr(backend, "load"):
            backend.load()  # fail fast: CUDA, weights, pins
        notes = {"backend": cfg.backend, "corpus_run": str(source.resolve()),
                 "render_run": str(render_run.resolve()) if render_run else None, "paths": list(cfg.paths),
                 "text_mode": cfg.text_mode, "tts": cfg.tts, "aligner": cfg.aligner, "n_frames": cfg.n_frames,
                 "subcortical": ({"status": "predicted by a user-supplied head; "
                                            "arrays in predictions/<id>.<path>.subcortical.npy",
                                  "head": cfg.subcortical_head,
                                  "labels": list(getattr(getattr(backend, "head", None), "labels", None) or [])}
                                 if cfg.subcortical_head else SUBCORTICAL_NOT_PREDICTED),
                 "japanese": "word timings via WhisperX --language ja regrouped into words; Text event unspaced; "
                             "neuralset spaCy lookup served by breachlab for ja (docs/brain-gpu-recipe.md)"}
        writer = StoreWriter(run.path, StoreMeta(model=backend.model_id, synthetic=cfg.backend == "fake",
                                                 has_subcortical=bool(cfg.subcortical_head), notes=notes))
        done: set[tuple[str, str]] = set()
        index = run.path / "predictions" / "index.json"
        if index.is_file():
            for raw in json.loads(index.read_text(encoding="utf-8")).get("entries", []):
                e = Entry(**raw)
                f = run.path / "predictions" / e.file
                try:
                    validate_array(np.load(f, allow_pickle=False), f"{e.stimulus_id}/{e.path}")
                except (OSError, ValueError, UserError):
                    log.warning("resume: %s/%s is unreadable; predicting it again", e.stimulus_id, e.path)
                    continue
                writer.entries.append(e)
                done.add(e.key)
        records: dict[str, Any] = dict(run.manifest.get("stimuli", {})) if resumed else {}
        todo = [(s, p) for s in stimuli for p in cfg.paths if (s.message.id, p) not in done]
        log.info("encode: %d predictions to make, %d already done", len(todo), len(done))
        run.update_manifest(backend=backend.describe(), resumed=resumed, n_done_before=len(done),
                            synthetic=cfg.backend == "fake")
        bar = _progress(progress, len(todo), len(done) + len(todo), len(done))
        try:
            for stim, path in todo:
                m = stim.message
                bar.describe(f"{m.id} [{path}]")
                t0 = time.perf_counter()
                on_gpu = _gpu_start()
                events, info = prepare_events(backend, stim, path, cfg, work)
                t1 = time.perf_counter()
                preds, sub, pinfo = backend.predict(events)
                writer.add(m, path, preds)
                if sub is not None:
                    np.save(run.path / "predictions" / f"{m.id}.{path}.subcortical.npy", sub)
                writer.close()
                info.update(pinfo, n_tr=int(preds.shape[0]), prepare_s=round(t1 - t0, 3),
                            predict_s=round(time.perf_counter() - t1, 3), seconds=round(time.perf_counter() - t0, 3),
                            gpu_peak_mib=_gpu_peak_mib() if on_gpu else None)
                records[f"{m.id}/{path}"] = info
                run.update_manifest(stimuli=records)
                bar.advance()
        finally:
            bar.close()
        writer.close()
        atomic_write_json(run.path / "encode_summary.json", {
            "n_predictions": len(writer.entries), "skipped_as_done": len(done), "made_now": len(todo),
            "seconds_total": round(sum(r.get("seconds", 0) for r in records.values()), 2),
            "gpu_peak_mib_max": max((r.get("gpu_peak_mib") or 0 for r in records.values()), default=0) or None,
            "config": asdict(cfg)})
    return run.path


class _progress:
    """A rich progress bar (or nothing), with the same three calls either way."""

    def __init__(self, enabled: bool, n_todo: int, total: int, completed: int):
        self.p = None
        if enabled and n_todo:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.p = Progress(TextColumn("encode {task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), transient=False)
            self.p.start()
            self.task = self.p.add_task("", total=total, completed=completed)

    def describe(self, text: str) -> None:
        if self.p:
            self.p.update(self.task, description=text)

    def advance(self) -> None:
        if self.p:
            self.p.advance(self.task)

    def close(self) -> None:
        if self.p:
            self.p.stop()
