"""``breachlab vuln train`` under ``accelerate launch`` with 2 processes (DDP, CPU, gloo).

Real subprocesses, the real CLI, a tiny Gemma 3.  What is checked:

* the global batch of step k (``batch_size x processes x grad_accum`` sequences) is split
  across ranks without overlap, and is the same set of micro-batches one process with
  ``grad_accum x processes`` would train on (in-process, no launch);
* a 2-process run writes one run directory, one manifest (``processes: 2``), one
  metrics.csv without duplicated rows, one log, best/ and final/ once, and takes the
  number of optimizer steps the global batch implies;
* its logged train loss and token count are those of the global batch (checked against a
  single-process forward of the base model on the union of both shards), and its
  validation loss, reduced over ranks, equals a single-process evaluation of the saved
  adapter;
* (slow) 2 processes x batch b == 1 process x batch b x grad_accum 2 (same micro-batches)
  and ~= 1 process x batch 2b: the same adapter;
* (slow) a 2-process run killed with SIGKILL and resumed with ``--resume`` under 2
  processes ends with the adapter of the uninterrupted run.

``accelerate launch --cpu --num_processes 2`` starts ONE process in accelerate 1.x (several
CPU processes need mpirun); ``--multi_gpu`` goes through torchrun, and ``device: cpu`` in
the trainer then makes the group a gloo one.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

from breachlab.vuln.training import sft  # noqa: E402
from breachlab.vuln.training.config import TrainConfig  # noqa: E402
from breachlab.vuln.training.load import load_data  # noqa: E402
from breachlab.vuln.training.loop import Trainer  # noqa: E402
from tests.vuln.tiny import gemma3_dir, samples_jsonl  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "vuln" / "tiny-smoke.yaml"
DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR",
            "MASTER_PORT", "TORCHELASTIC_RUN_ID")


# -- helpers --------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_cmd(processes: int, out: Path | None, sets: dict, resume: Path | None = None) -> list[str]:
    if resume is not None:
        args = ["vuln", "train", "--resume", str(resume)]
    else:
        args = ["vuln", "train", "--config", str(SMOKE), "--out", str(out)]
        for k, v in {"threads": 1, "device": "cpu", **sets}.items():
            args += ["--set", f"{k}={v}"]
    if processes == 1:
        return [sys.executable, "-m", "breachlab.cli", *args]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port()), "-m", "breachlab.cli", *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV and not k.startswith("ACCELERATE_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


def train(processes: int, out: Path | None, sets: dict, *, cwd: Path, resume: Path | None = None,
          timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(_train_cmd(processes, out, sets, resume), env=_env(), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def metrics(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "metrics.csv").open()))


def adapter(run: Path, which: str = "final") -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / which / "adapter_model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def fake_trainer(cfg: TrainConfig, lengths: list[int], world: int, rank: int) -> Trainer:
    """A Trainer with only what ``_step_batches`` reads (no model, no process group)."""
    t = Trainer.__new__(Trainer)
    t.cfg = cfg
    t.acc = SimpleNamespace(num_processes=world, process_index=rank)
    t.train_enc = [sft.Encoded(list(range(n)), n_prompt=n - 1) for n in lengths]
    t.steps_per_epoch = max(1, len(lengths) // (cfg.batch_size * cfg.grad_accum * world))
    return t


def global_batch(cfg: TrainConfig, lengths: list[int], world: int, step: int) -> list[list[int]]:
    """Per rank, the micro-batches of optimizer ``step`` (rank-major)."""
    return [fake_trainer(cfg, lengths, world, r)._step_batches(step) for r in range(world)]


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny_ddp")
    # 9 validation samples: the two ranks' shards are unequal (5 + 4 -> 2 and 1 batches of 4)
    return gemma3_dir(base / "model"), samples_jsonl(base / "data", n_train=16, n_val=9)


# -- data sharding (in-process) -------------------------------------------------------------------
@pytest.mark.parametrize("grouping", [True, False], ids=["length-grouped", "plain"])
@pytest.mark.parametrize("world,ga", [(2, 1), (2, 2), (3, 1), (4, 2)])
def test_each_rank_gets_its_own_shard_of_the_global_batch(world, ga, grouping):
    lengths = [40 + (i * 37) % 90 for i in range(100)]
    cfg = TrainConfig(batch_size=3, grad_accum=ga, length_grouping=grouping, seed=7)
    one = TrainConfig(batch_size=3, grad_accum=ga * world, length_grouping=grouping, seed=7)
    per_epoch = len(lengths) // (3 * ga * world)
    for step in range(2 * per_epoch):
        ranks = global_batch(cfg, lengths, world, step)
        assert all(len(r) == ga for r in ranks)
        flat = [i for r in ranks for b in r for i in b]
        # (a length-grouped order may hold one short batch: a mega-batch's remainder)
        assert len(flat) == len(set(flat)) >= 3 * ga * world - 2, "a sample appears twice in one global batch"
        # the union of the shards is exactly what one process with grad_accum x world trains on
        single = global_batch(one, lengths, 1, step)[0]
        assert sorted(map(tuple, (b for r in ranks for b in r))) == sorted(map(tuple, single))
    for epoch in range(2):  # no sample twice within an epoch (drop-last: the remainder waits)
        seen = [i for s in range(epoch * per_epoch, (epoch + 1) * per_epoch)
                for r in global_batch(cfg, lengths, world, s) for b in r for i in b]
        assert len(seen) == len(set(seen)) >= per_epoch * 3 * ga * world - 2


# -- one 2-process run, end to end (default run) -------------------------------------------------
def _base_and_data(tiny, **kw):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, data_dir = tiny
    cfg = TrainConfig(model=str(model_dir), data=str(data_dir), max_seq_len=384, batch_size=4, **kw)
    tok = AutoTokenizer.from_pretrained(model_dir)
    train_s, val_s, _ = load_data(cfg)
    train_enc = [sft.encode(tok, s, cfg.max_seq_len) for s in train_s]
    val_enc = [sft.encode(tok, s, cfg.max_seq_len) for s in val_s]
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return cfg, tok, base, train_enc, val_enc


def _val_loss(model, val_enc, batch_size: int, pad_id: int) -> float:
    """Single-process evaluation, as Trainer.evaluate does it with one process."""
    order = sorted(range(len(val_enc)), key=lambda i: len(val_enc[i].ids))
    tot = n = 0.0
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            loss_sum, k = sft.forward_loss(model, sft.collate([val_enc[i] for i in order[s:s + batch_size]], pad_id),
                                           "cpu")
            tot, n = tot + float(loss_sum), n + k
    return tot / n


def test_two_processes_end_to_end(tiny, tmp_path):
    """16 train samples, batch 4 x 2 processes = global batch 8: 2 steps an epoch, 4 in 2 epochs."""
    from peft import PeftModel

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    sets = dict(model=tiny[0], data=tiny[1], max_steps=0, epochs=2, eval_every=2, save_every=2, log_every=1)
    proc = train(2, cwd / "run", sets, cwd=cwd)
    run = cwd / "run"
    assert sorted(os.listdir(cwd)) == ["run"], "exactly one run directory (rank 1 must not create one)"
    man = json.loads((run / "manifest.json").read_text())
    assert man["status"] == "finished" and man["processes"] == 2
    assert man["steps"] == man["planned_steps"] == 4, "global batch = batch_size x processes x grad_accum = 8"
    rows = metrics(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4], "one row per step, none from rank 1"
    assert [bool(r["val_loss"]) for r in rows] == [False, True, False, True]
    log_lines = (run / "logs" / "run.log").read_text().splitlines()
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) breachlab")
    assert log_lines and all(stamp.match(line) for line in log_lines), "garbled or interleaved log lines"
    for k in range(1, 5):
        assert sum(f"step {k}/4 " in line for line in log_lines) == 1
    assert proc.stdout.count("best (by ") == 1, "one summary, from the main process"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000002"]
    assert not list(run.glob(".*.tmp")) and not list((run / "checkpoints").glob(".*"))
    for which in ("best", "final"):
        assert (run / which / "adapter_model.safetensors").is_file()
    assert (run / "curves.png").stat().st_size > 1000

    cfg, tok, base, train_enc, val_enc = _base_and_data(tiny)
    pad = tok.pad_token_id
    # step 1 ran on the initial weights (LoRA B = 0, i.e. the base model): its logged loss must be
    # the token-mean over the *union* of both ranks' shards, and its tokens those of both shards.
    lengths = [len(e.ids) for e in train_enc]
    shards = global_batch(TrainConfig(batch_size=4, seed=cfg.seed), lengths, 2, 0)
    micro = [sft.collate([train_enc[i] for i in b], pad) for r in shards for b in r]
    with torch.no_grad():
        loss0 = sum(float(sft.forward_loss(base, m, "cpu")[0]) for m in micro) / sum(m["n_supervised"] for m in micro)
    assert float(rows[0]["train_loss"]) == pytest.approx(loss0, abs=2e-5)
    assert int(rows[0]["tokens"]) == sum(m["n_tokens"] for m in micro)
    # validation: the loss reduced over the ranks' unequal shards == one process on the whole set
    tuned = PeftModel.from_pretrained(base, run / "final").eval()
    single = _val_loss(tuned, val_enc, 4, pad)
    assert float(rows[-1]["val_loss"]) == pytest.approx(single, abs=2e-5)


# -- equivalence with one process (slow) ---------------------------------------------------------
EQ = dict(max_steps=6, eval_every=3, save_every=0, log_every=1, lr=1e-3, lora_dropout=0.0)


@pytest.mark.slow
def test_two_processes_train_like_one_process_on_the_global_batch(tiny, tmp_path):
    """2 x batch 4 == 1 x batch 4 x grad_accum 2 (the same micro-batches) and ~= 1 x batch 8."""
    base = dict(model=tiny[0], data=tiny[1], **EQ)
    runs = {}
    for name, n, extra in [("ddp", 2, {}), ("accum", 1, {"grad_accum": 2}),
                           ("ddp_plain", 2, {"length_grouping": "false"}),
                           ("big", 1, {"batch_size": 8, "length_grouping": "false"})]:
        train(n, tmp_path / name, {**base, **extra}, cwd=tmp_path)
        runs[name] = tmp_path / name
    for a, b, tol in [("ddp", "accum", 1e-6), ("ddp_plain", "big", 5e-5)]:
        ra, rb = metrics(runs[a]), metrics(runs[b])
        assert [r["tokens"] for r in ra] == [r["tokens"] for r in rb], "the same samples each step"
        for x, y in zip(ra, rb):
            assert float(x["train_loss"]) == pytest.approx(float(y["train_loss"]), abs=2e-5)
            if x["val_loss"]:
                assert float(x["val_loss"]) == pytest.approx(float(y["val_loss"]), abs=2e-5)
        wa, wb = adapter(runs[a]), adapter(runs[b])
        assert max(float(v.abs().max()) for k, v in wb.items() if "lora_B" in k) > 1e-3, "the adapter moved"
        assert max_diff(wa, wb) <= tol, f"{a} vs {b}: {max_diff(wa, wb):.3g}"


# -- kill -9 + resume under 2 processes (slow) ---------------------------------------------------
@pytest.mark.slow
def test_two_process_kill9_and_resume_matches_uninterrupted(tiny, tmp_path):
    import psutil

    sets = dict(model=tiny[0], data=tiny[1], max_steps=10, eval_every=4, save_every=3, log_every=1)
    ref = tmp_path / "ref"
    train(2, ref, sets, cwd=tmp_path)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(2, killed, sets), env=_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = killed / "checkpoints" / "step-0000006"
    deadline = time.time() + 240
    while not ck.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    # torchrun starts each rank in its own session: SIGKILL the ranks, then the launcher
    launcher = psutil.Process(proc.pid)
    for child in launcher.children(recursive=True):
        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ck.exists(), "the run should have written its step-6 checkpoint before the kill"
    assert not (killed / "final").exists(), "killed too late: the run had finished"
    train(2, None, {}, cwd=tmp_path, resume=killed)
    man = json.loads((killed / "manifest.json").read_text())
    assert man["status"] == "finished" and man["processes"] == 2 and man["resumed_from"]
    assert [int(r["step"]) for r in metrics(killed)] == list(range(1, 11))
    assert metrics(killed)[-1]["val_loss"] == metrics(ref)[-1]["val_loss"]
    assert max_diff(adapter(killed), adapter(ref)) == 0.0


# -- FSDP (fsdp: true): the same training, sharded ------------------------------------------------
def test_fsdp_trains_like_ddp_and_resumes(tiny, tmp_path):
    """2 processes with FSDP2 == 2 processes with DDP (same losses, same adapter), with
    unequal validation shards (9 samples: every process must run as many forwards) and a
    checkpoint gathered from the shards that --resume loads back into them."""
    base = dict(model=tiny[0], data=tiny[1], **{**EQ, "max_steps": 4, "eval_every": 2, "save_every": 2})
    train(2, tmp_path / "ddp", base, cwd=tmp_path)
    train(2, tmp_path / "fsdp", {**base, "fsdp": "true"}, cwd=tmp_path)
    man = json.loads((tmp_path / "fsdp" / "manifest.json").read_text())
    assert man["fsdp"] is True and man["processes"] == 2 and man["status"] == "finished"
    ra, rb = metrics(tmp_path / "ddp"), metrics(tmp_path / "fsdp")
    assert [r["tokens"] for r in ra] == [r["tokens"] for r in rb]
    for x, y in zip(ra, rb):
        assert float(x["train_loss"]) == pytest.approx(float(y["train_loss"]), abs=2e-5)
        if x["val_loss"]:
            assert float(x["val_loss"]) == pytest.approx(float(y["val_loss"]), abs=2e-5)
    assert max_diff(adapter(tmp_path / "ddp"), adapter(tmp_path / "fsdp")) <= 1e-6
    # the step-2 checkpoint holds full tensors: a one-process run's file, named as one
    from safetensors.torch import load_file

    ck = load_file(str(tmp_path / "fsdp" / "checkpoints" / "step-0000002" / "trainable.safetensors"))
    ref_ck = load_file(str(tmp_path / "ddp" / "checkpoints" / "step-0000002" / "trainable.safetensors"))
    assert ck.keys() == ref_ck.keys() and max_diff(ck, ref_ck) <= 1e-6
    # resume the FSDP run from that checkpoint (its final/ removed, status set back): same end
    import shutil

    again = tmp_path / "again"
    shutil.copytree(tmp_path / "fsdp", again)
    shutil.rmtree(again / "final")
    m = json.loads((again / "manifest.json").read_text())
    (again / "manifest.json").write_text(json.dumps({**m, "status": "running"}))
    (again / "metrics.csv").write_text("".join((again / "metrics.csv").read_text().splitlines(True)[:3]))
    train(2, None, {}, cwd=tmp_path, resume=again)
    assert max_diff(adapter(again), adapter(tmp_path / "fsdp")) <= 1e-6


def test_fsdp_refuses_qlora():
    from breachlab.config import ConfigError

    with pytest.raises(ConfigError, match="QLoRA"):
        TrainConfig(data="d", fsdp=True, method="qlora")
