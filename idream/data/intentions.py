"""Intention sentences ("something light and funny from the 90s") built from a target's facts.

Only description-level facts are used (genres, decade, mood words), never the title or the
item's own description text, so an intention can say what a user is in the mood for without
naming the answer. The templates are written for films ("a drama movie"); other kinds of item get
the same templates in their own words ("a drama book"), chosen by the same random draws.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from idream.text.descriptions import FILM, GENRE_MOODS, Wording, item_genres, item_year, with_article, wording

# How each genre reads in front of "movie"; the order puts modifiers first so that two genres
# read naturally ("romantic comedy", "crime thriller", "war drama").
GENRE_PHRASES: dict[str, str] = {
    "animation": "animated",
    "romance": "romantic",
    "children's": "children's",
    "sci-fi": "sci-fi",
    "action": "action",
    "crime": "crime",
    "war": "war",
    "fantasy": "fantasy",
    "horror": "horror",
    "mystery": "mystery",
    "musical": "musical",
    "western": "western",
    "comedy": "comedy",
    "adventure": "adventure",
    "film-noir": "film-noir",
    "documentary": "documentary",
    "thriller": "thriller",
    "drama": "drama",
}
_GENRE_RANK = {genre: rank for rank, genre in enumerate(GENRE_PHRASES)}

# Phrasings. Slots: {genre}/{a_genre} (one or two genres), {mood}/{a_mood} (one mood word),
# {moods} (one or two, "light and funny"), {decade}/{a_decade} ("1990s", "90s", "silent era").
TEMPLATES: tuple[str, ...] = (
    # genre
    "I feel like watching {a_genre} movie",
    "show me a good {genre} film",
    "any {genre} recommendations?",
    "in the mood for {a_genre} movie tonight",
    # genre + mood
    "I'm in the mood for {a_mood} {genre} movie",
    "something {moods}, maybe {a_genre} film",
    "give me {a_genre} movie that feels {moods}",
    # genre + decade
    "{a_decade} {genre} movie, please",
    "Recommend me {a_genre} film from the {decade}",
    "{a_genre} classic from the {decade}",
    "{a_genre} movie, nothing newer than the {decade}",
    # genre + mood + decade
    "Recommend me {a_decade} {genre} movie with {a_mood} edge",
    "looking for something {moods}: {a_genre} movie from the {decade}",
    "{a_mood} {genre} movie, ideally from the {decade}",
    # mood
    "something {moods}",
    "I want to watch something {mood} tonight",
    # mood + decade
    "something {moods} from the {decade}",
    # decade
    "a good movie from the {decade}",
    "take me back to the {decade}",
    # nothing known
    "something I would enjoy",
    "surprise me with a good movie",
    "what should I watch next?",
)


def _needs(template: str) -> frozenset[str]:
    """The facts a template needs: a subset of {"genre", "mood", "decade"}."""
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return frozenset(name.removeprefix("a_").removesuffix("s") for name in fields)


_TEMPLATE_NEEDS = tuple(_needs(t) for t in TEMPLATES)
_FILM_WORDS = re.compile(r"\b(movie|film|watching|watch)\b")


def _reworded(template: str, words: Wording) -> str:
    """A film template in another kind's words: movie/film -> the noun, watch -> its verb."""
    swap = {"movie": words.one, "film": words.one, "watch": words.verb, "watching": words.verbing}
    return _FILM_WORDS.sub(lambda m: swap[m.group(1)], template)


@lru_cache(maxsize=64)
def kind_templates(words: Wording) -> tuple[str, ...]:
    """TEMPLATES as a catalog of this kind says them, in the same order (films: TEMPLATES)."""
    return TEMPLATES if words.film else tuple(_reworded(t, words) for t in TEMPLATES)


def decade_names(year: int) -> tuple[str, ...]:
    """Ways to name the decade of `year`: 1995 -> ("1990s", "90s"); before 1930 the silent era."""
    decade = year // 10 * 10
    if year < 1930:
        return ("silent era", f"{decade}s")
    if decade < 2000:
        return (f"{decade}s", f"{decade % 100:02d}s")
    return (f"{decade}s",)


def _genre_phrase(genres: Sequence[str]) -> str:
    ordered = sorted(genres, key=lambda g: _GENRE_RANK.get(g, len(_GENRE_RANK)))
    return " ".join(GENRE_PHRASES.get(g, g) for g in ordered)


def _facts_key(item: Mapping[str, Any]) -> str:
    return f"{item_genres(item)}|{item_year(item)}"


def generate_intention(item: Mapping[str, Any], seed: int, kind: Sequence[str] = FILM) -> str:
    """One intention for `item`, deterministic in (genres, year, seed); seeds vary the phrasing.
    `kind`: the catalog's (singular, plural) item kind, which the sentence names."""
    rng = random.Random(f"intention-v1|{seed}|{_facts_key(item)}")
    genres = item_genres(item)
    year = item_year(item)

    slots: dict[str, str] = {}
    if genres:
        chosen = rng.sample(genres, min(len(genres), rng.choice((1, 2))))
        slots["genre"] = _genre_phrase(chosen)
        slots["a_genre"] = with_article(slots["genre"])
        # mood words of the chosen genres, minus any the genre phrase already says ("romantic")
        said = set(slots["genre"].split())
        pool = [m for g in chosen for m in GENRE_MOODS.get(g, ()) if m not in said]
        if pool:
            moods = rng.sample(pool, min(len(pool), rng.choice((1, 2))))
            slots["mood"] = moods[0]
            slots["a_mood"] = with_article(moods[0])
            slots["moods"] = " and ".join(moods)
    if year is not None:
        slots["decade"] = rng.choice(decade_names(year))
        slots["a_decade"] = with_article(slots["decade"])

    known = {name for name in ("genre", "mood", "decade") if name in slots}
    # Templates whose facts are known; richer ones are likelier, generic ones only as a last resort.
    templates = kind_templates(wording(kind))
    usable = [(t, needs) for t, needs in zip(templates, _TEMPLATE_NEEDS) if needs <= known]
    if known:
        usable = [(t, needs) for t, needs in usable if needs]
    template = rng.choices([t for t, _ in usable], weights=[len(n) or 1 for _, n in usable])[0]
    return template.format(**slots)


def _derived_seed(seed: int, attempt: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def intention_pool(items: Sequence[Mapping[str, Any]], per_item: int, seed: int,
                   kind: Sequence[str] = FILM) -> list[list[str]]:
    """`per_item` intentions for each item, distinct where its facts allow, deterministic in seed;
    they name the catalog's `kind` of item.

    Items with few facts (hence few possible sentences) repeat their distinct intentions.
    """
    if per_item < 0:
        raise ValueError(f"per_item must be >= 0, got {per_item}")
    pool: list[list[str]] = []
    for item in items:
        distinct: list[str] = []
        for attempt in range(per_item * 10):
            if len(distinct) == per_item:
                break
            text = generate_intention(item, _derived_seed(seed, attempt), kind)
            if text not in distinct:
                distinct.append(text)
        pool.append([distinct[k % len(distinct)] for k in range(per_item)] if distinct else [])
    return pool
