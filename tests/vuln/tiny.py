"""Tiny real models and data for the training/export/plan tests.

* :func:`gemma3_dir` — a random Gemma 3 text model (6 layers: 5 sliding + 1 full, the
  pattern llama.cpp expects) with either the character tokenizer of ``tiny_lm`` (fast
  training tests) or the embedded model's real tokenizer (llama.cpp's converter only
  accepts tokenizers it recognises).
* :func:`gemma4_multimodal` — a random Gemma 4 with vision and audio towers, to check
  that adapters land on the language model only.
* :func:`samples_jsonl` — a small balanced train/val split of C snippets.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.vuln.tiny_lm import make_tokenizer

VULN_SNIPPETS = [
    "void f(char *s) {\n  char buf[8];\n  strcpy(buf, s);\n}",
    "int g(int *a, int n) {\n  return a[n];\n}",
    "void h(char *p) {\n  free(p);\n  free(p);\n}",
    "void k(const char *s) {\n  char b[16];\n  sprintf(b, \"%s\", s);\n}",
]
SAFE_SNIPPETS = [
    "void f(const char *s) {\n  char buf[8];\n  snprintf(buf, sizeof buf, \"%s\", s);\n}",
    "int g(const int *a, int n, int i) {\n  return (i >= 0 && i < n) ? a[i] : 0;\n}",
    "void h(char **p) {\n  free(*p);\n  *p = NULL;\n}",
    "size_t k(const char *s) {\n  return s ? strlen(s) : 0;\n}",
]


def embedded_tokenizer_dir() -> Path:
    """The embedded model's transformers cache (tokenizer + config); built once (~55 s)."""
    from breachlab.vuln.training.load import base_location

    return Path(base_location("embedded"))


def gemma3_dir(path: Path, *, hidden: int = 64, real_tokenizer: bool = False, seed: int = 0,
               intermediate: int | None = None, layers: int = 6, sliding_window: int = 32,
               init_std: float = 0.02) -> Path:
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tok = AutoTokenizer.from_pretrained(embedded_tokenizer_dir()) if real_tokenizer else make_tokenizer()
    head_dim = 32 if hidden <= 128 else 64
    cfg = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1, head_dim=head_dim,
        # llama.cpp scales queries by 1/sqrt(head_dim): make HF do the same (its default is 256)
        query_pre_attn_scalar=head_dim, sliding_window=sliding_window, max_position_embeddings=2048, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=init_std,
        layer_types=["sliding_attention" if (i + 1) % 6 else "full_attention" for i in range(layers)],
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(cfg)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def gemma4_multimodal():
    """A random Gemma 4 (text + vision + audio) with every width tiny."""
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration

    text = dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, head_dim=16, global_head_dim=16,
                hidden_size_per_layer_input=8, vocab_size_per_layer_input=256, sliding_window=16,
                layer_types=["sliding_attention", "full_attention"], per_layer_config={})
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=2, head_dim=16)
    audio = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    cfg = Gemma4Config(text_config=text, vision_config=vision, audio_config=audio)
    return Gemma4ForConditionalGeneration(cfg)


def gemma4_text_dir(path: Path, seed: int = 0) -> Path:
    """A random text-only Gemma 4 with per-layer embeddings and KV sharing, saved with the
    tiny tokenizer (what ``vuln train`` loads)."""
    import torch
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    tok = make_tokenizer()
    cfg = Gemma4TextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, global_head_dim=32, sliding_window=16,
        hidden_size_per_layer_input=8, vocab_size_per_layer_input=len(tok), num_kv_shared_layers=2,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=2048, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    Gemma4ForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def samples_jsonl(folder: Path, n_train: int = 16, n_val: int = 8, seed: int = 0) -> Path:
    """train.jsonl + val.jsonl of Sample rows (balanced, with small variations)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def rows(n: int, split: str) -> list[dict]:
        out = []
        for i in range(n):
            label = i % 2
            code = rng.choice(VULN_SNIPPETS if label else SAFE_SNIPPETS).replace("f(", f"f{i}(")
            out.append({"id": f"{split}-{i}", "code": code, "label": label,
                        "cwe": "CWE-787" if label else None, "source": "generic", "group": f"{split}-{i}",
                        "lang": "c"})
        return out

    for split, n in (("train", n_train), ("val", n_val)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(n, split)))
    return folder


def qwen2_dir(path: Path, seed: int = 0) -> Path:
    """A random Qwen2 (2 layers, hidden 64) with the tiny byte-level BPE and a ChatML template."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tests.vuln.tiny_lm import make_chatml_tokenizer

    tok = make_chatml_tokenizer()
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path
