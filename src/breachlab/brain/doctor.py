"""``breachlab brain doctor``: can this machine run the TRIBE v2 encoder, and if not, why not.

    breachlab brain doctor [--checkpoint DIR|facebook/tribev2] [--cache DIR] [--json]

Every check is local (no network): installed packages and their pins, the GPU, the weights
already on disk (TRIBE v2 checkpoint, the gated Llama 3.2 and the other extractors in the
Hugging Face cache), the speech tools, and free disk.  Each line that is not ``ok`` says
exactly what to run.  Exit code 0 when nothing *required* is missing, 1 otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from breachlab.brain.tribe import (
    EXCA_MAX,
    EXTRACTOR_IDS,
    GIT_URL,
    LLAMA_ID,
    MODEL_ID,
    UPSTREAM_COMMIT,
    UPSTREAM_FILES,
    _version_tuple,
)

#: feature extractors TRIBE v2's config loads from the hub (names as in its paper/README)
EXTRACTORS = {EXTRACTOR_IDS["Word"]: "text (gated: accept the licence on the hub, then log in)",
              EXTRACTOR_IDS["Audio"]: "audio", EXTRACTOR_IDS["Video"]: "video (V-JEPA2 ViT-g)"}
NEED_GPU_GIB = 24.0  # post 3: ~25 GB with all three extractors loaded
NEED_DISK_GIB = 30.0


@dataclass
class Check:
    name: str
    status: str  # ok | warn | missing
    detail: str
    fix: str = ""
    required: bool = True


def _ver(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _packages() -> list[Check]:
    out = []
    specs = [("tribev2", None, f"pip install --no-deps 'tribev2 @ {GIT_URL}@{UPSTREAM_COMMIT}'", True),
             ("neuralset", "0.0.2", "pip install 'neuralset==0.0.2'", True),
             ("neuraltrain", "0.0.2", "pip install 'neuraltrain==0.0.2'", True),
             ("exca", None, "pip install 'exca<=0.5.25'", True),
             ("torch", None, "pip install 'torch>=2.5.1,<2.7' (TRIBE v2's pin; a CUDA build)", True),
             ("spacy", None, "pip install spacy", True),
             ("pandas", None, "pip install pandas", True),
             ("gtts", None, "pip install gtts (online TTS, as upstream)", False),
             ("whisperx", None, "pip install uv (upstream runs `uvx whisperx` in its own env; "
                                "whisperx's torch pin clashes with TRIBE v2's)", False),
             ("sudachipy", None, "pip install sudachipy sudachidict_core (Japanese word segmentation)", False)]
    for dist, want, fix, required in specs:
        v = _ver(dist)
        if v is None:
            if dist == "whisperx" and shutil.which("uvx"):
                out.append(Check(dist, "ok", "not installed, but `uvx whisperx` is available (as upstream)",
                                 required=False))
                continue
            out.append(Check(dist, "missing" if required else "warn", "not installed", fix, required))
        elif want and v != want:
            out.append(Check(dist, "missing", f"{v} installed, TRIBE v2 needs {want}", fix, required))
        elif dist == "exca" and _version_tuple(v) > EXCA_MAX:
            out.append(Check(dist, "missing", f"{v} breaks neuralset 0.0.2 (needs <= 0.5.25)", fix, required))
        elif dist == "torch" and not (v.startswith("2.5") or v.startswith("2.6")):
            out.append(Check(dist, "warn", f"{v}; TRIBE v2 pins torch>=2.5.1,<2.7", fix, False))
        else:
            out.append(Check(dist, "ok", v, required=required))
            if dist == "tribev2" and (src := upstream_source()) is not None:
                out.append(src)
    if _ver("spacy"):
        try:
            import spacy.util

            ok = spacy.util.is_package("en_core_web_lg")
        except Exception:  # noqa: BLE001
            ok = False
        out.append(Check("spaCy en_core_web_lg", "ok" if ok else "missing",
                         "installed" if ok else "neuralset downloads it on first use (needs the internet)",
                         "python -m spacy download en_core_web_lg", required=False))
    return out


def upstream_source() -> Check | None:
    """Is the installed tribev2 the commit the contract test runs?  By file content, and by source.

    The files the wrapper calls into (``UPSTREAM_FILES``) are hashed where pip put them; the
    install's ``direct_url.json`` says where they came from (a git commit or an archive).
    """
    try:
        dist = metadata.distribution("tribev2")
    except metadata.PackageNotFoundError:
        return None
    source = "unknown source"
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except (OSError, ValueError):
        direct = {}
    commit = (direct.get("vcs_info") or {}).get("commit_id", "")
    if commit:
        source = f"git commit {commit[:12]}"
    elif direct.get("url"):
        source = direct["url"].rsplit("/", 1)[-1]
    differ, missing = [], []
    for rel, want in UPSTREAM_FILES.items():
        f = Path(dist.locate_file(rel))
        if not f.is_file():
            missing.append(rel)
        elif hashlib.sha256(f.read_bytes()).hexdigest() != want:
            differ.append(rel)
    fix = f"pip install --no-deps --force-reinstall 'tribev2 @ {GIT_URL}@{UPSTREAM_COMMIT}'"
    if not differ and not missing:
        return Check("tribev2 source", "ok",
                     f"{source}; files match commit {UPSTREAM_COMMIT} (the contract-tested one)",
                     required=False)
    what = ", ".join(differ + [f"{m} (absent)" for m in missing])
    return Check("tribev2 source", "warn", f"{source}; differs from commit {UPSTREAM_COMMIT}, the one breachlab's "
                 f"contract test runs: {what}", fix, required=False)


def _gpu() -> list[Check]:
    if _ver("torch") is None:
        return [Check("GPU", "missing", "torch is not installed, so CUDA cannot be checked", "see torch above")]
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return [Check("GPU", "missing", f"torch does not import: {exc}", "reinstall torch")]
    if not torch.cuda.is_available():
        return [Check("GPU", "missing", f"no CUDA device (torch {torch.__version__}, CUDA build: {torch.version.cuda})",
                      "run on a CUDA GPU (Colab A100/H100: docs/brain-gpu-recipe.md); "
                      "the extractors are pinned to CUDA")]
    props = torch.cuda.get_device_properties(0)
    gib = props.total_memory / 2**30
    status = "ok" if gib >= NEED_GPU_GIB else "warn"
    return [Check("GPU", status, f"{props.name}, {gib:.1f} GiB (need ~{NEED_GPU_GIB:.0f} GiB)",
                  "" if status == "ok" else "use a 40/80 GB card (A100/H100)")]


def _hf_cached(repo: str) -> bool:
    hub = Path(os.environ.get("HF_HUB_CACHE")
               or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    return (hub / f"models--{repo.replace('/', '--')}" / "snapshots").is_dir()


def _weights(checkpoint: str) -> list[Check]:
    out = []
    p = Path(checkpoint)
    if p.exists():
        missing = [f for f in ("config.yaml", "best.ckpt") if not (p / f).is_file()]
        out.append(Check("TRIBE v2 weights", "missing" if missing else "ok",
                         f"{p}: missing {', '.join(missing)}" if missing else f"{p} (config.yaml, best.ckpt)",
                         f"download config.yaml and best.ckpt of {MODEL_ID} into {p}"))
    else:
        ok = _hf_cached(checkpoint)
        out.append(Check("TRIBE v2 weights", "ok" if ok else "missing",
                         f"{checkpoint} " + ("in the HF cache" if ok else
                                             "not in the HF cache (downloaded on first use, needs the internet)"),
                         "" if ok else f"huggingface-cli download {checkpoint}", required=False))
    token = os.environ.get("HF_TOKEN") or (Path.home() / ".cache" / "huggingface" / "token").is_file()
    for repo, what in EXTRACTORS.items():
        ok = _hf_cached(repo)
        fix = ""
        if not ok:
            fix = f"huggingface-cli download {repo}"
            if repo == LLAMA_ID and not token:
                fix = f"accept the licence of {repo} on the hub, `huggingface-cli login` (or set HF_TOKEN), then {fix}"
        out.append(Check(f"extractor {repo}", "ok" if ok else "warn", f"{what}: {'cached' if ok else 'not cached'}",
                         fix, required=False))
    return out


def _tools() -> list[Check]:
    out = []
    esp = shutil.which("espeak-ng")
    if esp:
        res = subprocess.run([esp, "--voices=ja"], capture_output=True, text=True)
        ja = len(res.stdout.splitlines()) > 1
        out.append(Check("espeak-ng", "ok" if ja else "warn", f"{esp} ({'with' if ja else 'without'} a Japanese voice)",
                         "" if ja else "apt-get install espeak-ng-data", required=False))
    else:
        out.append(Check("espeak-ng", "warn", "not installed (offline TTS)", "apt-get install espeak-ng",
                         required=False))
    vid = [d for d in ("av", "imageio-ffmpeg", "moviepy") if _ver(d)]
    out.append(Check("video writer", "ok" if vid else "warn",
                     ", ".join(vid) + " (MP4)" if vid else "none: screenshots become MJPEG AVI (FFmpeg reads it)",
                     "" if vid else "pip install av", required=False))
    out.append(Check("ffmpeg", "ok" if shutil.which("ffmpeg") else "warn",
                     shutil.which("ffmpeg") or "not on PATH (moviepy/WhisperX need it)", "apt-get install ffmpeg",
                     required=False))
    return out


def _disk(cache: str) -> Check:
    p = Path(cache)
    while not p.exists() and p != p.parent:
        p = p.parent
    free = shutil.disk_usage(p).free / 2**30
    return Check("disk", "ok" if free >= NEED_DISK_GIB else "warn",
                 f"{free:.0f} GiB free at {p} (weights + features ~{NEED_DISK_GIB:.0f} GiB)",
                 "" if free >= NEED_DISK_GIB else "free space or pass --cache on a larger disk", required=False)


def run_checks(checkpoint: str = MODEL_ID, cache: str = ".") -> list[Check]:
    checks = [Check("python", "ok" if tuple(map(int, platform.python_version_tuple()[:2])) >= (3, 11) else "missing",
                    platform.python_version(), "TRIBE v2 needs Python >= 3.11")]
    checks += _packages() + _gpu() + _weights(checkpoint) + _tools() + [_disk(cache)]
    return checks


def report(checks: list[Check]) -> tuple[str, int]:
    """Human text and the exit code (1 when a required check is missing).

    Only a *required* piece that is missing is marked ``MISSING``; an optional one that is
    absent is ``absent`` — so the count in the last line is the number of ``MISSING`` lines.
    """
    lines = []
    for c in checks:
        mark = {"ok": "ok     ", "warn": "warn   "}.get(c.status) or ("MISSING" if c.required else "absent ")
        lines.append(f"{mark} {c.name}: {c.detail}"
                     + (f"\n          fix: {c.fix}" if c.fix and c.status != "ok" else ""))
    bad = [c for c in checks if c.status == "missing" and c.required]
    optional = [c for c in checks if c.status == "missing" and not c.required]
    lines.append("")
    extra = f"; {len(optional)} optional piece(s) absent" if optional else ""
    lines.append("ready for --backend tribev2" + extra if not bad else
                 f"not ready for --backend tribev2: {len(bad)} required piece(s) MISSING "
                 f"({', '.join(c.name for c in bad)})"
                 f"{extra}; --backend fake still works")
    return "\n".join(lines), 1 if bad else 0


def as_dicts(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]
