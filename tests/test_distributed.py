"""Training under torchrun: two CPU processes (gloo) train a checkpoint that loads and recommends;
their averaged first-step gradients are one process's on the same global batch; a process that
dies ends the others with a clear message; more processes than training windows fail clearly.

Each run is a real launch (`python -m torch.distributed.run`, or two processes with the
variables torchrun sets), on the tiny synthetic catalog."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from idream import cli
from idream import Recommender

ROOT = Path(__file__).resolve().parents[1]
PROBE = str(ROOT / "tests" / "ddp_probe.py")
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
               "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")


def tiny_args(dataset, cache_dir, **kw) -> list[str]:
    """`train` flags of a model that trains in seconds."""
    flags = dict(dataset=dataset, text_model="hash:32", width=32, depth=1, heads=2, encoder_depth=1,
                 T=100, history_len=5, intention_pool=2, seq_batch_size=8, epochs=2,
                 cache_dir=cache_dir, **kw)
    return ["train", "--quiet"] + [x for k, v in flags.items() for x in ("--" + k.replace("_", "-"), str(v))]


def env(**extra) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    e.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), IDREAM_DIST_TIMEOUT="30", **extra)
    return e


def finish(procs, timeout: float = 100) -> list[str]:
    """Each process's stderr once all have ended. One still running after `timeout` seconds is
    stopped (SIGTERM first: a torchrun agent then stops its workers) and the test fails."""
    deadline = time.monotonic() + timeout
    try:
        return [p.communicate(timeout=max(1.0, deadline - time.monotonic()))[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()


def start(cmd, **extra) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env(**extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def torchrun(*args, **extra) -> tuple[int, str]:
    """`torchrun --standalone --nproc_per_node=2 ARGS`: its exit code and stderr (every rank's)."""
    p = start([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args], **extra)
    err = finish([p])[0]
    return p.returncode, err


def two_ranks(cmd0, cmd1, **extra) -> tuple[list[subprocess.Popen], list[str]]:
    """Two processes with the variables torchrun sets, but no torchrun agent (which would stop
    the other rank itself when one fails)."""
    shared = dict(WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                  MASTER_PORT=str(free_port()), **extra)
    procs = [start(cmd, RANK=str(r), LOCAL_RANK=str(r), **shared) for r, cmd in enumerate([cmd0, cmd1])]
    return procs, finish(procs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_a_checkpoint_that_recommends(synthetic_dir, cache_dir, tmp_path):
    out = tmp_path / "ck"
    code, err = torchrun("-m", "idream", *tiny_args(synthetic_dir, cache_dir), "--out", str(out), "--no-eval")
    assert code == 0, err[-3000:]
    assert err.count("epoch=1 ") == 1  # rank 0 alone logs (and validates)
    rec = Recommender.load(out)
    log = rec.config["train_log"]
    assert log["processes"] == 2 and log["epochs_run"] == 2, log
    history = [100, 101, 102]
    got = [r["item_id"] for r in rec.recommend(history, k=5).items]
    assert len(got) == 5 and not set(history) & set(got)


def test_averaged_gradients_are_one_process_gradients(synthetic_dir, cache_dir, tmp_path, monkeypatch):
    """An odd global batch (the ranks' shares differ in size, and causal windows hold different
    numbers of targets): DDP's average of the two ranks' first-step gradients is the gradient one
    process takes on the whole batch. Dropout is off: it is the one draw made per rank."""
    args = tiny_args(synthetic_dir, cache_dir, dropout=0.0) + ["--seq-batch-size", "7",
                                                                "--out", str(tmp_path / "unused")]
    probe = [sys.executable, PROBE, "grads", *args]
    procs, err = two_ranks(probe, probe, IDREAM_PROBE_OUT=str(tmp_path / "ddp.pt"))
    assert [p.returncode for p in procs] == [0, 0], err[0][-3000:]
    ddp, one = torch.load(tmp_path / "ddp.pt"), []

    def capture(params, *a, **k):
        one.extend(p.grad.clone() for p in params)
        raise SystemExit(0)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", capture)
    with pytest.raises(SystemExit):
        cli.main(args)
    assert len(one) == len(ddp)
    assert sum(bool(g.abs().sum() > 0) for g in one) >= 2  # something to compare (zero-init output layer)
    for i, (a, b) in enumerate(zip(ddp, one)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()) + 1e-9), (i, float((a - b).abs().max()))


def test_a_process_that_dies_ends_the_run_with_a_clear_message(synthetic_dir, cache_dir, tmp_path):
    """Rank 1 crashes at its second step; rank 0 (the unmodified command) must not hang: it ends
    with a message that says another process stopped, and writes no checkpoint."""
    args = tiny_args(synthetic_dir, cache_dir) + ["--out", str(tmp_path / "ck")]
    began = time.monotonic()
    procs, err = two_ranks([sys.executable, "-m", "idream", *args], [sys.executable, PROBE, "die", *args])
    assert procs[1].returncode == 3, err[1][-2000:]
    assert procs[0].returncode != 0, err[0][-2000:]
    assert "training process 0 of 2 stopped: another process of the run ended" in err[0], err[0][-2000:]
    assert time.monotonic() - began < 80
    assert not (tmp_path / "ck").exists()


def test_more_processes_than_training_windows_fail_clearly(synthetic_dir, cache_dir, tmp_path):
    args = tiny_args(synthetic_dir, cache_dir, max_train_samples=1) + ["--out", str(tmp_path / "ck")]
    cmd = [sys.executable, "-m", "idream", *args]
    procs, err = two_ranks(cmd, cmd)
    for p, e in zip(procs, err):  # each rank says why, and none waits for the other
        assert p.returncode != 0
        assert "fewer training windows (1) than training processes (2)" in e, e[-3000:]
    assert not (tmp_path / "ck").exists()
