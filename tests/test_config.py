from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from breachlab.config import ConfigError, describe, field, load, parse_overrides, to_dict


@dataclass
class Inner:
    rank: int = field(16, help="LoRA rank")


@dataclass
class Outer:
    name: str = field("x", help="name")
    lr: float = field(2e-4, help="learning rate")
    modes: list[str] = field(default_factory=lambda: ["logit"], help="modes")
    limit: int | None = field(None, help="limit")
    flag: bool = field(False, help="flag")
    lora: Inner = field(default_factory=Inner, help="lora")

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError("lr must be positive")


def test_layers_defaults_yaml_overrides(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("name: base\nlr: 0.001\nlora:\n  rank: 8\n")
    cfg = load(Outer, y, parse_overrides(["lora.rank=32", "modes=logit,generate", "flag=true", "limit=none"]))
    assert (cfg.name, cfg.lr, cfg.lora.rank, cfg.modes, cfg.flag, cfg.limit) == (
        "base", 0.001, 32, ["logit", "generate"], True, None)
    assert to_dict(cfg)["lora"] == {"rank": 32}


def test_unknown_key_is_named(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("nmae: typo\n")
    with pytest.raises(ConfigError, match="nmae"):
        load(Outer, y)
    with pytest.raises(ConfigError, match=r"config\.lora: unknown key\(s\) rnak"):
        load(Outer, None, parse_overrides(["lora.rnak=3"]))


def test_type_errors_and_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lr"):
        load(Outer, None, {"lr": "fast"})
    with pytest.raises(ConfigError, match="positive"):
        load(Outer, None, {"lr": -1})
    with pytest.raises(ConfigError, match="integer"):
        load(Outer, None, {"lora": {"rank": 1.5}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="line"):
        load(Outer, bad)
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])


def test_describe_lists_every_key_with_help() -> None:
    rows = {k: h for k, _, h in describe(Outer)}
    assert rows["lora.rank"] == "LoRA rank" and rows["lr"] == "learning rate"
