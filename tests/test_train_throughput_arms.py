"""The training-throughput benchmark's arms on a tiny Qwen2 on the CPU: none of them can rot.

Runs ``benchmarks/train_throughput.py`` end to end (every arm in its own process) and checks
what the GPU run relies on: the peer arms train the floor's batches with the floor's loss
(same init, same first batch → the same first-step loss), Unsloth is reported skipped (not
failed) without CUDA, and the report carries its fields.  No timing is asserted.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput.examples import TOKENS, load_tokens  # noqa: E402

pytest.importorskip("peft")


def test_token_file_is_consistent() -> None:
    """The committed real-token file: offsets cover the ids, every sample has a prompt and an answer."""
    np = pytest.importorskip("numpy")
    assert TOKENS.stat().st_size <= 2 * 2**20
    with np.load(TOKENS) as z:
        ids, offsets, n_prompt = z["ids"], z["offsets"], z["n_prompt"]
    assert ids.dtype == np.int32 and offsets[0] == 0 and offsets[-1] == len(ids)
    assert len(offsets) == len(n_prompt) + 1 and (np.diff(offsets) > n_prompt).all() and (n_prompt > 0).all()
    meta = json.loads(TOKENS.with_suffix(".json").read_text())
    samples = load_tokens()
    assert len(samples) == meta["samples"] and sum(len(s[0]) for s in samples) == meta["tokens"]
    assert max(len(s[0]) for s in samples) <= meta["max_seq_len"]
    assert 0 <= ids.min() and ids.max() < 151936  # Qwen2.5's vocabulary
    # every answer is a verdict, so the answers' first tokens are few (the two verdict words)
    assert len({s[0][s[1]] for s in samples}) <= 4


def test_qwen_config_matches_gguf_header() -> None:
    """The typed Qwen fallback (used where no GGUF is at hand) is what the GGUF header says."""
    from throughput import shapes

    for shape in ("qwen-0.5b", "qwen-1.5b"):
        gguf = shapes.default_gguf(shape)
        if gguf is None or importlib.util.find_spec("gguf") is None:
            pytest.skip("Qwen GGUFs or the gguf package not here")
        header = shapes.qwen_config_from_gguf(gguf)
        layers, hidden, ffn, heads, kv, tied = shapes.QWEN_TYPED[shape]
        assert (header.num_hidden_layers, header.hidden_size, header.intermediate_size,
                header.num_attention_heads, header.num_key_value_heads, header.vocab_size,
                header.tie_word_embeddings) == (layers, hidden, ffn, heads, kv, 151936, tied)


def test_arms_on_tiny_qwen2_cpu(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    pytest.importorskip("datasets")
    out = tmp_path / "report.json"
    arms = ["baseline", "breachlab-packed", "breachlab-packed-lean", "trl", "unsloth"]
    cmd = [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--shape", "tiny-qwen2", "--device",
           "cpu", "--batch-size", "2", "--steps", "3", "--warmup", "1", "--repeats", "1", "--threads", "2",
           "--arms", ",".join(arms), "--tmp", str(tmp_path / "tmp"), "--out", str(out),
           "--profile", "1", "--profile-dir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["weights"] == "random init" and "real ids" in report["examples"]
    (res,) = report["results"]
    runs = {arm: rs[0] for arm, rs in res["arms"].items()}
    assert set(runs) == set(arms)
    base = runs["baseline"]
    for arm in ("baseline", "breachlab-packed", "breachlab-packed-lean", "trl"):
        r = runs[arm]
        assert "error" not in r, r
        assert len(r["losses"]) == 3 and all(math.isfinite(x) for x in r["losses"])
        for key in ("samples_per_s", "real_tokens_per_s", "median_step_s", "warmup_seconds", "epoch_wall_seconds",
                    "peak_host_gib", "setup_seconds", "timed_steps"):
            assert key in r, (arm, key)
        assert r["timed_steps"] == 2 and r["peak_host_gib"] > 0
        if Path("/proc/self/clear_refs").exists():  # Linux: the training's own peak, apart from loading
            assert 0 < r["train_peak_host_gib"] <= r["peak_host_gib"], r
        if Path("/proc/self/status").exists():  # where training started from: its growth is the difference
            assert 0 < r["train_start_host_gib"] <= r["peak_host_gib"], r
    # the breachlab arm was profiled after its timed steps; its peaks and set-up leave the profiler out
    assert runs["breachlab-packed"]["profiled_steps"] == 1 and "profiled_steps" not in base
    assert (tmp_path / "profile-tiny-qwen2-lora-breachlab-packed.txt").read_text().startswith("1 steps, wall")
    # same init, same first batch, same masking and normalisation -> the same first-step loss
    for arm in ("breachlab-packed", "breachlab-packed-lean", "trl"):
        assert abs(runs[arm]["losses"][0] - base["losses"][0]) < 2e-3, (arm, runs[arm]["losses"], base["losses"])
    # per-example attention in every layer and the head in chunks: the same numbers, step for step
    assert runs["breachlab-packed-lean"]["losses"] == pytest.approx(runs["breachlab-packed"]["losses"], abs=1e-5)
    assert runs["breachlab-packed-lean"]["slot_attention"] == "all" \
        and runs["breachlab-packed-lean"]["head_chunk"] == 64
    trl = runs["trl"]["trl"]
    assert trl["padding_free"] and trl["completion_only_loss"] and trl["attn_implementation"] == "sdpa"
    assert "liger_not_used" in trl
    assert runs["unsloth"].get("skipped") and "error" not in runs["unsloth"]
    summary = res["summary"]
    assert summary["trl"]["vs_floor"]["arm"] == "baseline" and "vs_best_peer" in summary["breachlab-packed"]
    assert summary["trl"]["first_loss_gap"] < 2e-3
    assert summary["unsloth"]["not_run"] == [runs["unsloth"]["skipped"]]
    assert "unsloth" in proc.stdout and "x best peer" in proc.stdout  # the printed table
    # a run in parts (one command per arm set) merges into the same side-by-side summary
    from throughput.cli import merge

    part = json.loads(out.read_text())
    part["results"][0]["arms"] = {"unsloth": res["arms"]["unsloth"]}
    (tmp_path / "part.json").write_text(json.dumps(part))
    merged = merge([out, tmp_path / "part.json"])["results"][0]
    assert set(merged["arms"]) == set(arms) and merged["summary"]["trl"] == summary["trl"]
    assert [r["repeat"] for r in merged["arms"]["unsloth"]] == [0, 1], "runs of an arm in two reports: repeats"
    assert [r["from"] for r in merged["arms"]["unsloth"]] == [out.name, "part.json"]


def test_a_graph_arms_report_keeps_its_capture_bookkeeping() -> None:
    """What a CUDA-graph arm measured besides speed reaches the report: which steps captured
    (left out of the replay median), how many warm-ups ran in the graphs' pool, and the memory
    after each capture (the GPU run reads its host and reserved-memory growth from it)."""
    from throughput.measure import memory_now, summarize

    from breachlab.vuln.training.sft import Encoded

    examples = [Encoded([1, 2, 3, 4], 2) for _ in range(4)]
    memory = [{"step": -1, "host_rss_gib": 1.0}, {"step": 0, "host_rss_gib": 1.2}]
    res = {"step_times": [2.0, 0.5, 0.5, 0.25], "losses": [1.0, 0.9, 0.8, 0.7], "graphs_captured": 2,
           "capture_seconds": 1.5, "capture_steps": [0, 3], "warmups_in_graph_pool": 2, "memory_at_captures": memory,
           "graph_limit": 4, "graph_padded_steps": 1}
    out = summarize("breachlab-graphs", res, examples, [[0], [1], [2], [3]], "cpu", 1, 10, 8, 4)
    assert out["replay_steps"] == 2 and out["samples_per_s_replay"] == 2.0
    assert out["warmups_in_graph_pool"] == 2 and out["memory_at_captures"] == memory
    assert out["graph_limit"] == 4 and out["graph_padded_steps"] == 1, "the graph limit and what it padded"
    now = memory_now("cpu")
    if Path("/proc/self/status").exists():
        assert now["host_rss_gib"] > 0 and "gpu_alloc_gib" not in now
        assert 0 < now["host_anon_gib"] <= now["host_rss_gib"] and now["host_file_gib"] >= 0


def test_host_mappings_add_up_a_files_maps_and_rank_them(tmp_path: Path) -> None:
    """Where the resident set is, by mapping: a library's several maps added up, anonymous maps
    as one entry, the largest first, with their anonymous part; no smaps, no breakdown."""
    from throughput.measure import host_mappings

    def vma(start: str, path: str, rss: int, anon: int) -> str:
        return (f"{start}-{start}f r-xp 00000000 08:01 42 {path}\nSize: 64 kB\nRss: {rss} kB\n"
                f"Pss: {rss} kB\nAnonymous: {anon} kB\nVmFlags: rd ex\n")

    smaps = tmp_path / "smaps"
    smaps.write_text(vma("7f00", "/usr/lib/libcuda.so.1", 2048, 0) + vma("7f10", "/usr/lib/libcuda.so.1", 1024, 512)
                     + vma("7f20", "", 4096, 4096) + vma("7f30", "", 1024, 1024) + vma("7f40", "[heap]", 512, 512)
                     + vma("7f50", "/dev/nvidiactl", 10240, 0))
    got = host_mappings(top=3, smaps=str(smaps))
    assert got == [{"mapping": "/dev/nvidiactl", "rss_mib": 10.0, "anon_mib": 0.0},
                   {"mapping": "[anon]", "rss_mib": 5.0, "anon_mib": 5.0},
                   {"mapping": "/usr/lib/libcuda.so.1", "rss_mib": 3.0, "anon_mib": 0.5}]
    assert host_mappings(smaps=str(tmp_path / "none")) == []
    if Path("/proc/self/smaps").exists():
        assert host_mappings()[0]["rss_mib"] > 0


@pytest.mark.parametrize("hangs", [True, False])
def test_an_arm_is_killed_with_every_process_it_left(tmp_path: Path, monkeypatch, hangs: bool) -> None:
    """A timed-out arm (Unsloth's compile on E4B ran past 400 s on the H200) and an arm that
    exits leaving workers behind: nothing of theirs keeps running into the next arm's timing."""
    import argparse
    import time

    from throughput import cli

    pid_file = tmp_path / "worker.pid"
    script = (f"import subprocess, sys, time, pathlib\n"
              f"w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              f"pathlib.Path({str(pid_file)!r}).write_text(str(w.pid))\n"
              f"time.sleep({60 if hangs else 0})\n")
    monkeypatch.setattr(cli, "child_argv", lambda *a: [sys.executable, "-c", script])
    args = argparse.Namespace(arm_timeout=60.0, arm_timeouts=cli.timeouts("slow=3" if hangs else ""))
    t0 = time.monotonic()
    out = cli.spawn(args, "slow", "lora", None)
    assert time.monotonic() - t0 < 30
    assert out["error"] == ("timed out after 3.0 s" if hangs else "the arm's process exited 0 without a result")
    with pytest.raises(argparse.ArgumentTypeError, match="ARM=SECONDS"):
        cli.timeouts("unsloth")
    worker = int(pid_file.read_text())
    for _ in range(50):  # the worker, killed, is reaped by init
        if not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the arm's worker is still running")


def test_a_graph_arm_splits_a_capture_steps_memory_into_warm_up_and_capture(monkeypatch) -> None:
    """The memory after each eager warm-up is recorded apart from the capture's (the host
    memory that arrived with the first capture on the H200: 0.85 GiB on E4B), and the heap
    trim the ``-trim`` arm does after a capture works here."""
    import types

    import torch
    from throughput import arm_breachlab
    from throughput.measure import trim_host_heap

    capturing = iter([False, True])  # a warm-up, then the capture's own forward + backward
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: next(capturing))
    graph = types.SimpleNamespace(_fwd_bwd=lambda entry: entry * 2, device=torch.device("cpu"))
    memory: list[dict] = []
    arm_breachlab._probe_warm_ups(graph, memory, lambda: 3)
    assert graph._fwd_bwd(1) == 2 and graph._fwd_bwd(2) == 4
    assert [(m["step"], m["after"]) for m in memory] == [(3, "warm-up")], "one record, outside the capture"
    assert "breachlab-graphs-ple-disk-trim" in arm_breachlab.ARMS
    if Path("/proc/self/status").exists():
        assert memory[0]["host_rss_gib"] > 0
    import platform

    if platform.libc_ver()[0] == "glibc":  # elsewhere (musl) there is no malloc_trim: False
        assert trim_host_heap() is True


def test_the_memory_history_finds_the_transient_peak_and_what_holds_it() -> None:
    """``--memory-history`` reads a capture window's allocator trace: the peak of what was
    allocated in the window (frees of older blocks ignored, a block freed twice counted once)
    and the live blocks there, by the line of breachlab/transformers code that made them."""
    from throughput.memory_history import largest, peak_sites, site

    def frames(*where):
        return [{"filename": f, "line": n, "name": fn} for f, n, fn in where]

    mlp = frames(("/x/torch/_ops.py", 10, "call"), ("/e/site-packages/transformers/models/qwen2/modeling_qwen2.py",
                                                    50, "forward"))
    head = frames(("/w/src/breachlab/vuln/training/sft.py", 200, "forward_loss"))
    mib = 2**20
    trace = [
        {"action": "free_requested", "addr": 1, "size": 999 * mib},  # allocated before the window
        {"action": "alloc", "addr": 10, "size": 300 * mib, "frames": mlp},
        {"action": "alloc", "addr": 11, "size": 200 * mib, "frames": mlp},
        {"action": "alloc", "addr": 12, "size": 600 * mib, "frames": head},  # the peak: 1,100 MiB
        {"action": "free_requested", "addr": 12, "size": 600 * mib},
        {"action": "free_completed", "addr": 12, "size": 600 * mib},  # counted once
        {"action": "alloc", "addr": 13, "size": 100 * mib, "frames": []},
    ]
    got = peak_sites(trace)
    assert got["peak_gib"] == round(1100 / 1024, 3) and got["blocks"] == 3
    assert [(s["site"], s["blocks"]) for s in got["sites"]] == [
        ("breachlab/vuln/training/sft.py:200 (forward_loss)", 1),
        ("transformers/models/qwen2/modeling_qwen2.py:50 (forward)", 2)]
    assert site([]) == "?" and site(frames(("/a/b.py", 3, "f"))) == "/a/b.py:3 (f)"
    assert largest([{"peak_gib": 1.0}, {"peak_gib": 2.0}]) == {"peak_gib": 2.0} and largest([]) is None


def test_the_memory_history_is_recorded_around_each_capture_only(monkeypatch) -> None:
    """The allocator's history is on for a capture (its warm-up included) and off after it,
    also when the capture fails; each window is reported with its bucket and step."""
    import types

    import torch
    from throughput.memory_history import watch_captures

    calls: list = []
    monkeypatch.setattr(torch.cuda.memory, "_record_memory_history",
                        lambda enabled="all", **kw: calls.append(enabled))
    trace = [{"action": "alloc", "addr": 1, "size": 2**30, "frames": []}]
    monkeypatch.setattr(torch.cuda.memory, "_snapshot", lambda: {"device_traces": [trace]})

    def capture(prep, inv):
        if prep["key"][0] == 0:
            raise RuntimeError("capture failed")
        return {"key": prep["key"]}

    graph = types.SimpleNamespace(_capture=capture)
    windows: list[dict] = []
    watch_captures(graph, windows, step=lambda: 4)
    assert graph._capture({"key": (512, 256, False)}, 0.1) == {"key": (512, 256, False)}
    with pytest.raises(RuntimeError):
        graph._capture({"key": (0, 0, False)}, 0.1)
    assert calls == ["all", None, "all", None], "on for each capture, off after it, failed or not"
    assert windows == [{"step": 4, "bucket": [512, 256], "peak_gib": 1.0, "blocks": 1,
                        "sites": [{"site": "?", "gib": 1.0, "blocks": 1}]}]


def test_the_bucket_counter_agrees_with_the_captures_on_the_h200() -> None:
    """benchmarks/graph_buckets.py counts a run's CUDA graphs on the CPU. On the third H200 run
    the Qwen arms captured at steps 0, 1, 2, 4, 7, 9, 15, 18 (row mask) and 12 times with slots,
    and the E4B arm at steps 0, 3, 6 (docs/results/throughput-peers-2026-12-02-run5)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from graph_buckets import buckets

    assert buckets("qwen-1.5b", 30, 8, slots=False) == [0, 1, 2, 4, 7, 9, 15, 18]
    assert len(buckets("qwen-1.5b", 30, 8, slots=True)) == 12
    assert buckets("e4b", 20, 8, slots=True) == [0, 3, 6]


def test_the_variant_arms_differ_from_their_base_by_one_feature() -> None:
    """Each diagnostic arm changes one thing against the arm it is read beside, so a gap between
    the two is that thing's: no Liger kernels; one graph per bucket (no ``cuda_graph_limit``)."""
    from throughput.arm_breachlab import ARMS

    def feats(name: str) -> dict:
        ckpt, f = ARMS[name]
        assert ckpt, name
        return f

    base = feats("breachlab-graphs-ple-disk")
    assert feats("breachlab-graphs-ple-disk-no-liger") == {**base, "kernels": False}
    assert feats("breachlab-graphs-ple-disk-unlimited") == {**base, "unlimited": True}
    assert feats("breachlab-graphs-unlimited") == {**feats("breachlab-graphs"), "unlimited": True}
    assert feats("breachlab-graphs-ple-disk-plan2") == {**base, "plan": 2}
    assert feats("breachlab-graphs-ple-disk-unpinned") == {**base, "unpinned": True}
    assert feats("breachlab-graphs-ple-disk-unpinned-plan2") == {**base, "unpinned": True, "plan": 2}
    assert feats("breachlab-graphs-ple-disk-plan3") == {**base, "plan": 3}


def test_a_graph_arms_limit_is_the_trainers_unless_told() -> None:
    import types

    from throughput.arm_breachlab import graph_limit
    from throughput.cli import parser

    from breachlab.vuln.training.config import TrainConfig

    args = parser().parse_args(["--shape", "e4b"])
    assert graph_limit(args) == TrainConfig(data="x").cuda_graph_limit == 4
    assert graph_limit(parser().parse_args(["--shape", "e4b", "--graph-limit", "2"])) == 2
    assert graph_limit(args, unlimited=True) == 0 and graph_limit(types.SimpleNamespace(), True) == 0
    for bad in ("-1", "two"):  # a one-line usage error, before any arm runs
        with pytest.raises(SystemExit):
            parser().parse_args(["--shape", "e4b", "--graph-limit", bad])


def test_the_bucket_counter_counts_a_plan_made_before_the_first_step() -> None:
    """graph_buckets.planned counts cuda_graph_plan: the N graphs the trainer chooses before the
    first step (the largest, then the one that saves the most), and their row tokens against the
    batches' own."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from graph_buckets import planned

    from breachlab.vuln.training.speed.buckets import Bucket, Need

    def need(tokens, slot):
        return Need(Bucket(tokens, 256, False, False, (8, slot)), 8, slot)

    run = [need(2048, 512)] * 6 + [need(2560, 512)] * 3 + [need(3072, 256)]
    over, chosen = planned(run, 1)
    assert [g.tokens for g in chosen] == [3072] and chosen[0].slots == (8, 512), "one graph: the largest of all"
    assert over == round(3072 * 10 / (2048 * 6 + 2560 * 3 + 3072), 4)
    over, chosen = planned(run, 2)
    assert [g.tokens for g in chosen] == [2048, 3072] and over < 1.2
    assert planned(run, 4)[0] == 1.0, "a graph per bucket: no padding"


def test_a_graph_arm_off_cuda_is_skipped_with_its_reason(tmp_path: Path) -> None:
    """CUDA graphs need CUDA: on the CPU a graph arm is reported skipped (the rounds go on without
    it), not failed with torch's 'dummy base class CUDAGraph'."""
    import types

    from throughput import child

    out = tmp_path / "arm.jsonl"
    child.run(types.SimpleNamespace(one_arm="breachlab-graphs-ple-disk-unpinned", result_file=str(out),
                                    device="cpu"))
    assert json.loads(out.read_text()) == {"arm": "breachlab-graphs-ple-disk-unpinned",
                                           "skipped": "CUDA graphs need a CUDA device"}
