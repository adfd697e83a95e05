"""The shipped checkpoint ranks today as it did when tests/data/shipped-top10.json was recorded:
the same items in the same order with the same scores, for a few fixed requests through the
public API. A refactoring that changes a ranking fails here; a deliberate change (a retrained
checkpoint) re-records the file: `python tests/test_shipped_rankings.py`."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "ml-100k"
RECORD = ROOT / "tests" / "data" / "shipped-top10.json"

REQUESTS = [  # keyword arguments of Recommender.recommend; "new" adds a session's new item
    {"history": ["Toy Story (1995)", "Fargo (1996)", "Star Wars (1977)"]},
    {"history": ["Toy Story (1995)", "Fargo (1996)", "Star Wars (1977)"], "intention": "something light and funny"},
    {"history": ["Scream (1996)", "Alien (1979)"], "intention": "a quiet romance", "rho": 0.8, "steps": 5, "seed": 3},
    {"history": [], "intention": "space adventure with robots", "k": 20},
    {"history": ["Star Wars (1977)", "Alien (1979)", "Terminator, The (1984)"], "w": 0.0, "steps": 50},
    {"history": ["Star Wars (1977)", "Alien (1979)"], "intention": "space aliens", "new": True},
]


def answer(rec, request: dict) -> dict:
    """The ranking one request gets: item ids and scores as the result rows give them."""
    request = dict(request)
    extra = None
    if request.pop("new", False):
        extra = [rec.embed_new_item("Derelict", "Astronauts on a derelict spaceship fight a hostile "
                                    "alien lifeform.", 2024, ["Sci-Fi", "Action", "Horror"])]
    out = rec.recommend(**request, extra_items=extra)
    return {"item_ids": [str(r["item_id"]) for r in out.items], "scores": [r["score"] for r in out.items]}


@pytest.fixture(scope="module")
def rec():
    from idream.serving.recommender import Recommender

    if not (SHIPPED / "model.safetensors").exists():
        pytest.skip("no shipped checkpoint")
    return Recommender.load(SHIPPED)


@pytest.mark.parametrize("i", range(len(REQUESTS)))
def test_the_shipped_checkpoint_ranks_as_recorded(rec, i):
    recorded = json.loads(RECORD.read_text())
    assert recorded["requests"][i] == REQUESTS[i], "the request changed: re-record the file"
    got, want = answer(rec, REQUESTS[i]), recorded["answers"][i]
    assert got["item_ids"] == want["item_ids"]
    assert got["scores"] == pytest.approx(want["scores"], abs=2e-4)


if __name__ == "__main__":  # re-record (only after a deliberate change of the shipped model)
    sys.path.insert(0, str(ROOT))
    from idream.serving.recommender import Recommender

    model = Recommender.load(SHIPPED)
    RECORD.write_text(json.dumps({"checkpoint": "checkpoints/ml-100k", "requests": REQUESTS,
                                  "answers": [answer(model, r) for r in REQUESTS]}, indent=1) + "\n")
    print(f"wrote {RECORD}")
