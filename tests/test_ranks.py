"""Ranks of given items (idream.serving.ranks): the rank the page shows for a new item outside the top-K
is its place in the full ranking that recommend returns the head of."""

import numpy as np
import pytest
import torch

from idream.serving.ranks import ranks_in, ranks_of

SHIPPED = "checkpoints/ml-100k"
HISTORY = ["Toy Story (1995)", "Fargo (1996)", "Star Wars (1977)"]


def test_ranks_in_leaves_out_the_excluded_and_breaks_ties_by_index():
    s = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0])
    assert ranks_in(s, [2, 4, 3, 0, 1], excluded=[1]) == [1, 2, 3, 4, None]
    assert ranks_in(s, [1, 2, 4]) == [1, 2, 3]
    with pytest.raises(IndexError):
        ranks_in(s, [5])


@pytest.fixture(scope="module")
def rec():
    from idream.serving.recommender import Recommender

    return Recommender.load(SHIPPED)


@pytest.mark.parametrize("intention", [None, "a quiet drama about a lighthouse keeper"])
def test_ranks_agree_with_the_full_ranking(rec, intention):
    new = [rec.embed_new_item("Ridge 317", "A lighthouse keeper and his daughter on a windswept island.",
                              year=1996, genres=["Drama"]),
           rec.embed_new_item("Laser Ninjas", "Ninjas with lasers fight robots in space.")]
    N = rec.dataset.n_items
    full = rec.recommend(HISTORY, intention, k=N + len(new), extra_items=new)  # every item, ranked
    place = {(r["item_id"] if not r["new"] else f"new:{r['title']}"): r["rank"] for r in full.items}
    assert len(place) == N + len(new) - len(HISTORY)
    head = rec.recommend(HISTORY, intention, k=5, extra_items=new)  # the same request, its top-5
    assert [r["rank"] for r in head.items] == [1, 2, 3, 4, 5]
    rng = np.random.default_rng(0)
    rows = sorted(set(rng.choice(N, 40, replace=False).tolist()) - set(full.history))
    ranks, total = ranks_of(rec, head, rows + [N, N + 1], new)
    assert total == len(place)
    expected = [place[rec.dataset.item_meta(i)["item_id"]] for i in rows]
    expected += [place["new:Ridge 317"], place["new:Laser Ninjas"]]
    assert ranks == expected
    assert ranks_of(rec, head, full.history[:1], new)[0] == [None]  # a history item is not ranked


def test_a_history_films_twin_has_no_rank_as_it_is_never_shown(rec):
    i, j = next((a, b) for a, twins in rec.dataset.twins.items() for b in twins)
    out = rec.recommend([rec.dataset.item_meta(i)["item_id"]], k=5)
    ranks, total = ranks_of(rec, out, [j])
    assert ranks == [None] and total == rec.dataset.n_items - 2


def test_held_out_catalog_items_rank_as_the_answer_ranks_them_with_an_intention():
    """Catalog items without training (the cold-start protocol) are scored by the new-item rule,
    which weighs the intention: their ranks are those of the full ranking too."""
    from idream.serving.recommender import Recommender
    rec = Recommender.load(SHIPPED)
    N = rec.dataset.n_items
    cold = np.random.default_rng(1).choice(N, 60, replace=False)
    rec.config["data"]["cold_items"] = cold.tolist()  # the new-item scorer follows, nothing to reset
    intention = "a quiet drama about a lighthouse keeper"
    full = rec.recommend(HISTORY, intention, k=N)
    place = {r["item_id"]: r["rank"] for r in full.items}
    head = rec.recommend(HISTORY, intention, k=5)
    rows = sorted(set(cold.tolist()) - set(full.history))
    ranks, _ = ranks_of(rec, head, rows)
    assert ranks == [place[rec.dataset.item_meta(i)["item_id"]] for i in rows]
