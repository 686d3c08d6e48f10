"""The shared pieces brain uses (and vuln will): the data-root resolver and the CLI options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from breachlab.config import field
from breachlab.errors import UserError


def test_data_root_order_explicit_env_shared_then_dot_data(tmp_path, monkeypatch):
    from breachlab.datadir import data_file, data_root

    work = tmp_path / "repo"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("BREACHLAB_DATA", raising=False)
    assert data_root() == Path("data")  # nothing else exists: ./data
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert data_root() == Path("..") / "shared" / "data"
    monkeypatch.setenv("BREACHLAB_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(UserError, match=r"missing shared data atlases/a\.npz under BREACHLAB_DATA="):
        data_file("atlases", "a.npz")


def test_brain_reads_the_shared_resolver():
    """brain has no resolver of its own any more (one rule for both parts)."""
    import importlib.util

    assert importlib.util.find_spec("breachlab.brain.datadir") is None
    src = Path(__file__).resolve().parents[2] / "src" / "breachlab" / "brain"
    assert not any("BREACHLAB_DATA\")" in p.read_text(encoding="utf-8") for p in src.glob("*.py"))


@dataclass
class _Cfg:
    a: int = field(1, help="a")
    b: str = field("x", help="b")


def test_set_wins_over_named_flags_and_flags_over_yaml(tmp_path):
    from breachlab.cli_options import load_config

    y = tmp_path / "c.yaml"
    y.write_text("# breachlab brain x\na: 5\nb: yaml\n")
    assert (load_config(_Cfg, y, None).a, load_config(_Cfg, y, None).b) == (5, "yaml")
    cfg = load_config(_Cfg, y, ["a=7"], a=6, b="flag")
    assert (cfg.a, cfg.b) == (7, "flag")
    assert load_config(_Cfg, None, None, a=None).a == 1  # a flag not given changes nothing
