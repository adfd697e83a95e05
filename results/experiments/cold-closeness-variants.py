# ruff: noqa
"""Validation only: variants of the new-item closeness (the last r history items; a penalty per
position back in time), chosen on half A and read on half B as in cold-calibrated-probe.py.

    python results/experiments/cold-closeness-variants.py /tmp/cold-0 /tmp/cold-1 /tmp/cold-2
"""
import sys, numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import idream.core.newitems as NI
from idream.data.datasets import chronological_split, PAD
from idream.serving.recommender import Recommender
from idream.core.newitems import pick, validation_grid
orig = NI.NewItemScorer.closeness
def make(recent, decay):
    def closeness(self, histories, cand):
        h = torch.as_tensor(np.asarray(histories), dtype=torch.long)[:, -recent:]
        valid = h != PAD
        H = self.rows(h.clamp(min=0).reshape(-1).numpy()).reshape(*h.shape, -1)
        cos = torch.einsum("bld,cd->blc", H, cand)
        L = h.shape[1]
        cos = cos - decay * torch.arange(L - 1, -1, -1, dtype=cos.dtype)[None, :, None]
        return cos.masked_fill(~valid[..., None], -2.0).max(1).values
    return closeness
recs = []
for p in sys.argv[1:]:
    rec = Recommender.load(p)
    valid = chronological_split(rec.dataset, rec.history_len, cold_items=rec.cold_items).valid
    perm = np.random.default_rng(0).permutation(len(valid))
    recs.append((rec, valid.subset(np.sort(perm[:len(valid)//2])), valid.subset(np.sort(perm[len(valid)//2:])), valid))
for recent, decay in [(10, 0), (5, 0), (3, 0), (1, 0), (10, 0.01), (10, 0.03)]:
    NI.NewItemScorer.closeness = make(recent, decay)
    gA = [validation_grid(r, A) for r, A, B, V in recs]
    gB = [validation_grid(r, B) for r, A, B, V in recs]
    gV = [validation_grid(r, V) for r, A, B, V in recs]
    rule = pick(gA)
    at = lambda g: next(x for x in g if x[:2] == (rule.a, rule.b))
    m = lambda gs, i: np.mean([at(g)[i] for g in gs])
    off = lambda gs, i: np.mean([g[0][i] for g in gs])
    rv = pick(gV)
    print(f"recent {recent} decay {decay}: A-> a={rule.a} b={rule.b}; B cold {m(gB,2):.4f} warm {m(gB,3):.4f} ({m(gB,3)-off(gB,3):+.4f}) all {m(gB,4):.4f} ({m(gB,4)-off(gB,4):+.4f}) | whole-valid pick {rv.chosen_on[-60:]}", flush=True)
