"""Data that streams: the synthetic generator, the chunked loader against the whole-table pandas
path it replaced, windows cut per batch against windows made all at once, and what is held."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from benchmarks.free_intentions import GENRES
from benchmarks.synthetic import catalog, generate
from idream.data.datasets import PAD, SequenceWindows, chronological_split, load_dataset, load_folder, window


def digest(folder) -> str:
    h = hashlib.sha256()
    for name in ("items.csv", "interactions.csv", "dataset.json"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("ml20m-shaped-tiny")
    generate(out, users=200, items=1000, interactions=20_000, seed=3, log=lambda s: None)
    return out


def test_generator_is_seeded_and_loadable(tiny, tmp_path):
    again = generate(tmp_path / "again", users=200, items=1000, interactions=20_000, seed=3, log=lambda s: None)
    assert again["interactions"] == 20_000
    assert digest(tiny) == digest(tmp_path / "again")
    generate(tmp_path / "other", users=200, items=1000, interactions=20_000, seed=4, log=lambda s: None)
    assert digest(tiny) != digest(tmp_path / "other")
    ds = load_dataset(str(tiny))
    assert ds.n_items == 1000 and len(ds.sequences) == 200 and ds.item_kind == ("film", "films")
    assert sum(len(s) for s in ds.sequences.values()) == 20_000  # no user meets an item twice
    meta = ds.item_meta(0)
    assert meta["title"] and 1900 < meta["year"] <= 2015 and set(meta["genres"]) <= set(GENRES)
    raw = pd.read_csv(tiny / "interactions.csv")
    assert not raw["user_id"].is_monotonic_increasing  # in time order: the loader must sort by user


def test_generator_plants_popularity_and_successors(tiny):
    ds = load_dataset(str(tiny))
    _, walk = catalog(1000, 3)
    counts = np.sort(ds.popularity())[::-1]
    assert counts[:100].sum() > 0.15 * counts.sum()  # the top tenth of the items: well over a tenth
    pairs = [(a, b) for s in ds.sequences.values() for a, b in zip(s[:-1], s[1:])]
    follow = np.mean([walk["successor"][a] == b for a, b in pairs])
    same = np.mean([walk["cluster"][a] == walk["cluster"][b] for a, b in pairs])
    assert follow > 0.15 and same > 0.5  # a model can learn what comes next


def test_generator_refuses_what_cannot_fit(tmp_path):
    with pytest.raises(ValueError, match="do not fit"):
        generate(tmp_path, users=2, items=10, interactions=100, log=lambda s: None)


def pandas_sequences(folder) -> dict:
    """The loader as it was: the whole file in one table, sorted, deduplicated, grouped."""
    inter = pd.read_csv(folder / "interactions.csv")
    items = pd.read_csv(folder / "items.csv", dtype={"item_id": str}, keep_default_na=False)
    ids = items["item_id"].str.strip()
    numeric = ids.str.fullmatch(r"-?\d+").all()
    index = pd.Series(np.arange(len(ids)), index=ids.astype(int) if numeric else ids)
    order = "timestamp" if "timestamp" in inter else "position"
    inter["item_id"] = inter["item_id"].astype(str).str.strip()
    if numeric:
        inter = inter[inter["item_id"].str.fullmatch(r"-?\d+")].copy()
        inter["item_id"] = inter["item_id"].astype(int)
    inter = inter[inter["item_id"].isin(index.index)].copy()
    inter["idx"] = index.loc[inter["item_id"].values].values
    inter["row"] = np.arange(len(inter))
    inter = inter.sort_values(["user_id", order, "row"], kind="stable")
    inter = inter.drop_duplicates(["user_id", "idx"], keep="first")
    return {u: g["idx"].to_numpy(np.int64) for u, g in inter.groupby("user_id", sort=True)}


def awkward_folder(folder, text_ids: bool):
    """Ties in time, repeats, an unknown item, users out of order, text or numeric ids."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    item_ids = [f"m{i}" for i in range(30)] if text_ids else [str(10 + 3 * i) for i in range(30)]
    pd.DataFrame({"item_id": item_ids, "title": [f"T{i}" for i in range(30)]}).to_csv(folder / "items.csv", index=False)
    n = 400
    users = rng.integers(0, 25, n)
    inter = pd.DataFrame({"user_id": [f"u{u}" for u in users] if text_ids else users + 7,
                          "item_id": rng.choice(item_ids + ["nope" if text_ids else "9999"], n),
                          "timestamp": rng.integers(0, 40, n)})
    inter.to_csv(folder / "interactions.csv", index=False)
    return folder


@pytest.mark.parametrize("text_ids", [False, True])
@pytest.mark.parametrize("chunksize", [7, 1 << 20])
def test_chunked_loader_matches_the_whole_table(tmp_path, text_ids, chunksize):
    folder = awkward_folder(tmp_path / "d", text_ids)
    want = pandas_sequences(folder)
    got = load_folder(folder, chunksize=chunksize).sequences
    assert list(got) == list(want) and [type(u) for u in got] == [type(u) for u in want]
    for u, s in want.items():
        assert got[u].dtype == s.dtype and got[u].tolist() == s.tolist()
    assert [s.tolist() for s in got.values()] == [s.tolist() for s in want.values()]


def test_chunked_loader_matches_on_the_generated_set(tiny):
    want = pandas_sequences(tiny)
    got = load_folder(tiny, chunksize=1000).sequences
    assert list(got) == list(want)
    assert all(np.array_equal(got[u], s) for u, s in want.items())


def windows_at_once(sequences, L):
    """sequence_windows as it was: every window made and stacked up front."""
    ins, outs = [], []
    for seq in sequences:
        for end in range(len(seq) - 1, 0, -L):
            ins.append(window(seq, end, L))
            outs.append(window(seq[1:], end, L))
    return np.stack(ins), np.stack(outs)


@pytest.mark.parametrize("L", [1, 3, 10])
def test_windows_per_batch_equal_windows_at_once(L):
    rng = np.random.default_rng(L)
    seqs = [rng.integers(0, 50, n) for n in rng.integers(0, 30, 60)]
    want_in, want_out = windows_at_once(seqs, L)
    w = SequenceWindows(seqs, L)
    assert len(w) == len(want_in)
    perm = rng.permutation(len(w))
    for b in range(0, len(w), 16):  # batches in a random order, as training draws them
        rows = perm[b:b + 16]
        ins, outs = w.take(rows)
        assert ins.dtype == outs.dtype == np.int64
        assert np.array_equal(ins, want_in[rows]) and np.array_equal(outs, want_out[rows])
    assert np.array_equal(w.targets(), (want_out != PAD).sum(1))
    sub = w.subset(perm[:9])
    assert np.array_equal(sub.take(np.arange(9))[1], want_out[perm[:9]])


def test_what_is_held_is_compact(tiny):
    """Interactions take 4 bytes each, a window 16 (not 16·L), and training with the causal encoder
    never builds the per-target cases."""
    from idream.training.train import TrainConfig, train

    ds = load_dataset(str(tiny))
    assert ds.sequences.flat.dtype == np.int32 and ds.sequences.flat.nbytes == 4 * 20_000
    split = chronological_split(ds, 10)
    w = SequenceWindows(split.train_sequences, 10)
    assert w.start.nbytes + w.end.nbytes == 16 * len(w)
    assert "train" not in vars(split) and split.n_train == len(split.train)  # built on first use
    cfg = TrainConfig(dataset=str(tiny), text_model="hash:32", width=16, depth=1, heads=2, encoder_depth=1,
                      T=50, history_len=5, intention_pool=2, seq_batch_size=16, epochs=1, valid_users=40,
                      max_train_samples=500, w_grid=(0.0,), threads=1)
    rec, split, _ = train(cfg, progress=False, log_fn=lambda s: None)
    assert "train" not in vars(split) and len(split.valid) == 40
    row = rec.config["train_log"]["history"][0]
    assert row["targets"] >= 500 and row["steps_s"] > 0


def test_evaluate_on_a_seeded_user_sample(tiny):
    ds = load_dataset(str(tiny))
    valid = chronological_split(ds, 10).valid
    a, b = valid.sample(30, seed=1), valid.sample(30, seed=1)
    assert len(a) == 30 and a.users.tolist() == b.users.tolist()
    assert a.users.tolist() == sorted(a.users.tolist())  # in their order
    assert valid.sample(0) is valid and valid.sample(10_000) is valid
