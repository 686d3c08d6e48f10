"""The GGUF → transformers tokenizer check (transformers 5.17.0 split the embedded tokenizer
differently from llama.cpp; a GPU fine-tune through it learned nothing usable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from breachlab import models
from breachlab.errors import UserError


class FakeTok:
    def __init__(self, ids: list[int]):
        self.ids = ids

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        assert text == models.TOKENIZER_PROBE
        return {"input_ids": list(self.ids)}


def test_mismatch_is_refused_with_the_fix(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(models, "gguf_probe_ids", lambda g: [1, 2, 3])
    g = tmp_path / "m.gguf"
    g.write_bytes(b"GGUF")
    models.check_gguf_tokenizer(g, FakeTok([1, 2, 3]))  # same ids: fine
    with pytest.raises(UserError, match=r"converts the tokenizer of m.gguf differently from llama.cpp.*5\.24"):
        models.check_gguf_tokenizer(g, FakeTok([1, 2, 2, 3]))


def test_without_llama_cpp_the_embedded_model_uses_recorded_ids(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(models, "gguf_probe_ids", lambda g: None)
    g = tmp_path / "gemma.gguf"
    with g.open("wb") as f:  # sparse file of the embedded model's size
        f.truncate(models.EMBEDDED_SIZE)
    models.check_gguf_tokenizer(g, FakeTok(list(models.EMBEDDED_PROBE)))
    with pytest.raises(UserError, match="recorded for the embedded model"):
        models.check_gguf_tokenizer(g, FakeTok([105, 605, 497]))
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")
    models.check_gguf_tokenizer(other, FakeTok([0]))  # cannot check: a warning, not an error


def test_recorded_ids_are_llama_cpps_and_the_cached_conversion_matches() -> None:
    pytest.importorskip("llama_cpp")
    try:
        gguf = models.embedded_gguf()
    except UserError:
        pytest.skip("embedded model packages not installed")
    assert models.gguf_probe_ids(gguf) == list(models.EMBEDDED_PROBE)
