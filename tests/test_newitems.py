"""The new-item rule: residual-free items scored by their text closeness to the history."""

import numpy as np
import pytest
import torch

from idream.data import PAD
from idream.newitems import A_GRID, B_GRID, WARM_COST, NewItemRule, NewItemScorer, pick


@pytest.fixture
def scorer():
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(30, 8, generator=g).numpy()  # (N, Dt) raw text vectors
    V = torch.randn(30, 6, generator=g)  # (N, D) item vectors
    return NewItemScorer(raw, V), raw, V


def test_closeness_is_the_largest_cosine_to_a_history_item(scorer):
    ns, raw, _ = scorer
    hist = np.array([[PAD, PAD, 3, 7], [1, 2, 4, 5]])
    cand = ns.rows([0, 9, 3])
    got = ns.closeness(hist, cand).numpy()
    E = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    for b, h in enumerate(hist):
        want = [max(float(E[c] @ E[i]) for i in h if i != PAD) for c in (0, 9, 3)]
        np.testing.assert_allclose(got[b], want, rtol=1e-5)
    assert got[0, 2] == pytest.approx(1.0)  # an item in the history is as close as can be


def test_scores_keep_the_larger_and_ignore_rows_without_history(scorer):
    ns, raw, V = scorer
    x0 = torch.randn(2, 6)
    hist = np.array([[PAD, PAD, PAD, PAD], [PAD, 1, 2, 3]])
    cand = ns.rows([1, 20])  # item 1 is in the second history: as close as possible
    own = torch.full((2, 2), -50.0)
    off = ns.scores(x0, hist, cand, own, NewItemRule())
    assert torch.equal(off, own)  # a = 0: the rule is off
    on = ns.scores(x0, hist, cand, own, NewItemRule(a=1.0, b=0.0))
    assert torch.equal(on[0], own[0])  # no history: nothing to be close to
    s = (x0[1] @ V.T).double()
    E = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    close = (E @ E[[1, 2, 3]].T).max(1)
    z = (close[[1, 20]] - close.mean()) / close.std(ddof=1)
    want = s.mean().item() + s.std(unbiased=False).item() * z
    np.testing.assert_allclose(on[1].numpy(), want, rtol=1e-4)
    flat = ns.scores(torch.zeros(2, 6), hist, cand, own, NewItemRule(a=1.0, b=0.0))  # no spread
    assert torch.equal(flat[0], own[0]) and torch.isfinite(flat).all()
    high = torch.full((2, 2), 1e6)
    assert torch.equal(ns.scores(x0, hist, cand, high, NewItemRule(a=1.0, b=0.0)), high)


def test_pick_takes_the_best_cold_setting_within_the_warm_cost():
    """Two seeds' grids, written by hand: the best cold setting costs too much warm NDCG; the
    next best is within WARM_COST on average, and wins."""
    keys = [(a, b) for a in A_GRID for b in B_GRID]
    grids = []
    for shift in (0.0, 0.002):
        rows = {k: (0.01, 0.100 + shift, 0.091) for k in keys}
        rows[(2.0, -1.0)] = (0.09, 0.100 + shift - 3 * WARM_COST, 0.095)  # best cold, too costly
        rows[(1.0, 0.5)] = (0.05, 0.100 + shift - WARM_COST / 2, 0.093)
        rows[(3.0, 0.5)] = (0.05, 0.100 + shift - WARM_COST / 2, 0.094)  # same cold, better overall
        grids.append([(None, None, 0.0, 0.100 + shift, 0.090)]
                     + [(a, b, *rows[(a, b)]) for a, b in keys])
    rule = pick(grids, "by hand")
    assert (rule.a, rule.b) == (3.0, 0.5) and rule.on and rule.chosen_on.startswith("by hand")


def test_pick_switches_the_rule_off_when_every_setting_costs_too_much():
    keys = [(a, b) for a in A_GRID for b in B_GRID]
    grid = [(None, None, 0.0, 0.1, 0.09)] + [(a, b, 0.05, 0.1 - 2 * WARM_COST, 0.09) for a, b in keys]
    rule = pick([grid])
    assert not rule.on and "cost more" in rule.chosen_on


def test_rule_round_trips_through_a_config():
    rule = NewItemRule(1.5, -1.6, "validation")
    assert NewItemRule.from_config(rule.to_dict()) == rule
    assert not NewItemRule.from_config(None).on
