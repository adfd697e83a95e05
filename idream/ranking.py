"""Full-ranking metrics: the target's place among all items, HR@K and NDCG@K.

Two conventions make the numbers impossible to flatter:
- a non-finite score (NaN, ±inf) is never ahead of anything, and a target whose own score is
  non-finite is a miss (ranked behind the whole catalog);
- ties are broken uniformly at random, and the metrics are their exact expectation over that
  draw: a target tied with e other items, behind a items, sits at each place a..a+e with
  probability 1/(e+1). A constant scorer therefore scores exactly what chance gives.
"""

from __future__ import annotations

import numpy as np
import torch

KS = (5, 10, 20)
MASKED = float("-inf")
MISS = 2**40  # `ahead` of a target without a finite score: behind every place any K reaches


def mask_seen(scores: torch.Tensor, seen: list) -> torch.Tensor:
    """Set the scores of each row's earlier items to -inf (in place).  scores: (B, N)"""
    rows = np.concatenate([np.full(len(s), i) for i, s in enumerate(seen)]) if seen else []
    cols = np.concatenate(seen) if seen else []
    if len(rows):
        scores[torch.as_tensor(rows), torch.as_tensor(cols)] = MASKED
    return scores


def rank_counts(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: how many items score strictly above the target, and how many others tie with it.

    Non-finite scores never count as ahead or tied; a non-finite target is put behind every item
    (ahead = MISS, ties = 0), so it is a miss at every K.  scores: (B, N), targets: (B,) -> (B,), (B,)
    """
    s_t = scores.gather(1, targets[:, None])  # (B, 1)
    finite = torch.isfinite(scores)
    ahead = ((scores > s_t) & finite).sum(1)
    ties = ((scores == s_t) & finite).sum(1) - 1  # the target ties with itself
    lost = ~torch.isfinite(s_t[:, 0])
    ahead[lost], ties[lost] = MISS, 0
    return ahead, ties


def expected_ranks(ahead, ties) -> np.ndarray:
    """0-based rank in expectation over random tie-breaking: a + e/2."""
    return np.asarray(ahead, dtype=np.float64) + np.asarray(ties, dtype=np.float64) / 2


def metrics_from_counts(ahead, ties, ks=KS) -> dict:
    """HR@K and NDCG@K (one relevant item) in expectation over random tie-breaking.

    With the target at place p uniform on a..a+e: HR@K = #{p < K}/(e+1) and
    NDCG@K = Σ_{p<K} 1/log2(p+2) / (e+1).
    """
    a = np.asarray(ahead, dtype=np.int64)
    e = np.asarray(ties, dtype=np.int64)
    out = {}
    for k in ks:
        # disc[n] = Σ_{p<n} 1/log2(p+2): the discount of the places 0..n-1, n ≤ k
        disc = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2))])
        lo, hi = np.minimum(a, k), np.minimum(a + e + 1, k)  # places a..a+e cut at k
        hr = (hi - lo) / (e + 1)
        ndcg = (disc[hi] - disc[lo]) / (e + 1)
        out[f"HR@{k}"] = float(hr.mean()) if len(a) else 0.0
        out[f"NDCG@{k}"] = float(ndcg.mean()) if len(a) else 0.0
    return out


def metrics_from_ranks(ranks, ks=KS) -> dict:
    """HR@K and NDCG@K of untied 0-based ranks."""
    r = np.asarray(ranks, dtype=np.int64)
    return metrics_from_counts(r, np.zeros_like(r), ks)


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best items per row, best first, ties by lower index.  (B, N) -> (B, k)

    Uses a partial selection (no full sort of the catalog) except in the rare rows where a tie
    straddles the k-th place, which fall back to a stable sort. NaN scores must be replaced
    before (torch.topk puts NaN first).
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


def top_k_random_ties(scores: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """top_k with ties broken by a random order of the items: one draw of the tie-breaking the
    metrics average over, so a dumped list is a list the metrics could have scored.  (B, N) -> (B, k)"""
    perm = torch.randperm(scores.shape[1], generator=generator)
    return perm[top_k(scores[:, perm], k)]
