"""``breachlab vuln export RUN_DIR --format adapter,merged,gguf,gguf-lora --quant f16,q8_0,q5_k_m,q4_k_m``.

Takes a training run directory and reads its ``config.yaml`` (base model, method) instead
of asking again.  Outputs, under ``RUN_DIR/export`` (or ``--out``):

* ``adapter/`` — the PEFT adapter (safetensors), as trained.
* ``merged/`` — adapter merged into the *full-precision* base (the original checkpoint
  loaded in fp32, never the 4-bit copy a QLoRA run trained on), saved in 16-bit.
* ``gguf/model-<quant>.gguf`` — llama.cpp's own ``convert_hf_to_gguf.py`` on ``merged/``
  (f32/f16/bf16), then ``llama_cpp.llama_model_quantize`` for Q8_0/Q5_K_M/Q4_K_M.
* ``gguf/adapter-f16.gguf`` (+ ``base-f16.gguf``) — a GGUF LoRA via
  ``convert_lora_to_gguf.py``, to switch adapters at run time on one base.

The converters ship in the ``llama-cpp-python`` sdist (``vendor/llama.cpp``).  No code found
lying around is ever run: the sdist of the installed version is fetched by ``pip download``
with its sha256 pinned here (:data:`PINNED_SDISTS`; pip checks it, and so does this module
before extracting), or read from ``BREACHLAB_LLAMA_CPP_SDIST=FILE`` on an air-gapped machine
(same hash check).  ``BREACHLAB_LLAMA_CPP_SRC=DIR`` names a llama.cpp checkout you vouch for
instead.  The unpacked converters are cached with the hash they came from.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from breachlab.config import ConfigError, field
from breachlab.errors import UserError

log = logging.getLogger("breachlab.vuln.export")

FORMATS = ("adapter", "merged", "gguf", "gguf-lora")
CONVERT_TYPES = ("f32", "f16", "bf16")
QUANT_TYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
               "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
               "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}
_SDIST_MEMBERS = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/")
# sha256 of the llama-cpp-python sdist on PyPI, per version (checked before anything is extracted)
PINNED_SDISTS = {
    "0.3.36": "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
}
_MARKER = ".sdist-sha256"


@dataclass
class ExportConfig:
    """What to export from a training run."""

    run: str = field("", help="training run directory (from `breachlab vuln train`)")
    formats: list[str] = field(default_factory=lambda: ["adapter", "merged", "gguf"],
                               help="any of adapter, merged, gguf, gguf-lora")
    quants: list[str] = field(default_factory=lambda: ["f16", "q8_0", "q5_k_m", "q4_k_m"],
                              help="GGUF types: f32, f16, bf16 (converter), q8_0, q5_k_m, q4_k_m (quantiser)")
    weights: str = field("best", help="best (best validation number, see the run's select_on), final, or checkpoint "
                                      "(the newest checkpoint of a run that is still going or was killed)")
    dtype: str = field("bfloat16", help="merged safetensors dtype: bfloat16, float16 or float32")
    threads: int = field(0, help="quantiser threads (0 = all cores)")
    allow_network: bool = field(False, help="GGUF formats: let export fetch llama.cpp's converters once (the "
                                            "llama-cpp-python sdist from PyPI, sha256-pinned, then cached); "
                                            "offline, set BREACHLAB_LLAMA_CPP_SDIST to a copy instead")

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ConfigError(f"formats must be a non-empty subset of {', '.join(FORMATS)}; got {self.formats}")
        badq = [q for q in self.quants if q.lower() not in (*CONVERT_TYPES, *QUANT_TYPES)]
        if badq:
            raise ConfigError(f"unknown quant type(s) {badq}; use {', '.join((*CONVERT_TYPES, *QUANT_TYPES))}")
        self.quants = [q.lower() for q in self.quants]
        if self.weights not in ("best", "final", "checkpoint"):
            raise ConfigError("weights must be best, final or checkpoint")
        if self.dtype not in ("bfloat16", "float16", "float32"):
            raise ConfigError("dtype must be bfloat16, float16 or float32")


# ---------------------------------------------------------------------------------------
# llama.cpp converters
# ---------------------------------------------------------------------------------------
def llama_cpp_src(allow_network: bool = False) -> Path:
    """A folder holding llama.cpp's ``convert_hf_to_gguf.py`` (and its ``gguf-py``), from a
    source pinned by hash or named explicitly — never a file found in the working directory.
    The sdist is downloaded only with ``allow_network`` (nothing in a default path opens a
    socket); a cached, hash-marked copy or ``BREACHLAB_LLAMA_CPP_SDIST`` needs none."""
    env = os.environ.get("BREACHLAB_LLAMA_CPP_SRC")
    if env:
        path = Path(env)
        if not (path / "convert_hf_to_gguf.py").is_file():
            raise UserError(f"BREACHLAB_LLAMA_CPP_SRC={env} has no convert_hf_to_gguf.py")
        log.info("GGUF converters from BREACHLAB_LLAMA_CPP_SRC=%s (not hash-checked: your choice)", env)
        return path
    from importlib import metadata

    from breachlab.models import cache_dir

    try:
        version = metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        raise UserError("GGUF export needs llama-cpp-python: pip install 'breachlab[vuln]'") from None
    expected = PINNED_SDISTS.get(version)
    if expected is None:
        raise UserError(f"no pinned converter source for llama-cpp-python {version} (pinned: "
                        f"{', '.join(PINNED_SDISTS)}): install a pinned version or set BREACHLAB_LLAMA_CPP_SRC "
                        "to a llama.cpp checkout you trust")
    target = cache_dir() / "llama.cpp-src" / version
    marker = target / _MARKER
    if (target / "convert_hf_to_gguf.py").is_file() and marker.is_file() and marker.read_text().strip() == expected:
        return target
    given = os.environ.get("BREACHLAB_LLAMA_CPP_SDIST")
    if not given and not allow_network:
        raise UserError(f"GGUF export needs llama.cpp's converters once: rerun with --set allow_network=true to fetch "
                        f"the sha256-pinned llama_cpp_python-{version}.tar.gz from PyPI (cached afterwards), or set "
                        "BREACHLAB_LLAMA_CPP_SDIST to a copy of it (air-gapped machines)")
    sdist = Path(given) if given else _download_sdist(version, expected)
    check_sdist(sdist, expected)
    _unpack(sdist, target)
    (target / _MARKER).write_text(expected + "\n")
    return target


def check_sdist(sdist: Path, expected: str) -> None:
    """Refuse an sdist whose sha256 is not the pinned one (before a single member is read)."""
    from breachlab.rundir import sha256_file

    if not sdist.is_file():
        raise UserError(f"llama-cpp-python sdist not found: {sdist}")
    got = sha256_file(sdist)
    if got != expected:
        raise UserError(f"{sdist} has sha256 {got}, not the pinned {expected}: refusing to use its converters")


def _download_sdist(version: str, expected: str) -> Path:
    """``pip download`` of the pinned sdist; pip itself enforces the hash (``--require-hashes``)."""
    from breachlab.progress import step

    dest = Path(tempfile.mkdtemp(prefix="llama-sdist-"))
    req = dest / "requirements.txt"
    req.write_text(f"llama-cpp-python=={version} --hash=sha256:{expected}\n")
    step(f"export: fetching the llama-cpp-python {version} sdist (sha256-pinned) for its GGUF converters; "
         "this takes a few minutes once, then it is cached")
    res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "--require-hashes",
                          "-r", str(req), "-d", str(dest)], capture_output=True, text=True)
    found = list(dest.glob(f"llama_cpp_python-{version}.tar.gz"))
    if res.returncode != 0 or not found:
        raise UserError("could not get llama.cpp's converters: set BREACHLAB_LLAMA_CPP_SDIST to a copy of "
                        f"llama_cpp_python-{version}.tar.gz (sha256 {expected}) or BREACHLAB_LLAMA_CPP_SRC to a "
                        f"llama.cpp checkout ({' '.join(res.stderr.split())[-300:]})")
    return found[0]


def _unpack(sdist: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/vendor/llama.cpp/", 1)
            if len(parts) == 2 and parts[1].startswith(_SDIST_MEMBERS) and (member.isfile() or member.isdir()):
                member.name = parts[1]
                tar.extract(member, tmp, filter="data")
    if not (tmp / "convert_hf_to_gguf.py").is_file():
        raise UserError(f"{sdist} holds no vendor/llama.cpp/convert_hf_to_gguf.py")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def _convert(script: str, args: list[str], allow_network: bool = False) -> None:
    """Run one converter from :func:`llama_cpp_src`, inside that folder (so nothing in the
    caller's working directory can shadow its imports); paths in ``args`` must be absolute."""
    from breachlab.progress import step

    src = llama_cpp_src(allow_network).resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src / "gguf-py"), str(src)])}
    step(f"export: {script} → {Path(args[-1]).name}")
    res = subprocess.run([sys.executable, str(src / script), *args], capture_output=True, text=True, env=env, cwd=src)
    if res.returncode != 0:
        raise RuntimeError(f"{script} failed: {' '.join(res.stderr.split())[-2000:]}")


def convert_hf(model_dir: Path, out: Path, outtype: str = "f16", allow_network: bool = False) -> Path:
    """A transformers directory → GGUF with llama.cpp's converter."""
    _convert("convert_hf_to_gguf.py", [str(Path(model_dir).resolve()), "--outtype", outtype,
                                       "--outfile", str(Path(out).resolve())], allow_network)
    return out


def convert_lora(adapter_dir: Path, base_dir: Path, out: Path, outtype: str = "f16",
                 allow_network: bool = False) -> Path:
    """A PEFT adapter → GGUF LoRA (needs the base model's transformers directory)."""
    _convert("convert_lora_to_gguf.py", [str(Path(adapter_dir).resolve()), "--base", str(Path(base_dir).resolve()),
                                         "--outtype", outtype, "--outfile", str(Path(out).resolve())], allow_network)
    return out


def quantize(src: Path, dst: Path, quant: str, threads: int = 0) -> Path:
    """Quantise a GGUF with llama.cpp's own quantiser (``llama_model_quantize``)."""
    import llama_cpp

    from breachlab.progress import step

    step(f"export: quantising {src.name} → {dst.name}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
    params.nthread = threads or (os.cpu_count() or 1)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        raise RuntimeError(f"llama_model_quantize({src.name} → {quant}) failed with code {rc}")
    return dst


# ---------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------
def merge(base_dir: str | Path, adapter_dir: Path, out: Path, dtype: str = "bfloat16") -> Path:
    """Load the base in fp32 (full precision), fold the adapter in, save in ``dtype``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, use_safetensors=True)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.to(getattr(torch, dtype))
    merged.config.use_cache = True
    merged.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(out)
    return out


def adapter_from_checkpoint(run_path: Path, out: Path) -> Path:
    """Turn the newest training checkpoint of a LoRA run into a PEFT adapter folder."""
    from breachlab.config import from_dict
    from breachlab.vuln.training import ckpt
    from breachlab.vuln.training.config import TrainConfig
    from breachlab.vuln.training.load import load_for_training

    last = ckpt.latest(run_path / "checkpoints")
    if last is None:
        raise UserError(f"{run_path} has no checkpoint yet")
    import yaml
    from safetensors.torch import load_file

    tcfg = from_dict(TrainConfig, yaml.safe_load((run_path / "config.yaml").read_text()))
    if tcfg.method == "full":
        raise UserError("checkpoint export is for LoRA runs; a full fine-tune checkpoint is the whole model")
    model, tok = load_for_training(tcfg, "cpu")
    params = dict(model.named_parameters())
    for name, tensor in load_file(str(last / "trainable.safetensors")).items():
        params[name].data.copy_(tensor)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    log.info("adapter from %s written to %s", last, out)
    return out


def run(cfg: ExportConfig, out: str | Path | None = None) -> Path:
    """Export a training run; returns the export folder (with ``export.json``)."""
    from breachlab.progress import step
    from breachlab.rundir import RunDir, atomic_write_json, sha256_file
    from breachlab.vuln.training.load import base_location

    if not cfg.run:
        raise UserError("name the training run directory to export")
    run_dir = RunDir.open(cfg.run)
    tcfg = run_dir.config_dict()
    method = tcfg.get("method", "lora")
    dest = Path(out) if out else run_dir.path / "export"
    dest.mkdir(parents=True, exist_ok=True)
    if cfg.weights == "checkpoint":
        weights = adapter_from_checkpoint(run_dir.path, dest / "from-checkpoint")
    else:
        weights = run_dir.path / cfg.weights
    if not weights.is_dir():
        raise UserError(f"{weights} does not exist: is the run finished? (try --weights checkpoint)")
    base_dir = Path(base_location(tcfg.get("model", "embedded")))
    files: list[Path] = []
    is_adapter = (weights / "adapter_config.json").is_file()
    if "adapter" in cfg.formats:
        if not is_adapter:
            raise UserError(f"{cfg.run} is a {method} run: there is no adapter to export (use merged)")
        shutil.copytree(weights, dest / "adapter", dirs_exist_ok=True)
        files += [dest / "adapter" / "adapter_model.safetensors", dest / "adapter" / "adapter_config.json"]
    merged = dest / "merged"
    if "merged" in cfg.formats or "gguf" in cfg.formats:
        if is_adapter:
            log.info("merging %s into the full-precision base %s", weights, base_dir)
            step(f"export: merging the adapter into the full-precision base {base_dir}")
            merge(base_dir, weights, merged, cfg.dtype)
        else:
            shutil.copytree(weights, merged, dirs_exist_ok=True)
        files += sorted(merged.glob("*.safetensors"))
    if "gguf" in cfg.formats:
        (dest / "gguf").mkdir(exist_ok=True)
        converted = [q for q in cfg.quants if q in CONVERT_TYPES]
        quantised = [q for q in cfg.quants if q in QUANT_TYPES]
        src_type = "f16" if "f16" in converted or not converted else converted[0]
        for q in dict.fromkeys(converted + ([src_type] if quantised else [])):
            files.append(convert_hf(merged, dest / "gguf" / f"model-{q}.gguf", q, cfg.allow_network))
        for q in quantised:
            files.append(quantize(dest / "gguf" / f"model-{src_type}.gguf", dest / "gguf" / f"model-{q}.gguf", q,
                                  cfg.threads))
        if quantised and src_type not in cfg.quants:
            (dest / "gguf" / f"model-{src_type}.gguf").unlink()
            files.remove(dest / "gguf" / f"model-{src_type}.gguf")
    if "gguf-lora" in cfg.formats:
        if not is_adapter:
            raise UserError("gguf-lora needs a LoRA run")
        (dest / "gguf").mkdir(exist_ok=True)
        files.append(convert_lora(weights, base_dir, dest / "gguf" / "adapter-f16.gguf",
                                  allow_network=cfg.allow_network))
        base_gguf = dest / "gguf" / "base-f16.gguf"
        files.append(convert_hf(base_dir, base_gguf, "f16", cfg.allow_network))
    record = {"run": str(run_dir.path), "weights": cfg.weights, "method": method, "base": str(base_dir),
              "files": {str(f.relative_to(dest)): {"bytes": f.stat().st_size, "sha256": sha256_file(f)}
                        for f in files if f.is_file()}}
    atomic_write_json(dest / "export.json", record)
    return dest
