"""Where given items stand in one request's full ranking, however far below its top-K.

A person who adds an item and does not find it among the recommendations should still learn
where it went ("ranks 23rd of 1,683"). The ranking is the one `Recommender.recommend` returns
the head of: the oracle's exact scores, residual-free items by the new-item rule, the history
left out and ties going to the lower index (catalog rows first, then the session's new items).
"""

from __future__ import annotations

import numpy as np
import torch

from idream.data.datasets import window
from idream.core.newitems import unit


def ranks_in(scores: torch.Tensor, targets, excluded=()) -> list[int | None]:
    """1-based rank of each target among the items of one score row that are not excluded,
    ties going to the lower index (as metrics.top_k orders them); None for an excluded target.
    scores (M,), targets and excluded: indices into it."""
    s = torch.as_tensor(scores).reshape(-1)
    keep = torch.ones(len(s), dtype=torch.bool)
    keep[torch.as_tensor(list(excluded), dtype=torch.long)] = False
    position = torch.arange(len(s))
    out = []
    for t in (int(t) for t in targets):
        if not 0 <= t < len(s):
            raise IndexError(f"item index {t} is outside the {len(s)} ranked items")
        ahead = (s > s[t]) | ((s == s[t]) & (position < t))
        out.append(int((ahead & keep).sum()) + 1 if keep[t] else None)
    return out


def request_scores(rec, oracle, history, extra_items=None, e_q: np.ndarray | None = None,
                   rho: float | None = None) -> torch.Tensor:
    """Every item's score for one request, as `recommend` ranks them: the catalog, then the
    session's new items, residual-free ones by the new-item rule with the intention's raw vector
    e_q at ρ.  oracle (D,), history: catalog indices -> (N + n,)"""
    x0 = torch.as_tensor(np.asarray(oracle, dtype=np.float32))[None]  # (1, D)
    hist = window(np.asarray(history, dtype=np.int64), len(history), rec.history_len)[None]  # (1, L)
    s = rec.scores(x0, hist, e_q, rho)  # (1, N)
    if extra_items:
        Z = torch.stack([torch.as_tensor(it["z"]) for it in extra_items])  # (n, D)
        raw = unit(np.stack([np.asarray(it["e"]) for it in extra_items]))
        s = torch.cat([s, rec.new_item_scores(x0, hist, x0 @ Z.T, raw, e_q, rho)], dim=1)
    return s[0]


def ranks_of(rec, out, targets, extra_items=None) -> tuple[list[int | None], int]:
    """Ranks of given items in the full ranking behind a Recommendation `out` (its oracle and
    history), whatever its k, and how many items that ranking holds. targets: catalog indices,
    or N + j for extra_items[j]; a history item's rank is None, and so is its twin's (the same
    film under another id, which the answer leaves out too)."""
    s = request_scores(rec, out.oracle, out.history, extra_items, out.intention_raw, out.rho)
    left_out = rec.dataset.with_twins(out.history).tolist()
    return ranks_in(s, targets, left_out), len(s) - len(set(left_out))
