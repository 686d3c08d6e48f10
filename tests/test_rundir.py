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


# -- crash safety -------------------------------------------------------------------------
def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def test_manifest_names_its_process(tmp_path: Path) -> None:
    import os
    import socket

    run = RunDir.create("x", None, out=tmp_path / "r")
    m = run.manifest
    assert m["pid"] == os.getpid() and m["host"] == socket.gethostname() and m["proc_start"]


def test_a_run_left_running_by_a_dead_process_is_marked_incomplete_on_the_next_start(tmp_path: Path) -> None:
    import json

    run = RunDir.create("x", None, root=tmp_path / "runs")
    m = run.manifest
    m["pid"] = _dead_pid()
    (run / "manifest.json").write_text(json.dumps(m))
    RunDir.create("x", None, root=tmp_path / "runs")  # the next start in the same root
    assert run.manifest["status"] == "incomplete" and "ended without" in run.manifest["error"]


def test_a_reused_pid_does_not_keep_a_dead_run_alive(tmp_path: Path) -> None:
    import json
    import os

    run = RunDir.create("x", None, out=tmp_path / "r")
    m = run.manifest
    m["proc_start"] = "another-boot:1"  # our pid, but not the process that started the run
    (run / "manifest.json").write_text(json.dumps(m))
    assert m["pid"] == os.getpid()
    assert RunDir.open(run.path).manifest["status"] == "incomplete"


def test_live_and_foreign_host_runs_stay_running(tmp_path: Path) -> None:
    import json

    live = RunDir.create("x", None, out=tmp_path / "live")
    assert RunDir.open(live.path).manifest["status"] == "running"  # this very process
    other = RunDir.create("x", None, out=tmp_path / "other")
    m = other.manifest
    m.update(pid=_dead_pid(), host="some-other-host")
    (other / "manifest.json").write_text(json.dumps(m))
    assert RunDir.open(other.path).manifest["status"] == "running"  # cannot be checked from here


def test_an_incomplete_out_dir_is_refused_with_a_hint(tmp_path: Path) -> None:
    import json

    run = RunDir.create("x", None, out=tmp_path / "r")
    m = run.manifest
    m["pid"] = _dead_pid()
    (run / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FileExistsError, match="process died.*--resume"):
        RunDir.create("x", None, out=tmp_path / "r")


def test_ctrl_c_and_sigterm_end_as_interrupted(tmp_path: Path) -> None:
    import os
    import signal

    from breachlab.errors import Interrupted

    run = RunDir.create("x", None, out=tmp_path / "a")
    with pytest.raises(KeyboardInterrupt) as info:
        with run.running(resume_hint="do-it-again"):
            raise KeyboardInterrupt
    assert run.manifest["status"] == "interrupted" and run.manifest["resume"] == "do-it-again"
    assert any("do-it-again" in n for n in info.value.__notes__)

    run = RunDir.create("x", None, out=tmp_path / "b")
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted):
        with run.running():
            os.kill(os.getpid(), signal.SIGTERM)
    assert run.manifest["status"] == "interrupted" and "SIGTERM" in run.manifest["error"]
    assert signal.getsignal(signal.SIGTERM) == before
