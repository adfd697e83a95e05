"""The free-phrased intention benchmark: hand-written, held out, and never read by the library.

benchmarks/intentions/free_phrased.jsonl measures whether a model understands intentions as
people type them, so it must not echo the training templates, must not give the answer away by
naming a film, and must keep its dev and test halves apart.
"""

from __future__ import annotations

import builtins
import json
import pathlib
import re
from collections import Counter
from pathlib import Path

import pytest

from benchmarks import free_intentions as fi
from idream.data.intentions import GENRE_PHRASES, TEMPLATES, generate_intention

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "intentions"
MIN_ROWS = 150
MIN_PER_GENRE = 4
TEMPLATE_SEEDS = range(8)


def words(text: str) -> list[str]:
    """Lower-case word tokens; punctuation and spacing do not count."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def folded(text: str) -> str:
    return " ".join(words(text))


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return fi.load()


@pytest.fixture(scope="module")
def ds():
    from idream.data.datasets import load_dataset

    return load_dataset("ml-100k")


@pytest.fixture(scope="module")
def make_halves():
    from conftest import load_script
    return load_script(BENCH / "make_halves.py")


# --- size, coverage, halves -------------------------------------------------------------------

def test_enough_rows(rows):
    assert len(rows) >= MIN_ROWS, f"only {len(rows)} rows, want at least {MIN_ROWS}"


def test_loader_genres_are_the_datasets(ds):
    """GENRES spells every informative ml-100k genre exactly as the dataset does."""
    seen = {g for gs in ds.items.genres for g in gs} - {"unknown"}
    assert seen == set(fi.GENRES)


def test_every_genre_covered(rows, ds):
    counts = Counter(g for r in rows for g in r["genres"])
    dataset_genres = {g for gs in ds.items.genres for g in gs} - {"unknown"}
    thin = {g: counts[g] for g in sorted(dataset_genres) if counts[g] < MIN_PER_GENRE}
    assert not thin, f"genres with fewer than {MIN_PER_GENRE} intentions: {thin}"


def test_halves_disjoint_and_balanced(rows):
    dev = [r for r in rows if r["half"] == "dev"]
    test = [r for r in rows if r["half"] == "test"]
    assert len(dev) + len(test) == len(rows)
    assert not {r["id"] for r in dev} & {r["id"] for r in test}
    shared = {fi.normalise(r["text"]) for r in dev} & {fi.normalise(r["text"]) for r in test}
    assert not shared, f"texts in both halves: {sorted(shared)[:5]}"
    for name, half in (("dev", dev), ("test", test)):
        share = len(half) / len(rows)
        assert 0.4 <= share <= 0.6, f"{name} holds {share:.0%} of the rows"
    assert fi.load("dev") == dev and fi.load("test") == test


def test_every_genre_in_both_halves(rows):
    for half in fi.HALVES:
        covered = {g for r in rows if r["half"] == half for g in r["genres"]}
        assert covered == set(fi.GENRES), f"{half} lacks {sorted(set(fi.GENRES) - covered)}"


def test_halves_are_what_make_halves_assigns(rows, make_halves):
    bare = [{k: r[k] for k in make_halves.FIELDS} for r in rows]
    assert make_halves.assign_halves(bare) == {r["id"]: r["half"] for r in rows}
    # the published file is the source plus the halves, nothing edited by hand
    assert make_halves.read_source() == bare


def test_assignment_is_deterministic_and_seeded(rows, make_halves):
    bare = [{k: r[k] for k in make_halves.FIELDS} for r in rows]
    first = make_halves.assign_halves(bare)
    assert make_halves.assign_halves(list(reversed(bare))) == first
    assert make_halves.SEED == 20261202


# --- not the templates, not the titles ---------------------------------------------------------

@pytest.fixture(scope="module")
def template_texts(ds) -> set[str]:
    metas = ds.all_item_meta()
    return {folded(generate_intention(meta, seed)) for meta in metas for seed in TEMPLATE_SEEDS}


def template_openings() -> list[list[str]]:
    openings = [words(t.split("{", 1)[0]) for t in TEMPLATES]
    return [o for o in openings if len(o) >= 3]


def test_openings_are_derived():
    # guards against the derivation silently finding nothing to check
    assert ["i", "feel", "like", "watching"] in template_openings()
    assert ["in", "the", "mood", "for"] in template_openings()


def test_no_text_is_a_template_intention(rows, template_texts):
    assert len(template_texts) > 1000
    hits = [r["text"] for r in rows if folded(r["text"]) in template_texts]
    assert not hits, f"texts equal to template intentions: {hits}"


def test_no_text_opens_like_a_template(rows):
    hits = [(r["text"], " ".join(o)) for r in rows for o in template_openings()
            if words(r["text"])[:len(o)] == o]
    assert not hits, f"texts that open like a template: {hits}"


def test_no_text_contains_a_long_template_phrase(rows):
    """Fixed template phrases of 4+ words ("nothing newer than the") appear nowhere."""
    pieces = (piece for t in TEMPLATES for piece in re.split(r"\{[^}]*\}|[,:?]", t))
    phrases = {" ".join(words(piece)) for piece in pieces}
    phrases = {p for p in phrases if len(p.split()) >= 4}
    assert "nothing newer than the" in phrases
    hits = [(r["text"], p) for r in rows for p in phrases if f" {p} " in f" {folded(r['text'])} "]
    assert not hits, f"texts containing template phrases: {hits}"


def test_no_bare_mood_word_glued_to_a_genre(rows):
    from idream.text.descriptions import GENRE_MOODS

    moods = {m for ms in GENRE_MOODS.values() for m in ms}
    names = set(GENRE_PHRASES) | set(GENRE_PHRASES.values()) | {"noir", "scifi", "sci fi"}
    names = {" ".join(words(n)) for n in names} - moods
    pattern = re.compile(r"\b(%s) (%s)s?\b" % ("|".join(map(re.escape, sorted(moods))),
                                                "|".join(map(re.escape, sorted(names)))))
    hits = [r["text"] for r in rows if pattern.search(folded(r["text"]))]
    assert not hits, f"mood word glued to a genre name: {hits}"


_ARTICLE = re.compile(r"^(?P<rest>.+), (?P<art>the|a|an|il|la|le|les|el|der|die|das|l')$", re.I)


def title_forms(title: str) -> set[str]:
    """A catalog title as it could be typed: year and alternate title dropped, article fronted."""
    title = re.sub(r"\s*\(\d{4}\)\s*$", "", title).strip()
    title = re.sub(r"\s*\([^)]*\)\s*$", "", title).strip()
    forms = {title}
    m = _ARTICLE.match(title)
    if m:
        forms = {m["rest"], f"{m['art']} {m['rest']}"}
    return {folded(f) for f in forms if len(words(f)) >= 2}


def test_title_forms():
    assert title_forms("Usual Suspects, The") == {"usual suspects", "the usual suspects"}
    assert title_forms("Shanghai Triad (Yao a yao yao dao waipo qiao)") == {"shanghai triad"}
    assert title_forms("Babe (1995)") == set()


def test_no_text_names_a_film(rows, ds):
    titles = {form: t for t in ds.items.title for form in title_forms(str(t))}
    assert len(titles) > 1000
    hits = [(r["text"], titles[form]) for r in rows for form in titles
            if f" {form} " in f" {folded(r['text'])} "]
    assert not hits, f"texts naming a film: {hits}"


# --- the loader rejects bad rows --------------------------------------------------------------

GOOD = {"id": "x-1", "text": "cowboys", "genres": ["Western"], "decade": None, "half": "dev"}


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_loader_accepts_a_good_file(tmp_path):
    second = {**GOOD, "id": "x-2", "text": "a ww2 movie", "genres": ["War"], "decade": 1940,
              "half": "test"}
    path = write_rows(tmp_path / "ok.jsonl", [GOOD, second])
    assert fi.load(path=path) == [GOOD, second]
    assert fi.load("test", path=path) == [second]


@pytest.mark.parametrize("bad, message", [
    ([GOOD, {**GOOD, "genres": ["Westerns"], "id": "x-2", "text": "other"}], "unknown genre"),
    ([GOOD, {**GOOD, "genres": ["western"], "id": "x-2", "text": "other"}], "unknown genre"),
    ([GOOD, {**GOOD, "text": "something else"}], "duplicate id"),
    ([GOOD, {**GOOD, "id": "x-2", "text": "  COWBOYS "}], "duplicate text"),
    ([{**GOOD, "decade": 1985}], "decade"),
    ([{**GOOD, "decade": 1910}], "decade"),
    ([{**GOOD, "decade": "1980"}], "decade"),
    ([{**GOOD, "half": "train"}], "half"),
    ([{**GOOD, "genres": []}], "genres"),
    ([{k: v for k, v in GOOD.items() if k != "half"}], "missing"),
])
def test_loader_rejects_bad_rows(tmp_path, bad, message):
    path = write_rows(tmp_path / "bad.jsonl", bad)
    with pytest.raises(ValueError, match=message):
        fi.load(path=path)


def test_loader_rejects_bad_json_and_half(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.jsonl:2"):
        fi.load(path=path)
    with pytest.raises(ValueError, match="half"):
        fi.load("train")


# --- the library never reads the set ----------------------------------------------------------

_LIBRARY_MENTIONS = re.compile(
    r"free_phrased|free_intentions|benchmarks[/\\]|benchmarks\.\w|import benchmarks"
    r"|from benchmarks|[\"']benchmarks[\"']")


# the command line hands the harness's commands (bench; the reports of train and evaluate) over to
# the benchmark package, lazily: an import inside a command function that names no part of the set
_CLI_DISPATCH = re.compile(r"^[ \t]+from benchmarks(?:\.\w+)* import (?!.*free_)[\w ,]+?(?:\s*#.*)?$", re.M)


def test_library_sources_do_not_mention_the_set():
    sources = sorted((ROOT / "idream").rglob("*.py"))
    assert sources
    hits = []
    for p in sources:
        src = p.read_text(encoding="utf-8")
        if p.name == "cli.py":
            src = _CLI_DISPATCH.sub("", src)
        if _LIBRARY_MENTIONS.search(src):
            hits.append(str(p.relative_to(ROOT)))
    assert not hits, f"library files that refer to the benchmark set: {hits}"


def test_training_reads_no_benchmark_file(synthetic_dir, cache_dir, monkeypatch):
    """A whole (tiny) training run opens no file of the benchmark set."""
    from idream.training.train import TrainConfig, train

    seen: list[str] = []
    real_open = builtins.open

    def open_(file, *args, **kwargs):
        seen.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    cfg = TrainConfig(dataset=str(synthetic_dir), text_model="hash:32", width=32, depth=1, heads=2,
                      epochs=1, T=100, history_len=5, intention_pool=2, w_grid=(0.0,))
    train(cfg, cache_dir=cache_dir, progress=False, log_fn=lambda s: None)
    monkeypatch.undo()
    assert any(str(synthetic_dir) in p for p in seen)  # the recorder saw the run read its data
    offending = [p for p in seen if "free_phrased" in p or "benchmarks" in p]
    assert not offending, f"training opened {offending}"


def test_intention_generation_reads_no_benchmark_file(ds, monkeypatch, tmp_path):
    from idream.data.intentions import intention_pool

    metas = ds.all_item_meta()  # the dataset is read before recording starts
    seen: list[str] = []
    real_open = builtins.open
    real_path_open, real_read_text = pathlib.Path.open, pathlib.Path.read_text

    def open_(file, *args, **kwargs):
        seen.append(str(file))
        return real_open(file, *args, **kwargs)

    def path_open(self, *args, **kwargs):
        seen.append(str(self))
        return real_path_open(self, *args, **kwargs)

    def read_text(self, *args, **kwargs):
        seen.append(str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(pathlib.Path, "open", path_open)
    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    pool = intention_pool(metas, 2, 0)
    during = len(seen)
    probe = tmp_path / "free_phrased.probe"
    probe.write_text("x", encoding="utf-8")
    probe.read_text(encoding="utf-8")  # the recorder itself works
    monkeypatch.undo()

    assert len(pool) == len(metas) and all(len(p) == 2 for p in pool)
    assert str(probe) in seen[during:]
    offending = [p for p in seen[:during] if "free_phrased" in p or "benchmarks" in p]
    assert not offending, f"intention generation opened {offending}"
