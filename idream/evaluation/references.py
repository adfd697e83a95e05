"""The simplest strong alternatives every evaluation reports beside iDream: popularity, text-kNN
and text search (no training beyond counting)."""

from __future__ import annotations

import numpy as np
import torch

from idream.data.datasets import PAD, Split


def popularity_scorer(split: Split, n_items: int):
    """Every user gets the items ranked by their training interaction counts."""
    counts = np.zeros(n_items, dtype=np.float32)
    for s in split.train_sequences:
        np.add.at(counts, s, 1)
    scores = torch.from_numpy(counts)

    def score(histories: np.ndarray) -> torch.Tensor:  # (B, L) -> (B, N)
        return scores.expand(len(histories), -1)

    return score


def textknn_scorer(E: np.ndarray):
    """Cosine similarity of every item to the mean of the history's (normalised) text vectors."""
    E = _unit(torch.from_numpy(E).float())

    def score(histories: np.ndarray) -> torch.Tensor:  # (B, L) -> (B, N)
        h = torch.as_tensor(histories, dtype=torch.long)
        valid = (h != PAD).float()[..., None]  # (B, L, 1)
        mean = (E[h.clamp(min=0)] * valid).sum(1) / valid.sum(1).clamp(min=1)  # (B, D)
        return mean @ E.T

    return score


def textsearch_scorer(E: np.ndarray):
    """Cosine similarity of every item's text vector to a sentence's (an intention's) vector."""
    E = _unit(torch.from_numpy(E).float())

    def score(queries: np.ndarray) -> torch.Tensor:  # (B, D) -> (B, N)
        return _unit(torch.as_tensor(queries, dtype=torch.float32)) @ E.T

    return score


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (zero rows stay zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)
