"""The catalog's kind of item reaches every sentence that names it: a books folder's descriptions,
intentions and LLM prompts say "book" and never film words, while film catalogs keep the exact
strings that the shipped checkpoint, the recorded rankings and the benchmarks were made with."""

from __future__ import annotations

import json
import re

import pytest

from idream.data import catalog
from idream.text import llm
from idream.data.datasets import load_dataset, test_cases
from idream.evaluation.evaluate import intention_sentences
from idream.data.intentions import generate_intention, intention_pool
from idream.text.cache import text_fingerprint
from idream.text.descriptions import FILM, TEMPLATE_VERSION, describe
from tests.conftest import ML1M

FILM_WORDS = re.compile(r"\b(films?|movies?|watch|watching|viewers?)\b", re.IGNORECASE)
GENERIC_BOOK_INTENTIONS = {"something I would enjoy", "surprise me with a good book",
                           "what should I read next?"}


def film_words(texts) -> list[str]:
    """The texts that say film, movie, watch or viewer."""
    return [t for t in texts if FILM_WORDS.search(t)]


@pytest.fixture(scope="module")
def books(books_dir):
    return load_dataset(str(books_dir))


def test_book_descriptions_name_books(books):
    texts = catalog.item_texts(books)
    assert books.item_kind == ("book", "books") and not film_words(texts)
    assert texts[0] == "The Hobbit (1937). A fantasy and adventure book: magical, adventurous, whimsical."
    assert sum(" book: " in t for t in texts) == len(texts) - 1  # all but the one without genres
    assert describe({}, books.item_kind) == "A book." and describe({}, ("item", "items")) == "An item."


def test_book_intentions_name_books_and_reading(books):
    metas = books.all_item_meta()
    pool = intention_pool(metas, 8, 0, books.item_kind)
    flat = [s for p in pool for s in p]
    assert not film_words(flat)
    assert sum(bool(re.search(r"\bbook\b", s)) for s in flat) >= len(flat) // 2
    assert set(pool[-1]) == GENERIC_BOOK_INTENTIONS  # no facts: the generic phrasings, in book words
    cases = intention_sentences(books, test_cases(books, 3))
    assert len(cases) == len(books.sequences) and not film_words(cases)
    for seed in range(30):  # the same draws as a film catalog's, in other words
        film = generate_intention(metas[0], seed)
        book = generate_intention(metas[0], seed, books.item_kind)
        assert book == re.sub(r"\b(movie|film)\b", "book", film).replace("watching", "reading")


def test_book_prompts_ask_about_books(books):
    system, user = (m["content"] for m in llm.build_messages(books.item_meta(1), books.item_kind))
    assert system.startswith("You write catalog descriptions of books for a recommender system.")
    assert user.startswith("Write a description of the book below in one paragraph")
    assert "the kind of reader who would enjoy it" in user and "Title: Dune" in user
    assert not film_words([system, user])
    assert llm.prompt_version(books.item_kind) == "describe-v1-book" != llm.PROMPT_VERSION
    film_record = llm.make_record(books.item_meta(1), "m", "A desert planet.")
    assert not llm.is_current(film_record, books.item_meta(1), kind=books.item_kind)


def test_every_text_a_books_model_embeds_names_books(books_dir, tmp_path, monkeypatch):
    """build() embeds the item descriptions and the training intentions; a new item is described
    the same way: all of them through the recording backend, none in film words."""
    from idream.text import backends
    from idream.text.backends import HashingBackend, register_backend
    from idream.training.train import TrainConfig, build

    seen: list[str] = []

    class Recording(HashingBackend):
        def encode(self, texts, **kw):
            seen.extend(texts)
            return super().encode(texts, **kw)

    monkeypatch.setattr(backends, "_BACKENDS", dict(backends._BACKENDS))
    register_backend("record", lambda arg: Recording(int(arg)))
    cfg = TrainConfig(dataset=str(books_dir), text_model="record:16", width=16, depth=1, heads=2,
                      T=20, history_len=3, intention_pool=3, epochs=1)
    rec, _, _, _ = build(cfg, tmp_path, progress=False)
    rec.embed_new_item("Neuromancer", "A hacker is hired for one last job.", 1984, ("Sci-Fi",))
    assert len(seen) == 8 + 8 * 3 + 1 and not film_words(seen)
    assert seen[-1] == ("Neuromancer (1984). A sci-fi book: futuristic, mind-bending, cerebral. "
                        "A hacker is hired for one last job.")


# --- films: the strings of template-v1 / describe-v1, recorded before the kind was passed down ---

ML100K = {
    "describe": "0209cb43c709d6898df67b861bc18b9459faa195459170443a18854ec658aedb",
    "pool": "203f7ad9c717b2abeb52d426791a939aa88ce60cdb0836289f89a5901f261444",
    "test_intentions": "44edf12d9d9c2b0e28741356549cbbe40de0c34bc605416989533069ad04c3cd",
    "messages": "4b313bcc484e055a877624985e723720823ff70ad636dd4046a6c66dba0974f8",
    "records": "045ff6e0ee4fb55ec4c4b68915e4fc030b4c9a5c797e9094f1605ef6ca0e12dc",
}
ML1M_PRINTS = {
    "describe": "e103458e5f5797a3bbf5d842f423b6f8bf7fcdc5620448748adf9cdc1839ebc4",
    "pool": "9e681ae52c59f52b883cdb48fbc3f59a221fddc49093163c03ef6ca3b6afcf73",
    "test_intentions": "f8c8cbd55ac777a5fd04a2cd2495b1232fdac655cec6128d53a12bf0cd31526c",
    "messages": "5fb99edf0ba38e9d0b166ecc2c1622292ea2a68724092bb05b3f8d772edc70dc",
    "records": "f705aecd188450a81fb73c4a1dc5ebe05a624c957c18285fe0cf43a586258b6a",
}


def fingerprints(ds) -> dict[str, str]:
    """sha256 of every film string a run makes from the catalog, through the code paths runs use."""
    kind, metas = ds.item_kind, ds.all_item_meta()
    return {
        "describe": text_fingerprint(catalog.item_texts(ds)),
        "pool": text_fingerprint([s for p in intention_pool(metas, 4, 0, kind) for s in p]),
        "test_intentions": text_fingerprint(intention_sentences(ds, test_cases(ds), seed=0)),
        "messages": text_fingerprint([json.dumps(llm.build_messages(m, kind)) for m in metas]),
        "records": text_fingerprint([json.dumps(llm.make_record(m, "m", "t", kind), sort_keys=True)
                                     for m in metas]),
    }


@pytest.fixture(scope="module")
def ml100k():
    return load_dataset("ml-100k")


def test_ml100k_strings_are_unchanged(ml100k):
    assert ml100k.item_kind == FILM and TEMPLATE_VERSION == "template-v1"
    assert fingerprints(ml100k) == ML100K


def test_ml100k_examples_are_unchanged(ml100k):
    def meta(item_id):
        return ml100k.item_meta(ml100k.item_index(item_id))

    kind = ml100k.item_kind
    assert describe(meta(1), kind) == describe(meta(1)) == (
        "Toy Story (1995). An animation, children's and comedy film: animated, family-friendly, funny.")
    assert describe(meta(267), kind) == "unkonwn." and describe({}, kind) == "A film."
    assert intention_pool([meta(1)], 4, 0, kind)[0] == [
        "in the mood for a comedy movie tonight", "Recommend me an animated comedy film from the 90s",
        "a comedy movie, nothing newer than the 90s", "I feel like watching an animated movie"]
    assert intention_pool([meta(267)], 4, 0, kind)[0] == [
        "something I would enjoy", "surprise me with a good movie", "what should I watch next?",
        "something I would enjoy"]
    assert [generate_intention(meta(1682), s, kind) for s in (0, 7)] == [
        "looking for something emotional: a drama movie from the 90s",
        "something serious and moving, maybe a drama film"]
    assert generate_intention({}, 3, kind) == "surprise me with a good movie"
    assert llm.build_messages(meta(1), kind) == [
        {"role": "system", "content": "You write catalog descriptions of movies for a recommender "
                                      "system. Be factual, specific and concise."},
        {"role": "user", "content": "Write a description of the movie below in one paragraph of about "
                                    "100 words: what it is about, its genre, tone and mood, its themes, "
                                    "and the kind of viewer who would enjoy it. Do not reveal the ending. "
                                    "Answer with the paragraph only: no heading, list or preamble.\n\n"
                                    "Title: Toy Story\nYear: 1995\nGenres: Animation, Children's, Comedy"}]
    assert llm.prompt_version(kind) == llm.PROMPT_VERSION == "describe-v1"


@pytest.mark.ml1m
@pytest.mark.skipif(not (ML1M / "interactions.csv").exists(), reason="../shared/data/ml-1m absent")
def test_ml1m_strings_are_unchanged():
    ds = load_dataset(str(ML1M))
    assert ds.item_kind == FILM and fingerprints(ds) == ML1M_PRINTS
