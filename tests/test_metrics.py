"""Metrics against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from idream.metrics import mask_seen, metrics_from_ranks, target_ranks, top_k


def test_hand_computed():
    # ranks 0, 3, 12 (0-based): HR@5 = 2/3, NDCG@5 = (1 + 1/log2(5)) / 3
    m = metrics_from_ranks([0, 3, 12])
    assert m["HR@5"] == pytest.approx(2 / 3)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(5)) / 3)
    assert m["HR@20"] == pytest.approx(1.0)
    assert m["NDCG@20"] == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(14)) / 3)
    assert metrics_from_ranks([25])["HR@20"] == 0.0


def test_ranks_masking_and_ties():
    scores = torch.tensor([[0.9, 0.5, 0.7, 0.1], [1.0, 1.0, 1.0, 0.0]])
    masked = mask_seen(scores.clone(), [np.array([0]), np.array([], dtype=np.int64)])
    assert torch.isinf(masked[0, 0]) and not torch.isinf(masked[1]).any()
    # row 0: item 0 masked, target 1 is behind item 2 only -> rank 1
    # row 1: three-way tie, ties go to the lower index -> target 2 has rank 2
    assert target_ranks(masked, torch.tensor([1, 2])).tolist() == [1, 2]
    assert top_k(masked, 2).tolist() == [[2, 1], [0, 1]]


def test_top_k_agrees_with_rank():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (20, 50), generator=g).float()  # many ties
    top = top_k(scores, 10)
    for r in range(20):
        ranks = target_ranks(scores[r:r + 1].expand(50, -1), torch.arange(50))
        assert top[r].tolist() == torch.argsort(ranks)[:10].tolist()
