"""Adapter specs: the shipped default, zero-shot, user paths, and which file each backend reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from breachlab.errors import UserError
from breachlab.vuln.backends import adapters
from breachlab.vuln.backends.adapters import adapter_tag, gguf_lora, peft_dir, resolve_adapter


def test_none_words_mean_zero_shot() -> None:
    for word in (None, "", "none", "None", "zero-shot", "base"):
        assert resolve_adapter(word) is None


def _ship(monkeypatch, tmp_path: Path) -> Path:
    """A stand-in shipped adapter folder (PEFT config + GGUF LoRA + card)."""
    folder = tmp_path / "adapters" / adapters.DEFAULT_ADAPTER
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 16}))
    (folder / "adapter.gguf").write_bytes(b"GGUF")
    (folder / "card.json").write_text(json.dumps({"name": adapters.DEFAULT_ADAPTER}))
    monkeypatch.setattr(adapters, "shipped_dir", lambda name=adapters.DEFAULT_ADAPTER: tmp_path / "adapters" / name)
    return folder


def test_default_resolves_to_the_shipped_folder_when_there_is_one(monkeypatch, tmp_path: Path) -> None:
    folder = _ship(monkeypatch, tmp_path)
    assert adapters.has_shipped() and resolve_adapter("default") == folder
    assert peft_dir(folder) == folder and gguf_lora(folder) == folder / "adapter.gguf"
    assert adapters.shipped_card()["name"] == adapters.DEFAULT_ADAPTER


def test_default_without_a_shipped_adapter_says_so(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(adapters, "shipped_dir", lambda name=adapters.DEFAULT_ADAPTER: tmp_path / "nothing")
    assert not adapters.has_shipped()
    with pytest.raises(UserError, match="ships no fine-tuned adapter"):
        resolve_adapter("default")


def test_default_refuses_another_base_model(monkeypatch, tmp_path: Path) -> None:
    _ship(monkeypatch, tmp_path)
    with pytest.raises(UserError, match="trained on the embedded model"):
        resolve_adapter("default", model="/models/other.gguf")


def test_paths_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        resolve_adapter(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not an adapter"):
        resolve_adapter(tmp_path / "empty")
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="must be a GGUF LoRA"):
        resolve_adapter(tmp_path / "w.bin")
    peft = tmp_path / "peft"
    peft.mkdir()
    (peft / "adapter_config.json").write_text(json.dumps({"r": 8}))
    assert resolve_adapter(peft) == peft and gguf_lora(peft) is None and peft_dir(peft) == peft


def test_tag_follows_content_not_name(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d, payload in ((a, b"one"), (b, b"two")):
        d.mkdir()
        (d / "adapter.gguf").write_bytes(payload)
    assert adapter_tag(a / "adapter.gguf").startswith("a@")
    assert adapter_tag(a / "adapter.gguf") != adapter_tag(b / "adapter.gguf").replace("b@", "a@")


def test_the_shipped_adapter_matches_its_card() -> None:
    """The files that ship are the ones the card describes, and the card's numbers say why it ships."""
    import hashlib

    gguf = pytest.importorskip("gguf")
    if not adapters.has_shipped():
        pytest.skip("this install ships no adapter")
    folder = adapters.shipped_dir()
    card = adapters.shipped_card()
    assert card["name"] == adapters.DEFAULT_ADAPTER
    for name, digest in card["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, f"{name} differs from card.json"
    cfg = json.loads((folder / "adapter_config.json").read_text())
    assert cfg["r"] == card["training"]["config"]["lora_r"] \
        and cfg["lora_alpha"] == card["training"]["config"]["lora_alpha"]
    assert set(cfg["target_modules"]) <= {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    reader = gguf.GGUFReader(str(folder / "adapter.gguf"))
    fields = {k: f.contents() for k, f in reader.fields.items() if k.startswith(("general.type", "adapter."))}
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == pytest.approx(cfg["lora_alpha"])
    assert len(reader.tensors) == 2 * 7 * 18, "A and B for 7 projections in each of the 18 layers"
    # it ships because it beat zero-shot on held-out data: the paired story must hold in the card
    juliet = card["heldout"]["juliet"]
    assert juliet["fine_tuned"]["roc_auc"]["ci"][0] > juliet["zero_shot"]["roc_auc"]["ci"][1]
    assert (folder / "README.md").is_file()
