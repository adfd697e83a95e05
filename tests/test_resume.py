"""Training survives a kill: `train --out DIR` writes its state after every epoch, a run killed
with SIGKILL (mid-epoch, or mid-write of the state) and continued with `--resume` ends with the
same model as a run never interrupted, and `--resume` refuses a folder it cannot continue.

The runs are real `python -m idream train` processes on the synthetic catalog, on one thread, with
a budget that does not bind (the learning-rate decay then depends on the epochs alone)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from idream.cli import main
from idream.training.state import PAUSE_ENV, STATE_DIR

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 8
SHIPPED = {"config.json", "model.safetensors", "transform.safetensors", "items.safetensors", "README.md"}


def args(dataset, out, cache_dir, **kw) -> list[str]:
    flags = dict(dataset=dataset, text_model="hash:32", width=32, depth=1, heads=2, epochs=EPOCHS,
                 seq_batch_size=8, encoder_depth=1, lr=3e-3, patience=20, T=100, history_len=5,
                 intention_pool=2, max_minutes=60, threads=1, cache_dir=cache_dir, out=out)
    flags.update(kw)
    return ["train", "--quiet", "--no-eval"] + [x for k, v in flags.items()
                                                for x in (f"--{k.replace('_', '-')}", str(v))]


def start(argv, pause: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", PAUSE_ENV: str(pause)}
    return subprocess.Popen([sys.executable, "-m", "idream", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def wait_for(check, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"the run ended first: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def saved_epoch(out: Path) -> int:
    try:
        return json.loads((out / STATE_DIR / "state.json").read_text())["epoch"]
    except (OSError, ValueError):
        return 0


def kill(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)


def outcome(out: Path) -> dict:
    """What must not depend on a kill: the weights byte for byte, the per-epoch validation and
    losses, the best epoch and the guidance chosen (not the minutes, nor the command's --out)."""
    cfg = json.loads((out / "config.json").read_text())
    log = cfg["train_log"]
    return {"weights": (out / "model.safetensors").read_bytes(),
            "history": [{k: v for k, v in r.items() if k not in ("minutes", "steps_s")} for r in log["history"]],
            "best": (log["best_epoch"], log["best_valid_NDCG@10"]), "guidance": cfg["guidance"],
            "files": sorted(p.name for p in out.iterdir())}


@pytest.fixture(scope="module")
def reference(synthetic_dir, cache_dir, tmp_path_factory) -> dict:
    """An uninterrupted run; its best epoch is not its last (so best weights are kept apart)."""
    out = tmp_path_factory.mktemp("reference")
    rc, err = finish(start(args(synthetic_dir, out, cache_dir)))
    assert rc == 0, err
    got = outcome(out)
    assert set(got["files"]) == SHIPPED  # the training state is gone once the checkpoint is written
    assert len(got["history"]) == EPOCHS
    return got


def test_killed_at_a_random_moment_resumes_to_the_same_model(reference, synthetic_dir, cache_dir, tmp_path):
    seed = random.randrange(10**6)
    delay = random.Random(seed).uniform(0.0, 2.5)  # after the first state: mid-epoch or mid-write
    proc = start(args(synthetic_dir, tmp_path, cache_dir), pause=0.1)  # ~0.5 s to write each state
    wait_for(lambda: saved_epoch(tmp_path) >= 1, proc)
    time.sleep(delay)
    kill(proc)
    at = saved_epoch(tmp_path)
    assert 1 <= at < EPOCHS, (seed, at)
    rc, err = finish(start(args(synthetic_dir, tmp_path, cache_dir) + ["--resume"]))
    assert rc == 0, (seed, err)
    assert f"resuming after epoch {at}" in err
    assert outcome(tmp_path) == reference, f"seed {seed}: killed {delay:.2f} s after epoch 1's state"


def test_killed_mid_write_leaves_the_last_state_whole(reference, synthetic_dir, cache_dir, tmp_path):
    proc = start(args(synthetic_dir, tmp_path, cache_dir), pause=1.0)
    state = tmp_path / STATE_DIR
    wait_for(lambda: (state / "epoch-0002").exists() and saved_epoch(tmp_path) == 1, proc, timeout=180)
    kill(proc)  # epoch 2's folder is being written; state.json still names epoch 1's
    assert saved_epoch(tmp_path) == 1
    meta = json.loads((state / "state.json").read_text())
    assert meta["folder"] == "epoch-0001"
    assert {p.name for p in (state / "epoch-0001").iterdir()} == {f"{s}.safetensors" for s in meta["files"]}
    assert not list(tmp_path.glob("*.safetensors"))  # no checkpoint yet: nothing half of one either

    # another setting is refused with one line, and the state is left as it was
    rc, err = finish(start(args(synthetic_dir, tmp_path, cache_dir, lr=1e-3) + ["--resume"]))
    assert rc == 2 and err.count("\n") == 1, err
    assert "other settings" in err and "lr 0.003 there, 0.001 here" in err, err
    assert saved_epoch(tmp_path) == 1

    assert (state / "epoch-0002").exists()  # the half-written folder is still there, unused
    rc, err = finish(start(args(synthetic_dir, tmp_path, cache_dir) + ["--resume"]))
    assert rc == 0, err
    assert "resuming after epoch 1" in err
    assert outcome(tmp_path) == reference


def test_resume_without_state_is_refused(synthetic_dir, cache_dir, tmp_path, capsys):
    rc = main(args(synthetic_dir, tmp_path / "empty", cache_dir) + ["--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "holds no training state to resume" in err and "without --resume" in err


def test_resume_after_a_finished_run_says_so(reference, synthetic_dir, cache_dir, tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")  # a finished checkpoint's folder, its state removed
    rc = main(args(synthetic_dir, tmp_path, cache_dir) + ["--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and "the folder holds a finished checkpoint" in err, err


def test_damaged_state_is_refused(synthetic_dir, cache_dir, tmp_path, capsys):
    state = tmp_path / STATE_DIR
    state.mkdir(parents=True)
    (state / "state.json").write_text('{"format": "idream-train-state-v1", "epoch": 1')  # cut short
    rc = main(args(synthetic_dir, tmp_path, cache_dir) + ["--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "cannot be read" in err, err


def test_a_state_that_had_stopped_early_goes_straight_to_the_end(synthetic_dir, cache_dir, tmp_path):
    """Killed after its last epoch's state (early stop) but before its checkpoint: the resumed run
    trains no more, and returns the best epoch's model with the same log and guidance."""
    from idream.training.train import TrainConfig, train

    cfg = TrainConfig(dataset=str(synthetic_dir), text_model="hash:32", width=32, depth=1, heads=2,
                      epochs=12, seq_batch_size=8, encoder_depth=1, lr=3e-3, patience=1, T=100, history_len=5,
                      intention_pool=2, w_grid=(0.0, 1.0), max_minutes=60.0, threads=1)
    logs = []
    rec, _, _ = train(cfg, cache_dir=cache_dir, progress=False, log_fn=logs.append, state_dir=tmp_path)
    first = rec.config["train_log"]
    assert any(s.startswith("early stop") for s in logs) and first["epochs_run"] < cfg.epochs, logs
    assert first["best_epoch"] < first["epochs_run"]  # the best weights were kept apart
    meta = json.loads((tmp_path / "state.json").read_text())
    assert meta["epoch"] == first["epochs_run"] and meta["stopped"].startswith("early stop")

    logs = []
    again, _, _ = train(cfg, cache_dir=cache_dir, progress=False, log_fn=logs.append, state_dir=tmp_path,
                        resume=True)
    assert logs[0].startswith(f"resuming after epoch {meta['epoch']}") and "it had stopped" in logs[0]
    assert not any(s.startswith("epoch=") for s in logs), logs  # no epoch trained again
    for (k, a), b in zip(rec.model.state_dict().items(), again.model.state_dict().values()):
        assert (a == b).all(), k
    assert (rec.table.residual == again.table.residual).all()
    assert again.config["train_log"]["history"] == first["history"]
    assert again.config["guidance"] == rec.config["guidance"]
