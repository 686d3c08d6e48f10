"""The default paths of every vuln and brain command, run with all sockets blocked.

Each command runs in this process through :func:`breachlab.errors.run_cli` (the console
script's own wrapper) so that the :func:`no_network` fixture sees every connection attempt,
even one the code catches.  The models are tiny local ones, the data small real samples;
the embedded model's own path is covered by the slow quickstart test.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from breachlab.cli import app
from breachlab.errors import run_cli
from breachlab.rundir import write_jsonl
from tests.conftest import SHARED_DATA, NetworkBlocked

VULN = "int f{i}(char *s) {{ char b[{n}]; strcpy(b, s); return b[0]; }}"
SAFE = "int f{i}(const char *s) {{ char b[{n}]; snprintf(b, sizeof b, \"%s\", s); return b[0]; }}"


@pytest.fixture
def user_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's environment: no HF_HUB_OFFLINE & co (the suite sets them; a user has not)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    try:
        import huggingface_hub.constants as hub_constants
    except ImportError:
        return
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


def _cli(monkeypatch: pytest.MonkeyPatch, *args: object) -> int:
    monkeypatch.setattr("sys.argv", ["breachlab", *map(str, args)])
    return run_cli(app)


def test_the_fixture_blocks_and_reports(no_network: list[str]) -> None:
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("example.org", 443), timeout=1)
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("example.org", 443)
    with socket.socket() as s, pytest.raises(NetworkBlocked):
        s.connect(("127.0.0.1", 9))
    assert len(no_network) == 3
    no_network.clear()  # the teardown check would fail this test otherwise (as it should)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.vuln.tiny import make_model_dir

    return make_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def test_vuln_commands_open_no_socket(no_network: list[str], user_env: None, tiny_model: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREACHLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "mine.jsonl"
    write_jsonl(src, ({"code": (VULN if i % 2 else SAFE).format(i=i, n=8 + i), "label": i % 2, "id": f"m{i}"}
                      for i in range(40)))
    assert _cli(monkeypatch, "vuln", "data", "build", "--sources", "generic", "--set", f"generic_path={src}",
                "--n-train", 6, "--n-val", 2, "--n-test", 4, "--out", tmp_path / "data") == 0
    assert _cli(monkeypatch, "vuln", "data", "stats", tmp_path / "data") == 0
    for name in ("a", "b"):
        assert _cli(monkeypatch, "vuln", "eval", "--data", tmp_path / "data", "--model", tiny_model, "--backend",
                    "transformers", "--set", "max_new_tokens=2", "--set", "n_boot=10",
                    "--out", tmp_path / name) == 0
    assert _cli(monkeypatch, "vuln", "compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "cmp") == 0
    assert _cli(monkeypatch, "vuln", "config", "eval") == 0
    assert _cli(monkeypatch, "vuln", "plan", "gemma-3-270m", "--formula") == 0
    code = tmp_path / "proj"
    code.mkdir()
    (code / "a.c").write_text(VULN.format(i=1, n=8) + "\n" + SAFE.format(i=2, n=8) + "\n")
    assert _cli(monkeypatch, "vuln", "scan", code, "--model", tiny_model, "--backend", "transformers",
                "--format", "json", "--output", tmp_path / "scan.json", "--no-explain") in (0, 1)
    assert json.loads((tmp_path / "scan.json").read_text())


def test_a_missing_model_path_is_an_error_not_a_hub_lookup(no_network: list[str], user_env: None, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "test.jsonl"
    write_jsonl(data, ({"id": f"s{i}", "code": VULN.format(i=i, n=8), "label": i % 2, "cwe": None,
                        "source": "generic", "group": f"g{i}"} for i in range(2)))
    monkeypatch.chdir(tmp_path)
    try:
        assert _cli(monkeypatch, "vuln", "eval", "--data", data, "--model", "runs/no-such-model",
                    "--out", tmp_path / "missing") == 2
    finally:
        tried, no_network[:] = list(no_network), []  # report here, not as a teardown error
    assert not tried, f"tried to reach the network: {tried[:3]}"


def test_quickstart_on_a_tiny_model_opens_no_socket(no_network: list[str], user_env: None, tiny_model: Path,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (SHARED_DATA / "sven" / "train").is_dir():
        pytest.skip("no ../shared/data")
    assert _cli(monkeypatch, "quickstart", "--model", tiny_model, "--adapter", "none", "--n-per-class", 2,
                "--mode", "logit", "--data-root", SHARED_DATA, "--set", "backend=transformers",
                "--out", tmp_path / "qs") == 0


def test_brain_commands_open_no_socket(no_network: list[str], user_env: None, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if not (SHARED_DATA / "atlases" / "fsaverage5_parcellations.npz").is_file():
        pytest.skip("no ../shared/data")
    from breachlab.brain.corpus import dump_corpus, filter_corpus, seed_corpus

    monkeypatch.setenv("BREACHLAB_DATA", str(SHARED_DATA))
    monkeypatch.chdir(tmp_path)
    assert _cli(monkeypatch, "brain", "corpus", "seed", "--out", tmp_path / "corpus.yaml") == 0
    small = tmp_path / "small.yaml"
    dump_corpus(filter_corpus(seed_corpus(), types=["legitimate", "phishing"], max_variant=0), small)
    assert _cli(monkeypatch, "brain", "corpus", "show", small) == 0
    assert _cli(monkeypatch, "brain", "render", small, "--out", tmp_path / "render", "--set", "scale=0.5",
                "--set", "n_frames=2") == 0
    assert _cli(monkeypatch, "brain", "synth", tmp_path / "render", "--out", tmp_path / "synth") == 0
    assert _cli(monkeypatch, "brain", "analyze", tmp_path / "synth", "--out", tmp_path / "an", "--set",
                "figures=minimal", "--set", "n_spin=10", "--set", "n_boot=100", "--set", "n_perm=100") == 0
    # the default text path speaks the text: offline TTS (espeak-ng) or a clear error (exit 2) when absent
    assert _cli(monkeypatch, "brain", "encode", tmp_path / "render", "--backend", "fake", "--no-progress",
                "--out", tmp_path / "enc") in (0, 2)
    _cli(monkeypatch, "brain", "doctor")  # may report missing pieces (exit 1); it must not look online
