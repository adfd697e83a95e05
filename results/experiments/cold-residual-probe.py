"""Validation only, one trained checkpoint with held-out (cold) items: where do cold targets
rank, and does a residual borrowed from an item's text neighbours help? (cold-residual.md)

    python results/experiments/cold-residual-probe.py CHECKPOINT_DIR
"""
import sys
import numpy as np
import torch
torch.set_num_threads(1)
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from idream.serving.recommender import Recommender
from idream.data.datasets import chronological_split
from idream.evaluation.evaluate import evaluate_recommender
rec = Recommender.load(sys.argv[1]); ds = rec.dataset
cold = np.array(rec.config["data"]["cold_items"])
valid = chronological_split(ds, rec.history_len, cold_items=cold).valid
ci = np.flatnonzero(np.isin(valid.targets, cold)); wi = np.flatnonzero(~np.isin(valid.targets, cold))
E = rec.embeddings / np.linalg.norm(rec.embeddings, axis=1, keepdims=True)
warm = np.setdiff1d(np.arange(ds.n_items), cold)
R0 = rec.table.residual.detach().clone()
print("residual norm warm", R0[warm].norm(dim=1).mean().item(), "z norm", rec.table.z.norm(dim=1).mean().item())
def ev(tag):
    r = evaluate_recommender(rec, valid.subset(ci), steps=1, w=0.0, rho=0.0, seed=0)
    rw = evaluate_recommender(rec, valid.subset(wi), steps=1, w=0.0, rho=0.0, seed=0)
    print(tag, "cold median rank", np.median(r.ranks), "NDCG", round(r.metrics["NDCG@10"], 4),
          "HR@50?", "warm", round(rw.metrics["NDCG@10"], 4), flush=True)  # (the label's output as logged)
ev("plain")
S = E[cold] @ E[warm].T
top = np.argsort(-S, axis=1)
for k in (1, 3):
    imp = R0[warm][torch.from_numpy(top[:, :k])].mean(1)
    with torch.no_grad():
        rec.table.residual.copy_(R0); rec.table.residual[torch.from_numpy(cold)] = imp
    ev(f"mean of {k} nearest")
# popularity-like bias: add the mean warm residual
with torch.no_grad():
    rec.table.residual.copy_(R0); rec.table.residual[torch.from_numpy(cold)] = R0[warm].mean(0)
ev("mean warm residual")
