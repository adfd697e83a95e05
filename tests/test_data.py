"""MovieLens-100K as shipped by recbole, generic folders, and the chronological split."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from idream.data.datasets import PAD, DatasetError, chronological_split, load_dataset, test_cases
from tests.conftest import ML1M


@pytest.fixture(scope="module")
def ml100k():
    return load_dataset("ml-100k")


def test_ml100k_counts(ml100k):
    assert ml100k.n_items == 1682
    assert len(ml100k.sequences) == 943
    assert sum(len(s) for s in ml100k.sequences.values()) == 100_000
    toy = ml100k.item_meta(ml100k.item_index(1))
    assert toy["title"] == "Toy Story" and toy["year"] == 1995
    assert set(toy["genres"]) == {"Animation", "Children's", "Comedy"}
    assert isinstance(toy["item_id"], int)


def test_ml100k_sequences_are_chronological(ml100k):
    from idream.data.datasets import ml100k_dir
    inter = pd.read_csv(ml100k_dir() / "ml-100k.inter", sep="\t", header=0,
                        names=["u", "i", "r", "ts"])
    ts = {(u, i): t for u, i, t in zip(inter.u, inter.i, inter.ts)}
    ids = ml100k.items["item_id"].to_numpy()
    for u in list(ml100k.sequences)[:50]:
        times = [ts[(u, ids[i])] for i in ml100k.sequences[u]]
        assert times == sorted(times)


def test_ml100k_is_found_without_importing_recbole():
    # recbole is installed with --no-deps (requirements-data.txt): its modules must never run
    code = ("import sys; from idream.data.datasets import load_dataset; ds = load_dataset('ml-100k'); "
            "print(ds.n_items, len(ds.sequences), sorted(m for m in sys.modules "
            "if m.split('.')[0] in {'recbole', 'ray', 'tensorboard', 'thop'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.strip().split(maxsplit=2)
    assert out == ["1682", "943", "[]"]


def test_ml100k_missing_says_what_to_install(monkeypatch):
    import importlib.util

    from idream.data import datasets as data
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetError, match=r"pip install --no-deps recbole==1\.2\.1"):
        data.ml100k_dir()


def test_split_targets_and_histories(ml100k):
    sp = chronological_split(ml100k, history_len=10)
    test = test_cases(ml100k, history_len=10)
    assert not hasattr(sp, "test")  # what training and selection read holds no test case
    assert len(sp.valid) == len(test) == 943
    assert len(sp.train) == 100_000 - 2 * 943 - 943  # first item of each user has no history
    for s in (sp.train, sp.valid, test):
        for h, t in zip(s.histories[:5000], s.targets[:5000]):
            assert t not in h[h != PAD]
    for k, u in enumerate(test.users):
        seq = ml100k.sequences[u]
        assert test.targets[k] == seq[-1] and sp.valid.targets[k] == seq[-2]
        assert list(test.histories[k][test.histories[k] != PAD]) == list(seq[-11:-1])
        assert set(test.seen[k]) == set(seq[:-1]) and test.targets[k] not in test.seen[k]
        assert set(sp.valid.seen[k]) == set(seq[:-2])
    # no training sequence holds a user's last item; training never sees a held-out target
    assert all(len(s) == len(ml100k.sequences[u]) - 2 for s, u in zip(sp.train_sequences, ml100k.sequences))
    held = {(u, t) for u, t in zip(test.users, test.targets)}
    held |= {(u, t) for u, t in zip(sp.valid.users, sp.valid.targets)}
    assert not held & set(zip(sp.train.users, sp.train.targets))


def test_generic_folder(synthetic_dir):
    ds = load_dataset(str(synthetic_dir))
    assert ds.n_items == 40 and len(ds.sequences) == 120
    assert ds.item_meta(0)["genres"] and ds.item_meta(0)["year"] == 1950
    seq = ds.sequences["u0"]
    assert all((b - a) % 40 == 1 for a, b in zip(seq[:-1], seq[1:]))


def test_generic_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset(str(tmp_path / "nope"))
    (tmp_path / "items.csv").write_text("item_id,title\n1,A\n")
    with pytest.raises(DatasetError, match="interactions.csv"):
        load_dataset(str(tmp_path))
    (tmp_path / "interactions.csv").write_text("user_id,item_id\n1,1\n")
    with pytest.raises(DatasetError, match="timestamp"):
        load_dataset(str(tmp_path))


def test_repeated_items_keep_first(tmp_path):
    (tmp_path / "items.csv").write_text("item_id,title\na,A\nb,B\nc,C\n")
    (tmp_path / "interactions.csv").write_text(
        "user_id,item_id,position\n1,a,0\n1,b,1\n1,a,2\n1,c,3\n")
    ds = load_dataset(str(tmp_path))
    assert [ds.item_meta(i)["item_id"] for i in ds.sequences[1]] == ["a", "b", "c"]


@pytest.mark.ml1m
@pytest.mark.skipif(not (ML1M / "interactions.csv").exists(), reason="../shared/data/ml-1m absent")
def test_ml1m_folder():
    ds = load_dataset(str(ML1M))
    assert ds.n_items == 3883 and len(ds.sequences) == 6040
    assert sum(len(s) for s in ds.sequences.values()) == 1_000_209
    test = test_cases(ds)
    assert len(test) == 6040
    assert np.all(test.targets == np.array([ds.sequences[u][-1] for u in test.users]))


def test_drop_last_writes_a_dataset_whose_users_lose_their_last_items(synthetic_dir, tmp_path):
    from pathlib import Path

    from conftest import load_script
    mod = load_script(Path(__file__).resolve().parents[1] / "scripts" / "drop_last.py")
    from idream.data.datasets import load_dataset
    before = load_dataset(str(synthetic_dir))
    mod.drop_last(str(synthetic_dir), 2, tmp_path / "minus2")
    after = load_dataset(str(tmp_path / "minus2"))
    ids_b, ids_a = before.items["item_id"].tolist(), after.items["item_id"].tolist()
    assert ids_a == ids_b and after.items["title"].tolist() == before.items["title"].tolist()
    for u, s in before.sequences.items():
        kept = [ids_b[i] for i in s][:-2]
        got = [ids_a[i] for i in after.sequences[u]] if u in after.sequences else []
        assert got == kept


def test_cold_items_never_train_but_stay_in_evaluation(ml100k):
    from idream.data.datasets import cold_items
    cold = cold_items(ml100k, 0.1, seed=3)
    assert len(cold) == 168 and len(set(cold.tolist())) == 168
    assert not np.array_equal(cold, cold_items(ml100k, 0.1, seed=4))  # the seed draws them
    sp = chronological_split(ml100k, 10, cold_items=cold)
    full = chronological_split(ml100k, 10)
    cold_set = set(cold.tolist())
    assert not cold_set & {int(i) for s in sp.train_sequences for i in s}
    assert not cold_set & set(sp.train.targets.tolist())
    assert not cold_set & {int(i) for h in sp.train.histories for i in h if i != PAD}
    # what is left of each training sequence keeps its order
    for s, f in zip(sp.train_sequences, full.train_sequences):
        assert s.tolist() == [i for i in f.tolist() if i not in cold_set]
    # validation and test are the full sequences' cases: some of their targets are cold
    assert np.array_equal(sp.valid.targets, full.valid.targets)
    assert cold_set & set(test_cases(ml100k, 10).targets.tolist())
    with pytest.raises(ValueError, match="cold share"):
        cold_items(ml100k, 1.0)


def test_item_kind_from_the_name_or_the_folder(ml100k, synthetic_dir, tmp_path):
    """Labels name the catalog's own kind of item: films for MovieLens, the folder's dataset.json
    where it says, "items" otherwise; a broken dataset.json is a clear error."""
    import shutil

    from demo.app import FILM_EXAMPLES, intention_examples

    assert ml100k.item_kind == ("film", "films") and intention_examples(ml100k) == FILM_EXAMPLES
    assert load_dataset(str(synthetic_dir)).item_kind == ("film", "films")
    books = tmp_path / "books"
    shutil.copytree(synthetic_dir, books)
    (books / "dataset.json").unlink()
    assert load_dataset(str(books)).item_kind == ("item", "items")
    (books / "dataset.json").write_text('{"item_kind": "book"}')
    ds = load_dataset(str(books))
    assert ds.item_kind == ("book", "books")
    ex = intention_examples(ds)  # from the catalog's own genres, never film examples
    assert ex and not set(ex) & set(FILM_EXAMPLES)
    assert all(any(g.lower() in e for gs in ds.items["genres"] for g in gs) for e in ex)
    (books / "dataset.json").write_text('{"item_kind": "story", "item_kind_plural": "stories"}')
    assert load_dataset(str(books)).item_kind == ("story", "stories")
    for bad in ("not json", '{"kind": "book"}', '{"item_kind": ""}'):
        (books / "dataset.json").write_text(bad)
        with pytest.raises(DatasetError, match="dataset.json"):
            load_dataset(str(books))
