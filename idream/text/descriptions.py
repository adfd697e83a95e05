"""Item descriptions: a deterministic English sentence per item from its title, year and genres
(with a few mood words per genre), the text that the embedding backends turn into vectors.

Sentences name the catalog's kind of item (`Dataset.item_kind`, e.g. ("book", "books")); `wording`
says how. Films keep the exact wording of TEMPLATE_VERSION ("A drama film: ..."), the text the
shipped checkpoint was built from; other kinds said "film" too before they had their own words,
and now name their kind ("A fantasy book: ...", "An item."), under the same TEMPLATE_VERSION.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TEMPLATE_VERSION = "template-v1"

FILM = ("film", "films")  # the MovieLens kind, and the default where no catalog is named

# How one takes in an item of a kind, and who does it: (verb, its -ing form, audience).
_VERBS = {"watch": ("watching", "viewer"), "read": ("reading", "reader"),
          "listen to": ("listening to", "listener"), "try": ("trying", "person")}
_KIND_VERBS = {"film": "watch", "movie": "watch", "show": "watch", "series": "watch",
               "video": "watch", "episode": "watch", "book": "read", "novel": "read",
               "story": "read", "comic": "read", "article": "read", "song": "listen to",
               "track": "listen to", "album": "listen to", "podcast": "listen to"}

# Mood / tone words per MovieLens genre (lower-case keys). The first word is the most telling;
# `describe` and `idream.data.intentions` both read this one table.
GENRE_MOODS: dict[str, tuple[str, ...]] = {
    "action": ("exciting", "fast-paced", "explosive"),
    "adventure": ("adventurous", "epic", "daring"),
    "animation": ("animated", "colourful", "imaginative"),
    "children's": ("family-friendly", "wholesome", "playful"),
    "comedy": ("funny", "light", "feel-good"),
    "crime": ("gritty", "dark", "tense"),
    "documentary": ("factual", "informative", "eye-opening"),
    "drama": ("emotional", "moving", "serious"),
    "fantasy": ("magical", "whimsical", "otherworldly"),
    "film-noir": ("moody", "cynical", "shadowy"),
    "horror": ("scary", "creepy", "chilling"),
    "musical": ("tuneful", "joyful", "upbeat"),
    "mystery": ("mysterious", "puzzling", "intriguing"),
    "romance": ("romantic", "heartwarming", "tender"),
    "sci-fi": ("futuristic", "mind-bending", "cerebral"),
    "thriller": ("suspenseful", "gripping", "nail-biting"),
    "war": ("intense", "harrowing", "grim"),
    "western": ("rugged", "dusty", "lawless"),
    "unknown": (),
}

# Other spellings of the same genres (MovieLens 1M/20M, common prose) -> the key used above.
_GENRE_ALIASES = {
    "children": "children's",
    "childrens": "children's",
    "science fiction": "sci-fi",
    "scifi": "sci-fi",
    "film noir": "film-noir",
    "noir": "film-noir",
}
# Genre labels that carry no information and are dropped.
_NO_GENRE = {"unknown", "(no genres listed)", ""}

_MIN_MOODS = 3  # "a few" mood words in a description


def normalise_genre(genre: str) -> str:
    """Lower-case a genre label and map known aliases onto the `GENRE_MOODS` keys."""
    key = " ".join(str(genre).strip().lower().split())
    return _GENRE_ALIASES.get(key, key)


def item_genres(item: Mapping[str, Any]) -> tuple[str, ...]:
    """The item's informative genres in their original order, de-duplicated.

    Known genres come back as their lower-case `GENRE_MOODS` key, others as written ("IMAX").
    """
    raw = item.get("genres") or ()
    if isinstance(raw, str):  # tolerate a single genre given as a string
        raw = (raw,)
    out: dict[str, str] = {}  # key -> display form
    for genre in raw:
        key = normalise_genre(genre)
        if key not in _NO_GENRE and key not in out:
            out[key] = key if key in GENRE_MOODS else " ".join(str(genre).split())
    return tuple(out.values())


def item_year(item: Mapping[str, Any]) -> int | None:
    """The item's release year as an int, or None when missing or not a finite number."""
    year = item.get("year")
    if year is None or isinstance(year, bool):
        return None
    try:
        value = float(year)
    except (TypeError, ValueError):
        return None
    return int(value) if math.isfinite(value) and value > 0 else None


def genre_moods(genre: str) -> tuple[str, ...]:
    """Mood words for one genre (case-insensitive); genres not in the table have none."""
    return GENRE_MOODS.get(normalise_genre(genre), ())


def moods_for(genres: Sequence[str], minimum: int = _MIN_MOODS) -> list[str]:
    """A few distinct mood words: the first of each genre, topped up round-robin to `minimum`."""
    tables = [genre_moods(g) for g in genres]
    moods: list[str] = []
    for rank in range(max((len(t) for t in tables), default=0)):
        for table in tables:
            if rank >= len(table) or table[rank] in moods:
                continue
            if rank == 0 or len(moods) < minimum:
                moods.append(table[rank])
    return moods


def join_words(words: Sequence[str]) -> str:
    """Join words as English prose: "a", "a and b", "a, b and c"."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


def with_article(phrase: str) -> str:
    """Prefix "a" or "an" by the sound of the first word ("an 80s movie", "a 1990s movie")."""
    return f"{'an' if phrase[:1].lower() in set('aeiou8') else 'a'} {phrase}"


@dataclass(frozen=True)
class Wording:
    """How sentences name a catalog's items: the noun, the verb of taking one in, and who does."""

    one: str  # "book"
    many: str  # "books"
    verb: str  # "read"
    verbing: str  # "reading"
    audience: str  # "reader"

    @property
    def film(self) -> bool:
        """Films keep the recorded wording (its "movie"/"film" alternation included)."""
        return self.one == FILM[0]


def wording(kind: Sequence[str] = FILM) -> Wording:
    """The wording for a (singular, plural) kind; kinds without a known verb are "tried"."""
    one, many = (str(w).strip() for w in kind)
    verb = _KIND_VERBS.get(one.lower(), "try")
    return Wording(one, many, verb, *_VERBS[verb])


def describe(item: Mapping[str, Any], kind: Sequence[str] = FILM) -> str:
    """A deterministic English description of an item from whatever metadata it has.

    E.g. "Toy Story (1995). An animation, children's and comedy film: animated, family-friendly,
    funny." Missing fields are skipped; the item's own description text is appended. `kind`: the
    catalog's (singular, plural) item kind, which the sentence names.
    """
    noun = wording(kind).one
    title = str(item.get("title") or "").strip()
    year = item_year(item)
    genres = item_genres(item)
    own_text = str(item.get("description") or "").strip()

    sentences: list[str] = []
    if title:
        sentences.append(f"{title} ({year})." if year else f"{title}.")
    elif year:
        sentences.append(f"Released in {year}.")
    if genres:
        moods = moods_for(genres)
        tone = f": {', '.join(moods)}." if moods else "."
        sentences.append(_capitalised(with_article(f"{join_words(genres)} {noun}")) + tone)
    if own_text:
        sentences.append(own_text)
    return " ".join(sentences) if sentences else _capitalised(with_article(noun)) + "."


def _capitalised(phrase: str) -> str:
    """The phrase with its first letter upper-case, the rest as written ("An animation ...")."""
    return phrase[:1].upper() + phrase[1:]
