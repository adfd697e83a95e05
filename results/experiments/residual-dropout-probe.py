# ruff: noqa
"""Validation only: cold-start protocol checkpoints trained with residual dropout (a share of the
items scored by their text vector alone at each training step, as DropoutNet does) against one
trained without, on the validation cases whose target is cold and those whose target is warm.

    python results/experiments/residual-dropout-probe.py CHECKPOINT_DIR [CHECKPOINT_DIR ...]
"""
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from idream.data.datasets import chronological_split
from idream.evaluation.evaluate import rank_all
from idream.serving.recommender import Recommender


def ndcg(r):
    return float(np.mean(np.where(r < 10, 1 / np.log2(r + 2), 0.0))) if len(r) else float("nan")


for ckpt in sys.argv[1:]:
    rec = Recommender.load(ckpt)
    ds = rec.dataset
    cold = np.array(rec.config["data"]["cold_items"])
    valid = chronological_split(ds, rec.history_len, cold_items=cold).valid
    is_cold = np.isin(valid.targets, cold)
    g = rec.config["guidance"]

    def score(rows):
        x0 = rec.oracle(valid.histories[rows], None, steps=1, w=g["w"], rho=0.0, seed=int(rows[0]))
        return rec.scores(x0)

    r = np.asarray(rank_all(score, valid, 512).ranks)
    # the cold target's rank among the cold items alone (how the oracle orders text-only items)
    V = rec.item_vectors()
    within = []
    for i in np.flatnonzero(is_cold):
        x0 = rec.oracle(valid.histories[i:i + 1], None, steps=1, w=g["w"], rho=0.0, seed=i)
        s = (x0 @ V[torch.from_numpy(cold)].T)[0]
        t = int(np.flatnonzero(cold == valid.targets[i])[0])
        within.append(int((s > s[t]).sum()))
    within = np.array(within)
    tc = rec.config["train"]
    print(f"{ckpt}: residual_dropout {tc.get('residual_dropout', 0.0)}, epochs {rec.config['train_log'].get('epochs_run')}, "
          f"w {g['w']}: cold NDCG@10 {ndcg(r[is_cold]):.4f} (median rank {np.median(r[is_cold]):.0f} of {ds.n_items}, "
          f"{is_cold.sum()} cases), warm NDCG@10 {ndcg(r[~is_cold]):.4f}, all {ndcg(r):.4f}; "
          f"within the cold items: MRR {np.mean(1 / (within + 1)):.4f}, HR@10 {np.mean(within < 10):.4f}", flush=True)
