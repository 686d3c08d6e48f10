from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from breachlab.config import field
from breachlab.rundir import RunDir, atomic_write_text


@dataclass
class Cfg:
    seed: int = field(7, help="seed")


def test_run_dir_records_config_manifest_and_status(tmp_path: Path) -> None:
    data = tmp_path / "in.txt"
    data.write_text("hello")
    run = RunDir.create("vuln eval", Cfg(), root=tmp_path / "runs", seed=7, inputs=[data])
    assert run.path.name.startswith("vuln-eval-")
    assert yaml.safe_load((run / "config.yaml").read_text()) == {"seed": 7}
    with run.running():
        import logging
        logging.getLogger("breachlab").info("inside")
    m = run.manifest
    assert m["status"] == "finished" and m["seed"] == 7
    assert m["inputs"][str(data)] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert "numpy" in m["versions"] and "inside" in (run / "logs" / "run.log").read_text()


def test_failure_is_recorded_and_reraised(tmp_path: Path) -> None:
    run = RunDir.create("x", None, root=tmp_path)
    with pytest.raises(RuntimeError):
        with run.running():
            raise RuntimeError("boom")
    assert run.manifest["status"] == "failed" and "boom" in run.manifest["error"]


def test_never_reuses_a_non_empty_out_dir(tmp_path: Path) -> None:
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        RunDir.create("x", None, out=tmp_path / "o")
    assert (tmp_path / "o" / "keep.txt").read_text() == "precious"


def test_open_rejects_non_run_dirs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a breachlab run directory"):
        RunDir.open(tmp_path)


def test_atomic_write_leaves_no_temp_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "one")
    with pytest.raises(TypeError):
        atomic_write_text(target, 123)  # type: ignore[arg-type]
    assert target.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_write_gives_normal_file_permissions(tmp_path: Path) -> None:
    target = tmp_path / "report.sarif"
    atomic_write_text(target, "{}")
    assert target.stat().st_mode & 0o777 == 0o644
