"""Training throughput in one process and under torchrun, on the same data and settings.

Runs `python -m idream train` for a few epochs as one process (1 and N threads) and as N torchrun
processes of one thread each, reads the per-epoch log lines, and writes
results/ddp-throughput.{json,md}: seconds per epoch (the training steps plus rank 0's validation,
which every layout runs the same way) and training targets per second, over the epochs after the
first (which carries start-up work).

    python scripts/ddp_throughput.py [--dataset ml-100k] [--epochs 3] [--procs 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def training_targets(dataset: str, history_len: int) -> int:
    """Targets in one epoch of the causal encoder's training windows."""
    from idream.data.datasets import SequenceWindows, chronological_split, load_dataset
    split = chronological_split(load_dataset(dataset), history_len)
    return int(SequenceWindows(split.train_sequences, history_len).targets().sum())


def run(cmd: list[str], env: dict) -> list[float]:
    """The cumulative minutes of each epoch line the run logged."""
    t = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    minutes = [float(m) for m in re.findall(r"^epoch=\d+ .*minutes=([\d.]+)", done.stderr, re.M)]
    print(f"{' '.join(cmd[:4])}…: {len(minutes)} epochs in {time.time() - t:.0f} s", file=sys.stderr)
    return minutes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--out", default="results")
    a = ap.parse_args()
    from benchmarks.results import git_commit, machine, write_results

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    targets = training_targets(a.dataset, 10)
    layouts = [("1 process, 1 thread", 1, 1), (f"1 process, {a.procs} threads", 1, a.procs),
               (f"{a.procs} processes (torchrun), 1 thread each", a.procs, 1)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, procs, threads in layouts:
            train = ["-m", "idream", "train", "--dataset", a.dataset, "--out", f"{tmp}/ck-{procs}-{threads}",
                     "--epochs", str(a.epochs), "--patience", str(a.epochs), "--max-minutes", "600",
                     "--threads", str(threads), "--no-eval", "--quiet"]
            cmd = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}"] + train
                   if procs > 1 else [sys.executable] + train)
            minutes = run(cmd, env)
            per_epoch = [60 * (b - a_) for a_, b in zip(minutes, minutes[1:])]  # epochs after the first
            s = statistics.median(per_epoch)
            rows.append({"layout": label, "processes": procs, "threads": threads, "epoch_s": round(s, 1),
                         "targets_per_s": round(targets / s), "epochs": len(minutes)})
    result = {"dataset": a.dataset, "targets_per_epoch": targets, "rows": rows, "machine": machine(),
              "commit": git_commit(), "command": "python scripts/ddp_throughput.py " + " ".join(sys.argv[1:])}
    base = rows[0]["targets_per_s"]
    lines = [f"Training throughput on **{a.dataset}** ({targets:,} targets per epoch), median over the "
             f"epochs after the first; each epoch includes rank 0's validation. Machine: {result['machine']}; "
             f"commit `{result['commit']}`.", "",
             "| layout | seconds per epoch | targets/s | vs 1 process, 1 thread |", "|---|---|---|---|"]
    lines += [f"| {r['layout']} | {r['epoch_s']} | {r['targets_per_s']:,} | {r['targets_per_s'] / base:.2f}× |"
              for r in rows]
    lines += ["", f"Command: `{result['command']}`"]
    write_results(result, a.out, "ddp-throughput", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
