# ruff: noqa
"""Probe (dev half only): guide the oracle with the text model itself. d = M^-1 q (M the
transform matrix, q the intention's unit raw vector) is the scoring-space direction whose dot product
with a residual-free item is its text cosine; d is scaled to unit spread over the catalog and added
to the oracle in proportion to the oracle's own spread (additive: x0 + lam*sd*d; angle form below).

    python results/experiments/text-guidance-probe.py dev   (from the repository root)
"""
import sys, numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from benchmarks import free_intentions
from benchmarks.text import matches, masked_top, summarise, zscore, K
from idream.serving.recommender import Recommender
from idream.data.datasets import test_cases
from idream.data.catalog import item_embeddings
torch.set_num_threads(1)
rec = Recommender.load("checkpoints/ml-100k")
ds = rec.dataset; w = rec.default_w
cases = test_cases(ds, rec.history_len)
users = np.random.default_rng(0).choice(len(cases), 20, replace=False)
H = cases.histories[users]; U = 20
E = item_embeddings(ds, rec.backend, rec.config["text"].get("descriptions", "template"), rec.config.get("cache_dir"), progress=False)
print("E norms", np.linalg.norm(E, axis=1)[:3])
En = torch.from_numpy(E / np.linalg.norm(E, axis=1, keepdims=True)).float()
V = rec.item_vectors()  # (N, D)
Vc = V - V.mean(0); S = (Vc.T @ Vc / len(V)).double()  # (D, D)
M = torch.from_numpy(rec.transform.matrix)  # (D, D)
half = sys.argv[1] if len(sys.argv) > 1 else "dev"
rows = free_intentions.load(half)
e = rec.backend.encode([r["text"] for r in rows])
qh = torch.from_numpy(e / np.linalg.norm(e, axis=1, keepdims=True)).double()
q = torch.from_numpy(rec.transform(e)).float()
d = torch.linalg.solve(M, qh.T).T  # (I, D): z·d = text cosine (up to a constant) for residual-free items
d = (d / (d @ S * d).sum(1, keepdim=True).sqrt()).float()
ok = np.stack([matches(ds, r) for r in rows]); I = len(rows)
hist = np.repeat(H[None], I, 0).reshape(I * U, -1)
qq = q.repeat_interleave(U, 0); dd = d.repeat_interleave(U, 0)
Sf = S.float()
# check: correlation of z·d with raw cosine
tc = (qh.float() @ En.T)[0]; zd = V @ d[0]
print("corr(z·d, text cos) intention 0:", float(np.corrcoef(tc.numpy(), zd.numpy())[0, 1]))
def guided(rho_cfg, lam):
    x0 = rec.oracle(hist, qq, steps=1, w=w, rho=rho_cfg, seed=0)
    sd = ((x0 @ Sf) * x0).sum(1, keepdim=True).sqrt()
    x = x0 + lam * sd * dd
    tops = masked_top(rec.scores(x), hist).reshape(I, U, K)
    s = summarise(tops, ok); cos = torch.cosine_similarity(x, dd, 1).mean()
    return s["precision"], s["overlap"], float(cos)
for rc in (0.0, 0.25, 1.0):
    for lam in (0, 0.5, 1, 2, 3, 4, 6, 10):
        p, o, c = guided(rc, lam)
        print(f"cfg rho {rc:5} lam {lam:4}: prec {p:.3f} overlap {o:.3f} cos(x,d) {c:.3f}", flush=True)
text = (qh.float() @ En.T).repeat_interleave(U, 0)
print("text search", summarise(masked_top(text, hist).reshape(I, U, K), ok)["precision"])
ung = rec.scores(rec.oracle(hist, None, steps=1, w=w, rho=0.0, seed=0))
for lam in (1, 2, 4):
    print("fusion", lam, summarise(masked_top(zscore(ung) + lam * zscore(text), hist).reshape(I, U, K), ok)["precision"])


def mixed(kappa, rho):
    """Angle form: the oracle turned toward the text direction by rho * 90 degrees, its Sigma-norm kept."""
    import math
    x0 = rec.oracle(hist, qq, steps=1, w=w, rho=kappa * rho, seed=0)
    sd = ((x0 @ Sf) * x0).sum(1, keepdim=True).sqrt()
    th = rho * math.pi / 2
    x = math.cos(th) * x0 + math.sin(th) * sd * dd
    tops = masked_top(rec.scores(x), hist).reshape(I, U, K)
    s = summarise(tops, ok)
    return s["precision"], s["overlap"], float(torch.cosine_similarity(x, dd, 1).mean())


for kappa in (0.0, 0.5, 1.0, 2.0):
    for rho in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        p, o, c = mixed(kappa, rho)
        print(f"kappa {kappa} rho {rho}: prec {p:.3f} overlap {o:.3f} cos {c:.3f}", flush=True)
