"""The results' text-match column on the shipped checkpoint: a cosine a person can read."""

import numpy as np
import pytest

from idream.serving.recommender import Recommender


@pytest.fixture(scope="module")
def rec():
    return Recommender.load("checkpoints/ml-100k")


def _index(rec, title_start):
    return next(i for i in range(rec.dataset.n_items) if rec.dataset.item_meta(i)["title"].startswith(title_start))


def test_text_match_is_the_raw_cosine_and_higher_for_what_matches(rec):
    alien, romance = _index(rec, "Alien"), _index(rec, "Sense and Sensibility")
    e_q = rec.backend.encode(["aliens attacking a spaceship in outer space"])[0]
    got = rec.text_match(e_q, [alien, romance])
    E = rec.embeddings
    want = [float(E[i] @ e_q / np.linalg.norm(E[i]) / np.linalg.norm(e_q)) for i in (alien, romance)]
    assert got == pytest.approx(want, abs=1e-4)
    assert got[0] > got[1] + 0.1  # the sci-fi horror film matches, the period romance does not


def test_recommend_rows_carry_it_for_catalog_and_new_items(rec):
    new = rec.embed_new_item("Derelict", "astronauts on a derelict spaceship fight a hostile alien lifeform",
                             genres=("Sci-Fi", "Horror"))
    out = rec.recommend(["Star Wars (1977)"], intention="space aliens", k=rec.dataset.n_items, extra_items=[new])
    rows = {r["item_id"]: r for r in out.items}
    e_q = rec.backend.encode(["space aliens"])[0]
    assert rows["new:1"]["intention_similarity"] == pytest.approx(
        float(new["e"] @ e_q / np.linalg.norm(new["e"]) / np.linalg.norm(e_q)), abs=1e-4)
    assert all(-1 <= r["intention_similarity"] <= 1 for r in out.items)
    assert "intention_similarity" not in rec.recommend(["Star Wars (1977)"]).items[0]


def test_recommendation_carries_what_the_page_draws(rec):
    """The path's timesteps and the intention vector come back with the answer, so the page
    neither builds a second sampler nor encodes the intention again."""
    out = rec.recommend(["Star Wars (1977)"], intention="space aliens", steps=5, return_path=True)
    assert len(out.path) == len(out.path_steps) == 5
    assert out.path_steps[0] == rec.T - 1 and out.path_steps[-1] == 0
    assert all(a > b for a, b in zip(out.path_steps, out.path_steps[1:]))
    assert np.allclose(out.intention_vector, rec.encode_intentions(["space aliens"])[0].numpy(), atol=1e-6)
    assert rec.recommend(["Star Wars (1977)"]).path_steps == []
