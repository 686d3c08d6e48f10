"""LoRA adapters: the one shipped with breachlab, user adapters, and which file each backend reads.

An adapter spec is ``default`` (the adapter shipped in ``breachlab/data/adapters``, trained on
the embedded model — when one ships: none does until an adapter beats the zero-shot model on
held-out data), ``none`` (zero-shot), a PEFT directory (``adapter_config.json`` +
``adapter_model.safetensors``; transformers) or a GGUF LoRA file (llama.cpp).  A directory that
also holds one ``*.gguf`` LoRA serves both backends — the shipped adapter does.

``--adapter`` may name several (``a,b``, ``label=path``): :func:`adapter_specs` parses and
checks them and gives each a label (:func:`adapter_label`) before any model is loaded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breachlab.errors import UserError
from breachlab.ladder import is_embedded

DEFAULT_ADAPTER = "gemma3-270m-juliet-r16"
NONE_WORDS = ("", "none", "zero-shot", "zeroshot", "base")


def shipped_dir(name: str = DEFAULT_ADAPTER) -> Path:
    """Folder of an adapter shipped inside the package."""
    return Path(__file__).resolve().parents[2] / "data" / "adapters" / name


def has_shipped(name: str = DEFAULT_ADAPTER) -> bool:
    """Whether this install ships the default adapter (none does until one beats zero-shot)."""
    return (shipped_dir(name) / "adapter_config.json").is_file()


def shipped_card(name: str = DEFAULT_ADAPTER) -> dict:
    """The shipped adapter's ``card.json`` (data, config, held-out metrics)."""
    return json.loads((shipped_dir(name) / "card.json").read_text())


def resolve_adapter(spec: str | Path | None, *, model: str | None = "embedded") -> Path | None:
    """The adapter path for ``spec``; None for zero-shot.  ``default`` needs the embedded model
    (``embedded`` or its ladder name ``gemma3-270m``)."""
    if spec is None or str(spec).strip().lower() in NONE_WORDS:
        return None
    if str(spec).strip().lower() == "default":
        if not is_embedded(model):
            raise UserError(f"the default adapter was trained on the embedded model, not on {model}: "
                            "pass --adapter none or an adapter trained on that model")
        if not has_shipped():
            raise UserError("this version of breachlab ships no fine-tuned adapter yet (none has beaten the "
                            "zero-shot model on held-out data; see docs/benchmarks.md): use --adapter none or a path")
        return shipped_dir()
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"adapter not found: {path}")
    if path.is_dir() and not (path / "adapter_config.json").is_file() and gguf_lora(path) is None:
        raise UserError(f"{path} is not an adapter: it has neither adapter_config.json (PEFT) nor a .gguf LoRA")
    if path.is_file() and path.suffix.lower() != ".gguf":
        raise UserError(f"{path}: an adapter file must be a GGUF LoRA (.gguf); a PEFT adapter is a directory")
    return path


def gguf_lora(path: Path | None) -> Path | None:
    """The GGUF LoRA file llama.cpp can read for this adapter path, or None."""
    if path is None:
        return None
    if path.is_file():
        return path if path.suffix.lower() == ".gguf" else None
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) > 1:
        raise UserError(f"{path} holds several .gguf files; name one: {', '.join(g.name for g in ggufs)}")
    return ggufs[0] if ggufs else None


def peft_dir(path: Path | None) -> Path | None:
    """The PEFT directory transformers can read for this adapter path, or None."""
    return path if path is not None and path.is_dir() and (path / "adapter_config.json").is_file() else None


def adapter_tag(path: str | Path) -> str:
    """``name@sha12`` — identifies an adapter by content (scan caches key on it), not by file name."""
    import hashlib

    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir()
                                                 if p.suffix in (".safetensors", ".gguf", ".json"))
    h = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    name = path.parent.name if path.is_file() and path.stem == "adapter" else path.stem if path.is_file() else path.name
    return f"{name}@{h.hexdigest()[:12]}"


# ---------------------------------------------------------------------------------------
# adapter specs: "a,b", ["a", "b"], "none", "label=path"
# ---------------------------------------------------------------------------------------
BASE_LABEL = "base"
# folder/file names that say nothing about which adapter it is (training/export layout)
_GENERIC = re.compile(r"(adapters?|best|final|export|exports|gguf|lora|peft|weights|model|from-checkpoint|"
                      r"checkpoints?([-_]?\d+)?|step[-_]?\d+|adapter[-_.].*)", re.IGNORECASE)
_LABELLED = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.+-]*)=(.+)")


@dataclass(frozen=True)
class AdapterSpec:
    """One entry of ``--adapter``: its label, what was written, and the resolved path (None: base)."""

    label: str
    spec: str | None
    path: Path | None


def adapter_label(path: Path) -> str:
    """A short, file-name-safe label for an adapter path.

    The adapter's own name, prefixed by the nearest meaningful folder when the name is a
    generic one: ``runs/train-a/best`` → ``train-a-best``, ``runs/x/export/gguf/adapter-f16.gguf``
    → ``x-adapter-f16``.
    """
    p = Path(os.path.abspath(Path(path).expanduser()))
    leaf = p.stem if p.suffix.lower() == ".gguf" else p.name
    label = leaf
    if _GENERIC.fullmatch(leaf):
        node = p.parent
        while node.name and _GENERIC.fullmatch(node.name):
            node = node.parent
        if node.name:
            label = f"{node.name}-{leaf}"
    label = re.sub(r"[^A-Za-z0-9_.+-]+", "_", label).strip("._")
    return label or "adapter"


def _split_specs(spec: Any) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, (str, Path)):
        text = str(spec).strip()
        if "," not in text or Path(text).expanduser().exists():
            return [text] if text else []
        return [s.strip() for s in text.split(",") if s.strip()]
    if isinstance(spec, Sequence):
        return [item for s in spec for item in _split_specs(s)]
    raise UserError(f"--adapter: expected a path, a comma list or a list, got {spec!r}")


def adapter_specs(spec: Any, *, model: str | None = "embedded") -> list[AdapterSpec]:
    """Parse ``--adapter``: one spec, a comma list (``a,b``) or a list; empty for no adapter.

    Each entry is a PEFT directory, a GGUF LoRA, ``default`` (the shipped adapter) or
    ``none``/``base`` (the base model, zero-shot), optionally labelled ``LABEL=SPEC``.  Every
    path is checked here; labels (run directory names) must be distinct.
    """
    out: list[AdapterSpec] = []
    for item in _split_specs(spec):
        label = None
        m = _LABELLED.fullmatch(item)
        if m and not Path(item).expanduser().exists():
            label, item = m.group(1), m.group(2).strip()
        path = resolve_adapter(item, model=model)
        if label is None:
            label = BASE_LABEL if path is None else "default" if item.lower() == "default" else adapter_label(path)
        clash = next((o for o in out if o.label == label), None)
        if clash is not None:
            first, second = clash.spec or BASE_LABEL, item
            same = (clash.path is None and path is None) or (
                clash.path is not None and path is not None and clash.path.resolve() == path.resolve())
            if same:
                raise UserError(f"--adapter lists {second} twice (both labelled {label!r}): give each adapter once")
            raise UserError(f"two adapters would both be labelled {label!r} ({first} and {second}): "
                            f"label them yourself, e.g. --adapter a={first},b={second}")
        out.append(AdapterSpec(label, None if path is None else item, path))
    return out
