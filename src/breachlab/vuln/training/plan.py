"""``breachlab vuln plan MODEL --method full|lora|qlora --rank 16`` — will it fit?

The memory table of the concepts post (weights, gradients, optimizer states, activations)
for any transformers config: MODEL is a preset (``gemma-3-270m``, ``gemma-4-e4b``), a
``config.json``, a model directory or a hub id in the local cache.  Parameter counts are
exact: the model is built on the *meta* device (no memory, no weights) and the LoRA
targets are chosen by the same function training uses.  Activations are counted: the
storages autograd saves in one forward of a short CPU copy of the model (one period of
its layer pattern), per token and layer (:func:`saved_bytes_per_token`); ``measure=False``
falls back to a per-layer formula.  The logits are an estimate — only the answer tokens'
logits when ``--logits answer`` (what ``vuln train`` does).

Accounting, matching ``vuln train``: LoRA adapters, their gradients and AdamW states are
fp32 (PEFT keeps adapters in fp32); full fine-tuning keeps gradients and AdamW states in
the weights' dtype; QLoRA stores the decoder's linear layers as NF4 with double
quantisation (~4.13 bits per weight) and everything else in the compute dtype.
"""

from __future__ import annotations

import functools
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
    cpu_weights: float = 0.0  # frozen tables kept off the GPU (not in ``total``)
    cpu_store: str = "ram"  # where: process memory, or a file read per step (ple_store)

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.logits

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}

    def rows(self) -> list[tuple[str, float]]:
        return [("weights", self.weights), ("gradients", self.gradients), ("optimizer states", self.optimizer),
                ("activations", self.activations), ("logits", self.logits), ("total", self.total)]


# The hub models the presets describe: ``hf:google/gemma-4-E4B-it`` plans offline from its preset.
HUB_PRESETS = {"google/gemma-3-270m": "gemma-3-270m", "google/gemma-3-270m-it": "gemma-3-270m",
               "google/gemma-4-e4b": "gemma-4-e4b", "google/gemma-4-e4b-it": "gemma-4-e4b",
               "google/gemma-3-4b-it": "gemma-3-4b-text", "google/gemma-3-4b-pt": "gemma-3-4b-text"}


def load_config(model: str) -> Any:
    """A transformers config from a preset, a config.json, a model directory or a hub id."""
    from transformers import CONFIG_MAPPING, AutoConfig

    if model.startswith("hf:") and model[3:].lower() in HUB_PRESETS:
        model = HUB_PRESETS[model[3:].lower()]
    if model in PRESETS:
        data = dict(PRESETS[model])
        return CONFIG_MAPPING[data.pop("model_type")](**{k: v for k, v in data.items() if k != "architectures"})
    path = Path(model)
    if path.is_file() and path.suffix == ".json":
        data = json.loads(path.read_text())
        if "model_type" not in data:
            raise UserError(f"{path}: no model_type; not a transformers config.json")
        return CONFIG_MAPPING[data.pop("model_type")](**data)
    if not path.is_dir():  # a ladder name, a .gguf file or hf:org/name; a missing path fails here, offline
        from breachlab.models import resolve

        try:
            src = resolve(model)
        except UserError as exc:
            raise UserError(f"{exc} (or a preset: {', '.join(PRESETS)}; or a config.json)") from None
        if src.kind == "gguf":
            return AutoConfig.from_pretrained(str(src.path.parent), gguf_file=src.path.name, trust_remote_code=False)
        model = src.location
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
         answer_tokens: int = 40, attention: str = "sdpa", targets: list[str] | None = None,
         measure: bool = True, ple_on_cpu: bool = True, lora_float32: bool = False,
         ple_store: str = "ram", head_chunk: int = 0) -> MemoryPlan:
    """Estimate the training memory of ``model`` (a name/path or a config object).

    ``measure``: count the activations autograd keeps by running a copy of the model's
    layers on the CPU (:func:`saved_bytes_per_token`, a few seconds); otherwise (or when
    that copy cannot be built) a per-layer formula that misses some of them.
    ``ple_on_cpu``: for LoRA/QLoRA, Gemma 3n/4's per-layer embedding table is counted in CPU
    memory (``cpu_weights``), not in the device total, as ``vuln train`` keeps it on CUDA;
    ``ple_store``: ``ram`` (process memory) or ``disk`` (a file read per step, as ``vuln
    train``'s ``ple_store: disk``); ``head_chunk``: the logits of that many supervised
    positions at a time (``vuln train``'s ``head_chunk``; 0 = all of them).
    """
    from breachlab.vuln.training.anatomy import DEFAULT_TARGETS, lora_targets

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
    cpu_weights = 0.0
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
        if ple_on_cpu:  # as vuln train does on CUDA (ple_on_cpu: auto): Gemma 3n/4's per-layer table
            from breachlab.vuln.training.speed.ple import PER_LAYER_TABLE

            cpu_weights = sum(p.numel() for n, p in net.named_parameters()
                              if n.endswith(f"{PER_LAYER_TABLE}.weight")) * b
            weights -= cpu_weights
        grads, optim = trainable * 4, trainable * 8
    tc = config.get_text_config()
    measured = None
    if measure:
        try:
            measured = saved_bytes_per_token(tc, "full" if method == "full" else "lora", rank, dtype, attention,
                                             lora_float32=lora_float32)
        except Exception:  # noqa: BLE001 - an architecture the counting run cannot build: the formula
            measured = None
    act, logit_bytes = _activations(tc, batch_size, seq_len, b, gradient_checkpointing, logits, answer_tokens,
                                    attention, measured, head_chunk if logits == "answer" else 0)
    name = model if isinstance(model, str) else type(config).__name__
    return MemoryPlan(str(name), method, rank, total, trainable, weights, grads, optim, act, logit_bytes,
                      cpu_weights, ple_store)


def _is_decoder_linear(name: str, module: Any, net: Any) -> bool:
    import torch.nn as nn

    from breachlab.vuln.training.anatomy import language_model_prefix

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
                 attention: str, measured: dict | None = None, head_chunk: int = 0) -> tuple[float, float]:
    """Bytes autograd keeps (and the logits' bytes: of ``head_chunk`` positions at most, when set).
    ``measured`` (:func:`saved_bytes_per_token`): per token, the
    layers' saved tensors and those outside the layers, counted.  Otherwise per token and
    layer ~ norms/residuals 8h, q/k/v and their normed/rotated copies 3q + 4kv, the gated
    MLP 4I.  Eager attention adds 2·heads·seq (its probabilities) either way."""
    h = tc.hidden_size
    if measured is not None:
        tokens = batch * seq
        layers = tc.num_hidden_layers
        kept = batch * (answer + 1) if logits == "answer" else tokens
        eager = 2 * tc.num_attention_heads * seq * b if attention == "eager" else 0
        ple = getattr(tc, "hidden_size_per_layer_input", 0) or 0
        per_layer = [x + eager for x in measured.get("per_layer") or [measured["layers"] / layers] * layers]
        # vuln train runs Gemma 4's KV-shared layers at the answer positions only
        # (patches.use_shared_layers_at_answers): those layers see `kept` tokens, not `tokens`
        shared = answer_only_shared_layers(tc) if logits == "answer" else 0
        at = [tokens] * (layers - shared) + [kept] * shared
        if ckpt:  # each layer's inputs (hidden + its per-layer input) + one layer recomputed at a time
            act = (sum(n * (h + ple) * b for n in at) + tokens * measured["outside"]
                   + max(n * x for n, x in zip(at, per_layer)))
        else:
            act = sum(n * x for n, x in zip(at, per_layer)) + tokens * measured["outside"]
        return float(act), float(min(kept, head_chunk or kept) * tc.vocab_size * (b + 4 + 4))
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
    # model-dtype logits, their fp32 copy, its gradient; with head_chunk, one chunk's at a time
    logit_bytes = min(kept, head_chunk or kept) * vocab * (b + 4 + 4)
    return float(act), float(logit_bytes)


def answer_only_shared_layers(tc: Any) -> int:
    """How many of the text model's last layers ``vuln train`` (packing on) runs at the answer
    positions only: Gemma 4's KV-shared layers
    (:func:`breachlab.vuln.training.speed.patches.use_shared_layers_at_answers`)."""
    if not str(getattr(tc, "model_type", "")).startswith("gemma4"):
        return 0
    return min(int(getattr(tc, "num_kv_shared_layers", 0) or 0), tc.num_hidden_layers - 1)


def _period(types: list[str]) -> int:
    """Length of the repeating pattern of ``layer_types`` (1 when there is none)."""
    for p in range(1, len(types) + 1):
        if all(types[i] == types[i % p] for i in range(len(types))):
            return p
    return len(types) or 1


def saved_bytes_per_token(tc: Any, method: str = "lora", rank: int = 16, dtype: str = "bfloat16",
                          attention: str = "sdpa", tokens: int = 64, lora_float32: bool = False) -> dict[str, Any]:
    """What autograd keeps for the backward pass, per token, counted rather than guessed.

    Builds a short copy of the text model — one period of its layer pattern (two for
    models that share KV across their last layers, Gemma 3n/4: the second period shared),
    a 256-entry vocabulary, weights not initialised — with LoRA adapters as ``vuln train``
    puts them (float32 weights run in the model's dtype, or in float32 with
    ``lora_float32``) or fully trainable, runs one training-mode forward of ``tokens`` tokens
    on the CPU without checkpointing, and adds up the bytes of every distinct storage
    autograd saves that is not a parameter, per decoder layer (forward hooks say which
    layer is running) and outside them (embeddings, per-layer inputs, final norm).
    Returns ``layers`` (all the model's layers, mapped onto the copy's by position in the
    pattern), ``largest_layer``, ``outside`` and ``per_layer`` (a list, layer by layer), in
    bytes per token.  Attention
    probabilities (eager only) grow with the sequence; the caller adds them.
    """
    out = dict(_count_saved(json.dumps(tc.to_dict(), sort_keys=True, default=str), method, rank, dtype,
                            attention, tokens, lora_float32))
    out["per_layer"] = list(out["per_layer"])
    return out


@functools.lru_cache(maxsize=16)
def _count_saved(config_json: str, method: str, rank: int, dtype: str, attention: str,
                 tokens: int, lora_float32: bool = False) -> tuple[tuple[str, Any], ...]:
    import gc

    import torch
    from transformers import CONFIG_MAPPING

    from breachlab.vuln.training.anatomy import decoder_layers

    cfg = json.loads(config_json)
    n = cfg["num_hidden_layers"]
    types = list(cfg.get("layer_types") or [])
    period = _period(types) if types else 1
    shared = min(int(cfg.get("num_kv_shared_layers") or 0), n)
    copy_layers = period * (2 if shared else 1)
    torch_dtype = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
                   "fp16": torch.float16}.get(dtype, torch.bfloat16)
    cfg.update(num_hidden_layers=copy_layers, vocab_size=256)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if isinstance(cfg.get(key), int) and cfg[key] >= 256:
            cfg[key] = 0
    if types:
        cfg["layer_types"] = [types[i % period] for i in range(copy_layers)]
    if "vocab_size_per_layer_input" in cfg:
        cfg["vocab_size_per_layer_input"] = 256
    if "num_kv_shared_layers" in cfg:
        cfg["num_kv_shared_layers"] = period if shared else 0
    # per-layer overrides (e.g. Gemma 4's wider full-attention heads): copy layer i takes those
    # of the real layer at the same place in the pattern
    orig = cfg.pop("per_layer_config", None) or {}
    if orig:
        over = {i: orig.get(str(i % period), orig.get(i % period)) for i in range(copy_layers)}
        cfg["per_layer_config"] = {i: v for i, v in over.items() if v}
    model_type = cfg.pop("model_type")
    for key in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        cfg.pop(key, None)
    config = CONFIG_MAPPING[model_type](**cfg)
    config._attn_implementation = attention
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    net = net.to_empty(device="cpu")
    with torch.no_grad():  # uninitialised memory may hold NaNs; the shapes are what count
        for p in net.parameters():
            p.zero_()
    net.config.use_cache = False
    if method != "full":
        from peft import LoraConfig, get_peft_model

        from breachlab.vuln.training.anatomy import lora_targets
        from breachlab.vuln.training.speed.patches import lora_in_activation_dtype

        net.requires_grad_(False)
        net = get_peft_model(net, LoraConfig(r=rank, lora_alpha=rank, target_modules=lora_targets(net)))
        if not lora_float32:
            lora_in_activation_dtype(net)  # as vuln train runs them
    net.train()
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    layers = list(decoder_layers(net) or [])
    per_layer = [0] * len(layers)
    seen: set[int] = set()
    where: list[int | None] = [None]
    outside = 0

    def pack(t: Any) -> Any:
        nonlocal outside
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr in params or ptr in seen:
            return t
        seen.add(ptr)
        if where[0] is None:
            outside += st.nbytes()
        else:
            per_layer[where[0]] += st.nbytes()
        return t

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(lambda m, a, i=i: where.__setitem__(0, i)))
        handles.append(layer.register_forward_hook(lambda m, a, o: where.__setitem__(0, None)))
    ids = torch.arange(tokens).remainder(250).add(3).unsqueeze(0)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            # logits_to_keep=0: every layer at every position (transformers would otherwise run
            # Gemma 4's KV-shared layers at the last position only); what vuln train runs them
            # at is the caller's business (_activations)
            net(input_ids=ids, logits_to_keep=0)
    finally:
        for h in handles:
            h.remove()
        del net
        gc.collect()
    # layer i of the real model sits where layer i % period sits in the copy (+ period if shared)
    full = [per_layer[(i % period) + (period if i >= n - shared and shared else 0)] / tokens for i in range(n)]
    return (("layers", float(sum(full))), ("largest_layer", float(max(full, default=0.0))),
            ("outside", outside / tokens), ("per_layer", tuple(float(x) for x in full)))


def format_table(p: MemoryPlan) -> str:
    lines = [f"{p.model} · {p.method}" + (f" r{p.rank}" if p.method != "full" else ""),
             f"trainable {p.trainable_params:,} / {p.total_params:,} "
             f"({100 * p.trainable_params / p.total_params:.2f}%)"]
    for name, val in p.rows():
        lines.append(f"  {name:<17} {val / GIB:9.2f} GiB")
    if p.cpu_weights and p.cpu_store == "disk":
        lines.append(f"  + in a file      {p.cpu_weights / GIB:9.2f} GiB (per-layer embedding table, ple_store: disk; "
                     "read per step, no process memory)")
    elif p.cpu_weights:
        lines.append(f"  + in CPU memory  {p.cpu_weights / GIB:9.2f} GiB (per-layer embedding table, ple_on_cpu)")
    return "\n".join(lines)
