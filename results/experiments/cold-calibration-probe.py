# ruff: noqa
"""Validation only, one checkpoint trained with held-out (cold) items: rank a residual-free item by
where its text-only score falls among the catalog's text-only scores, mapped onto the full scores
(quantile calibration per request), so it competes as an item of average residual for its text.

    python results/experiments/cold-calibration-probe.py CHECKPOINT_DIR
"""
import sys
import numpy as np
import torch
torch.set_num_threads(1)
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from idream.serving.recommender import Recommender
from idream.data.datasets import chronological_split
from idream.evaluation.evaluate import rank_all
rec = Recommender.load(sys.argv[1]); ds = rec.dataset
cold = np.array(rec.config["data"]["cold_items"])
valid = chronological_split(ds, rec.history_len, cold_items=cold).valid
is_cold = np.isin(valid.targets, cold)
warm = torch.from_numpy(np.setdiff1d(np.arange(ds.n_items), cold))
coldt = torch.from_numpy(cold)
V = rec.item_vectors(); Z = rec.table.z.detach()  # (N, D) full and text-only


def calibrated(x0, mix):
    full, text = x0 @ V.T, x0 @ Z.T  # (B, N)
    ref_text, _ = text[:, warm].sort(1)  # (B, W)
    ref_full, _ = full[:, warm].sort(1)
    pos = torch.searchsorted(ref_text.contiguous(), text[:, coldt].contiguous()).clamp(max=len(warm) - 1)
    out = full.clone()
    out[:, coldt] = (1 - mix) * full[:, coldt] + mix * ref_full.gather(1, pos)
    return out


for mix in (0.0, 0.5, 1.0):
    def score(rows):
        x0 = rec.oracle(valid.histories[rows], None, steps=1, w=rec.default_w, rho=0.0, seed=int(rows[0]))
        return calibrated(x0, mix)
    res = rank_all(score, valid, 512)
    r = np.asarray(res.ranks)
    def ndcg(m):
        rr = r[m]; return float(np.mean(np.where(rr < 10, 1 / np.log2(rr + 2), 0.0)))
    print(f"mix {mix}: cold NDCG@10 {ndcg(is_cold):.4f} (median rank {np.median(r[is_cold]):.0f}, {is_cold.sum()} cases), "
          f"warm NDCG@10 {ndcg(~is_cold):.4f}, all {ndcg(np.ones_like(is_cold)):.4f}", flush=True)
