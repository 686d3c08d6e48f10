"""Tiny real models and data for the tests: real architectures and tokenizers, made small.

One module for every builder (it used to be two, ``tiny.py`` and ``tiny_lm.py``).

Tokenizers:

* :func:`make_tokenizer` — character-level (characters are tokens, so VULNERABLE and SAFE are
  multi-token words with different first pieces: the hard case for whole-word verdict scoring).
* :func:`make_chatml_tokenizer` — a byte-level BPE like Qwen's with a ChatML template;
  :func:`chatml_gguf` writes its vocabulary and template as a weightless GGUF for llama.cpp.

Models:

* :func:`make_model_dir` — a random Gemma 3 (6 layers: Gemma 3's 5 sliding + 1 full pattern,
  so llama.cpp would accept it; hidden 64) with the character tokenizer.
* :func:`gemma3_dir` — the same family with every knob (width, layers, window, init) and either
  the character tokenizer (fast training tests) or the embedded model's real tokenizer
  (llama.cpp's converter only accepts tokenizers it recognises).
* :func:`gemma4_multimodal` — a random Gemma 4 with vision and audio towers, to check that
  adapters land on the language model only; :func:`gemma4_text_dir` — text-only Gemma 4 with
  per-layer embeddings and KV sharing.
* :func:`qwen2_dir` — a random Qwen2 with the ChatML BPE.

Data: :func:`samples_jsonl` — a small balanced train/val split of C snippets.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path


def make_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    chars = sorted(set(string.printable))
    vocab = {tok: i for i, tok in enumerate(specials + chars + ["—"])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("<start_of_turn>|<end_of_turn>|."), behavior="isolated")
    tk.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>",
                                   additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])


def make_model_dir(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tok = make_tokenizer()
    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=6,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=32,
        max_position_embeddings=4096, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = Gemma3ForCausalLM(cfg)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


CHATML = ("{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
          "{%- endfor %}"
          "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}")


def make_chatml_tokenizer(vocab_size: int = 320):
    """A byte-level BPE like Qwen's, trained here on a few lines, with a ChatML template.

    Small on purpose: "VULNERABLE" stays several tokens and " SAFE" differs from "SAFE", the
    cases verdict scoring must get right.  Like the tokenizer transformers converts from a
    Qwen GGUF it has a BOS token that is never added (the template writes what it needs).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    corpus = ["int f(char *s) { char b[8]; strcpy(b, s); return 0; }", "system user assistant function code",
              "SAFE: bounds are checked.", "VULNERABLE — CWE-787: writes past the end.", "Is this C function safe?"] * 4
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                       show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", chat_template=CHATML)


def chatml_gguf(path: Path) -> Path:
    """A GGUF holding only :func:`make_chatml_tokenizer`'s vocabulary and template (no weights).

    Enough for ``llama_cpp.Llama(..., vocab_only=True)``: llama.cpp's own reading of the
    metadata and its own tokenizer, to compare with transformers.
    """
    import gguf

    tok = make_chatml_tokenizer()
    state = json.loads(tok.backend_tokenizer.to_str())
    tokens = [""] * len(tok)
    for text, i in state["model"]["vocab"].items():
        tokens[i] = text
    for added in state["added_tokens"]:
        tokens[added["id"]] = added["content"]
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_context_length(2048)
    w.add_embedding_length(64)
    w.add_block_count(2)
    w.add_feed_forward_length(128)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t.startswith("<|") else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


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
        query_pre_attn_scalar=head_dim, sliding_window=sliding_window, max_position_embeddings=2048,
        pad_token_id=tok.pad_token_id,
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

    tok = make_chatml_tokenizer()
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path
