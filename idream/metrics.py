"""Full-ranking metrics: the target's rank among all items, HR@K and NDCG@K."""

from __future__ import annotations

import numpy as np
import torch

KS = (5, 10, 20)
MASKED = float("-inf")


def mask_seen(scores: torch.Tensor, seen: list) -> torch.Tensor:
    """Set the scores of each row's earlier items to -inf (in place).  scores: (B, N)"""
    rows = np.concatenate([np.full(len(s), i) for i, s in enumerate(seen)]) if seen else []
    cols = np.concatenate(seen) if seen else []
    if len(rows):
        scores[torch.as_tensor(rows), torch.as_tensor(cols)] = MASKED
    return scores


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target: items scoring higher, plus ties with a lower index.

    Ties are broken by item index, exactly as a stable sort of −score would list them, so the
    ranks agree with the dumped top-K lists.  scores: (B, N), targets: (B,) -> (B,)
    """
    s_t = scores.gather(1, targets[:, None])  # (B, 1)
    idx = torch.arange(scores.shape[1], device=scores.device)[None]
    ahead = (scores > s_t) | ((scores == s_t) & (idx < targets[:, None]))
    return ahead.sum(dim=1)


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best items per row, best first, ties by lower index.  (B, N) -> (B, k)

    Uses a partial selection (no full sort of the catalog) except in the rare rows where a tie
    straddles the k-th place, which fall back to a stable sort.
    """
    k = min(int(k), scores.shape[1])
    vals, idx = torch.topk(scores, k, dim=1)  # (B, k), vals descending
    idx_sorted, perm = idx.sort(dim=1)
    order = torch.argsort(-vals.gather(1, perm), dim=1, stable=True)
    out = idx_sorted.gather(1, order)
    if k:
        kth = vals[:, -1:]
        ambiguous = (scores == kth).sum(1) > (vals == kth).sum(1)
        if bool(ambiguous.any()):
            out[ambiguous] = torch.argsort(-scores[ambiguous], dim=1, stable=True)[:, :k]
    return out


def metrics_from_ranks(ranks, ks=KS) -> dict:
    """HR@K = P(rank < K); NDCG@K = mean of 1/log2(rank + 2) over hits (one relevant item)."""
    r = np.asarray(ranks, dtype=np.float64)
    out = {}
    for k in ks:
        hit = r < k
        out[f"HR@{k}"] = float(hit.mean()) if len(r) else 0.0
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(r + 2), 0.0).mean()) if len(r) else 0.0
    return out
