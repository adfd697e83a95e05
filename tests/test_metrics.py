"""Metrics against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from idream.data.datasets import load_dataset, test_cases
from idream.evaluation.evaluate import NonFiniteScores, rank_all
from idream.ranking import (MISS, mask_seen, metrics_from_counts, metrics_from_ranks, rank_counts, top_k,
                            top_k_random_ties)


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
    # row 0: item 0 masked, target 1 is behind item 2 only; row 1: target 2 ties with items 0, 1
    ahead, ties = rank_counts(masked, torch.tensor([1, 2]))
    assert ahead.tolist() == [1, 0] and ties.tolist() == [0, 2]
    assert top_k(masked, 2).tolist() == [[2, 1], [0, 1]]


def test_ties_count_as_their_expectation():
    """A target tied with e others sits at each of a..a+e with probability 1/(e+1) (hand-computed)."""
    m = metrics_from_counts([0], [2], ks=(1, 2, 5))  # places 0, 1, 2 equally likely
    assert m["HR@1"] == pytest.approx(1 / 3)
    assert m["NDCG@1"] == pytest.approx(1 / 3)
    assert m["HR@2"] == pytest.approx(2 / 3)
    assert m["NDCG@2"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert m["HR@5"] == pytest.approx(1.0)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(4)) / 3)
    # behind 4, tied with 3 others: places 4..7; only place 4 is inside the top 5
    m = metrics_from_counts([4], [3], ks=(5,))
    assert m["HR@5"] == pytest.approx(0.25)
    assert m["NDCG@5"] == pytest.approx(0.25 / math.log2(6))
    # no ties: the plain metrics
    assert metrics_from_counts([3], [0]) == metrics_from_ranks([3])


def test_non_finite_scores_are_misses():
    scores = torch.tensor([[float("nan"), 0.2, 0.1], [0.3, float("nan"), 0.1], [float("inf"), 0.5, 0.1]])
    ahead, ties = rank_counts(scores, torch.tensor([0, 0, 1]))
    # row 0: the target's own score is NaN -> a miss, even at a K above the catalog's size
    # row 1: a NaN elsewhere is never ahead, so the target is first
    # row 2: +inf is not a score either: the target is first
    assert ahead.tolist() == [MISS, 0, 0] and ties.tolist() == [0, 0, 0]
    m = metrics_from_counts(ahead.numpy(), ties.numpy())
    assert m["HR@20"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def ml100k_test():
    ds = load_dataset("ml-100k")
    return ds, test_cases(ds, 10)


def test_all_nan_scorer_scores_zero_and_is_reported(ml100k_test):
    ds, test = ml100k_test
    res = rank_all(lambda rows: torch.full((len(rows), ds.n_items), float("nan")), test, dump_top=10)
    assert all(v == 0.0 for v in res.metrics.values())
    assert res.nonfinite_rows == len(test)
    assert all(len(t) == 0 for t in res.top)  # nothing broken is ever listed
    with pytest.raises(NonFiniteScores, match=f"{len(test)} of {len(test)} cases"):
        res.require_finite("the NaN scorer")


def test_constant_scorer_scores_what_chance_gives(ml100k_test):
    """With every item tied, HR@K is K over the number of unmasked items, exactly, per case."""
    ds, test = ml100k_test
    res = rank_all(lambda rows: torch.zeros(len(rows), ds.n_items), test).require_finite()
    masked = [test.masked(i) for i in range(len(test))]  # earlier items and their twins
    n = np.array([ds.n_items - len(m) for m in masked], dtype=np.float64)  # unmasked candidates
    live = np.array([t not in m for t, m in zip(test.targets, masked)])  # else a masked twin: a miss
    for k in (5, 10, 20):
        chance_hr = np.mean(live * np.minimum(k, n) / n)
        chance_ndcg = np.mean(live * [sum(1 / math.log2(p + 2) for p in range(min(k, int(c)))) / c for c in n])
        assert res.metrics[f"HR@{k}"] == pytest.approx(chance_hr, rel=1e-9)
        assert res.metrics[f"NDCG@{k}"] == pytest.approx(chance_ndcg, rel=1e-9)
    assert res.metrics["HR@10"] < 0.0075  # about 10 / 1,600: the old lower-index rule gave 0.0201


def test_dumped_lists_agree_with_the_metrics():
    """Untied scores: the dumped lists give the metrics exactly. Tied scores: the lists are draws
    whose average over many seeds approaches the metrics' expectation."""
    from idream.data.datasets import Samples
    g = torch.Generator().manual_seed(1)
    M, N = 200, 40
    targets = torch.randint(0, N, (M,), generator=g)
    samples = Samples(np.arange(M), np.zeros((M, 1), dtype=np.int64), targets.numpy(), None)

    def from_lists(top, k):
        return np.mean([t in list(lst[:k]) for t, lst in zip(targets.tolist(), top)])

    untied = torch.rand(M, N, generator=g)
    res = rank_all(lambda rows: untied[rows], samples, dump_top=20)
    assert from_lists(res.top, 10) == pytest.approx(res.metrics["HR@10"])
    tied = torch.randint(0, 4, (M, N), generator=g).float()  # about 10 items per score value
    res = rank_all(lambda rows: tied[rows], samples, dump_top=20)
    draws = [from_lists(rank_all(lambda rows: tied[rows], samples, dump_top=20, seed=s).top, 10)
             for s in range(40)]
    assert np.mean(draws) == pytest.approx(res.metrics["HR@10"], abs=0.01)
    assert np.std(draws) > 0  # the lists really are draws, not one fixed order


def test_random_tie_order_keeps_the_score_order():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.1]])
    seen = set()
    for s in range(30):
        top = top_k_random_ties(scores, 4, torch.Generator().manual_seed(s))[0].tolist()
        assert top[0] == 1 and sorted(top[1:]) == [0, 2, 3]
        seen.add(tuple(top))
    assert len(seen) > 1


def test_top_k_agrees_with_rank():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (20, 50), generator=g).float()  # many ties
    top = top_k(scores, 10)
    for r in range(20):
        # ties by lower index: the place of item j is (items above) + (tied items with a lower index)
        s = scores[r]
        place = [(s > s[j]).sum().item() + ((s == s[j]) & (torch.arange(50) < j)).sum().item() for j in range(50)]
        assert top[r].tolist() == np.argsort(place, kind="stable")[:10].tolist()
