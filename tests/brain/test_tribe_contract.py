"""The TRIBE v2 backend against the real upstream code (vendored tribev2 @ 7239908), not the double.

Runs in the default suite (``python -m pytest``; marker ``contract``): it builds, or finds
cached, a venv of its own (:mod:`tests.brain.contract.venv`), a random-weight checkpoint from
upstream's ``grids/defaults.py`` (:mod:`tests.brain.contract.driver`), and runs the real CLI,
``breachlab brain encode --backend tribev2``, in that venv on the post's seed corpus (variant 0:
5 types × EN/JA) with weight-free stand-ins for the three extractors
(:mod:`tests.brain.contract.standins`).  Offline: HF_HUB_OFFLINE=1; nothing is downloaded
but PyPI packages for a cold venv.  Skipped only when the vendored tarball is absent.

What it proves against upstream (each assertion fails with the bug put back):

* text (speech + words), audio and screenshot (still video → V-JEPA2's place) paths, English
  and Japanese, give finite (n_TR, 20484) predictions through ``from_pretrained`` → ``predict``;
* the subcortical head reads the segments' events inside ``predict`` (else
  ``_EventStore not found``) and its rows are the TRs: a head made of a slice of the
  checkpoint's own cortical predictor reproduces those vertices exactly (else 200 rows per
  100 TRs, or shifted rows);
* one load per corpus: each extractor is loaded once for the whole run (upstream: once per
  prediction, as the ``keep_extractors=false`` run shows);
* ``--aligner even``: English and Japanese reach the model as written (the Text event is the
  message's own text, punctuation and casing kept);
* without the stand-in video model, the screenshot path goes through upstream's events and
  loaders and stops where V-JEPA2's weights are needed, with one clear line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.brain.contract import venv as contract_venv

pytestmark = pytest.mark.contract

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "contract" / "driver.py"
SRC = HERE.parents[1] / "src"
HEAD_VERTICES = np.arange(0, 20484, 409)  # 51 vertices across both hemispheres
RESULTS = os.environ.get("BREACHLAB_CONTRACT_RESULTS")  # write the measured numbers here (JSON)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return env | {"PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                  "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "2")} | extra


def _drive(py: Path, args: list[str], cwd: Path, report: Path, **env) -> tuple[dict, subprocess.CompletedProcess]:
    res = subprocess.run([str(py), str(DRIVER), "encode", str(report), "--", *args], cwd=cwd, env=_env(**env),
                         capture_output=True, text=True, timeout=1500)
    rep = json.loads(report.read_text()) if report.is_file() else {}
    return rep, res


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """(python of the contract venv, checkpoint dir, head file, render run, timings)."""
    if not contract_venv.TARBALL.is_file():
        pytest.skip(f"the vendored TRIBE v2 source is absent ({contract_venv.TARBALL}); see ../shared/vendor/README.md")
    from breachlab.brain.configs import RenderConfig
    from breachlab.brain.corpus import dump_corpus, filter_corpus, seed_corpus
    from breachlab.brain.stages import run_render

    t0 = time.perf_counter()
    py, info = contract_venv.ensure()
    timings = {"venv_s": round(time.perf_counter() - t0, 1), "venv_built_now": info["built_now"]}
    root = tmp_path_factory.mktemp("contract")
    t0 = time.perf_counter()
    res = subprocess.run([str(py), str(DRIVER), "checkpoint", str(root / "ckpt")], env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    timings["checkpoint_s"] = round(time.perf_counter() - t0, 1)
    head = _head_from_predictor(py, root)
    corpus = filter_corpus(seed_corpus(), max_variant=0)
    dump_corpus(corpus, root / "post.yaml")
    render = run_render(root / "post.yaml", RenderConfig(), out=root / "render")
    small = filter_corpus(corpus, types=["legitimate", "phishing"])
    dump_corpus(small, root / "small.yaml")
    render_small = run_render(root / "small.yaml", RenderConfig(), out=root / "render-small")
    yield {"py": py, "ckpt": root / "ckpt", "head": head, "render": render, "root": root, "timings": timings,
           "n_messages": len(corpus), "render_small": render_small, "n_small": len(small)}
    if RESULTS:  # what the tests measured (BREACHLAB_CONTRACT_RESULTS=FILE.json)
        Path(RESULTS).write_text(json.dumps(timings | {"python": sys.version.split()[0]}, indent=2))


def _head_from_predictor(py: Path, root: Path) -> Path:
    """A 'subcortical' head = a slice of the checkpoint's own cortical predictor (weights + bias)."""
    head = root / "head.npz"
    code = (
        "import sys, numpy as np, torch\n"
        "sd = torch.load(sys.argv[1], map_location='cpu', weights_only=True, mmap=True)['state_dict']\n"
        "idx = np.array(sys.argv[3].split(','), dtype=int)\n"
        "w = sd['model.predictor.weights'][0][:, idx].numpy(); b = sd['model.predictor.bias'][0][idx].numpy()\n"
        "np.savez(sys.argv[2], weight=w, bias=b, labels=np.array([f'vertex-{i}' for i in idx]))\n")
    res = subprocess.run([str(py), "-c", code, str(root / "ckpt" / "best.ckpt"), str(head),
                          ",".join(map(str, HEAD_VERTICES))], env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return head


def _encode_args(u, out: Path, paths: str, *extra: str, render: str = "render") -> list[str]:
    return ["brain", "encode", str(u[render]), "--backend", "tribev2", "--paths", paths, "--device", "cpu",
            "--allow-cpu", "--checkpoint", str(u["ckpt"]), "--aligner", "even", "--out", str(out),
            "--cache", str(u["root"] / f"feature-cache-{out.parent.name}-{out.name}"), "--no-progress",
            "--set", "loader_workers=0", *extra]


def test_every_path_and_language_through_upstream_with_the_head(upstream, tmp_path):
    from breachlab.brain.predictions import N_VERTICES, load_store

    u = upstream
    out = tmp_path / "enc"
    rep, res = _drive(u["py"], _encode_args(u, out, "text,audio,screenshot", "--subcortical-head", str(u["head"])),
                      tmp_path, tmp_path / "report.json")
    assert rep.get("exit_code") == 0 and res.returncode == 0, res.stderr[-4000:]
    store = load_store(out)
    assert len(store.entries) == 3 * u["n_messages"] and not store.meta.synthetic
    assert store.meta.has_subcortical
    rec = json.loads((out / "manifest.json").read_text())["stimuli"]
    shapes = {}
    for e in store:
        cortex = store.array(e)
        assert cortex.ndim == 2 and cortex.shape[1] == N_VERTICES and cortex.dtype == np.float32
        assert np.isfinite(cortex).all() and cortex.std() > 0
        sub = np.load(out / "predictions" / f"{e.stimulus_id}.{e.path}.subcortical.npy")
        # fixes 1 and 2: rows = TRs, read inside predict; the head is the predictor's own slice
        np.testing.assert_allclose(sub, cortex[:, HEAD_VERTICES], rtol=1e-3, atol=1e-4)
        r = rec[f"{e.stimulus_id}/{e.path}"]
        want = {"text": {"Audio", "Word", "Text", "Sentence"}, "audio": {"Audio"}, "screenshot": {"Video"}}[e.path]
        assert want <= set(r["event_types"]), (e.stimulus_id, e.path, r["event_types"])
        shapes[(e.stimulus_id, e.path)] = cortex.shape
        if e.path == "text":  # fix 5: the message's own text, as written, in both languages
            assert r["text_event"] == [r["transcript"]], (e.stimulus_id, r["text_event"])
            assert any(ch in r["transcript"] for ch in ".!?:。！？"), r["transcript"]
        if e.path == "screenshot":
            assert cortex.shape[0] == 2  # 16 frames at 8 fps = 2 s = 2 TRs kept
    langs = {(e.type, e.path): {} for e in store}
    for e in store:
        langs[(e.type, e.path)][e.language] = store.array(e)
    for (typ, path), by in langs.items():
        assert set(by) == {"en", "ja"}
        if path == "text":
            assert not np.array_equal(by["en"][:1], by["ja"][:1]), (typ, path)
    # fix 4: one load per extractor for the whole run (30 predictions)
    assert rep["loads"] == {"text": 1, "audio": 1, "video": 1}, rep["loads"]
    u["timings"]["all_paths_keep_s"] = rep["seconds"]
    u["timings"]["all_paths_cpu_s"] = rep.get("cpu_s")
    u["timings"]["all_paths_loads"] = rep["loads"]
    u["timings"]["speech"] = rep["speech"]


def test_upstream_reloads_per_prediction_and_the_wrapper_once(upstream, tmp_path):
    """The same 12 predictions (4 messages × 3 paths) with upstream's free-and-reload and with keep_extractors."""
    u = upstream
    runs = {}
    for keep in (False, True):
        out = tmp_path / f"enc-keep-{keep}"
        rep, res = _drive(u["py"], _encode_args(u, out, "text,audio,screenshot", "--set",
                                                f"keep_extractors={str(keep).lower()}", render="render_small"),
                          tmp_path, tmp_path / f"report-{keep}.json")
        assert rep.get("exit_code") == 0, res.stderr[-4000:]
        runs[keep] = rep
    n = u["n_small"]  # the audio path reads the features its text path cached: no load of its own
    assert runs[False]["loads"] == {"text": n, "audio": n, "video": n}
    assert runs[True]["loads"] == {"text": 1, "audio": 1, "video": 1}
    for keep, name in ((False, "reload_per_prediction"), (True, "one_load_per_corpus")):
        u["timings"][name] = {"keep_extractors": keep, "predictions": 3 * n, "loads": runs[keep]["loads"],
                              "seconds": runs[keep]["seconds"], "cpu_s": runs[keep].get("cpu_s")}


def test_screenshot_path_without_vjepa2_weights_stops_with_one_line(upstream, tmp_path):
    u = upstream
    out = tmp_path / "enc"
    rep, res = _drive(u["py"], _encode_args(u, out, "screenshot"), tmp_path, tmp_path / "report.json",
                      BREACHLAB_CONTRACT_REAL_VIDEO="1")
    assert rep.get("exit_code") == 2, res.stderr[-4000:]
    last = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert last and "facebook/vjepa2-vitg-fpc64-256" in last[-1] and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert rep["loads"] == {}  # nothing stood in for it


def test_doctor_sees_the_vendored_commit_installed(upstream, tmp_path):
    res = subprocess.run([str(upstream["py"]), "-m", "breachlab.cli", "brain", "doctor", "--json", "--cache",
                          str(tmp_path)],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    checks = {c["name"]: c for c in json.loads(res.stdout)}
    assert checks["tribev2 source"]["status"] == "ok", checks["tribev2 source"]
    assert "7239908" in checks["tribev2 source"]["detail"]
    assert checks["exca"]["status"] == "ok" and checks["neuralset"]["detail"] == "0.0.2"
