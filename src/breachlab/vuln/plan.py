"""``breachlab vuln plan MODEL --method full|lora|qlora --rank 16`` — will it fit?

The memory table of the concepts post (weights, gradients, optimizer states, activations)
for any transformers config: MODEL is a preset (``gemma-3-270m``, ``gemma-4-e4b``), a
``config.json``, a model directory or a hub id in the local cache.  Parameter counts are
exact: the model is built on the *meta* device (no memory, no weights) and the LoRA
targets are chosen by the same function training uses.  Activations are an estimate
(per token and layer: the tensors autograd keeps for a Gemma-style block), as are the
logits — only the answer tokens' logits when ``--logits answer`` (what ``vuln train`` does).

Accounting, matching ``vuln train``: LoRA adapters, their gradients and AdamW states are
fp32 (PEFT keeps adapters in fp32); full fine-tuning keeps gradients and AdamW states in
the weights' dtype; QLoRA stores the decoder's linear layers as NF4 with double
quantisation (~4.13 bits per weight) and everything else in the compute dtype.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from breachlab.errors import UserError

GIB = 1024**3
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit codes + 8-bit absmax per 64 + fp32 per 256 blocks

PRESETS: dict[str, dict[str, Any]] = {
    # The embedded model (values of its config.json).
    "gemma-3-270m": {
        "model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"], "vocab_size": 262144,
        "hidden_size": 640, "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 256, "sliding_window": 512, "max_position_embeddings": 32768,
        "tie_word_embeddings": True,
    },
    # Gemma 4 E4B, language model: shape from public descriptions (42 layers, hidden 2560,
    # per-layer embeddings, shared KV in the last layers); no hub here to check it — pass the
    # real config.json for exact numbers.  The post reported 42,401,792 trainable.
    "gemma-4-e4b": {
        "model_type": "gemma4_text", "architectures": ["Gemma4ForCausalLM"], "vocab_size": 262144,
        "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 42, "num_attention_heads": 8,
        "num_key_value_heads": 2, "head_dim": 256, "global_head_dim": 512, "hidden_size_per_layer_input": 256,
        "vocab_size_per_layer_input": 262144, "num_kv_shared_layers": 18, "sliding_window": 512,
        "tie_word_embeddings": True,
    },
    "gemma-3-4b-text": {
        "model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"], "vocab_size": 262208,
        "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34, "num_attention_heads": 8,
        "num_key_value_heads": 4, "head_dim": 256, "sliding_window": 1024, "tie_word_embeddings": True,
    },
}
_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2}


@dataclass
class MemoryPlan:
    """Bytes per component; ``total`` is their sum (the peak of one training step)."""

    model: str
    method: str
    rank: int
    total_params: int
    trainable_params: int
    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.logits

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}

    def rows(self) -> list[tuple[str, float]]:
        return [("weights", self.weights), ("gradients", self.gradients), ("optimizer states", self.optimizer),
                ("activations", self.activations), ("logits", self.logits), ("total", self.total)]


def load_config(model: str) -> Any:
    """A transformers config from a preset, a config.json, a model directory or a hub id."""
    from transformers import AutoConfig, CONFIG_MAPPING

    if model in PRESETS:
        data = dict(PRESETS[model])
        return CONFIG_MAPPING[data.pop("model_type")](**{k: v for k, v in data.items() if k != "architectures"})
    path = Path(model)
    if path.is_file() and path.suffix == ".json":
        data = json.loads(path.read_text())
        if "model_type" not in data:
            raise UserError(f"{path}: no model_type; not a transformers config.json")
        return CONFIG_MAPPING[data.pop("model_type")](**data)
    try:
        return AutoConfig.from_pretrained(str(path) if path.is_dir() else model, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"no config for {model!r} (presets: {', '.join(PRESETS)}; or a config.json): {exc}") from None


def meta_model(config: Any) -> Any:
    """The model for ``config`` on the meta device: real shapes, no memory."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    with torch.device("meta"):
        try:
            return AutoModelForCausalLM.from_config(config)
        except ValueError:
            return AutoModel.from_config(config)


def plan(model: str | Any, method: str = "lora", rank: int = 16, *, batch_size: int = 8, seq_len: int = 512,
         dtype: str = "bfloat16", gradient_checkpointing: bool = True, logits: str = "answer",
         answer_tokens: int = 40, attention: str = "sdpa", targets: list[str] | None = None) -> MemoryPlan:
    """Estimate the training memory of ``model`` (a name/path or a config object)."""
    from breachlab.vuln.train import DEFAULT_TARGETS, lora_targets

    if method not in ("full", "lora", "qlora"):
        raise UserError(f"method must be full, lora or qlora; got {method!r}")
    if logits not in ("answer", "all"):
        raise UserError("logits must be answer or all")
    config = load_config(model) if isinstance(model, (str, Path)) else model
    b = _BYTES.get(dtype)
    if b is None:
        raise UserError(f"unknown dtype {dtype!r}")
    net = meta_model(config)
    modules = dict(net.named_modules())
    total = sum(p.numel() for p in net.parameters())
    if method == "full":
        trainable = total
        weights, grads, optim = total * b, total * b, 2 * total * b
    else:
        names = lora_targets(net, targets or DEFAULT_TARGETS)
        trainable = sum(rank * (modules[n].in_features + modules[n].out_features) for n in names)
        if method == "qlora":
            quantised = sum(p.numel() for n, m in modules.items() if _is_decoder_linear(n, m, net)
                            for p in m.parameters(recurse=False))
            weights = quantised * NF4_BYTES + (total - quantised) * b
        else:
            weights = total * b
        weights += trainable * 4
        grads, optim = trainable * 4, trainable * 8
    act, logit_bytes = _activations(config.get_text_config(), batch_size, seq_len, b, gradient_checkpointing,
                                    logits, answer_tokens, attention)
    name = model if isinstance(model, str) else type(config).__name__
    return MemoryPlan(str(name), method, rank, total, trainable, weights, grads, optim, act, logit_bytes)


def _is_decoder_linear(name: str, module: Any, net: Any) -> bool:
    import torch.nn as nn

    from breachlab.vuln.train import language_model_prefix

    prefix = language_model_prefix(net)
    return isinstance(module, nn.Linear) and ".layers." in f".{name}" and (not prefix or name.startswith(prefix))


def _attr(cfg: Any, name: str, default: Any) -> Any:
    """A config attribute; per-layer (heterogeneous) ones give their global default."""
    try:
        value = getattr(cfg, name, default)
    except Exception:  # noqa: BLE001 - transformers raises for per-layer attributes
        value = cfg.to_dict().get(name, default)
    return value if not isinstance(value, (list, tuple)) else max(value)


def _activations(tc: Any, batch: int, seq: int, b: int, ckpt: bool, logits: str, answer: int,
                 attention: str) -> tuple[float, float]:
    """Bytes autograd keeps: per token and layer ~ norms/residuals 8h, q/k/v and their
    normed/rotated copies 3q + 4kv, the gated MLP 4I; eager attention adds 2·heads·seq."""
    h = tc.hidden_size
    inter = _attr(tc, "intermediate_size", 4 * h)
    heads = tc.num_attention_heads
    hd = _attr(tc, "head_dim", None) or h // heads
    kv = _attr(tc, "num_key_value_heads", heads) * hd
    q = heads * hd
    layers = tc.num_hidden_layers
    tokens = batch * seq
    per_layer = (8 * h + 3 * q + 4 * kv + 4 * inter) * b + (2 * heads * seq * b if attention == "eager" else 0)
    ple = getattr(tc, "hidden_size_per_layer_input", 0) or 0
    embed = tokens * (h + layers * ple) * b
    if ckpt:  # layer inputs for every layer + one layer recomputed at a time
        act = tokens * (layers * h * b + per_layer) + embed
    else:
        act = tokens * layers * per_layer + embed
    kept = batch * (answer + 1) if logits == "answer" else tokens
    vocab = tc.vocab_size
    logit_bytes = kept * vocab * (b + 4 + 4)  # model-dtype logits, their fp32 copy, its gradient
    return float(act), float(logit_bytes)


def format_table(p: MemoryPlan) -> str:
    lines = [f"{p.model} · {p.method}" + (f" r{p.rank}" if p.method != "full" else ""),
             f"trainable {p.trainable_params:,} / {p.total_params:,} ({100 * p.trainable_params / p.total_params:.2f}%)"]
    for name, val in p.rows():
        lines.append(f"  {name:<17} {val / GIB:9.2f} GiB")
    return "\n".join(lines)
