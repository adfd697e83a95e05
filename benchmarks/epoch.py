"""What one training epoch costs: iDream's training step against SASRec's on the same split.

Both models train on the same training sequences, cut into windows with a target at every
position (each its own window length), so an epoch is the same set of next-item targets for
both. Steps are timed in alternating blocks in one process, so that a machine shared with other
work slows both alike; an epoch's cost is the median step time times the steps of an epoch.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.results import git_commit, machine, write_results
from idream.data.datasets import PAD, SequenceWindows


def _idream_stepper(cfg):
    """One training step of iDream on a random global batch, drawn as training draws it; returns
    (step(), steps per epoch, targets per epoch, windows, parameters, split, catalog size)."""
    from idream.training.train import Batches, Objective, build

    rec, split, _, Q = build(cfg, progress=False)
    model, table = rec.model, rec.table
    rng, gen = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    batches = Batches(cfg, split, Q, rec.diffusion.T, rng, gen, torch.device("cpu"))
    objective = Objective(model, table, rec.diffusion, cfg.ce_weight, cfg.tau, precision=cfg.precision)
    params = list(model.parameters()) + list(table.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    model.train()

    def step():
        loss, _ = objective(batches.draw(rng.choice(batches.units, batches.size, replace=False)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    targets = int(batches.windows.targets().sum())
    return step, batches.n_batches, targets, batches.units, sum(p.numel() for p in params), split, \
        rec.dataset.n_items


def _sasrec_stepper(split, n_items: int, cfg):
    """One training step of SASRec on a random batch of its windows, as train_sasrec takes it."""
    from benchmarks.peers.sasrec import SASRec

    torch.manual_seed(cfg.seed)
    model = SASRec(n_items, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    windows = SequenceWindows(split.train_sequences, cfg.max_len)
    rng = np.random.default_rng(cfg.seed)
    model.train()

    def step():
        ins, outs = windows.take(rng.choice(len(windows), cfg.batch_size, replace=False))
        inp = torch.from_numpy(np.where(ins == PAD, n_items, ins))
        tgt = torch.from_numpy(np.where(outs == PAD, -100, outs))
        logits = model.logits(model(inp))  # (B, L, N)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    n_params = sum(p.numel() for p in model.parameters())
    return step, math.ceil(len(windows) / cfg.batch_size), int(windows.targets().sum()), len(windows), n_params


def _timed(step, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        out.append(time.perf_counter() - t)
    return out


def run_epoch_cost(dataset: str, train_overrides: dict | None = None, sasrec_overrides: dict | None = None,
                   steps: int = 20, blocks: int = 3, log_fn=print) -> dict:
    """Median step times of both models over `blocks` alternating blocks of `steps` steps each
    (after one untimed warm-up step each), and the epoch each makes of them."""
    from benchmarks.peers.sasrec import SASRecConfig
    from idream.training.train import TrainConfig

    cfg = TrainConfig(dataset=dataset, **(train_overrides or {}))
    i_step, i_steps, i_targets, i_windows, i_params, split, n_items = _idream_stepper(cfg)
    scfg = SASRecConfig(**(sasrec_overrides or {}))
    s_step, s_steps, s_targets, s_windows, s_params = _sasrec_stepper(split, n_items, scfg)
    i_step(), s_step()  # warm-up: first calls allocate
    times = {"idream": [], "sasrec": []}
    for b in range(blocks):
        times["idream"] += _timed(i_step, steps)
        times["sasrec"] += _timed(s_step, steps)
        log_fn(f"block {b + 1}/{blocks}: iDream {statistics.median(times['idream']) * 1e3:.1f} ms/step, "
               f"SASRec {statistics.median(times['sasrec']) * 1e3:.1f} ms/step")
    rows = {}
    for name, n_steps, targets, windows, params, settings in (
            ("idream", i_steps, i_targets, i_windows, i_params, {k: getattr(cfg, k) for k in EPOCH_KEYS}),
            ("sasrec", s_steps, s_targets, s_windows, s_params,
             {"max_len": scfg.max_len, "hidden": scfg.hidden, "batch_size": scfg.batch_size})):
        ms = statistics.median(times[name]) * 1e3
        rows[name] = {"ms_per_step": round(ms, 2), "steps_per_epoch": n_steps, "windows": windows,
                      "targets_per_epoch": targets, "epoch_s": round(ms * n_steps / 1e3, 1),
                      "params": params, "settings": settings}
    label = Path(dataset).name if Path(dataset).is_dir() else dataset  # a folder by its name
    return {"dataset": label, "threads": torch.get_num_threads(), "machine": machine("cpu"),
            "commit": git_commit(), "steps": steps, "blocks": blocks, "rows": rows,
            "ratio": round(rows["idream"]["epoch_s"] / rows["sasrec"]["epoch_s"], 3),
            "load_average": _load()}


EPOCH_KEYS = ("history_len", "seq_batch_size", "width", "depth", "encoder_depth", "transform", "future_k",
              "precision")


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def epoch_markdown(result: dict) -> str:
    i, s = result["rows"]["idream"], result["rows"]["sasrec"]
    lines = [f"Dataset **{result['dataset']}**, commit `{result['commit']}`, machine: {result['machine']}, "
             f"{result['threads']} torch thread(s), load average {result['load_average']} when it ended. "
             f"Median of {result['blocks']} alternating blocks of {result['steps']} steps each.", "",
             "| model | settings | ms / step | steps / epoch | targets / epoch | epoch s | params |",
             "|---|---|---|---|---|---|---|"]
    for name, r in (("iDream", i), ("SASRec", s)):
        sets = ", ".join(f"{k} {v}" for k, v in r["settings"].items())
        lines.append(f"| {name} | {sets} | {r['ms_per_step']:.1f} | {r['steps_per_epoch']:,} | "
                     f"{r['targets_per_epoch']:,} | {r['epoch_s']:.1f} | {r['params']:,} |")
    lines += ["", f"An iDream epoch costs **{result['ratio']:.2f}×** a SASRec epoch."]
    if result.get("command"):
        lines += ["", f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def main_epoch(a) -> dict:
    if a.threads:
        torch.set_num_threads(a.threads)
    over = json.loads(a.train_overrides) if a.train_overrides else {}
    sas = json.loads(a.sasrec_overrides) if a.sasrec_overrides else {}
    result = run_epoch_cost(a.dataset, over, sas, a.steps, a.blocks,
                            log_fn=lambda s: print(s, file=sys.stderr, flush=True))
    result["command"] = "python -m benchmarks " + shlex.join(a.argv)
    name = f"epoch-cost-{result['dataset']}" + (f"-{a.tag}" if a.tag else "")
    print(write_results(result, a.out, name, epoch_markdown(result)).read_text())
    return result
