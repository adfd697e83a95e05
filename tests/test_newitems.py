"""The new-item rule: residual-free items scored by their text closeness to the history."""

from pathlib import Path

import numpy as np
import pytest
import torch

from idream.data.datasets import PAD
from idream.core.newitems import NewItemRule, NewItemScorer
from idream.evaluation.new_item_choice import A_GRID, B_GRID, WARM_COST, pick


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


# -- the intention's text closeness (c) ---------------------------------------------------------

def test_intention_z_is_the_cosine_to_the_intention_z_scored_over_the_catalog(scorer):
    ns, raw, _ = scorer
    q = np.linspace(-1.0, 2.0, 8).astype(np.float32)
    got = ns.intention_z(q, ns.rows([4, 11])).numpy()
    E = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    cos = E @ (q / np.linalg.norm(q))
    np.testing.assert_allclose(got, (cos[[4, 11]] - cos.mean()) / cos.std(), rtol=1e-4)


def test_without_an_intention_or_with_c_0_the_scores_are_exactly_todays(scorer):
    ns, raw, _ = scorer
    x0 = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    hist = np.array([[PAD, 1, 2, 3], [4, 5, 6, 7], [PAD, PAD, 8, 9]])
    cand = ns.rows([10, 12, 20])
    own = torch.full((3, 3), -50.0)
    today = ns.scores(x0, hist, cand, own, NewItemRule(a=1.5, b=-1.6))
    q = raw[12]
    for rule, kw in ((NewItemRule(1.5, -1.6, c=2.0), {}),  # no intention
                     (NewItemRule(1.5, -1.6, c=0.0), {"q": q}),  # c = 0
                     (NewItemRule(1.5, -1.6, c=2.0), {"q": q, "scale": 0.0})):  # ρ = 0
        assert torch.equal(ns.scores(x0, hist, cand, own, rule, **kw), today)
    lifted = ns.scores(x0, hist, cand, own, NewItemRule(1.5, -1.6, c=2.0), q=q)
    assert (lifted[:, 1] > today[:, 1]).all()  # candidate 12 is the intention's own text


def test_c_weighs_the_intention_z_by_each_rows_scale(scorer):
    ns, raw, V = scorer
    x0 = torch.randn(2, 6, generator=torch.Generator().manual_seed(2))
    hist = np.array([[1, 2, 3, 4], [1, 2, 3, 4]])
    cand = ns.rows([10, 12])
    own = torch.full((2, 2), -50.0)
    q = raw[5] + raw[12]
    rule = NewItemRule(1.0, 0.0, c=2.0)
    got = ns.scores(x0, hist, cand, own, rule, q=q, scale=torch.tensor([1.0, 0.5]))
    base = ns.scores(x0, hist, cand, own, NewItemRule(1.0, 0.0))
    s = (x0 @ V.T).double()
    E = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    cos = E @ (q / np.linalg.norm(q))
    zq = (cos[[10, 12]] - cos.mean()) / cos.std()
    for b, scale in enumerate((1.0, 0.5)):
        want = base[b].numpy() + s[b].std(unbiased=False).item() * 2.0 * scale * zq
        np.testing.assert_allclose(got[b].numpy(), want, rtol=1e-4)


def test_a_rule_with_c_round_trips_and_an_old_config_has_none():
    rule = NewItemRule(1.5, -1.6, "validation", c=2.5, c_chosen_on="dev half")
    assert NewItemRule.from_config(rule.to_dict()) == rule
    old = NewItemRule.from_config({"a": 1.5, "b": -1.6, "chosen_on": "validation"})
    assert old.on and old.c == 0.0 and old.c_chosen_on == ""


# -- on the shipped checkpoint ------------------------------------------------------------------

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "ml-100k"
HISTORY = ["Toy Story (1995)", "Fargo (1996)", "Sense and Sensibility (1995)"]
INTENTION = "stranded in space with something hunting the crew"


@pytest.fixture(scope="module")
def shipped():
    """The shipped checkpoint (its rule's a, b) and a session's two new items: one whose text
    fits the intention, one far from it."""
    from idream.serving.recommender import Recommender

    if not (SHIPPED / "model.safetensors").exists():
        pytest.skip("no shipped checkpoint")
    rec = Recommender.load(SHIPPED)
    assert rec.new_item_rule.on
    new = [rec.embed_new_item("Derelict", "Astronauts stranded on a derelict spaceship fight a "
                              "hostile alien creature.", 2024, ["Sci-Fi", "Horror"]),
           rec.embed_new_item("Hay Days", "Two sisters run a dairy farm and bake pies for the "
                              "county fair.", 2024, ["Comedy"])]
    return rec, new


def with_c(rec, c: float) -> None:
    rec.config["new_items"] = dict(rec.config["new_items"], c=c)


def answer(rec, new, c, **kw):
    """(item ids, scores) of the whole ranking with the rule's c set."""
    with_c(rec, c)
    rows = rec.recommend(HISTORY, k=rec.dataset.n_items - 1, extra_items=new, **kw).items
    return [r["item_id"] for r in rows], [r["score"] for r in rows]


def test_a_request_without_an_intention_ranks_as_before_whatever_c(shipped):
    rec, new = shipped
    assert answer(rec, new, 0.0) == answer(rec, new, 3.0)
    assert answer(rec, new, 0.0, intention=INTENTION) != answer(rec, new, 3.0, intention=INTENTION)


def test_a_new_item_matching_the_intention_rises_as_c_grows(shipped):
    rec, new = shipped
    ranks = [answer(rec, new, c, intention=INTENTION)[0].index("new:1") for c in (0.0, 1.0, 2.0, 4.0)]
    assert ranks == sorted(ranks, reverse=True) and ranks[-1] < min(10, ranks[0])
    far = [answer(rec, new, c, intention=INTENTION)[0].index("new:2") for c in (0.0, 4.0)]
    assert far[1] >= far[0] > 50  # the misfit's text is far from the intention: no lift


def test_rho_0_ignores_the_intentions_closeness(shipped):
    rec, new = shipped
    rhos = [0.0, rec.default_rho]
    with_c(rec, 0.0)
    plain = rec.sweep_rho(HISTORY, INTENTION, rhos=rhos, k=50, extra_items=new)["items"]
    with_c(rec, 3.0)
    ruled = rec.sweep_rho(HISTORY, INTENTION, rhos=rhos, k=50, extra_items=new)["items"]
    assert ruled[0] == plain[0] and ruled[1] != plain[1]


def test_a_checkpoint_loads_with_c_and_without(checkpoint, tmp_path):
    import json
    import shutil

    from idream.serving.recommender import Recommender

    copy = tmp_path / "ck"
    shutil.copytree(checkpoint, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["new_items"] = {"a": 1.5, "b": -1.6, "chosen_on": "old"}
    (copy / "config.json").write_text(json.dumps(cfg))
    assert Recommender.load(copy).new_item_rule == NewItemRule(1.5, -1.6, "old")
    cfg["new_items"] |= {"c": 2.0, "c_chosen_on": "dev"}
    (copy / "config.json").write_text(json.dumps(cfg))
    assert Recommender.load(copy).new_item_rule == NewItemRule(1.5, -1.6, "old", 2.0, "dev")
