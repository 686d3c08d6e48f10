"""A tiny random Gemma 3 with a character-level tokenizer: real architecture, made small.

Keeps Gemma 3's 5-sliding + 1-full layer pattern (6 layers) so llama.cpp would accept it,
hidden size 64.  Characters are tokens, so VULNERABLE and SAFE are multi-token words with
different first pieces — the hard case for whole-word verdict scoring.
"""

from __future__ import annotations

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


CHATML = ("{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endfor %}"
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
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", chat_template=CHATML)


def chatml_gguf(path: Path) -> Path:
    """A GGUF holding only :func:`make_chatml_tokenizer`'s vocabulary and template (no weights).

    Enough for ``llama_cpp.Llama(..., vocab_only=True)``: llama.cpp's own reading of the
    metadata and its own tokenizer, to compare with transformers.
    """
    import json

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
