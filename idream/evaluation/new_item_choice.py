"""a and b of the new-item rule chosen on validation: the rule's NDCG@10 on cold and warm targets
over a grid, and the pick that helps cold targets most at a bounded warm cost."""

from __future__ import annotations

import numpy as np
import torch

from idream.core.newitems import NewItemRule, NewItemScorer
from idream.errors import InputError
from idream.ranking import mask_seen, metrics_from_counts, rank_counts

A_GRID = (0.5, 1.0, 1.5, 2.0, 3.0)
B_GRID = tuple(round(b, 1) for b in np.arange(-4.0, 2.01, 0.1))
WARM_COST = 0.002  # the most warm NDCG@10 the choice may give up on validation


@torch.no_grad()
def validation_grid(rec, samples, batch_size: int = 512) -> list[tuple]:
    """NDCG@10 on the cases whose target is one of `rec`'s cold items, on the others, and on all,
    for every (a, b) in A_GRID × B_GRID, unguided one-step at the checkpoint's w: rows (a, b,
    cold, warm, all), the first row (None, None, ...) today's scores (the rule off)."""
    cold = torch.from_numpy(rec.cold_items)
    if not len(cold):
        raise InputError("this checkpoint holds no cold items: train one with --cold-frac")
    warm = torch.ones(rec.dataset.n_items, dtype=torch.bool)
    warm[cold] = False
    ns = NewItemScorer(rec.embeddings, rec.item_vectors()[warm])
    parts = []  # per batch: today's scores (B, N), the cold items' z (B, C), mean and spread (B,)
    for s in range(0, len(samples), batch_size):
        h = samples.histories[s:s + batch_size]
        x0 = rec.oracle(h, None, steps=1, w=rec.default_w, rho=0.0, seed=s)
        parts.append((rec.scores(x0), *ns.parts(x0, h, ns.rows(cold))))
    full, z, mean, spread = (torch.cat(t) for t in zip(*parts))
    is_cold = np.isin(samples.targets, rec.cold_items)
    targets = torch.as_tensor(samples.targets)

    def ndcg(scores):
        a, e = (x.numpy() for x in rank_counts(mask_seen(scores, samples.seen), targets))
        return [metrics_from_counts(a[m], e[m], ks=(10,))["NDCG@10"] if m.any() else 0.0
                for m in (is_cold, ~is_cold, np.ones_like(is_cold))]

    grid = [(None, None, *ndcg(full.clone()))]
    for a in A_GRID:
        for b in B_GRID:
            s = full.clone()
            s[:, cold] = NewItemScorer.combine(full[:, cold], z, mean, spread, NewItemRule(a, b))
            grid.append((a, b, *ndcg(s)))
    return grid


def pick(grids: list[list[tuple]], source: str = "validation") -> NewItemRule:
    """The (a, b) with the best mean cold NDCG@10 over the grids among those whose mean warm
    NDCG@10 is at most WARM_COST below the rule being off (ties: the best overall)."""
    mean = np.mean([[g[2:] for g in grid] for grid in grids], axis=0)  # (1 + settings, 3)
    keys = [g[:2] for g in grids[0]]
    ok = [i for i in range(1, len(keys)) if mean[i, 1] >= mean[0, 1] - WARM_COST]
    if not ok:  # every setting costs the warm cases too much: new items keep their own score
        return NewItemRule(chosen_on=f"{source}: every setting cost more than {WARM_COST} warm NDCG@10")
    i = max(ok, key=lambda i: (mean[i, 0], mean[i, 2]))
    a, b = keys[i]
    return NewItemRule(float(a), float(b),
                       f"{source}: the best NDCG@10 on cold targets at a warm cost ≤ {WARM_COST} "
                       f"(cold {mean[0, 0]:.4f} → {mean[i, 0]:.4f}, warm {mean[0, 1]:.4f} → {mean[i, 1]:.4f})")
