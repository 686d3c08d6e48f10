"""One data-root rule for both parts, in the README's order: $BREACHLAB_DATA, ../shared/data, ./data.

vuln reaches it through ``DataConfig`` (``data.data_root`` is the explicit choice) and
``source_path``; brain through ``datadir.data_file``.  The order is checked from a fresh
working directory, so what exists beside the checkout decides the fallback.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from breachlab.errors import UserError

README = Path(__file__).resolve().parents[1] / "README.md"


def _vuln_root() -> Path:
    from breachlab.vuln.data.config import DataConfig, data_root

    return data_root(DataConfig())


def _brain_root() -> Path:
    """brain names a file; the root is what the missing-file error (or the found path) shows."""
    from breachlab.datadir import data_file

    try:
        return data_file("sms_spam").parent
    except UserError:
        from breachlab.datadir import data_root

        return data_root()


@pytest.mark.parametrize("root_of", [_vuln_root, _brain_root], ids=["vuln", "brain"])
def test_both_parts_follow_the_readme_order(root_of, tmp_path: Path, monkeypatch) -> None:
    work = tmp_path / "repo"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("BREACHLAB_DATA", raising=False)
    assert root_of() == Path("data")  # nothing else exists: ./data
    (tmp_path / "shared" / "data" / "sms_spam").mkdir(parents=True)
    assert root_of() == Path("..") / "shared" / "data"
    (tmp_path / "env" / "sms_spam").mkdir(parents=True)
    monkeypatch.setenv("BREACHLAB_DATA", str(tmp_path / "env"))
    assert root_of() == tmp_path / "env"


def test_vuln_explicit_data_root_wins_and_sources_live_under_it(tmp_path: Path, monkeypatch) -> None:
    from breachlab.vuln.data.config import DataConfig, data_root, source_path

    monkeypatch.setenv("BREACHLAB_DATA", str(tmp_path / "env"))
    (tmp_path / "mine" / "sven").mkdir(parents=True)
    cfg = DataConfig(data_root=str(tmp_path / "mine"))
    assert data_root(cfg) == tmp_path / "mine"
    assert source_path(cfg, "sven") == tmp_path / "mine" / "sven"
    with pytest.raises(UserError, match="BREACHLAB_DATA"):
        source_path(DataConfig(), "sven")  # $BREACHLAB_DATA/sven does not exist


def test_vuln_has_no_resolver_of_its_own() -> None:
    src = Path(__file__).resolve().parents[1] / "src" / "breachlab" / "vuln"
    readers = [p for p in src.rglob("*.py") if 'environ.get("BREACHLAB_DATA")' in p.read_text(encoding="utf-8")
               or 'environ["BREACHLAB_DATA"]' in p.read_text(encoding="utf-8")]
    assert readers == []


def test_readme_states_the_same_order() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert re.search(r"`\$BREACHLAB_DATA`, else `\.\./shared/data`, else `\./data`", text)
