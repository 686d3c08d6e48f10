"""A killed eval resumes to the same predictions: the real CLI in a subprocess, really killed.

The subprocess runs ``breachlab vuln eval`` on a tiny random Gemma 3 (transformers backend);
its ``predict_one`` is slowed down by the test's launcher so that the kill lands after a few
rows and well before the end.  Nothing in breachlab knows about the slowdown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from breachlab.rundir import write_jsonl
from breachlab.vuln.eval import evaluate
from breachlab.vuln.eval.evaluate import EvalConfig
from breachlab.vuln.sample import Sample
from tests.vuln.tiny import make_model_dir

ROOT = Path(__file__).resolve().parents[2]
SLOW_CLI = ("import sys, time; import breachlab.vuln.eval.predict as p; _one = p.predict_one\n"
            "def slow(*a, **k):\n    time.sleep(0.3); return _one(*a, **k)\n"
            "p.predict_one = slow\nfrom breachlab.cli import main\nsys.argv[0] = 'breachlab'; main()\n")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def _data(tmp_path: Path, n: int = 16) -> Path:
    rows = [Sample(f"s{i:02d}", f"int f{i}(char *s) {{ char b[{i + 4}]; strcpy(b, s); return {i}; }}", i % 2,
                   "CWE-121", "juliet" if i < n // 2 else "sven", f"g{i}") for i in range(n)]
    path = tmp_path / "test.jsonl"
    write_jsonl(path, (s.to_dict() for s in rows))
    return path


def _eval_args(data: Path, model: Path, out: Path) -> list[str]:
    return ["vuln", "eval", "--data", str(data), "--model", str(model), "--backend", "transformers",
            "--mode", "logit,generate", "--set", "max_new_tokens=3", "--set", "n_boot=30", "--set", "threads=1",
            "--out", str(out)]


def _start_slow(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen([sys.executable, "-c", SLOW_CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def _wait_rows(proc: subprocess.Popen, partial: Path, n: int, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"eval ended before it was killed: {proc.stderr.read()[-2000:]}")
        if partial.is_file():
            lines = partial.read_text().count("\n")
            if lines >= n:
                return lines
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no predictions appeared in time")


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r.pop("latency_s")
    return rows


def _same(a: list[dict], b: list[dict]) -> None:
    assert [(r["id"], r["mode"]) for r in a] == [(r["id"], r["mode"]) for r in b]
    for x, y in zip(a, b):
        px, py = x.pop("p_vulnerable"), y.pop("p_vulnerable")
        assert (px is None and py is None) or px == pytest.approx(py, rel=1e-5, abs=1e-7)
        for k in ("logp_vulnerable", "logp_safe"):
            vx, vy = x.pop(k, None), y.pop(k, None)
            assert (vx is None and vy is None) or vx == pytest.approx(vy, rel=1e-5, abs=1e-6)
        assert x == y


def test_sigkilled_eval_is_marked_incomplete_and_resumes_to_the_same_predictions(tmp_path: Path,
                                                                                 tiny_dir: Path) -> None:
    data = _data(tmp_path)
    killed = tmp_path / "killed"
    proc = _start_slow(_eval_args(data, tiny_dir, killed))
    written = _wait_rows(proc, killed / "predictions.partial.jsonl", 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close(), proc.stderr.close()
    assert json.loads((killed / "manifest.json").read_text())["status"] == "running"  # a dead process cannot say more
    assert not (killed / "predictions.jsonl").exists()

    # the next start sees the dead process; --resume continues from the rows on disk
    res = subprocess.run([sys.executable, "-m", "breachlab.cli", "vuln", "eval", "--resume", str(killed)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])})
    assert res.returncode == 0, res.stderr[-2000:]
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["status"] == "finished" and len(manifest["starts"]) == 2 and "error" not in manifest
    assert manifest["previous_ends"][0]["status"] == "incomplete"
    resumed = _rows(killed / "predictions.jsonl")
    assert len(resumed) == 16 + 16 and written < len(resumed)

    whole = evaluate.run(EvalConfig(data=str(data), model=str(tiny_dir), backend="transformers", max_new_tokens=3,
                                    n_boot=30, threads=1), out=tmp_path / "whole", progress=False)
    _same(resumed, _rows(whole / "predictions.jsonl"))
    a, b = (json.loads((p / "metrics.json").read_text()) for p in (killed, whole))
    assert a["logit"]["counts"] == b["logit"]["counts"] and a["generate"]["counts"] == b["generate"]["counts"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_say_interrupted_and_leave_a_resumable_run(tmp_path: Path, tiny_dir: Path,
                                                                      sig: signal.Signals) -> None:
    data = _data(tmp_path, n=8)
    out = tmp_path / "run"
    proc = _start_slow(_eval_args(data, tiny_dir, out))
    _wait_rows(proc, out / "predictions.partial.jsonl", 2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1].startswith("interrupted"), err[-2000:]
    assert f"--resume {out}" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["resume"] == f"breachlab vuln eval --resume {out}"
    evaluate.resume(out, progress=False)
    assert len(_rows(out / "predictions.jsonl")) == 16


def test_resume_refuses_finished_runs_and_changed_data(tmp_path: Path, tiny_dir: Path) -> None:
    from breachlab.errors import UserError

    data = _data(tmp_path, n=4)
    cfg = EvalConfig(data=str(data), model=str(tiny_dir), backend="transformers", modes=["logit"], n_boot=5)
    done = evaluate.run(cfg, out=tmp_path / "done", progress=False)
    with pytest.raises(UserError, match="nothing to resume"):
        evaluate.resume(done)
    # an interrupted run whose data file changed since
    (done / "predictions.jsonl").rename(done / "predictions.partial.jsonl")
    m = json.loads((done / "manifest.json").read_text())
    m["status"] = "interrupted"
    (done / "manifest.json").write_text(json.dumps(m))
    data.write_text(data.read_text().replace("strcpy", "strncpy"))
    with pytest.raises(UserError, match="changed since"):
        evaluate.resume(done)


def test_resume_refuses_a_run_started_on_other_samples(tmp_path: Path, tiny_dir: Path) -> None:
    """A quickstart arm picks its own samples; resuming it with the plain eval selection would
    predict a different list, so the ids' digest in the manifest must match."""
    from breachlab.errors import UserError

    data = _data(tmp_path, n=6)
    cfg = EvalConfig(data=str(data), model=str(tiny_dir), backend="transformers", modes=["logit"], n_boot=5,
                     limit=4)
    done = evaluate.run(cfg, out=tmp_path / "run", progress=False)
    (done / "predictions.jsonl").rename(done / "predictions.partial.jsonl")
    m = json.loads((done / "manifest.json").read_text())
    m["status"] = "interrupted"
    (done / "manifest.json").write_text(json.dumps(m))
    cfg_text = (done / "config.yaml").read_text().replace("limit: 4", "limit: null")
    (done / "config.yaml").write_text(cfg_text)
    with pytest.raises(UserError, match="other samples"):
        evaluate.resume(done, progress=False)
