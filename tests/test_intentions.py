"""Tests for idream.data.intentions: varied, deterministic intentions that never leak the title."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys

import pytest

from idream.data.intentions import decade_names, generate_intention, intention_pool
from idream.text.descriptions import GENRE_MOODS

RICH = {
    "title": "The Godfather Part II",
    "year": 1974,
    "genres": ("Crime", "Drama", "Thriller"),
    "description": "A mafia saga spanning two generations of the Corleone family.",
}

# Realistic multi-word titles with facts; some share a word with genre vocabulary. (A title made
# only of genre words, say "Romantic Comedy", could coincide with an intention by design.)
TITLED = [
    ("The Good, the Bad and the Ugly", 1966, ("Action", "Western")),
    ("Star Wars", 1977, ("Action", "Adventure", "Romance", "Sci-Fi", "War")),
    ("Toy Story", 1995, ("Animation", "Children's", "Comedy")),
    ("Night of the Living Dead", 1968, ("Horror",)),
    ("Sleepless in Seattle", 1993, ("Comedy", "Romance")),
    ("Singin' in the Rain", 1952, ("Musical", "Romance")),
    ("The Silence of the Lambs", 1991, ("Drama", "Thriller")),
    ("A Clockwork Orange", 1971, ("Sci-Fi",)),
    ("Four Weddings and a Funeral", 1994, ("Comedy", "Romance")),
    ("Crime and Punishment in Suburbia", 2000, ("Comedy", "Drama")),
    ("Hoop Dreams", 1994, ("Documentary",)),
    ("The Cabinet of Dr. Caligari", 1920, ("Horror",)),
    ("Casablanca", 1942, ("Drama", "Romance", "War")),
    ("Who Framed Roger Rabbit?", 1988, ("Adventure", "Animation", "Comedy", "Crime")),
]
ITEMS = [{"title": t, "year": y, "genres": g, "description": f"About {t}."} for t, y, g in TITLED]

ALL_GENRES = [g for g in GENRE_MOODS if g != "unknown"]
SEEDS = range(150)


def _vocabulary(genres, year) -> set[str]:
    """Words that state one of the item's facts: genre names, their mood words, its decade."""
    words = {g.lower() for g in genres}
    for g in words.copy():
        words |= set(GENRE_MOODS.get(g, ()))
    if year is not None:
        decade = year // 10 * 10
        words |= {f"{decade}s", f"{decade % 100:02d}s"} | ({"silent era"} if year < 1930 else set())
    return words


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text.lower()) is not None


def _skeleton(text: str, vocab: set[str]) -> str:
    """The phrasing with the item's facts blanked out, to count templates, not fillings."""
    out = text.lower()
    for word in sorted(vocab, key=len, reverse=True):
        out = re.sub(rf"(?<![\w-]){re.escape(word)}(?![\w-])", "#", out)
    out = re.sub(r"#(?:\s*(?:and\s+)?#)*", "#", out)  # "crime thriller" -> one blank
    return re.sub(r"\ban?\b", "a", out)


def test_rich_item_gets_at_least_twelve_phrasings():
    vocab = _vocabulary(RICH["genres"], RICH["year"])
    skeletons = {_skeleton(generate_intention(RICH, s), vocab) for s in range(400)}
    assert len(skeletons) >= 12, sorted(skeletons)


def test_same_seed_same_intention_and_seeds_vary():
    first = [generate_intention(RICH, s) for s in SEEDS]
    assert [generate_intention(dict(RICH), s) for s in SEEDS] == first
    assert len({generate_intention(RICH, s) for s in range(20)}) >= 10


def test_depends_on_facts_not_on_title_or_global_random_state():
    random.seed(123)
    state = random.getstate()
    a = generate_intention(RICH, 7)
    assert random.getstate() == state  # the global RNG is neither used nor advanced
    random.seed(999)
    renamed = {**RICH, "title": "Another Title", "description": "Different text."}
    assert generate_intention(renamed, 7) == a


def test_deterministic_across_processes():
    code = (
        "from idream.data.intentions import intention_pool;"
        "print(intention_pool([{'title': 'T', 'year': 1974, 'genres': ('Crime', 'Drama')}], 5, 3))"
    )
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("0", "1")
    }
    assert len(outs) == 1


@pytest.mark.parametrize("item", ITEMS, ids=[t for t, _, _ in TITLED])
def test_never_leaks_title_or_description(item):
    for s in SEEDS:
        out = generate_intention(item, s).lower()
        assert item["title"].lower() not in out
        assert item["description"].lower().rstrip(".") not in out
    assert "heist" not in " ".join(
        generate_intention({**RICH, "description": "A heist in Los Angeles"}, s) for s in SEEDS
    ).lower()


@pytest.mark.parametrize("item", ITEMS, ids=[t for t, _, _ in TITLED])
def test_mentions_only_the_items_own_facts(item):
    own = _vocabulary(item["genres"], item["year"])
    others = {g for g in ALL_GENRES if g not in {x.lower() for x in item["genres"]}}
    others |= {f"{d}s" for d in range(1920, 2030, 10)} - own
    for s in SEEDS:
        out = generate_intention(item, s)
        assert any(_mentions(out, w) for w in own), out
        leaked = [w for w in others if _mentions(out, w) and w not in own]
        assert not leaked, (out, leaked)
        assert "{" not in out and "}" not in out and "None" not in out


def test_decade_names():
    assert {"1990s", "90s"} <= set(decade_names(1995))
    assert "2000s" in decade_names(2003)
    assert "silent era" in decade_names(1922)
    assert "1970s" in decade_names(1970)


def test_missing_year_uses_genres_only():
    item = {"title": "Some Title", "year": None, "genres": ("Comedy",), "description": ""}
    outs = {generate_intention(item, s) for s in SEEDS}
    assert len(outs) >= 6
    for out in outs:
        assert not re.search(r"\d", out) and "silent era" not in out
        assert any(_mentions(out, w) for w in _vocabulary(["comedy"], None)), out


def test_missing_genres_uses_decade_only():
    item = {"title": "Some Title", "year": 1987, "genres": ()}
    for s in SEEDS:
        out = generate_intention(item, s)
        assert "80s" in out, out
        assert not any(_mentions(out, g) for g in ALL_GENRES), out


@pytest.mark.parametrize(
    "item", [{}, {"title": "Only A Title"}, {"genres": ("unknown",), "year": None}]
)
def test_no_facts_gives_a_generic_sentence(item):
    outs = {generate_intention(item, s) for s in SEEDS}
    for out in outs:
        assert out and "{" not in out
        assert not re.search(r"\d", out)
        assert not any(_mentions(out, g) for g in ALL_GENRES)
    assert "Only A Title".lower() not in " ".join(outs).lower()


def test_intention_pool_shape_distinct_and_deterministic():
    items = [RICH, *ITEMS[:3], {}]
    pool = intention_pool(items, per_item=6, seed=11)
    assert len(pool) == len(items) and all(len(p) == 6 for p in pool)
    assert all(isinstance(s, str) and s for p in pool for s in p)
    assert len(set(pool[0])) == 6  # a rich item has plenty of distinct intentions
    assert intention_pool(items, per_item=6, seed=11) == pool
    assert intention_pool(items, per_item=6, seed=12) != pool
    assert intention_pool(items, per_item=0, seed=11) == [[] for _ in items]
    assert intention_pool([], per_item=3, seed=0) == []
    with pytest.raises(ValueError):
        intention_pool(items, per_item=-1, seed=0)


def test_eval_intention_caches_of_equal_size_do_not_collide(synthetic_dir, monkeypatch):
    """Valid and test sets have one case per user; their generated intentions differ, so their
    cache files must too (one name for both made every benchmark seed re-embed both)."""
    from types import SimpleNamespace

    import numpy as np

    import idream.evaluation.evaluate as ev
    from idream.data.datasets import chronological_split, load_dataset, test_cases

    tags = []
    monkeypatch.setattr(ev, "embed_sentences", lambda s, b, c, tag, progress: (
        tags.append(tag), np.zeros((len(s), 4), np.float32))[1])
    ds = load_dataset(str(synthetic_dir))
    split = chronological_split(ds, 5)
    rec = SimpleNamespace(dataset=ds, backend=None, config={}, transform=lambda e: e)
    test = test_cases(ds, 5)
    assert len(split.valid) == len(test)
    ev.generated_intentions(rec, split.valid, seed=1)
    ev.generated_intentions(rec, test, seed=1)
    ev.generated_intentions(rec, test, seed=1)
    assert tags[0] != tags[1] and tags[1] == tags[2]
