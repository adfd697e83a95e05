"""The new-item protocol: the hand-written case file (real histories, halves made once and
disjoint, never read by training), the bench command and its text-only reference, and the clear
refusals of new items that cannot be placed."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.newitems import (CASES, CaseFileError, load_cases, rank_of, reference_scores,
                                 summarise)
from benchmarks.cli import main as bench_main
from idream.cli import main
from idream.serving.request import MAX_DESCRIPTION_CHARS, NewItemError

ROOT = Path(__file__).resolve().parents[1]


# -- the case file -----------------------------------------------------------------------------

FRESH = CASES.parent / "cases-fresh.json"  # a second test half, written after c was chosen


@pytest.fixture(scope="module", params=[CASES, FRESH], ids=["cases", "fresh"])
def cases(request):
    return load_cases(request.param)


def test_at_least_40_cases_in_two_disjoint_halves():
    cases = load_cases(CASES)
    ids = {h: {c["id"] for c in load_cases(CASES, h)} for h in ("dev", "test")}
    assert len(cases) >= 40
    assert not ids["dev"] & ids["test"]
    assert ids["dev"] | ids["test"] == {c["id"] for c in cases}
    assert abs(len(ids["dev"]) - len(ids["test"])) <= 1


def test_the_fresh_half_is_all_test_and_shares_nothing_with_the_first_file():
    first, fresh = load_cases(CASES), load_cases(FRESH)
    assert len(fresh) >= 20 and load_cases(FRESH, "test") == fresh
    assert not {c["id"] for c in first} & {c["id"] for c in fresh}
    for key in ("intention",):
        assert not {c[key].lower() for c in first} & {c[key].lower() for c in fresh}
    titles = {c[k]["title"] for c in first for k in ("fit", "misfit")}
    assert not titles & {c[k]["title"] for c in fresh for k in ("fit", "misfit")}


def test_histories_are_real_catalog_films_of_varied_genres(cases):
    from idream.data.datasets import load_dataset

    ds = load_dataset("ml-100k")
    genres = set()
    for c in cases:
        assert 3 <= len(c["history"]) <= 6, c["id"]
        for h in c["history"]:
            m = ds.item_meta(ds.item_index(h["item_id"]))  # KeyError: not in the catalog
            assert h["title"] == f"{m['title']} ({m['year']})", (c["id"], h)
            genres |= set(m["genres"])
    assert len(genres) >= 12  # varied tastes (MovieLens has 18 genres)
    assert len({c["intention"].lower() for c in cases}) == len(cases)  # each in its own words


def test_each_case_has_a_described_fit_and_misfit(cases):
    for c in cases:
        for key in ("fit", "misfit"):
            d = c[key]["description"]
            assert 0 < len(d) <= MAX_DESCRIPTION_CHARS and 1 <= d.count(".") <= 4, (c["id"], key)
        assert c["fit"]["title"] != c["misfit"]["title"]


def test_no_library_file_names_the_case_file():
    """Training, evaluation and the app live in idream/; none of them may name the cases."""
    for f in (ROOT / "idream").rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        assert "cases.json" not in text and "benchmarks/newitems" not in text, f


TRAIN_UNDER_HOOK = """
import sys
CASES = sys.argv[1]
def hook(event, args):
    if event == "open" and args and str(args[0]).endswith(CASES):
        raise PermissionError("the new-item cases were opened")
sys.addaudithook(hook)
from benchmarks.cli import main as bench_main
from idream.cli import main
rc = main(sys.argv[2:])
try:
    open(CASES).read()
except PermissionError:
    print("hook works")
sys.exit(rc)
"""


def test_training_never_opens_the_case_file(synthetic_dir, tmp_path):
    args = ["train", "--quiet", "--no-eval", "--dataset", str(synthetic_dir), "--tem", "hash:32",
            "--width", "16", "--depth", "1", "--heads", "2", "--encoder-depth", "1", "--T", "50",
            "--history-len", "5", "--intention-pool", "2", "--epochs", "1", "--threads", "1",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "ck")]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", TRAIN_UNDER_HOOK, str(CASES), *args], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "hook works" in done.stdout and (tmp_path / "ck" / "config.json").exists()


def test_a_broken_case_file_is_refused_in_one_line(tmp_path, capsys):
    bad = tmp_path / "cases.json"
    bad.write_text(json.dumps({"cases": [{"id": "a", "half": "train", "history": [{"item_id": 1}],
                                          "intention": "x", "fit": {"title": "A"},
                                          "misfit": {"title": "B"}}]}))
    with pytest.raises(CaseFileError, match="'half' must be one of dev, test"):
        load_cases(bad)
    assert bench_main(["newitems", "--cases", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not a new-item case file" in err and len(err.splitlines()) == 1


# -- the reference and the summary ----------------------------------------------------------

def test_reference_matches_a_hand_computation():
    """Four catalog items and one new item in 2-d; the history is item 0."""
    E = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0], [1.0, 1.0]])
    q = np.array([0.0, 5.0])
    got = reference_scores(E, q, [0], n_catalog=4)

    def cos(a, b):
        return float(a @ b) / math.hypot(*a) / math.hypot(*b)

    def z(xs):
        m = sum(xs[:4]) / 4
        sd = math.sqrt(sum((x - m) ** 2 for x in xs[:4]) / 4)
        return [(x - m) / sd for x in xs]

    want = [a + b for a, b in zip(z([cos(e, q) for e in E]), z([cos(e, E[0]) for e in E]))]
    assert got == pytest.approx(want, abs=1e-9)
    # the new item (row 4, halfway between the intention and the history) beats items 1 and 3
    assert rank_of(got, 4, masked=[0]) == 2


def test_rank_counts_ties_at_their_expected_place():
    s = np.array([5.0, 3.0, 3.0, 3.0, 1.0, 9.0])
    assert rank_of(s, 1, masked=[5]) == 3  # behind 5.0, tied with two others: 2 + 2/2
    assert rank_of(s, 4, masked=[5]) == 5


def test_summary_counts_what_the_goals_ask():
    def row(fit, misfit):  # (model, unguided, reference) ranks
        return {"fit": dict(zip(("model", "unguided", "reference"), fit)),
                "misfit": dict(zip(("model", "unguided", "reference"), misfit))}

    rows = [row((3, 40, 5), (900, 30, 1000)), row((20, 9, 12), (45, 700, 800)), row((7, 7, 7), (1200, 60, 50))]
    s = summarise(rows)
    assert s["fit_at_or_above_reference"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["fit_top10"] == {"model": pytest.approx(2 / 3, abs=1e-4), "unguided": pytest.approx(2 / 3, abs=1e-4),
                              "reference": pytest.approx(2 / 3, abs=1e-4)}
    assert s["misfit_top50"] == {"model": 1, "unguided": 1, "reference": 1}
    assert s["median_fit_rank"] == {"model": 7, "unguided": 9, "reference": 7}


# -- the command on the tiny checkpoint -------------------------------------------------------

def small_cases(path: Path) -> Path:
    """Two cases, one per half; the dev case's history holds a film listed twice (246 and 268)."""
    doc = json.loads(CASES.read_text(encoding="utf-8"))
    dev, test = (next(c for c in doc["cases"] if c["half"] == h) for h in ("dev", "test"))
    dev = dict(dev, history=[{"item_id": 246, "title": "Chasing Amy (1997)"}] + dev["history"][:2])
    path.write_text(json.dumps({"cases": [dev, test]}))
    return path


def test_the_command_ranks_both_new_items_on_the_tiny_checkpoint(checkpoint, tmp_path, capsys):
    cases = small_cases(tmp_path / "small.json")
    assert bench_main(["newitems", "--checkpoint", str(checkpoint), "--cases", str(cases),
                 "--out", str(tmp_path), "--threads", "1"]) == 0
    r = json.loads((tmp_path / "bench-newitems-ml-100k-small.json").read_text())  # named by its case file
    assert set(r["summary"]) == {"dev", "test"} and [c["half"] for c in r["cases"]] == ["dev", "test"]
    dev = r["cases"][0]
    assert dev["candidates"] == 1682 + 2 - 4  # three history films and 246's twin, 268, left out
    for c in r["cases"]:
        for key in ("fit", "misfit"):
            assert all(1 <= c[key][col] <= c["candidates"] for col in ("model", "without", "unguided", "reference"))
        assert c["fit"]["model"] == c["fit"]["without"]  # the tiny checkpoint's rule has no c
        assert c["fit"]["model"] != c["misfit"]["model"]
    md = (tmp_path / "bench-newitems-ml-100k-small.md").read_text()
    assert "| dev | c = 0 | 1 |" in md and "| test | with c | 1 |" in md and r["commit"] and r["machine"]
    assert bench_main(["newitems", "--checkpoint", str(checkpoint), "--cases", str(cases),
                 "--out", str(tmp_path), "--half", "test"]) == 0
    assert set(json.loads((tmp_path / "bench-newitems-ml-100k-small-test.json").read_text())["summary"]) == {"test"}


# -- choosing c on the dev half alone -------------------------------------------------------

def poisoned(path: Path, cases: Path) -> Path:
    """The same file with its test half spoiled: fit and misfit swapped, a film not in the catalog."""
    doc = json.loads(cases.read_text(encoding="utf-8"))
    for c in doc["cases"]:
        if c["half"] == "test":
            c["fit"], c["misfit"] = c["misfit"], c["fit"]
            c["history"] = [{"item_id": 999_999, "title": "Nowhere (2099)"}]
    path.write_text(json.dumps(doc))
    return path


def test_c_is_chosen_on_the_dev_half_alone(tmp_path):
    from benchmarks.newitems import choose_c
    from idream.serving.recommender import Recommender

    shipped = ROOT / "checkpoints" / "ml-100k"
    if not (shipped / "model.safetensors").exists():
        pytest.skip("no shipped checkpoint")
    rec = Recommender.load(shipped)
    cases = small_cases(tmp_path / "small.json")
    grid = (0.0, 1.0, 4.0)
    rule, rows = choose_c(rec, cases, grid, log=lambda s: None)
    spoiled, spoiled_rows = choose_c(rec, poisoned(tmp_path / "poisoned.json", cases), grid, log=lambda s: None)
    assert rows == spoiled_rows and rule.c == spoiled.c
    assert [r["c"] for r in rows] == list(grid) and rule.c in grid
    assert (rule.a, rule.b) == (rec.new_item_rule.a, rec.new_item_rule.b)  # a, b kept
    assert rule.c_chosen_on.startswith("dev half") and "1 cases" in rule.c_chosen_on
    with pytest.raises(CaseFileError, match="999999 is not an item"):  # the spoiled half is unusable
        load_and_run_test_half(rec, tmp_path / "poisoned.json")


def test_c_is_the_smallest_that_reaches_the_best_share_without_a_misfit():
    from benchmarks.newitems import pick_c

    def row(c, share, top10, misfits=0):
        return {"c": c, "at_or_above": share, "top10": top10, "misfit_top50": misfits}

    rows = [row(0.0, 0.25, 0.08), row(2.0, 0.96, 0.67), row(2.5, 1.0, 0.75), row(4.0, 1.0, 0.79)]
    assert pick_c(rows)["c"] == 2.5  # a larger top-10 share does not buy more intention weight
    assert pick_c([row(1.0, 0.9, 0.5), row(2.0, 1.0, 0.7, misfits=1)])["c"] == 1.0
    assert pick_c([row(1.0, 1.0, 0.5, misfits=2)]) is None


def load_and_run_test_half(rec, path: Path):
    from benchmarks.newitems import catalog_vectors, run_case

    return [run_case(rec, c, catalog_vectors(rec)) for c in load_cases(path, "test")]


def test_the_command_writes_c_beside_a_and_b(checkpoint, tmp_path, capsys):
    import shutil

    copy = tmp_path / "ck"
    shutil.copytree(checkpoint, copy)
    cases = small_cases(tmp_path / "small.json")
    args = ["newitems", "--checkpoint", str(copy), "--set-c", "--cases", str(cases), "--threads", "1"]
    assert bench_main(args) == 2  # the tiny checkpoint's rule is off: a and b come first
    assert "choose a and b first" in capsys.readouterr().err
    cfg = json.loads((copy / "config.json").read_text())
    cfg["new_items"] = {"a": 1.5, "b": -1.6, "chosen_on": "by hand"}
    (copy / "config.json").write_text(json.dumps(cfg))
    assert bench_main(args) == 0
    rule = json.loads((copy / "config.json").read_text())["new_items"]
    assert (rule["a"], rule["b"], rule["chosen_on"]) == (1.5, -1.6, "by hand")
    assert rule["c_chosen_on"].startswith("dev half") and rule["c"] >= 0


# -- new items that cannot be placed --------------------------------------------------------

@pytest.fixture(scope="module")
def rec(checkpoint):
    from idream.serving.recommender import Recommender

    return Recommender.load(checkpoint)


def test_a_huge_description_or_title_is_refused_plainly(rec):
    with pytest.raises(NewItemError, match="at most 2,000 characters, got 49,999"):
        rec.embed_new_item("Epic", "word " * 10_000)
    with pytest.raises(NewItemError, match="title holds at most"):
        rec.embed_new_item("T" * 500, "A film.")
    with pytest.raises(NewItemError, match="needs a title"):
        rec.embed_new_item("  \x00 ", "A film about nothing.")


def test_an_empty_description_is_kept_with_a_notice(rec):
    bare = rec.embed_new_item("Untold", "")
    assert "no description" in bare["notice"] and bare["meta"]["description"] == ""
    assert "notice" not in rec.embed_new_item("Told", "A story told well.")


def test_a_history_of_new_items_is_refused_plainly(rec):
    new = rec.embed_new_item("Ridge 317", "Soldiers hold a frozen hill in Korea.")
    for history in (["new:1"], [new], "new:1"):
        with pytest.raises(NewItemError, match="a history made only of new items cannot be answered"):
            rec.recommend(history, "war", extra_items=[new])
    with pytest.raises(NewItemError, match="a history with new items in it"):
        rec.recommend([1, "new:1"], extra_items=[new])


def test_the_command_line_says_it_in_one_line(checkpoint, capsys):
    assert main(["recommend", "--checkpoint", str(checkpoint), "--history", "new:1"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "only of new items" in err
