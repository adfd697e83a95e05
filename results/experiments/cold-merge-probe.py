# ruff: noqa
"""Validation only (the test split is never read), one checkpoint trained with held-out (cold)
items, one seed. Two questions (cold-merge-probe.md):

1. Within the cold items only, which scorer finds a cold target: text-kNN (raw-space cosine to the
   history's items, mean and max), the unguided oracle's whitened dot with the text-only vectors
   (what iDream ranks cold items by today), the oracle mapped back to the raw text space by the
   transform's inverse and compared by cosine (raw, and centred on the transform's mean), and
   z-scored sums of text-kNN and the raw-space oracle.
2. A merge into the full ranking: warm items keep iDream's full scores; a cold item's cold-scorer
   score is mapped per request onto the warm items' full-score scale (quantile or z-score map)
   plus an offset b (in units of the request's warm full-score std). The validation cases are
   split once at random (seed 0) into a fit half A and a report half B; the cold scorer, the map
   and b are chosen on A only; B is reported next to text-kNN and today's iDream.

    python results/experiments/cold-merge-probe.py CHECKPOINT_DIR
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from idream.data.datasets import PAD, chronological_split
from idream.ranking import MASKED, expected_ranks, mask_seen, metrics_from_counts, rank_counts
from idream.serving.recommender import Recommender

ROOT = Path(__file__).resolve().parents[2]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                        text=True).stdout.strip()
print(f"# python results/experiments/cold-merge-probe.py {sys.argv[1]}  (commit {commit}; validation only)")

print("# the checkpoint: python -m idream train --dataset ml-100k --cold-frac 0.1 --cold-seed 0 --out /tmp/ck-cold "
      "--threads 1 --max-minutes 6 --clock cpu --quiet --no-eval")
rec = Recommender.load(sys.argv[1]); ds = rec.dataset
N = ds.n_items
cold = np.array(sorted(rec.config["data"]["cold_items"]))
is_cold_item = np.zeros(N, dtype=bool); is_cold_item[cold] = True
warm = np.flatnonzero(~is_cold_item)
valid = chronological_split(ds, rec.history_len, cold_items=cold).valid
M = len(valid)
case_cold = is_cold_item[valid.targets]
seen_mask = np.zeros((M, N), dtype=bool)
for i, s in enumerate(valid.seen):
    seen_mask[i, s] = True
print(f"{M} validation cases, {case_cold.sum()} with a cold target; {len(cold)} cold items of {N}; "
      f"checkpoint w={rec.default_w}, transform {rec.transform.kind}")

# ---- scores over every item for every case ------------------------------------------------------
V = rec.item_vectors().double()  # (N, D) full vectors (z + residual; cold: z only)
Z = rec.table.z.double()  # (N, D) text-only, whitened
E = torch.from_numpy(rec.embeddings).double()  # (N, D) raw text vectors
En = E / E.norm(dim=1, keepdim=True)
mu = torch.from_numpy(rec.transform.mean).double()
Mat = torch.from_numpy(rec.transform.matrix).double()
Ec = E - mu
Ecn = Ec / Ec.norm(dim=1, keepdim=True)

x0 = []
with torch.no_grad():
    for s in range(0, M, 512):  # the same batches and seeds as rank_all / the calibration probe
        rows = np.arange(s, min(s + 512, M))
        x0.append(rec.oracle(valid.histories[rows], None, steps=1, w=rec.default_w, rho=0.0,
                             seed=int(rows[0])))
x0 = torch.cat(x0).double()  # (M, D)

full = x0 @ V.T  # today's iDream scores
raw_x = torch.linalg.solve(Mat.T, x0.T).T  # x0 M^-1: the oracle's raw-space offset from the mean
h = torch.as_tensor(valid.histories, dtype=torch.long)
hv = (h != PAD)
Hn = En[h.clamp(min=0)]  # (M, L, D)
hmean = (Hn * hv[..., None]).sum(1) / hv.sum(1, keepdim=True).clamp(min=1)
cos_h = torch.einsum("mld,nd->mln", Hn, En).masked_fill(~hv[..., None], -2.0)  # (M, L, N)
raw_e = raw_x + mu
S = {
    "knn-mean": hmean @ En.T,  # text-kNN (the benchmark's baseline)
    "knn-max": cos_h.max(1).values,
    "whitened-dot": x0 @ Z.T,  # the oracle's text-only score today
    "oracle-raw-cos": (raw_e / raw_e.norm(dim=1, keepdim=True)) @ En.T,  # A^-1(x0) vs e_i
    "oracle-rawc-cos": (raw_x / raw_x.norm(dim=1, keepdim=True)) @ Ecn.T,  # centred on the mean
}
del cos_h
unseen = torch.from_numpy(~seen_mask)


def zs(x):  # z-score per request over the unseen catalog
    xm = torch.where(unseen, x, torch.nan)
    m = xm.nanmean(1, keepdim=True)
    sd = ((xm - m) ** 2).nanmean(1, keepdim=True).sqrt()
    return (x - m) / sd


for a in ("knn-mean", "knn-max"):
    for b in ("oracle-raw-cos", "oracle-rawc-cos"):
        for al in (0.25, 0.5, 0.75):
            S[f"{al}*z({a})+{1 - al}*z({b})"] = al * zs(S[a]) + (1 - al) * zs(S[b])
S["z(knn-mean)+z(knn-max)"] = zs(S["knn-mean"]) + zs(S["knn-max"])

rng = np.random.default_rng(0)
perm = rng.permutation(M)
inA = np.zeros(M, dtype=bool); inA[perm[: M // 2]] = True
inB = ~inA
print(f"split (seed 0): A {inA.sum()} cases ({(inA & case_cold).sum()} cold), "
      f"B {inB.sum()} cases ({(inB & case_cold).sum()} cold)")


def counts(scores, rows):
    sc = scores[rows].clone().float()
    mask_seen(sc, [valid.seen[i] for i in rows])
    return rank_counts(sc, torch.as_tensor(valid.targets[rows]))


# ---- 1. within-cold ranking ---------------------------------------------------------------------
print("\n## 1. rank of a cold target among the cold items only (seen items masked)")
ccases = np.flatnonzero(case_cold)
only_cold = torch.full((N,), MASKED, dtype=torch.float64); only_cold[cold] = 0.0
within = {}
bw = np.random.default_rng(2).integers(0, len(ccases), (10000, len(ccases)))
print(f"{'scorer':48s} {'MRR':>7s} {'HR@10':>7s} {'HR@1':>6s} {'median':>6s} | A MRR  B MRR  | MRR - knn-mean's, 95% bootstrap   (all {len(ccases)} cold cases; A {(inA & case_cold).sum()}, B {(inB & case_cold).sum()})")
for name, sc in S.items():
    a, e = counts(sc + only_cold, ccases)
    r = expected_ranks(a.numpy(), e.numpy())
    rr = 1 / (r + 1)
    within[name] = rr
    mA, mB = inA[ccases], inB[ccases]
    print(f"{name:48s} {rr.mean():7.4f} {np.mean(r < 10):7.4f} {np.mean(r < 1):6.3f} {np.median(r) + 1:6.0f} "
          f"| {rr[mA].mean():.4f} {rr[mB].mean():.4f} | [{np.percentile(d := (rr - within['knn-mean'])[bw].mean(1), 2.5):+.4f}, {np.percentile(d, 97.5):+.4f}]")
n_cold_cand = (~seen_mask[ccases][:, cold]).sum(1)
print(f"(cold candidates per cold case: median {np.median(n_cold_cand):.0f}; chance MRR "
      f"{np.mean([np.mean(1 / np.arange(1, n + 1)) for n in n_cold_cand]):.4f}, chance HR@10 "
      f"{np.mean(np.minimum(10, n_cold_cand) / n_cold_cand):.4f})")

# ---- 2. merge into the full ranking -------------------------------------------------------------
print("\n## 2. merge: warm items keep iDream's full score; cold items get map(cold score) + b*sd")


def ndcg_parts(scores, rows):
    a, e = counts(scores, rows)
    out = {}
    for tag, m in (("cold", case_cold[rows]), ("warm", ~case_cold[rows]), ("all", np.ones(len(rows), bool))):
        mt = metrics_from_counts(a.numpy()[m], e.numpy()[m], ks=(10,))
        out[tag] = (mt["NDCG@10"], mt["HR@10"])
    return out


warm_t = torch.from_numpy(warm); cold_t = torch.from_numpy(cold)


def mapped(cs, kind):
    """Per request: each cold item's cold score mapped onto the warm unseen items' full scores.
    kind: quantile / zscore (reference: every unseen item's cold score) or cold-quantile /
    cold-zscore (reference: the unseen cold items' cold scores only).
    Returns the mapped cold scores (M, C) and the warm full-score sd (M, 1)."""
    out = np.zeros((M, len(cold))); sd = np.zeros((M, 1))
    F = full.numpy(); C = cs.numpy()
    for i in range(M):
        u = ~seen_mask[i]
        wf = np.sort(F[i, warm[u[warm]]])
        sd[i] = wf.std()
        c_all = C[i, u]
        cc = C[i, cold]
        if kind.startswith("cold-"):  # reference: the unseen cold items' cold scores only
            c_all = C[i, cold[u[cold]]]
        if kind.endswith("quantile"):  # quantile among the reference's cold scores -> warm full scores
            ref = np.sort(c_all)
            q = (np.searchsorted(ref, cc, "left") + np.searchsorted(ref, cc, "right")) / 2 / len(ref)
            out[i] = np.interp(q, (np.arange(len(wf)) + 0.5) / len(wf), wf)
        else:  # z-score map: same z among the reference's cold scores as among warm full scores
            out[i] = (cc - c_all.mean()) / c_all.std() * wf.std() + wf.mean()
    return torch.from_numpy(out), torch.from_numpy(sd)


def merged(mc, sd, b):
    s = full.clone()
    s[:, cold_t] = mc + b * sd if np.isfinite(b) else MASKED
    return s


rowsA, rowsB = np.flatnonzero(inA), np.flatnonzero(inB)
today_A, today_B = ndcg_parts(full, rowsA), ndcg_parts(full, rowsB)
bs = np.round(np.arange(-3.0, 1.501, 0.05), 2)
cands = ["knn-mean", "knn-max", "whitened-dot", "oracle-raw-cos", "oracle-rawc-cos",
         "z(knn-mean)+z(knn-max)"] + [k for k in S if k.startswith("0.")]
MAPS = ("quantile", "zscore", "cold-quantile", "cold-zscore")
grid = []  # (scorer, map, b, partsA)
cache = {}
for name in cands:
    for kind in MAPS:
        mc, sd = mapped(S[name], kind)
        cache[(name, kind)] = (mc, sd)
        for b in bs:
            grid.append((name, kind, float(b), ndcg_parts(merged(mc, sd, b), rowsA)))
print(f"grid on A: {len(cands)} cold scorers x {len(MAPS)} maps x {len(bs)} offsets b in [{bs[0]}, {bs[-1]}]; "
      f"today's iDream on A: cold {today_A['cold'][0]:.4f}, warm {today_A['warm'][0]:.4f}, all {today_A['all'][0]:.4f}")
ok = [g for g in grid if g[3]["warm"][0] > today_A["warm"][0] - 0.002]
best_cold = max(ok, key=lambda g: (g[3]["cold"][0], g[3]["all"][0]))
best_all = max(ok, key=lambda g: (g[3]["all"][0], g[3]["cold"][0]))
print("best per cold scorer on A (warm drop < 0.002; by cold NDCG@10):")
for name in cands:
    gs = [g for g in ok if g[0] == name]
    g = max(gs, key=lambda g: (g[3]["cold"][0], g[3]["all"][0]))
    print(f"  {name:48s} {g[1]:13s} b={g[2]:+.2f}: A cold {g[3]['cold'][0]:.4f} warm {g[3]['warm'][0]:.4f} all {g[3]['all'][0]:.4f}")

# text-kNN, today's iDream (cold scores as they are) and b = -inf on B
knnB = ndcg_parts(S["knn-mean"], rowsB)
ninfB = ndcg_parts(merged(None, None, -np.inf), rowsB)


def cold_case_ndcg(scores, rows):
    """Per cold case among rows: NDCG@10 (expected over ties) and whether it is in the top 10."""
    cr = rows[case_cold[rows]]
    a, e = counts(scores, cr)
    per = [metrics_from_counts(a.numpy()[j:j + 1], e.numpy()[j:j + 1], ks=(10,)) for j in range(len(cr))]
    return np.array([m["NDCG@10"] for m in per]), np.array([m["HR@10"] for m in per])


knn_nd, knn_hit = cold_case_ndcg(S["knn-mean"], rowsB)
boot = np.random.default_rng(1).integers(0, len(knn_nd), (10000, len(knn_nd)))


def line(tag, p):
    return (f"{tag:58s} cold NDCG@10 {p['cold'][0]:.4f} HR@10 {p['cold'][1]:.4f} | warm NDCG@10 "
            f"{p['warm'][0]:.4f} | all NDCG@10 {p['all'][0]:.4f}")


print(f"\n### report half B ({len(rowsB)} cases, {case_cold[rowsB].sum()} cold)")
print(line("text-kNN (knn-mean over all items)", knnB))
print(line("iDream today (cold items by their whitened dot)", today_B))
print(line("iDream, cold items removed (b = -inf)", ninfB))
for tag, g in (("chosen on A by cold NDCG@10", best_cold), ("chosen on A by all NDCG@10", best_all)):
    mc, sd = cache[(g[0], g[1])]
    pB = ndcg_parts(merged(mc, sd, g[2]), rowsB)
    print(line(f"merge {g[0]}, {g[1]}, b={g[2]:+.2f} ({tag})", pB))
    nd, hit = cold_case_ndcg(merged(mc, sd, g[2]), rowsB)
    diff = nd[boot].mean(1) - 2 * knn_nd[boot].mean(1)
    print(f"    B cold cases in the top 10: merge {hit.sum():.1f}, text-kNN {knn_hit.sum():.1f} of {len(nd)}; "
          f"bootstrap over B's cold cases (10000 draws): P(merge cold NDCG@10 >= 2x text-kNN's) "
          f"{np.mean(diff >= 0):.2f}, 95% interval of merge - text-kNN "
          f"[{np.percentile(nd[boot].mean(1) - knn_nd[boot].mean(1), 2.5):+.4f}, "
          f"{np.percentile(nd[boot].mean(1) - knn_nd[boot].mean(1), 97.5):+.4f}]")
    print(f"    on A: cold {g[3]['cold'][0]:.4f} warm {g[3]['warm'][0]:.4f} all {g[3]['all'][0]:.4f}; "
          f"on B: warm change {pB['warm'][0] - today_B['warm'][0]:+.4f}, cold / text-kNN cold "
          f"{pB['cold'][0] / max(knnB['cold'][0], 1e-12):.2f}x")

# the chosen scorer's whole b curve, A and B side by side (for reading only; nothing chosen on B)
g = best_cold
mc, sd = cache[(g[0], g[1])]
print(f"\nb curve for {g[0]}, {g[1]} map (A | B): cold NDCG@10, warm NDCG@10")
for b in bs[::5]:
    pa, pb = ndcg_parts(merged(mc, sd, b), rowsA), ndcg_parts(merged(mc, sd, b), rowsB)
    print(f"  b={b:+.2f}: A {pa['cold'][0]:.4f} {pa['warm'][0]:.4f} | B {pb['cold'][0]:.4f} {pb['warm'][0]:.4f}")
# the whole validation set (A and B together) for the chosen settings, for scale only
allrows = np.arange(M)
print(line("\nall validation cases: text-kNN", ndcg_parts(S["knn-mean"], allrows)))
print(line("all validation cases: iDream today", ndcg_parts(full, allrows)))
