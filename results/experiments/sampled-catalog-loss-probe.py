"""What the catalog loss costs in an iDream training step on ML-1M (one thread): the step with the
full-catalog ranking loss against the same step whose softmax runs over the batch's targets and
512 or 1,024 items drawn at random (shared by the batch). Prints ms per step, steps per epoch and
the epoch's seconds for each; an argument is JSON of TrainConfig fields (e.g. a larger batch).

    python results/experiments/sampled-catalog-loss-probe.py ['{"seq_batch_size": 128}']
"""
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
torch.set_num_threads(1)
import idream.core.diffusion as diff  # noqa: E402
import idream.training.train as train  # noqa: E402
from benchmarks.epoch import _idream_stepper  # noqa: E402
from idream.training.train import TrainConfig  # noqa: E402

full = diff.training_loss
def sampled(n_neg):
    def loss(x0_pred, x0, targets=None, items=None, ce_weight=0.0, tau=10.0, target_weights=None, exclude=None):
        mse = ((x0_pred - x0) ** 2).sum(dim=1).mean()  # (targets (B, k) and weights, as training passes them)
        N = items.shape[0]
        cand = torch.unique(torch.cat([targets.flatten(), torch.randint(N, (n_neg,))]))  # (C,)
        pos = torch.searchsorted(cand, targets)
        logits = x0_pred @ items[cand].T / tau  # (B, C)
        ce = -(logits.log_softmax(1).gather(1, pos) * target_weights).sum(1).mean()
        return mse + ce_weight * ce, {"mse": mse.item(), "ce": ce.item()}
    return loss

over = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
cfg = TrainConfig(dataset=str(Path(__file__).resolve().parents[3] / 'shared/data/ml-1m'), **over)
out = {}
for name, fn in [("full", full), ("sampled512", sampled(512)), ("sampled1024", sampled(1024))]:
    train.training_loss = fn
    step, n_steps, targets, units, params, split, n = _idream_stepper(cfg)
    for _ in range(3):
        step()
    ts = []
    for _ in range(15):
        t = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t)
    ms = statistics.median(ts) * 1e3
    out[name] = (round(ms, 1), n_steps, round(ms * n_steps / 1e3))
    print(name, out[name], flush=True)
