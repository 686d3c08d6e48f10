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
