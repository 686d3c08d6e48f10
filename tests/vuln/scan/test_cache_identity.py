"""The scan cache knows a model by its content: a re-exported model.gguf never gets the old scores."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from breachlab import models
from breachlab.vuln.scan.cache import ScoreCache
from breachlab.vuln.scan.scanner import ScanConfig, scan


def _gguf(folder: Path, payload: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.gguf"
    path.write_bytes(b"GGUF" + payload)
    return path


def test_model_id_names_content_not_the_file_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BREACHLAB_CACHE", str(tmp_path / "cache"))
    first = models.resolve(str(_gguf(tmp_path / "v1", b"one" * 1000)))
    second = models.resolve(str(_gguf(tmp_path / "v2", b"two" * 1000)))
    assert first.model_id.startswith("model.gguf@") and second.model_id.startswith("model.gguf@")
    assert first.model_id != second.model_id
    copy = tmp_path / "copy" / "model.gguf"
    copy.parent.mkdir()
    shutil.copyfile(first.path, copy)  # same bytes, new path and mtime: the same model
    assert models.resolve(str(copy)).model_id == first.model_id
    # rewritten in place (same name, same size, new bytes): a new id, not the remembered one
    st = first.path.stat()
    first.path.write_bytes(b"GGUF" + b"ONE" * 1000)
    os.utime(first.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert models.resolve(str(first.path)).model_id not in (first.model_id, second.model_id)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"a")
    one = models.resolve(str(hf)).model_id
    (hf / "model.safetensors").write_bytes(b"b")
    assert one.startswith("hf@") and models.resolve(str(hf)).model_id != one


def test_a_re_exported_model_is_scored_again(project: Path, fake, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BREACHLAB_CACHE", str(tmp_path / "cache"))
    cache = ScoreCache(tmp_path / "c.sqlite")
    cfg = ScanConfig(paths=[str(project)], tools=[], deep=True, explain=False)
    fake.model_id = models.resolve(str(_gguf(tmp_path / "old", b"old weights"))).model_id
    first = scan(cfg, fake, cache=cache)
    assert first.stats["scored"] > 0 and first.stats["cached"] == 0
    assert scan(cfg, fake, cache=cache).stats["cached"] == first.stats["scored"]  # same model: reused
    fake.model_id = models.resolve(str(_gguf(tmp_path / "new", b"new weights"))).model_id
    again = scan(cfg, fake, cache=cache)
    assert again.stats["cached"] == 0 and again.stats["scored"] == first.stats["scored"]
