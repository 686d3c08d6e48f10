"""Model shapes of the throughput benchmark and how each arm's model is built.

Every arm builds its model here, from the same seed, so the arms start from the same
weights: random init of the real architecture (Gemma shapes: no weights exist here), or the
real Qwen2.5-Coder weights dequantised from a GGUF (``--weights``).  The Qwen configs are
read from the GGUF header when the file is at hand (the typed fallback is the same
numbers, checked against the header by the tests), so a random-init Qwen model has the
shape of the real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA = {"r": 16, "lora_alpha": 16, "lora_dropout": 0.0}
SHAPES = ("e4b", "270m", "qwen-0.5b", "qwen-1.5b", "tiny-qwen2")
MODELS = Path(__file__).resolve().parents[3] / "models"  # /work/models next to the checkout, when there
QWEN_GGUF = {"qwen-0.5b": "qwen2.5-coder-0.5b-q4_k_m.gguf", "qwen-1.5b": "qwen2.5-coder-1.5b-q4_k_m.gguf"}
# Qwen2.5-Coder-0.5B / 1.5B-Instruct as their GGUF headers say (blocks, hidden, FFN, heads, KV heads,
# tied embeddings: no, both files carry output.weight)
QWEN_TYPED = {"qwen-0.5b": (24, 896, 4864, 14, 2, False), "qwen-1.5b": (28, 1536, 8960, 12, 2, False)}


def family(shape: str) -> str:
    """``gemma`` (lengths + random ids) or ``qwen`` (real token ids of PairVul + Juliet)."""
    return "gemma" if shape in ("e4b", "270m") else "qwen"


def default_gguf(shape: str) -> Path | None:
    name = QWEN_GGUF.get(shape)
    return MODELS / name if name and (MODELS / name).is_file() else None


def qwen_config_from_gguf(path: Path) -> Any:
    """A ``Qwen2Config`` from a GGUF header (architecture numbers only; no weights read)."""
    from gguf import GGUFReader
    from transformers import Qwen2Config

    reader = GGUFReader(str(path))

    def num(key: str) -> float:
        field = reader.fields[key]
        return field.parts[field.data[0]].tolist()[0]

    tied = not any(t.name == "output.weight" for t in reader.tensors)
    return Qwen2Config(
        vocab_size=len(reader.fields["tokenizer.ggml.tokens"].data), hidden_size=int(num("qwen2.embedding_length")),
        intermediate_size=int(num("qwen2.feed_forward_length")), num_hidden_layers=int(num("qwen2.block_count")),
        num_attention_heads=int(num("qwen2.attention.head_count")),
        num_key_value_heads=int(num("qwen2.attention.head_count_kv")),
        max_position_embeddings=int(num("qwen2.context_length")), rope_theta=float(num("qwen2.rope.freq_base")),
        rms_norm_eps=float(num("qwen2.attention.layer_norm_rms_epsilon")), tie_word_embeddings=tied,
    )


def build_config(shape: str, weights: Path | None = None) -> Any:
    """Random-init configs of the real architectures (what we set is printed in the output)."""
    if shape == "e4b":
        from transformers import Gemma4TextConfig

        # Gemma 4 E4B text model: 42 layers, hidden 2560, FFN 10240, 8 heads / 2 KV heads,
        # head_dim 256 (sliding) and 512 (full), 5 sliding + 1 full, window 512, per-layer
        # embeddings of 256 per layer, vocab 262144, KV shared across the last 18 layers.
        return Gemma4TextConfig(
            vocab_size=262144, hidden_size=2560, intermediate_size=10240, num_hidden_layers=42,
            num_attention_heads=8, num_key_value_heads=2, head_dim=256, global_head_dim=512,
            sliding_window=512, hidden_size_per_layer_input=256, vocab_size_per_layer_input=262144,
            num_kv_shared_layers=18, max_position_embeddings=4096,
        )
    if shape == "270m":
        from transformers import Gemma3TextConfig

        # Gemma 3 270M (the embedded model's GGUF header): 18 layers, hidden 640, FFN 2048,
        # 4 heads / 1 KV head, head_dim 256, window 512, vocab 262144.
        return Gemma3TextConfig(
            vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
            num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
            max_position_embeddings=32768, rope_theta=1_000_000.0,
        )
    if shape == "tiny-qwen2":
        from transformers import Qwen2Config

        # CPU test shape: the Qwen2 architecture made small (ids of the real data fold into its vocabulary)
        return Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                           tie_word_embeddings=True)
    if shape in QWEN_TYPED:
        gguf = weights or default_gguf(shape)
        if gguf is not None:
            return qwen_config_from_gguf(gguf)
        from transformers import Qwen2Config

        layers, hidden, ffn, heads, kv, tied = QWEN_TYPED[shape]
        return Qwen2Config(vocab_size=151936, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                           num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=32768,
                           rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=tied)
    raise SystemExit(f"unknown shape {shape}")


def dequantised_dir(weights: Path, tmp: Path) -> Path:
    """The GGUF's weights as a bf16 safetensors directory (model + tokenizer), made once per file.

    Every arm loads from it (the same bf16 tensors; Unsloth can only load such a directory);
    the conversion is the product's own (:func:`breachlab.models.convert_gguf`)."""
    import torch

    from breachlab.models import convert_gguf

    st = weights.stat()
    out = tmp / f"hf-{weights.stem}-{st.st_size}"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    return convert_gguf(weights, out, torch.bfloat16)


def make_base(shape: str, device: str, seed: int, weights_dir: Path | None = None, attn: str = "sdpa") -> Any:
    """The base model on ``device``: real weights from ``weights_dir`` or random init with ``seed``."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(seed)
    if weights_dir is not None:
        model = AutoModelForCausalLM.from_pretrained(str(weights_dir), dtype=dtype, attn_implementation=attn,
                                                     use_safetensors=True)
        return model.to(device)
    cfg = build_config(shape)
    cfg._attn_implementation = attn
    with torch.device(device):
        return AutoModelForCausalLM.from_config(cfg, dtype=dtype)


def make_model(shape: str, method: str, device: str, seed: int, grad_ckpt: bool, rng_state: bool = True,
               weights_dir: Path | None = None, attn: str = "sdpa") -> Any:
    """Base model (NF4 target Linears for qlora), frozen, checkpointed, with LoRA r16/α16 on the targets."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = make_base(shape, device, seed, weights_dir, attn)
    if method == "qlora":
        quantize_nf4(model)
    for p in model.parameters():
        p.requires_grad_(False)
    if grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False,
                                                                           "preserve_rng_state": rng_state})
        model.enable_input_require_grads()
    model.config.use_cache = False
    torch.manual_seed(seed + 1)
    return get_peft_model(model, LoraConfig(target_modules=TARGETS, **LORA))


def quantize_nf4(model: Any) -> None:
    """Swap the language model's projection Linears for bitsandbytes NF4 (double quant, bf16 compute)."""
    import bitsandbytes as bnb
    import torch

    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and child_name in TARGETS:
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                                      device="cpu")
                q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, compress_statistics=True,
                                             quant_type="nf4")
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(child.bias.data.cpu(), requires_grad=False)
                q = q.to(child.weight.device)
                setattr(module, child_name, q)
    torch.cuda.empty_cache()


def nonembedding_params(model: Any) -> int:
    return sum(p.numel() for n, p in model.named_parameters()
               if "embed" not in n and "lora_" not in n and p.dim() >= 2) or 1
