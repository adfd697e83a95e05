# ruff: noqa
"""Validation only (the test split is never read): the new-item rule of idream/core/newitems.py on
three checkpoints trained under the cold-start protocol (seeds 0, 1, 2; cold seed = seed).

Each seed's validation cases are split once at random (seed 0) into a fit half A and a report half
B. a and b are chosen on A (the three seeds' grids pooled, idream.core.newitems.pick), then B is read
at that setting, next to text-kNN and the rule switched off. Then the whole validation set picks
what `python -m idream new-items` writes.

    python results/experiments/cold-calibrated-probe.py /tmp/cold-0 /tmp/cold-1 /tmp/cold-2
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from idream.data.datasets import chronological_split
from idream.evaluation.evaluate import rank_all
from idream.core.newitems import pick, validation_grid
from idream.serving.recommender import Recommender
from idream.evaluation.references import textknn_scorer

ROOT = Path(__file__).resolve().parents[2]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                        text=True).stdout.strip()
print(f"# python results/experiments/cold-calibrated-probe.py {' '.join(sys.argv[1:])}  (commit {commit}; "
      "validation only)")
print("# checkpoints: python -m idream train --dataset ml-100k --seed S --cold-frac 0.1 --cold-seed S "
      "--max-minutes 8 --clock cpu --threads 1 --quiet --no-eval --out /tmp/cold-S")

seeds = []
for path in sys.argv[1:]:
    rec = Recommender.load(path)
    valid = chronological_split(rec.dataset, rec.history_len, cold_items=rec.cold_items).valid
    perm = np.random.default_rng(0).permutation(len(valid))
    halves = {"A": np.sort(perm[: len(valid) // 2]), "B": np.sort(perm[len(valid) // 2:])}
    knn = textknn_scorer(rec.embeddings)
    is_cold = np.isin(valid.targets, rec.cold_items)
    row = {"path": path, "grid": {}, "knn": {}}
    for h, idx in halves.items():
        sub = valid.subset(idx)
        row["grid"][h] = validation_grid(rec, sub)
        cs = valid.subset(idx[is_cold[idx]])
        row["knn"][h] = (rank_all(lambda rows: knn(cs.histories[rows]), cs).metrics["NDCG@10"], len(cs))
    row["grid"]["all"] = validation_grid(rec, valid)
    seeds.append(row)
    print(f"{path}: {len(valid)} validation cases, {is_cold.sum()} with a cold target "
          f"(A {row['knn']['A'][1]}, B {row['knn']['B'][1]})")

rule = pick([s["grid"]["A"] for s in seeds], "validation half A of each seed")
print(f"\nchosen on A (seeds pooled): a = {rule.a}, b = {rule.b:+.1f}  ({rule.chosen_on})")
print("\nhalf B, read once: NDCG@10 (cold targets / warm targets / all)")
at = lambda grid: next(g for g in grid if g[:2] == (rule.a, rule.b))
for s in seeds:
    off, on = s["grid"]["B"][0], at(s["grid"]["B"])
    print(f"  {s['path']}: rule off {off[2]:.4f} / {off[3]:.4f} / {off[4]:.4f}; rule on {on[2]:.4f} / "
          f"{on[3]:.4f} / {on[4]:.4f}; text-kNN cold {s['knn']['B'][0]:.4f} ({s['knn']['B'][1]} cold cases)")
m = lambda f: np.mean([f(s) for s in seeds])
off_c, on_c, knn_c = m(lambda s: s["grid"]["B"][0][2]), m(lambda s: at(s["grid"]["B"])[2]), m(lambda s: s["knn"]["B"][0])
off_w, on_w = m(lambda s: s["grid"]["B"][0][3]), m(lambda s: at(s["grid"]["B"])[3])
off_a, on_a = m(lambda s: s["grid"]["B"][0][4]), m(lambda s: at(s["grid"]["B"])[4])
print(f"  mean over seeds: cold {off_c:.4f} -> {on_c:.4f} (text-kNN {knn_c:.4f}, ratio {on_c / max(knn_c, 1e-12):.2f}x); "
      f"warm {off_w:.4f} -> {on_w:.4f} ({on_w - off_w:+.4f}); all {off_a:.4f} -> {on_a:.4f} ({on_a - off_a:+.4f})")

final = pick([s["grid"]["all"] for s in seeds], "validation of three cold-start checkpoints")
print(f"\nchosen on the whole validation sets (what ships): a = {final.a}, b = {final.b:+.1f}  ({final.chosen_on})")
