"""Where a model keeps what training touches: the language model, its decoder layers, the
projections that get LoRA adapters.

The lowest layer of the training wing (it imports nothing of breachlab): the loader, the
speed patches, FSDP, the planner and the activation budget all ask these questions, and
the answer must be the same everywhere — e.g. adapters never land on a vision or audio tower.
"""

from __future__ import annotations

from typing import Any

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Submodules that belong to other modalities; a safety net on top of the language-model prefix.
NON_TEXT_PARTS = ("vision", "audio", "multi_modal", "mm_", "embed_vision", "embed_audio", "image", "siglip")


def base(model: Any) -> Any:
    """The transformers model inside DDP (``.module``) and PEFT (``get_base_model()``) wrappers."""
    inner = getattr(model, "module", model)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


def text_config(model: Any) -> Any:
    """The text model's config (``text_config`` of a multimodal config, else the config)."""
    cfg = base(model).config
    return getattr(cfg, "text_config", None) or cfg


def language_model_prefix(model: Any) -> str:
    """Qualified name of the text decoder inside ``model`` ('' when it is the whole model)."""
    base_ = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base_.get_decoder() if hasattr(base_, "get_decoder") else None
    if decoder is None:
        return ""
    for name, module in base_.named_modules():
        if module is decoder:
            return name
    return ""


def lora_targets(model: Any, names: list[str] = DEFAULT_TARGETS) -> list[str]:
    """Full names of the linear layers that get adapters: the named projections of the
    language model, never of a vision or audio tower."""
    import torch.nn as nn

    prefix = language_model_prefix(model)
    out = []
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf not in names or not isinstance(module, nn.Linear) and "Linear" not in type(module).__name__:
            continue
        if prefix and not (name == prefix or name.startswith(prefix + ".")):
            continue
        if any(part in name.lower() for part in NON_TEXT_PARTS):
            continue
        out.append(name)
    return out


def decoder_layers(model: Any) -> Any:
    """The ``nn.ModuleList`` of the language model's decoder layers, or None.

    Looks through DDP (``.module``) and PEFT (``get_base_model()``) wrappers, then asks the
    model for its text decoder (``get_decoder()``, which multimodal Gemma answers with the
    language model) and takes its ``layers``.  Without such an attribute: the longest list
    of same-class modules inside the decoder (or the model), vision/audio towers excluded.
    """
    import torch.nn as nn

    inner = getattr(model, "module", model) if isinstance(model, nn.Module) else model
    base_ = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    decoder = base_.get_decoder() if hasattr(base_, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if isinstance(layers, nn.ModuleList) and len(layers):
        return layers
    best = None
    for name, module in (decoder if isinstance(decoder, nn.Module) else base_).named_modules():
        if (isinstance(module, nn.ModuleList) and len(module) and len({type(m) for m in module}) == 1
                and not any(part in name.lower() for part in NON_TEXT_PARTS)
                and (best is None or len(module) > len(best))):
            best = module
    return best


def count_params(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
